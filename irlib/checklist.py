"""A runbook's resolution checklist: items ticked with checkboxes in JupyterLab, or set
headless by a parameter (a list of item ids). Every change is recorded as evidence (kind
`checklist`), and the last state lands in `results.json` under "checklist".

Checkbox callbacks only run where a widget frontend exists; the plain-text and HTML views
always say which items are done, so an archived notebook keeps the state.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from irlib.errors import UsageError
from irlib.io import utcnow

KIND = "checklist"


@dataclass(frozen=True)
class Item:
    id: str
    text: str


def validate(items: Sequence[Item], ticked: Iterable[str]) -> list[str]:
    """The ticked ids, each known; a UsageError naming the known ids otherwise."""
    known = [i.id for i in items]
    ticked = list(ticked)
    unknown = [t for t in ticked if t not in known]
    if unknown:
        raise UsageError(
            f"unknown checklist item(s) {', '.join(map(repr, unknown))}; items: {', '.join(known)}"
        )
    return ticked


@dataclass
class Checklist:
    title: str
    items: tuple[Item, ...]
    record: Callable[[str, dict[str, Any]], None]
    operator: str
    on_change: Callable[[], object] | None = None  # e.g. re-archive an interactive session
    done: dict[str, bool] = field(default_factory=dict)
    _display_id: str = field(default_factory=lambda: f"irlib-checklist-{uuid.uuid4().hex}")

    def __post_init__(self) -> None:
        self.done = {i.id: bool(self.done.get(i.id)) for i in self.items}
        self._save("parameter")

    def state(self) -> dict[str, Any]:
        ticked = sum(self.done.values())
        return {
            "title": self.title,
            "items": [{"id": i.id, "item": i.text, "done": self.done[i.id]} for i in self.items],
            "done": ticked,
            "total": len(self.items),
            "complete": ticked == len(self.items),
        }

    def _save(self, how: str) -> None:
        self.record(
            KIND, {**self.state(), "by": self.operator, "how": how, "at": utcnow().isoformat()}
        )

    def tick(self, item_id: str, done: bool = True, *, how: str = "checkbox") -> None:
        validate(self.items, [item_id])
        if self.done[item_id] == done:
            return
        self.done[item_id] = done
        self._save(how)
        self._refresh()
        if self.on_change is not None:
            self.on_change()

    # -- views -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        s = self.state()
        lines = [f"{self.title} ({s['done']}/{s['total']} done)"]
        lines += [f"  [{'x' if self.done[i.id] else ' '}] {i.text}  ({i.id})" for i in self.items]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        s = self.state()
        rows = "".join(
            f"<li>{'&#9745;' if self.done[i.id] else '&#9744;'} {html.escape(i.text)} "
            f"<code>{html.escape(i.id)}</code></li>"
            for i in self.items
        )
        return (
            f"<h4>{html.escape(self.title)} ({s['done']}/{s['total']} done)</h4>"
            f"<ul style='list-style:none'>{rows}</ul>"
        )

    def _bundle(self) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _refresh(self) -> None:
        from IPython import get_ipython
        from IPython.display import update_display

        if get_ipython() is not None:
            update_display(self._bundle(), raw=True, display_id=self._display_id)

    def checkboxes(self) -> Any:
        """One ipywidgets Checkbox per item; ticking one records the new state."""
        import ipywidgets as w

        boxes = []
        for item in self.items:
            box = w.Checkbox(
                value=self.done[item.id],
                description=item.text,
                indent=False,
                layout=w.Layout(width="auto"),
            )
            box.observe(
                lambda change, item=item: self.tick(item.id, bool(change["new"])), names="value"
            )
            boxes.append(box)
        return w.VBox(boxes)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        from irlib.mitigation import widgets_wanted

        display(self._bundle(), raw=True, display_id=self._display_id)
        if widgets_wanted():
            display(self.checkboxes())
