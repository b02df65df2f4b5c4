"""Mitigation ids: every action's id parses back to itself, and anything malformed (SQL,
shell, a path, a missing or surplus target) is refused before any runbook sees it."""

from __future__ import annotations

import pytest

from irlib.errors import UsageError
from irlib.guard import ACTIONS, Guard, Plan, parse_mitigation_id

GOOD = [
    "rollback:api-service",
    "delete-pod:api-service-7d4b9-x2x9q",
    "scale:execution-service=0",
    "restart:api-service",
    "pause-all",
    "cancel-orders:all",
    "cancel-orders:momentum_1",
    "create-index:orders(symbol,created_at)",
    "analyze:orders",
    "terminate:4242",
    "recalibrate:SPY",
]


def test_every_action_has_a_good_example() -> None:
    assert {parse_mitigation_id(g).action for g in GOOD} == set(ACTIONS)


@pytest.mark.parametrize("text", GOOD)
def test_a_good_id_parses_back_to_itself(text: str) -> None:
    assert str(parse_mitigation_id(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "reboot:everything",
        "rollback",
        "pause-all:now",
        "scale:api-service=-1",
        "create-index:orders(symbol);DROP TABLE orders",
        "create-index:orders(symbol, created_at)",
        'create-index:"orders"(symbol)',
        "create-index:orders()",
        "analyze:orders;VACUUM",
        "analyze:pg_catalog.pg_class",
        "terminate:0",
        "terminate:1 OR 1=1",
        "terminate:-5",
        "recalibrate:spy;rm -rf /",
        "rollback:../../etc/passwd",
    ],
)
def test_a_malformed_or_malicious_id_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="mitigation"):
        parse_mitigation_id(text)


def test_an_action_outside_the_allowed_list_is_refused_with_the_allowed_forms() -> None:
    with pytest.raises(UsageError, match="rollback:DEPLOYMENT") as e:
        parse_mitigation_id("terminate:42", allowed=("rollback",))
    assert "terminate:PID" not in str(e.value)


def test_the_guard_runs_only_what_was_confirmed_and_never_twice() -> None:
    records: list[tuple[str, dict]] = []
    guard = Guard(
        confirm=["pause-all"], operator="alice", record=lambda k, d: records.append((k, d))
    )
    ran: list[str] = []
    pause = Plan("pause-all", "pause every strategy", "curl -X POST .../pause-all")
    cancel = Plan("cancel-orders:all", "cancel pending orders", "...")
    assert guard.execute(cancel, lambda: ran.append("cancel") or {}).outcome == "refused"
    assert guard.execute(pause, lambda: ran.append("pause") or {}).outcome == "executed"
    assert guard.execute(pause, lambda: ran.append("pause") or {}).outcome == "refused"
    assert ran == ["pause"]
    assert [d["outcome"] for _, d in records] == ["refused", "executed", "refused"]
