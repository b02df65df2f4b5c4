"""The emulator's object store: every object, one global resourceVersion, watch events.

In memory, used from one asyncio event loop (the HTTP handlers and the controller), so no
locks. Readers get the stored dicts: copy before changing (`get_copy`). A write that changes
nothing keeps the old resourceVersion, so the controller can write every tick without noise.
"""

from __future__ import annotations

import asyncio
import copy
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from irlib.lab.kube.meta import Obj, new_uid, random_suffix, rfc3339
from irlib.lab.kube.resources import Resource
from irlib.lab.kube.selectors import field_matcher, label_matcher

HISTORY = 5000  # watch events kept for `?watch=1&resourceVersion=N` resumption


class StoreError(Exception):
    """A request the apiserver would refuse; `code` and `reason` as in a Status object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}


def not_found(res: Resource, name: str) -> StoreError:
    details = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    return StoreError(404, "NotFound", f'{res.qualified()} "{name}" not found', details)


@dataclass
class WatchEvent:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: str  # resource key
    obj: Obj
    old: Obj | None


@dataclass
class Query:
    """What a list or watch asks for: namespace (None: all) and selectors."""

    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None

    def matcher(self) -> Callable[[Obj], bool]:
        labels = label_matcher(self.label_selector)
        fields = field_matcher(self.field_selector)
        ns = self.namespace

        def match(obj: Obj) -> bool:
            meta = obj["metadata"]
            return (
                (ns is None or meta.get("namespace") == ns)
                and labels(meta.get("labels") or {})
                and fields(obj)
            )

        return match


class Store:
    def __init__(self) -> None:
        self.rv = 0
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self.history: deque[WatchEvent] = deque(maxlen=HISTORY)
        # weak: a watch whose response never started must not keep its queue filling
        self._watchers: weakref.WeakSet[asyncio.Queue[WatchEvent]] = weakref.WeakSet()
        self._listeners: list[Callable[[WatchEvent], None]] = []
        self.clock: Callable[[], float] = time.time

    # -- reads -------------------------------------------------------------------------

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        return self._objects.get(res.key, {}).get((namespace or "", name))

    def get_copy(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        obj = self.get(res, namespace, name)
        return copy.deepcopy(obj) if obj is not None else None

    def require(self, res: Resource, namespace: str | None, name: str) -> Obj:
        obj = self.get(res, namespace, name)
        if obj is None:
            raise not_found(res, name)
        return obj

    def list(self, res: Resource, query: Query | None = None) -> list[Obj]:
        items = self._objects.get(res.key, {}).values()
        if query is None:
            return sorted(items, key=_sort_key)
        match = query.matcher()
        return sorted((o for o in items if match(o)), key=_sort_key)

    def all(self, res: Resource, namespace: str | None = None) -> Iterator[Obj]:
        for obj in list(self._objects.get(res.key, {}).values()):
            if namespace is None or obj["metadata"].get("namespace") == namespace:
                yield obj

    # -- writes ------------------------------------------------------------------------

    def create(self, res: Resource, obj: Obj, *, timestamp: float | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if res.namespaced and not meta.get("namespace"):
            raise StoreError(400, "BadRequest", "the namespace of the object must be set")
        if not res.namespaced:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_suffix()
        if not meta.get("name"):
            raise StoreError(422, "Invalid", f"{res.kind}.{res.group} is invalid: name: Required")
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._objects.setdefault(res.key, {})
        if key in bucket:
            raise StoreError(
                409,
                "AlreadyExists",
                f'{res.qualified()} "{meta["name"]}" already exists',
                {"name": meta["name"], "kind": res.plural, "group": res.group},
            )
        obj["apiVersion"] = res.group_version
        obj["kind"] = res.kind
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = rfc3339(timestamp if timestamp is not None else self.clock())
        if res.kind in ("Deployment", "ReplicaSet", "StatefulSet"):
            meta["generation"] = 1
        for empty in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(empty, None)
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        bucket[key] = obj
        self._emit(WatchEvent(self.rv, "ADDED", res.key, obj, None))
        return obj

    def update(self, res: Resource, obj: Obj) -> Obj:
        """Replace the stored object; a no-op (same resourceVersion) when nothing changed."""
        meta = obj["metadata"]
        key = (meta.get("namespace", "") if res.namespaced else "", meta["name"])
        bucket = self._objects.setdefault(res.key, {})
        old = bucket.get(key)
        if old is None:
            raise not_found(res, meta["name"])
        meta["uid"] = old["metadata"]["uid"]
        meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        obj["apiVersion"], obj["kind"] = old["apiVersion"], old["kind"]
        if obj == old:
            return old
        if "generation" in old["metadata"] and obj.get("spec") != old.get("spec"):
            meta["generation"] = old["metadata"]["generation"] + 1
        elif "generation" in old["metadata"]:
            meta["generation"] = old["metadata"]["generation"]
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        bucket[key] = obj
        self._emit(WatchEvent(self.rv, "MODIFIED", res.key, obj, old))
        return obj

    def delete(self, res: Resource, namespace: str | None, name: str) -> Obj:
        bucket = self._objects.get(res.key, {})
        key = (namespace or "" if res.namespaced else "", name)
        old = bucket.pop(key, None)
        if old is None:
            raise not_found(res, name)
        gone = copy.deepcopy(old)
        self.rv += 1
        gone["metadata"]["resourceVersion"] = str(self.rv)
        gone["metadata"].setdefault("deletionTimestamp", rfc3339(self.clock()))
        self._emit(WatchEvent(self.rv, "DELETED", res.key, gone, old))
        return gone

    # -- watching ----------------------------------------------------------------------

    def _emit(self, event: WatchEvent) -> None:
        self.history.append(event)
        for q in list(self._watchers):
            q.put_nowait(event)
        for listener in self._listeners:
            listener(event)

    def add_listener(self, listener: Callable[[WatchEvent], None]) -> None:
        self._listeners.append(listener)

    def subscribe(self) -> asyncio.Queue[WatchEvent]:
        q: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._watchers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[WatchEvent]) -> None:
        self._watchers.discard(q)

    def events_since(self, key: str, rv: int) -> Sequence[WatchEvent] | None:
        """Events of one resource after `rv`; None when history no longer reaches back."""
        full = len(self.history) == self.history.maxlen
        if full and rv < self.history[0].rv - 1:
            return None
        return [e for e in self.history if e.rv > rv and e.key == key]


def _sort_key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]
