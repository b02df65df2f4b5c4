"""The confirm panel follows what happened to each plan: planned, running, done or failed with
the reason; a button that has done its work is disabled and says so; the count line follows.
Clicked in-process (`button.click()` runs the callback, as DESIGN.md notes)."""

from __future__ import annotations

from typing import Any

from irlib.guard import Guard, Plan
from irlib.widgets import DONE, FAILED, PLANNED, confirm_buttons

PLANS = [
    Plan("rollback:api-service", "roll back", "kubectl rollout undo deployment/api-service"),
    Plan("scale:api-service=5", "scale up", "kubectl scale deployment/api-service --replicas=5"),
]


def panel_with(action: Any) -> tuple[Any, list[str]]:
    seen: list[str] = []
    guard = Guard(confirm=[], operator="alice", record=lambda kind, data: None)

    def run(plan: Plan, clicked: bool = False) -> Any:
        seen.append(panel.phases[plan.id])  # the phase while it runs
        return guard.execute(plan, action, clicked=clicked)

    panel = confirm_buttons(PLANS, run, runbook="p1_system_unavailable", operator="alice")
    return panel, seen


def test_before_any_click_every_plan_awaits_confirmation() -> None:
    panel, _ = panel_with(dict)
    assert panel.count_line() == "2 of 2 mitigation(s) await confirmation"
    for plan in PLANS:
        button = panel.buttons[plan.id]
        assert not button.disabled and button.description == f"Confirm {plan.id}"
    assert "awaiting confirmation" in repr(panel)


def test_a_plan_that_ran_is_done_its_button_disabled_and_the_count_follows() -> None:
    panel, seen = panel_with(dict)
    button = panel.buttons["rollback:api-service"]
    button.click()
    assert seen == ["running"]  # confirmed, shown as running while the guard ran it
    assert panel.phases["rollback:api-service"] == DONE
    assert button.disabled and button.description == "Done: rollback:api-service"
    assert button.button_style == "success"
    state = panel.states["rollback:api-service"]
    assert state.startswith("done: executed by alice at ") and "confirmed with the button" in state
    assert panel.count_line() == "1 of 2 mitigation(s) await confirmation; 1 executed"
    assert panel.title.value == f"<b>{panel.count_line()}</b>"
    assert "[Done: rollback:api-service]" in repr(panel) and "1 executed" in repr(panel)
    assert "DONE" in panel.static_html()
    other = panel.buttons["scale:api-service=5"]
    assert not other.disabled and panel.phases["scale:api-service=5"] == PLANNED

    button.click()  # a racing click reaches the kernel: refused, the row still says done
    assert panel.phases["rollback:api-service"] == DONE and button.disabled
    assert "not run twice" in panel.states["rollback:api-service"]
    assert button.description == "Done: rollback:api-service"


def test_a_plan_that_failed_says_why_and_is_not_offered_again() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("the API refused the rollback (409)")

    panel, _ = panel_with(broken)
    button = panel.buttons["rollback:api-service"]
    button.click()
    assert panel.phases["rollback:api-service"] == FAILED
    assert button.disabled and button.description == "Failed: rollback:api-service"
    state = panel.states["rollback:api-service"]
    assert state.startswith("failed: confirmed with the button by alice")
    assert "RuntimeError: the API refused the rollback (409)" in state
    assert panel.count_line() == "1 of 2 mitigation(s) await confirmation; 1 failed"
