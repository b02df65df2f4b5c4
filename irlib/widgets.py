"""ipywidgets for JupyterLab: a confirm button per planned mitigation, beside its plan.

Callbacks only run where a widget frontend exists (JupyterLab); headless runs confirm by id.
Each button runs its plan through the guard once, then shows the outcome in place, so a
second click cannot run it twice. Every panel also carries a text/plain and text/html view of
what it offers (plan, command, how to confirm headless) and of what was decided: that is what
papermill, nbconvert and a plain viewer show, and what an archived notebook keeps.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w

from irlib.guard import Attempt, Plan
from irlib.io import utcnow
from irlib.tables import format_time, status_badge

AWAITING = "awaiting confirmation"
# What a plan's row is in: planned (awaiting a click), running, done (executed) or failed.
PLANNED, RUNNING, DONE, FAILED = "planned", "running", "done", "failed"
_BUTTON = {  # the button of a plan in each phase: its label's first word and its style
    PLANNED: ("Confirm", "danger"),
    RUNNING: ("Running", "warning"),
    DONE: ("Done:", "success"),
    FAILED: ("Failed:", "danger"),
}


class ConfirmPanel(w.VBox):
    """One row per plan: what it will do, its command, and a button that runs it once. The
    row says which phase the plan is in (planned, running, done or failed, with who confirmed
    it and when); a button that has done its work stays disabled and its label says so."""

    def __init__(
        self,
        plans: Sequence[Plan],
        run: Callable[..., Attempt],
        *,
        runbook: str = "RUNBOOK",
        on_decision: Callable[[Attempt], str | None] | None = None,
        operator: str = "",
    ) -> None:
        self.plans = list(plans)
        self.operator = operator or "the operator"  # who clicks: the runbook's operator
        self.runbook = runbook
        self.phases = {p.id: PLANNED for p in self.plans}
        self.states = {p.id: AWAITING for p in self.plans}
        self.buttons: dict[str, Any] = {}
        self.display_id = f"irlib-confirm-{uuid.uuid4().hex}"
        self._run, self._on_decision = run, on_decision
        self.title = w.HTML(self._title_html())
        rows = [self.title]
        for plan in self.plans:
            button = w.Button(
                description=f"Confirm {plan.id}",
                button_style="danger",
                tooltip=plan.command,
                # its own width, whatever its label says: an HBox would shrink it to "Done: r..."
                layout=w.Layout(width="auto", flex="0 0 auto"),
            )
            status = w.HTML(self._status_html(plan))
            after = w.HTML("")
            button.on_click(
                lambda b, plan=plan, status=status, after=after: self._click(b, plan, status, after)
            )
            self.buttons[plan.id] = button
            rows += [w.HTML(self._plan_html(plan)), w.HBox([button, status]), after]
        super().__init__(rows)

    def _click(self, button: Any, plan: Plan, status: Any, after: Any) -> None:
        button.disabled = True  # before running: a double click must not run it twice
        before = self.phases[plan.id]
        if before == PLANNED:
            self.phases[plan.id] = RUNNING
            at = format_time(utcnow().isoformat())
            self.states[plan.id] = f"running: confirmed with the button by {self.operator} at {at}"
            self._show(plan, button, status)
        attempt = self._run(plan, clicked=True)
        if attempt.outcome == "refused" and before in (DONE, FAILED):
            again = format_time(attempt.at)
            self.states[plan.id] += f"; clicked again at {again}: not run twice"
        else:
            self.phases[plan.id] = phase_of(attempt)
            self.states[plan.id] = decided(attempt)
        try:
            extra = self._on_decision(attempt) if self._on_decision else None
        except Exception as e:  # the attempt is recorded; what follows it must not hide it
            extra = f"<p>irlib: after {plan.id}: {html.escape(f'{type(e).__name__}: {e}')}</p>"
        self.refresh()  # the static views first (what a saved notebook keeps), ...
        after.value = extra or ""
        self._show(plan, button, status)  # ... the outcome on screen last

    def _show(self, plan: Plan, button: Any, status: Any) -> None:
        """The row's button, its state line and the count line, as the plan's phase says."""
        phase = self.phases[plan.id]
        word, style = _BUTTON[phase]
        button.description = f"{word} {plan.id}" + (" ..." if phase == RUNNING else "")
        button.button_style = style
        button.icon = {DONE: "check", FAILED: "times"}.get(phase, "")
        button.disabled = phase != PLANNED  # done or failed: the guard never runs it twice
        self.title.value = self._title_html()
        status.value = self._status_html(plan)

    # -- the static views: what a viewer without widgets sees --------------------------------

    def headless_hint(self, plan: Plan) -> str:
        return f"irlib run {self.runbook} --confirm {plan.id}"

    def __repr__(self) -> str:
        lines = [f"Confirm buttons ({len(self.plans)} mitigation(s)); nothing runs unclicked:"]
        for plan in self.plans:
            lines += [
                f"  [{self._label(plan)}] {self.states[plan.id]}",
                f"    plan: {plan.summary}",
                f"    command: {plan.command}",
            ]
            if self.phases[plan.id] == PLANNED:
                lines.append(f"    without widgets: {self.headless_hint(plan)}")
        if any(phase != PLANNED for phase in self.phases.values()):
            lines.append(f"  {self.count_line()}")
        return "\n".join(lines)

    def _label(self, plan: Plan) -> str:
        word = _BUTTON[self.phases[plan.id]][0]
        return f"{word} {plan.id}"

    def count_line(self) -> str:
        """`1 of 2 mitigation(s) await confirmation; 1 executed`: what is left, what ran."""
        counts = {p: sum(v == p for v in self.phases.values()) for p in _BUTTON}
        line = f"{counts[PLANNED]} of {len(self.plans)} mitigation(s) await confirmation"
        for phase, said in ((RUNNING, "running"), (DONE, "executed"), (FAILED, "failed")):
            if counts[phase]:
                line += f"; {counts[phase]} {said}"
        return line

    def _title_html(self) -> str:
        return f"<b>{html.escape(self.count_line())}</b>"

    def _plan_html(self, plan: Plan) -> str:
        before = ", ".join(f"{k}: {v}" for k, v in plan.before.items())
        return (
            f"<div><b>{html.escape(plan.id)}</b>"
            + (" (recommended)" if plan.recommended else "")
            + f": {html.escape(plan.summary)}<br>command: <code>{html.escape(plan.command)}"
            + "</code>"
            + (f"<br>before: {html.escape(before)}" if before else "")
            + "</div>"
        )

    def _status_html(self, plan: Plan) -> str:
        return (
            f"{status_badge(self.phases[plan.id])} <code>{html.escape(plan.command)}</code>: "
            f"{html.escape(self.states[plan.id])}"
        )

    def static_html(self) -> str:
        parts = [f"<p><b>Confirm buttons</b>: {html.escape(self.count_line())}</p><ul>"]
        for plan in self.plans:
            state = self.states[plan.id]
            hint = (
                f"<br>without widgets: <code>{html.escape(self.headless_hint(plan))}</code>"
                if self.phases[plan.id] == PLANNED
                else ""
            )
            parts.append(
                f"<li>{self._plan_html(plan)}<b>[{html.escape(self._label(plan))}]</b> "
                f"{status_badge(self.phases[plan.id])} {html.escape(state)}{hint}</li>"
            )
        return "".join(parts) + "</ul>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)  # whole, where ipywidgets cuts it at 110 characters
        bundle["text/html"] = self.static_html()
        return bundle

    def show(self) -> None:
        """Display with a display id, so that each decision can rewrite the static views."""
        from IPython.display import display

        display(self, display_id=self.display_id)

    def refresh(self) -> None:
        from IPython import get_ipython
        from IPython.display import update_display

        if get_ipython() is not None:  # outside a kernel (a test clicking) there is no display
            update_display(self, display_id=self.display_id)


def phase_of(attempt: Attempt) -> str:
    return {"executed": DONE, "failed": FAILED}.get(attempt.outcome, PLANNED)


def decided(attempt: Attempt) -> str:
    """An attempt as the panel says it: `done: executed by alice at 2026-... (confirmed with
    the button)`, `failed: ... by alice at ...: the reason`."""
    how = {"button": "with the button", "--confirm": "by --confirm"}.get(
        attempt.confirmed_by, attempt.confirmed_by or "not confirmed"
    )
    at = format_time(attempt.at)
    if attempt.outcome == "executed":
        return f"done: executed by {attempt.operator} at {at} (confirmed {how})"
    if attempt.outcome == "failed":
        return f"failed: confirmed {how} by {attempt.operator}, failed at {at}: {attempt.detail}"
    return f"{attempt.outcome} by {attempt.operator} at {at} ({attempt.detail})"


def confirm_buttons(
    plans: Sequence[Plan],
    run: Callable[..., Attempt],
    *,
    runbook: str = "RUNBOOK",
    on_decision: Callable[[Attempt], str | None] | None = None,
    operator: str = "",
) -> ConfirmPanel:
    """A panel of confirm buttons; `run(plan, clicked=True)` executes one through the guard,
    `on_decision(attempt)` runs after it and may return HTML to show under its row."""
    return ConfirmPanel(plans, run, runbook=runbook, on_decision=on_decision, operator=operator)
