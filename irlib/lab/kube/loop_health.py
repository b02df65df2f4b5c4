"""The controller's own health: which reconcile loop fails on which object, and why.

Every loop body runs under `LoopHealth.guard(loop, obj)`: an exception is logged with the
loop and the object's kind/name, remembered, and swallowed, so the loop goes on with the next
object and the next pass. A failure not seen again in a later pass has recovered. `report()`
is what the API process writes to the lab's state directory for `irlib lab status`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from irlib.lab.kube.meta import Obj

REPEAT_LOG_EVERY = 60.0  # a failure that persists is logged again this often, not every pass
MAX_ERROR = 300  # characters of an error message kept in the report


@dataclass
class Failure:
    loop: str
    object: str  # "Node/node-9", "Pod/trading/api-service-x", or "-" for the loop itself
    error: str  # "KeyError: 'spec'"
    since: float
    last: float
    count: int = 1
    logged: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "loop": self.loop,
            "object": self.object,
            "error": self.error,
            "since": self.since,
            "last": self.last,
            "count": self.count,
        }


def describe(obj: Obj | None) -> str:
    """`Kind/namespace/name` of a stored object, whatever else it lacks ("-" for none)."""
    if not isinstance(obj, dict):
        return "-"
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = "/".join(str(x) for x in (meta.get("namespace"), meta.get("name", "?")) if x)
    return f"{obj.get('kind') or 'Object'}/{name}"


class _Guard:
    """Context manager: records and swallows an exception of the block."""

    def __init__(self, health: LoopHealth, loop: str, what: str) -> None:
        self.health, self.loop, self.what = health, loop, what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # no error, or a cancellation / interrupt: let it through
        self.health.failed(self.loop, self.what, exc)
        return True


class LoopHealth:
    def __init__(self, clock: Callable[[], float], log: logging.Logger) -> None:
        self.clock = clock
        self.log = log
        self.failures: dict[tuple[str, str], Failure] = {}
        self._seen: set[tuple[str, str]] = set()
        self.passes = 0
        self.last_pass: float | None = None

    def guard(self, loop: str, obj: Obj | None = None) -> _Guard:
        return _Guard(self, loop, describe(obj))

    def begin_pass(self) -> None:
        self._seen = set()

    def failed(self, loop: str, what: str, exc: Exception) -> None:
        now = self.clock()
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        key = (loop, what)
        self._seen.add(key)
        f = self.failures.get(key)
        if f is None or f.error != error:
            f = self.failures[key] = Failure(loop, what, error, since=now, last=now)
            f.logged = now
            self.log.error("%s loop failed on %s: %s", loop, what, error, exc_info=exc)
            return
        f.count += 1
        f.last = now
        if now - f.logged >= REPEAT_LOG_EVERY:
            f.logged = now
            self.log.error("%s loop still failing on %s (%d times): %s", loop, what, f.count, error)

    def end_pass(self) -> bool:
        """Forget the failures this pass did not meet again; True when the set changed."""
        self.passes += 1
        self.last_pass = self.clock()
        gone = [k for k in self.failures if k not in self._seen]
        for key in gone:
            f = self.failures.pop(key)
            self.log.warning("%s loop recovered on %s after %d failure(s)", *key, f.count)
        return bool(gone) or any(f.count == 1 for f in self.failures.values())

    def report(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "last_pass": self.last_pass,
            "failing": [f.to_dict() for f in self.failures.values()],
        }
