"""Which pods a check reads one by one in a namespace of thousands (irlib.k8s.coverage): the
relevant ones first, then an even sample, bounded; and what it says it covered."""

from __future__ import annotations

import threading
import time
from typing import Any

from irlib.k8s import coverage


def pod(name: str, *, ready: bool = True, restarts: int = 0, waiting: str = "") -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "c", "restartCount": restarts, "state": state}],
        },
    }


def test_relevant_pods_first_then_an_even_sample_and_the_sentence() -> None:
    pods = [pod(f"api-{i:04d}") for i in range(2000)]
    pods[10] = pod("api-0010", ready=False, restarts=4, waiting="CrashLoopBackOff")
    pods[20] = pod("api-0020", ready=False, restarts=9, waiting="CrashLoopBackOff")
    pods[30] = pod("api-0030", ready=False, restarts=1)  # between two crashes
    pods[40] = pod("api-0040", restarts=2)  # restarted, serving again
    pods[50] = pod("api-0050", ready=False)  # starting
    chosen = coverage.select(pods)
    names = [p["metadata"]["name"] for p in chosen.pods()]
    # most restarts first among the crash-looping; then restarting; then not ready
    assert names[:5] == ["api-0020", "api-0010", "api-0030", "api-0040", "api-0050"]
    assert len(names) == 25 and len(set(names)) == 25
    sampled = names[5:]
    assert sampled[0] == "api-0000" and sampled[-1] > "api-1800"  # spread over the names
    assert chosen.covered() == (
        "logs of 25 of 2,000 pods: 3 crash-looping, 1 restarting, 1 not ready, 20 sampled"
    )
    assert coverage.select(pods).pods() == chosen.pods()  # the same list, the same pods


def test_a_small_namespace_is_read_whole_and_the_relevant_set_is_bounded() -> None:
    small = [pod(f"api-{i}") for i in range(3)]
    assert coverage.select(small).covered() == "logs of 3 of 3 pods: 3 sampled"
    broken = [
        pod(f"api-{i:04d}", ready=False, restarts=3, waiting="CrashLoopBackOff") for i in range(500)
    ]
    chosen = coverage.select(broken, relevant_max=7, only_relevant=True)
    assert chosen.covered("details", "not-ready pods") == (
        "details of 7 of 500 not-ready pods: 7 crash-looping"
    )


def test_reads_run_at_most_five_at_a_time_in_order() -> None:
    lock, now, peak = threading.Lock(), [0], [0]

    def read(i: int) -> int:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1
        return i * 2

    assert coverage.each_bounded(range(30), read) == [i * 2 for i in range(30)]
    assert peak[0] <= coverage.CONCURRENCY
    assert coverage.byte_share(25) == coverage.TOTAL_BYTES // 25
