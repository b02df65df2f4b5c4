"""Object metadata helpers for the Kubernetes API emulator: timestamps, uids, generated names.

Pure functions, no I/O. Timestamps are RFC 3339 in UTC as the apiserver writes them; ages are
rendered with the apiserver's own `HumanDuration` rules so tables read like a real cluster's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

# The alphabet Kubernetes uses for generated name suffixes and template hashes (no vowels,
# no look-alikes), so names look like `api-service-7c9d8b5f4d-x2k9p`.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

Obj = dict[str, Any]


def rfc3339(ts: float | None = None) -> str:
    """Seconds precision, as metav1.Time is serialised."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def rfc3339_micro(ts: float) -> str:
    """metav1.MicroTime, as leases and events.k8s.io write it."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_nano(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond * 1000:09d}Z"


def parse_time(text: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp (any fraction); None when absent or unparsable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, as the AGE columns use it."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: float | None = None) -> str:
    ts = parse_time(timestamp)
    if ts is None:
        return "<unknown>"
    return human_duration((time.time() if now is None else now) - ts)


def new_uid() -> str:
    return str(uuid.uuid4())


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(SAFE_ALPHABET) for _ in range(n))


def prune(value: Any) -> Any:
    """Drop empty values (None, {}, [], "") recursively.

    Go clients serialise zero structs as `creationTimestamp: null` or `resources: {}`; a template
    that went through kubectl must still compare equal to the one stored before.
    """
    if isinstance(value, dict):
        out = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def template_hash(template: Obj) -> str:
    """A stable `pod-template-hash` for a pod template (its hash label left out)."""
    clean = copy.deepcopy(template)
    clean.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    digest = hashlib.sha256(json.dumps(prune(clean), sort_keys=True).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        number, rest = divmod(number, len(SAFE_ALPHABET))
        chars.append(SAFE_ALPHABET[rest])
    return "".join(chars)


def get_path(obj: Any, dotted: str) -> Any:
    """`a.b.c` inside nested dicts; None when any step is missing."""
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def owner_ref(owner: Obj, *, controller: bool = True) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def condition(obj: Obj, type_: str) -> Obj | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def set_condition(
    conditions: list[Obj],
    type_: str,
    status: str,
    now: str,
    reason: str | None = None,
    message: str | None = None,
    *,
    update_time: bool = False,
    probe_time: bool = False,
) -> None:
    """Set one condition in place, keeping lastTransitionTime while its status holds."""
    old = next((c for c in conditions if c.get("type") == type_), None)
    new: Obj = {"type": type_, "status": status}
    if probe_time:
        new["lastProbeTime"] = None
    if update_time:
        new["lastUpdateTime"] = now
    transition = now
    if old is not None and old.get("status") == status:
        transition = old.get("lastTransitionTime", now)
        if update_time and old.get("reason") == reason and old.get("message") == message:
            new["lastUpdateTime"] = old.get("lastUpdateTime", now)
    new["lastTransitionTime"] = transition
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    if old is None:
        conditions.append(new)
    else:
        conditions[conditions.index(old)] = new


def pod_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"
