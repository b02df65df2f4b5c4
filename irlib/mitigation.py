"""The mitigation step every scenario shares: plan what the verdict recommends (and whatever
was confirmed), show the plans, run only what was confirmed, then re-check.

A runbook provides `plan(id)`, `apply(plan)` and `recheck()` (irlib.runbook.Runbook);
`Runbook.mitigate` builds the panel. Headless, `--confirm ID` runs a plan; in JupyterLab, a
button per plan not yet run. Nothing else ever executes a mitigation.
"""

from __future__ import annotations

import html
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from irlib import tables
from irlib.guard import Attempt, Plan, parse_mitigation_id

if TYPE_CHECKING:
    from irlib.results import Verdict
    from irlib.runbook import Runbook, Step


@dataclass
class MitigationPanel:
    """The plans, what ran, and (in JupyterLab) a confirm button per plan not yet run."""

    runbook: Runbook
    verdict: Verdict
    title: str = "Mitigation"
    plans: list[Plan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    recheck: Step | None = None
    _display_id: str = field(default_factory=lambda: f"irlib-panel-{uuid.uuid4().hex}")

    def run(self, plan: Plan, *, clicked: bool = False) -> Attempt:
        attempt = self.runbook.guard.execute(
            plan, partial(self.runbook.apply, plan), clicked=clicked
        )
        if attempt.outcome == "executed":
            self.recheck = self.runbook.recheck()
        return attempt

    def attempt(self, mitigation_id: str) -> Attempt | None:
        """What became of a plan: its execution or failure if it had one (a later refused
        click does not undo it), else its last attempt (planned or refused); None if none."""
        tried = [a for a in self.runbook.guard.attempts if a.id == mitigation_id]
        ran = [a for a in tried if a.outcome in ("executed", "failed")]
        return ran[-1] if ran else tried[-1] if tried else None

    def executed(self, mitigation_id: str) -> bool:
        last = self.attempt(mitigation_id)
        return last is not None and last.outcome == "executed"

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for plan in self.plans:
            last = self.attempt(plan.id)
            ran = last is not None and last.outcome in ("executed", "failed")
            out.append(
                {
                    "mitigation": plan.id,
                    "recommended": plan.recommended,
                    "plan": plan.summary,
                    "command": plan.command,
                    "outcome": last.outcome if last else "",
                    "detail": last.detail if last else "",
                    "by": f"{last.operator} ({last.confirmed_by})" if last and ran else "",
                    "at": tables.format_time(last.at) if last and ran else "",
                }
            )
        return out

    def __repr__(self) -> str:
        lines = [self.title, f"  diagnosis so far: {self.verdict.summary}"]
        if not self.plans:
            lines.append("  nothing to mitigate from the evidence so far")
        for r in self.rows():
            lines.append(f"  {r['mitigation']}: {r['plan']} -> {r['outcome']} ({r['detail']})")
            if r["outcome"] != "executed":
                lines.append(
                    f"    to apply: irlib run {self.runbook.name} --confirm "
                    f"{r['mitigation']}  (or the button in JupyterLab)"
                )
        lines += [f"  {p}" for p in self.problems]
        if self.recheck:
            lines.append(repr(self.recheck))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [
            f"<h3>{html.escape(self.title)}</h3>",
            f"<p>Diagnosis so far: {html.escape(self.verdict.summary)}</p>",
        ]
        if self.plans:
            parts.append(tables.html_table(self.rows()))
            parts.append(
                "<p>Nothing runs unconfirmed: headless, pass "
                "<code>--confirm ID</code>; in JupyterLab, use the buttons.</p>"
            )
        else:
            parts.append("<p>Nothing to mitigate from the evidence so far.</p>")
        parts += [f"<p>{html.escape(p)}</p>" for p in self.problems]
        if self.recheck:
            parts.append(self.recheck._repr_html_())
        return "".join(parts)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._bundle(), raw=True, display_id=self._display_id)
        pending = [p for p in self.plans if not self.runbook.guard.has_run(p.id)]
        if pending and widgets_wanted():
            from irlib.widgets import confirm_buttons

            confirm_buttons(
                pending,
                self.run,
                runbook=self.runbook.name,
                on_decision=self._decided,
                operator=self.runbook.operator,
            ).show()

    def _bundle(self) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _decided(self, attempt: Attempt) -> str:
        """After a click: the table above says what ran, the evidence folder knows it now,
        and the button's row shows the re-check."""
        from IPython.display import update_display

        update_display(self._bundle(), raw=True, display_id=self._display_id)
        self.runbook.archive()
        return self.recheck._repr_html_() if self.recheck else ""


def widgets_wanted() -> bool:
    return "IRLIB_RUN_DIR" not in os.environ  # headless runs confirm by id, never by click


def build_panel(
    runbook: Runbook,
    verdict: Verdict,
    title: str,
    *,
    actions: Iterable[str] | None = None,
    wanted: Iterable[str] = (),
) -> MitigationPanel:
    """Plan the verdict's mitigations, `wanted` ones, and every confirmed id whose action is
    in `actions` (all of the runbook's when None); run those confirmed. A plan that cannot be
    made (its target is gone) is a problem shown on the panel, never an exception."""
    handled = set(actions if actions is not None else runbook.mitigation_actions)

    def mine(mid: str) -> bool:
        return parse_mitigation_id(mid).action in handled

    ids = [m for m in verdict.mitigations if mine(m)]
    ids += [m for m in wanted if m not in ids]
    ids += [c for c in sorted(runbook.guard.confirmed) if c not in ids and mine(c)]
    panel = MitigationPanel(runbook, verdict, title)
    for mid in ids:
        try:
            plan = runbook.plan(mid, recommended=mid in verdict.mitigations)
        except Exception as e:  # the target is gone or has no history: say so, change nothing
            panel.problems.append(f"{mid}: cannot plan: {e}")
            continue
        runbook.guard.propose(plan)
        panel.plans.append(plan)
        if mid in runbook.guard.confirmed:
            panel.run(plan)
    return panel
