"""ipywidgets for JupyterLab: a confirm button per planned mitigation.

Callbacks only run where a widget frontend exists (JupyterLab); headless runs confirm by id.
Each button runs its plan through the guard once, then shows the outcome in place, so a
second click cannot run it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from irlib.guard import Attempt, Plan


def confirm_buttons(plans: Sequence[Plan], run: Callable[..., Attempt]) -> Any:
    import ipywidgets as w

    rows = []
    for plan in plans:
        button = w.Button(
            description=f"Confirm {plan.id}",
            button_style="danger",
            tooltip=plan.command,
            layout=w.Layout(width="auto"),
        )
        status = w.HTML(f"<code>{plan.command}</code>: awaiting confirmation")

        def on_click(b: Any, plan: Plan = plan, status: Any = status) -> None:
            b.disabled = True  # before running: a double click must not run it twice
            status.value = f"<code>{plan.command}</code>: running ..."
            attempt = run(plan, clicked=True)
            status.value = (
                f"<code>{plan.command}</code>: <b>{attempt.outcome}</b> by "
                f"{attempt.operator} at {attempt.at} ({attempt.detail})"
            )

        button.on_click(on_click)
        rows.append(w.HBox([button, status]))
    return w.VBox([w.HTML(f"<b>{len(plans)} mitigation(s) await confirmation</b>"), *rows])
