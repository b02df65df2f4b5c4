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

AWAITING = "awaiting confirmation"


class ConfirmPanel(w.VBox):
    """One row per plan: what it will do, its command, and a button that runs it once."""

    def __init__(
        self,
        plans: Sequence[Plan],
        run: Callable[..., Attempt],
        *,
        runbook: str = "RUNBOOK",
        on_decision: Callable[[Attempt], str | None] | None = None,
    ) -> None:
        self.plans = list(plans)
        self.runbook = runbook
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
                layout=w.Layout(width="auto"),
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
        before, self.states[plan.id] = self.states[plan.id], "running ..."
        status.value = self._status_html(plan)
        attempt = self._run(plan, clicked=True)
        if attempt.outcome == "refused" and before.startswith("executed"):
            self.states[plan.id] = f"{before}; clicked again at {attempt.at}: not run twice"
        else:
            self.states[plan.id] = decided(attempt)
        try:
            extra = self._on_decision(attempt) if self._on_decision else None
        except Exception as e:  # the attempt is recorded; what follows it must not hide it
            extra = f"<p>irlib: after {plan.id}: {html.escape(f'{type(e).__name__}: {e}')}</p>"
        self.refresh()  # the static views first (what a saved notebook keeps), ...
        after.value = extra or ""
        self.title.value = self._title_html()
        status.value = self._status_html(plan)  # ... the outcome on screen last

    # -- the static views: what a viewer without widgets sees --------------------------------

    def headless_hint(self, plan: Plan) -> str:
        return f"irlib run {self.runbook} --confirm {plan.id}"

    def __repr__(self) -> str:
        lines = [f"Confirm buttons ({len(self.plans)} mitigation(s)); nothing runs unclicked:"]
        for plan in self.plans:
            lines += [
                f"  [Confirm {plan.id}] {self.states[plan.id]}",
                f"    plan: {plan.summary}",
                f"    command: {plan.command}",
            ]
            if self.states[plan.id] == AWAITING:
                lines.append(f"    without widgets: {self.headless_hint(plan)}")
        return "\n".join(lines)

    def _title_html(self) -> str:
        waiting = sum(state == AWAITING for state in self.states.values())
        return f"<b>{waiting} of {len(self.plans)} mitigation(s) await confirmation</b>"

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
        return f"<code>{html.escape(plan.command)}</code>: {html.escape(self.states[plan.id])}"

    def static_html(self) -> str:
        parts = [f"<p><b>Confirm buttons</b> ({len(self.plans)} mitigation(s)):</p><ul>"]
        for plan in self.plans:
            state = self.states[plan.id]
            hint = (
                f"<br>without widgets: <code>{html.escape(self.headless_hint(plan))}</code>"
                if state == AWAITING
                else ""
            )
            parts.append(
                f"<li>{self._plan_html(plan)}<b>[Confirm {html.escape(plan.id)}]</b> "
                f"{html.escape(state)}{hint}</li>"
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


def decided(attempt: Attempt) -> str:
    """An attempt as the panel says it: `executed by alice at 2026-... (done)`."""
    return f"{attempt.outcome} by {attempt.operator} at {attempt.at} ({attempt.detail})"


def confirm_buttons(
    plans: Sequence[Plan],
    run: Callable[..., Attempt],
    *,
    runbook: str = "RUNBOOK",
    on_decision: Callable[[Attempt], str | None] | None = None,
) -> ConfirmPanel:
    """A panel of confirm buttons; `run(plan, clicked=True)` executes one through the guard,
    `on_decision(attempt)` runs after it and may return HTML to show under its row."""
    return ConfirmPanel(plans, run, runbook=runbook, on_decision=on_decision)
