"""Core v1 Events as the cluster's components record them, with the event correlator's
de-duplication: the same event again bumps `count` and `lastTimestamp`.

Writes Event objects into the store; `kubectl describe` and `kubectl get events` read them.
Events older than an hour expire, as with the apiserver's default `--event-ttl`.
"""

from __future__ import annotations

from collections.abc import Callable

from irlib.lab.kube.meta import Obj, rfc3339
from irlib.lab.kube.resources import resource
from irlib.lab.kube.store import Store

EVENTS = resource("events")
TTL = 3600.0
Key = tuple[str, str, str, str, str, str]


def event_object(
    obj: Obj,
    type_: str,
    reason: str,
    message: str,
    component: str,
    *,
    name: str,
    first: float,
    last: float,
    count: int = 1,
    host: str | None = None,
    field_path: str | None = None,
) -> Obj:
    """A core/v1 Event about `obj`, seen `count` times from `first` to `last` (epoch s)."""
    meta = obj["metadata"]
    involved: Obj = {
        "kind": obj["kind"],
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
        "uid": meta["uid"],
        "apiVersion": obj["apiVersion"],
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if not meta.get("namespace"):
        involved.pop("namespace")
    if field_path:
        involved["fieldPath"] = field_path
    source: Obj = {"component": component}
    if host:
        source["host"] = host
    return {
        "metadata": {"name": name, "namespace": meta.get("namespace") or "default"},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": rfc3339(first),
        "lastTimestamp": rfc3339(last),
        "count": count,
        "type": type_,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": host or "",
    }


class Recorder:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.enabled = True  # off while the controller builds the cluster's past
        self._seen: dict[Key, tuple[str, str, float]] = {}  # key -> (namespace, name, last)

    def record(
        self,
        obj: Obj,
        type_: str,
        reason: str,
        message: str,
        component: str,
        *,
        host: str | None = None,
        field_path: str | None = None,
        min_interval: float = 0.0,
    ) -> None:
        """Record one occurrence; within `min_interval` of the last one it is dropped (how
        the lab rate-limits what a component would repeat on every retry)."""
        if not self.enabled:
            return
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key: Key = (meta["uid"], type_, reason, message, component, field_path or "")
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and self.store.get(EVENTS, seen[0], seen[1]) is not None:
            if now - seen[2] < min_interval:
                return  # before the copy: a rate-limited repeat costs nothing
            ev = self.store.get_copy(EVENTS, seen[0], seen[1])
            if ev is not None:
                ev["count"] = ev.get("count", 1) + 1
                ev["lastTimestamp"] = rfc3339(now)
                self.store.update(EVENTS, ev)
                self._seen[key] = (seen[0], seen[1], now)
                return
        name = f"{meta['name']}.{int(now * 1e9):x}"
        event = event_object(
            obj, type_, reason, message, component,
            name=name, first=now, last=now, host=host, field_path=field_path,
        )  # fmt: skip
        self.store.create(EVENTS, event, timestamp=now)
        self._seen[key] = (namespace, name, now)

    def expire(self) -> None:
        horizon = rfc3339(self.clock() - TTL)  # once: 20,000 events are compared with it
        for ev in list(self.store.all(EVENTS)):
            last = ev.get("lastTimestamp") or ev["metadata"]["creationTimestamp"]
            if last < horizon:
                self.store.delete(EVENTS, ev["metadata"]["namespace"], ev["metadata"]["name"])
        self._seen = {
            k: v for k, v in self._seen.items() if self.store.get(EVENTS, v[0], v[1]) is not None
        }
