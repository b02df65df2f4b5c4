"""Which pods a check reads one by one (logs, previous logs, events) when a namespace holds
thousands: the relevant ones first (crash-looping, restarting, not ready), then an even
sample of the rest, never more than a bound; and the sentence that says what was covered
("logs of 23 of 2,000 pods: 3 crash-looping, 20 sampled"). Pure: no API call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
CONCURRENCY = 5  # requests in flight per check: kubectl's --max-log-requests
RELEVANT_MAX = 20  # pods read because something is wrong with them
SAMPLE = 20  # pods read as a sample of the healthy rest
TOTAL_BYTES = 512 * 1024  # log text read by one check, across its pods


@dataclass(frozen=True)
class Selection:
    """The pods chosen, each with why, out of `total`."""

    chosen: tuple[tuple[dict[str, Any], str], ...]  # (pod, why)
    total: int

    def pods(self) -> list[dict[str, Any]]:
        return [p for p, _ in self.chosen]

    def why(self) -> dict[str, str]:
        return {p["metadata"]["name"]: why for p, why in self.chosen}

    def covered(self, what: str = "logs", noun: str = "pods") -> str:
        """`logs of 23 of 2,000 pods: 3 crash-looping, 20 sampled`."""
        counts: dict[str, int] = {}
        for _, why in self.chosen:
            counts[why] = counts.get(why, 0) + 1
        parts = ", ".join(f"{n} {why}" for why, n in counts.items())
        head = f"{what} of {len(self.chosen):,} of {self.total:,} {noun}"
        return f"{head}: {parts}" if parts else head


def _status(pod: dict[str, Any]) -> tuple[bool, int, bool]:
    """(crash-looping, restarts, ready) as `kubectl get pods` shows them."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    waiting = {((cs.get("state") or {}).get("waiting") or {}).get("reason") for cs in statuses}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )
    crashing = bool(waiting & {"CrashLoopBackOff", "Error"}) or (not ready and restarts > 0)
    return crashing, restarts, ready


def select(
    pods: Sequence[dict[str, Any]],
    *,
    relevant_max: int = RELEVANT_MAX,
    sample: int = SAMPLE,
    only_relevant: bool = False,
) -> Selection:
    """Crash-looping pods first (most restarts first), then restarting, then not ready, up
    to `relevant_max`; then `sample` of the others, evenly spread over their names (the same
    pods for the same list: a replay asks what the run asked)."""
    ranked = []
    for p in pods:
        crashing, restarts, ready = _status(p)
        why = (
            "crash-looping"
            if crashing
            else "restarting"
            if restarts
            else "not ready"
            if not ready
            else ""
        )
        order = {"crash-looping": 0, "restarting": 1, "not ready": 2}.get(why, 3)
        ranked.append((order, -restarts, p["metadata"]["name"], why, p))
    ranked.sort(key=lambda r: r[:3])
    relevant = [(r[4], r[3]) for r in ranked if r[3]][:relevant_max]
    rest = [r[4] for r in ranked if not r[3]]
    chosen = list(relevant)
    if not only_relevant and rest and sample > 0:
        step = max(len(rest) / sample, 1.0)
        picks = sorted({int(i * step) for i in range(min(sample, len(rest)))})
        chosen += [(rest[i], "sampled") for i in picks]
    return Selection(tuple(chosen), len(pods))


def each_bounded(items: Iterable[T], read: Callable[[T], R], workers: int = CONCURRENCY) -> list[R]:
    """`read` of each item, at most `workers` at a time, answers in the items' order."""
    batch = list(items)
    if len(batch) <= 1:
        return [read(i) for i in batch]
    with ThreadPoolExecutor(max_workers=min(workers, len(batch))) as pool:
        return list(pool.map(read, batch))


def byte_share(count: int, total: int = TOTAL_BYTES) -> int:
    """Each of `count` reads' share of a check's byte budget (`limitBytes`)."""
    return max(total // max(count, 1), 4096)
