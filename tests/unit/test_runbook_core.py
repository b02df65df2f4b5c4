"""irlib core: results and concurrent checks under per-check timeouts."""

from __future__ import annotations

import json
import threading
import time

from irlib.results import Check, Evidence, Status, checks_frame
from irlib.runbook import CheckSpec, run_checks


def _ok(name: str, delay: float = 0.0) -> CheckSpec:
    def call() -> Check:
        time.sleep(delay)
        return Check(name, "svc", Status.OK, "fine")

    return CheckSpec(name, "svc", call)


def test_checks_run_concurrently_and_keep_their_order() -> None:
    together = threading.Barrier(3, timeout=30)  # passed only when all three run at once

    def met(name: str) -> CheckSpec:
        def call() -> Check:
            together.wait()
            return Check(name, "svc", Status.OK, "fine")

        return CheckSpec(name, "svc", call, timeout_s=60)

    results = run_checks([met("c"), met("a"), met("b")])
    assert [c.name for c in results] == ["c", "a", "b"]
    assert all(c.status is Status.OK for c in results), results


def test_a_hung_check_is_an_error_at_its_timeout_and_others_still_answer() -> None:
    release = threading.Event()

    def hang() -> Check:
        release.wait(120)  # until the test releases it: only the timeout can end the check
        return Check("hang", "db", Status.OK, "late")

    results = run_checks([CheckSpec("hang", "db", hang, timeout_s=0.5), _ok("b", 0.1)])
    still_hung = not release.is_set()
    release.set()
    assert still_hung and results[0].status is Status.ERROR, results[0]
    assert "timed out" in results[0].summary
    assert results[1].status is Status.OK


def test_a_raising_check_is_an_error_with_the_reason() -> None:
    def boom() -> Check:
        raise ConnectionRefusedError("connection refused")

    (result,) = run_checks([CheckSpec("db", "postgres", boom)])
    assert result.status is Status.ERROR
    assert "ConnectionRefusedError: connection refused" in result.summary


def test_check_serialises_and_renders() -> None:
    check = Check(
        "pods",
        "k8s",
        Status.FAIL,
        "2 crash-looping",
        evidence=(Evidence.table("pods", [{"pod": "a", "restarts": 3}]),),
        facts={"crashing": ["a"]},
    )
    data = json.loads(json.dumps(check.to_dict()))
    assert data["status"] == "fail" and data["evidence"][0]["rows"] == [{"pod": "a", "restarts": 3}]
    assert "FAIL" in check._repr_html_() and "<table" in check._repr_html_()


def test_checks_frame_puts_the_worst_first() -> None:
    checks = [
        Check("a", "t", Status.OK, ""),
        Check("b", "t", Status.FAIL, ""),
        Check("c", "t", Status.ERROR, ""),
    ]
    frame = checks_frame(checks)
    assert list(frame.data["check"]) == ["b", "c", "a"]
    assert "background-color" in frame.to_html()
