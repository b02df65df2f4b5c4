"""Readiness as a kubelet acts on it: a pod is unready after three failed probes in a row."""

from __future__ import annotations

from irlib.lab.kube.probes import FAILURE_THRESHOLD, Streaks

REFUSED = (False, "refused")
OK = (True, "")


def test_one_slow_answer_on_a_busy_machine_unreadies_no_pod() -> None:
    streaks = Streaks()
    assert streaks.update({"api": OK}) == {"api": OK}
    for _ in range(FAILURE_THRESHOLD - 1):
        assert streaks.update({"api": (False, "timeout")}) == {"api": OK}
    assert streaks.update({"api": OK}) == {"api": OK}  # a success starts the count again
    assert streaks.update({"api": (False, "timeout")}) == {"api": OK}


def test_failures_in_a_row_unready_it_with_the_latest_cause() -> None:
    streaks = Streaks()
    streaks.update({"api": OK})
    results = [streaks.update({"api": REFUSED})["api"] for _ in range(FAILURE_THRESHOLD)]
    assert results == [OK] * (FAILURE_THRESHOLD - 1) + [REFUSED]
    assert streaks.update({"api": (False, "status:503")}) == {"api": (False, "status:503")}


def test_a_probe_that_never_succeeded_fails_at_once() -> None:
    # a container is not ready until its first success, as on a real kubelet
    assert Streaks().update({"api": REFUSED, "db": OK}) == {"api": REFUSED, "db": OK}
