"""The shared verdict rule (irlib.diagnosis) on hand-made checks: a check that could not answer
is never a pass, is listed with why and what to do, and a silent target is itself a cause.
The same rule is exercised end to end against the lab in test_could_not_look.py."""

from __future__ import annotations

import pytest

from irlib.diagnosis import conclude, reason_of, tally
from irlib.drills.health import HealthVerdict, RunbookHealth
from irlib.results import Cause, Check, Health, Status


def ok(name: str, target: str = "kubernetes") -> Check:
    return Check(name, target, Status.OK, "fine")


def error(name: str, target: str, summary: str, duration_s: float = 5.0, **facts: object) -> Check:
    return Check(name, target, Status.ERROR, summary, duration_s=duration_s, facts=facts)


def by_name(*checks: Check) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.mark.parametrize(
    ("summary", "facts", "reason"),
    [
        ("no answer within 0.001 s (timed out)", {}, "timed out"),
        ("cannot count: connection timeout expired", {}, "timed out"),
        ("broker answered slowly", {"timed_out": True}, "timed out"),
        ("API answered 403: Forbidden", {}, "forbidden"),
        ("401: credentials refused", {}, "unauthorized"),
        ("403: credentials refused", {}, "forbidden"),
        ("refused", {"http_status": 403}, "forbidden"),
        ("IRLIB_BROKER_TOKEN is not set", {"missing_token": True}, "unauthorized"),
        ("API server unreachable: [Errno 111] Connection refused", {}, "refused"),
        ("no answer: Error 111 connecting to 127.0.0.1:1. Connection refused.", {}, "refused"),
        ("cannot read locks: server closed the connection unexpectedly", {}, "unreachable"),
        ("KeyError: 'items'", {}, "failed"),
    ],
    ids=[
        "runner-timeout",
        "pg-timeout",
        "timed-out-fact",
        "k8s-403",
        "http-401",
        "http-403",
        "status-fact",
        "missing-token",
        "k8s-refused",
        "redis-refused",
        "pg-closed",
        "other",
    ],
)
def test_each_error_says_why_it_could_not_answer(summary: str, facts: dict, reason: str) -> None:
    assert reason_of(error("c", "t", summary, **facts)) == reason


def test_every_check_timed_out_is_never_healthy_and_lists_each_check() -> None:
    checks = by_name(
        *(error(n, "kubernetes", "no answer within 0.001 s (timed out)", 0.001) for n in "abc"),
        error("api health", "api", "no answer within 0.001 s (timed out)", 0.001),
    )
    v = conclude(checks, [])
    assert v.state is Health.DEGRADED and v.severity == "P2"
    assert [u.check for u in v.unanswered] == ["a", "b", "c", "api health"]
    assert {u.reason for u in v.unanswered} == {"timed out"}
    assert "could not check a, b, c, api health (timed out)" in v.summary
    assert "4 checks: 4 could not answer" in v.summary and "passed" not in v.summary
    # each silent target is a cause of its own, and the advice names the parameter to raise
    assert {c.id for c in v.causes} == {"unanswered-kubernetes", "unanswered-api"}
    assert all("-p timeout_s 10" in u.advice for u in v.unanswered)
    assert v.to_dict()["could_not_check"][0]["reason"] == "timed out"
    assert v.to_dict()["counts"] == {"ok": 0, "warn": 0, "error": 4, "fail": 0}


def test_one_silent_check_among_passes_is_still_not_healthy() -> None:
    checks = by_name(ok("pods"), ok("nodes"), error("top pods", "kubernetes", "timed out"))
    v = conclude(checks, [])
    assert v.state is not Health.HEALTHY
    assert v.causes[0].id == "unanswered-kubernetes" and v.causes[0].score < 0.45
    assert "2 passed" in v.summary and "1 could not answer" in v.summary


def test_a_found_cause_outranks_the_silent_targets_and_a_failed_target_explains_its_errors() -> (
    None
):
    checks = by_name(
        Check("database connectivity", "postgres", Status.FAIL, "cannot connect: refused"),
        error("database connections", "postgres", "cannot count: connection refused"),
        error("broker", "broker", "no answer within 1 s (timed out)"),
        ok("pods"),
    )
    found = Cause("database-down", "PostgreSQL is down", 0.95, ("database connectivity",), "x")
    v = conclude(checks, [found], down=True, severity="P1")
    assert v.state is Health.DOWN and v.severity == "P1"
    assert [c.id for c in v.causes] == ["database-down", "unanswered-broker"]
    # the failed connectivity check accounts for postgres; its silent count is still listed
    assert [u.check for u in v.unanswered] == ["database connections", "broker"]


def test_forbidden_reads_say_to_grant_rights() -> None:
    v = conclude(by_name(error("pods", "kubernetes", "API answered 403: Forbidden")), [])
    assert v.unanswered[0].reason == "forbidden"
    assert "RBAC" in v.unanswered[0].advice
    assert "could not be read (forbidden)" in v.causes[0].title


def test_healthy_only_when_every_check_answered() -> None:
    v = conclude(by_name(ok("a"), ok("b")), [], healthy_detail=", API p99 0.010 s")
    assert v.state is Health.HEALTHY and v.severity is None and not v.unanswered
    assert v.summary == "healthy: 2 checks passed, API p99 0.010 s"
    warned = conclude(by_name(ok("a"), Check("b", "t", Status.WARN, "hmm")), [])
    assert warned.summary == "healthy: 2 checks: 1 passed, 1 warned"


def test_the_verdicts_text_and_html_show_what_could_not_be_checked() -> None:
    v = conclude(by_name(error("redis ping", "redis", "no answer: Timeout reading", 0.5)), [])
    text, html = repr(v), v._repr_html_()
    assert "could not check (1), not a pass" in text and "redis ping (redis, timed out" in text
    assert "Could not check (1)" in html and "timeout_s" in html


def test_tally_leaves_zeros_out() -> None:
    assert tally({"ok": 3, "warn": 0, "fail": 1, "error": 0}) == "4 checks: 3 passed, 1 failed"
    assert tally({}) == "no checks ran"


def test_the_health_drill_counts_a_silent_runbook_as_failing() -> None:
    silent = error("pods", "kubernetes", "no answer within 5 s (timed out)")
    diagnosis = conclude({"pods": silent}, [])
    per = [
        RunbookHealth("p1", "P1", diagnosis, (silent,), 1),
        RunbookHealth("p2", "P2", conclude({"a": ok("a")}, []), (), 1),
    ]
    drill = HealthVerdict.decide(per)
    assert not drill.healthy and not per[0].healthy and per[1].healthy
    assert [u.check for u in drill.verdict.unanswered] == ["pods"]
    assert drill.verdict.counts["error"] == 1 and drill.verdict.counts["ok"] == 1
