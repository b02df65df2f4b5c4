"""Tables as people read them, in JupyterLab and in the evidence HTML: durations in ms or s,
numbers without six decimals, text left-aligned and wrapped, a status as a coloured word.

Every table irlib shows goes through `styled` (a pandas Styler) or `html_table`. Pure: it talks
to nothing and imports only pandas, lazily; the values stay as they are (results.json and
`Styler.data` keep the numbers), only their display changes.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

# A status word -> (text colour, background): the check statuses, the verdict states and a
# mitigation's outcomes, so that "fail", "down" and "failed" read the same everywhere.
GREEN, AMBER, PURPLE, RED, GREY = (
    ("#155724", "#d4edda"),
    ("#856404", "#fff3cd"),
    ("#4b2e83", "#e2d9f3"),
    ("#8a1c25", "#f8d7da"),
    ("#383d41", "#e2e3e5"),
)
WORD_COLOURS: dict[str, tuple[str, str]] = {
    "ok": GREEN,
    "healthy": GREEN,
    "executed": GREEN,
    "done": GREEN,
    "completed": GREEN,
    "warn": AMBER,
    "degraded": AMBER,
    "planned": AMBER,
    "refused": GREY,
    "error": PURPLE,
    "running": PURPLE,
    "fail": RED,
    "failed": RED,
    "down": RED,
    "crashed": RED,
}
# Columns whose words are statuses; any other column is shown as it is.
STATUS_COLUMNS = ("status", "state", "outcome", "verdict")
# Long text wraps at spaces (a long token breaks only when it must: `anywhere` would let the
# browser squeeze a column down to one letter a line, headers included).
_WRAP = "white-space: pre-wrap; overflow-wrap: break-word; max-width: 48em"


def format_duration(seconds: Any) -> str:
    """`84 ms` below a second, `1.25 s` / `12.3 s` above, minutes and hours past two minutes;
    "" for a missing value. Never six decimals."""
    if not _is_number(seconds):
        return "" if seconds is None or _is_nan(seconds) else str(seconds)
    s = float(seconds)
    if s < 0:
        return "-" + format_duration(-s)
    if s < 0.0005:
        return "0 ms" if s == 0 else "<1 ms"
    if s < 0.9995:
        return f"{s * 1000:.0f} ms"
    if s < 9.995:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def format_time(iso: str) -> str:
    """An ISO time as people read it in the evidence: `2026-12-05 06:19:51 UTC` (irlib's times
    are UTC; to the second); "" for none, the text itself if it is not one."""
    from datetime import UTC, datetime

    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def format_number(value: Any) -> str:
    """A number as a person reads it: integers whole, others with at most 3 significant
    decimals (0.95, 12.35, 1234.6); anything else as str()."""
    if isinstance(value, bool) or not _is_number(value):
        return "" if value is None or _is_nan(value) else str(value)
    x = float(value)
    if x.is_integer() and abs(x) < 1e15:
        return f"{int(x):d}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}".rstrip("0").rstrip(".")
    return f"{x:.3g}"


def status_badge(word: Any) -> str:
    """A status word as inline HTML: the word in capitals, coloured (for text outside tables)."""
    text = str(word)
    fg, bg = WORD_COLOURS.get(text.lower(), GREY)
    return (
        f'<span style="color:{fg};background:{bg};font-weight:bold;padding:1px 6px;'
        f'border-radius:3px">{html.escape(text.upper())}</span>'
    )


def status_css(word: Any) -> str:
    fg, bg = WORD_COLOURS.get(str(word).lower(), GREY)
    return f"color: {fg}; background-color: {bg}; font-weight: bold; text-align: left"


def duration_columns(columns: Iterable[Any]) -> dict[Any, float]:
    """The columns that hold durations, by irlib's naming convention, and their unit in
    seconds: `*_s` (seconds) and `*_ms` (milliseconds)."""
    out: dict[Any, float] = {}
    for c in columns:
        name = str(c)
        if name.endswith("_ms"):
            out[c] = 0.001
        elif name.endswith("_s"):
            out[c] = 1.0
    return out


def styled(frame: Any, *, status: Iterable[str] = STATUS_COLUMNS) -> Any:
    """`frame` as a Styler for people: no index; durations (`*_s`, `*_ms` columns) in ms or
    s, headed without the unit suffix; other numbers short; text columns left-aligned and
    wrapped; a status column's words in capitals and coloured."""
    import pandas as pd

    frame = frame.reset_index(drop=True)
    statuses = [c for c in frame.columns if str(c) in set(status)]
    durations = duration_columns(c for c in frame.columns if c not in statuses)
    numeric = [
        c
        for c in frame.columns
        if c not in durations
        and c not in statuses
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
    text = [c for c in frame.columns if c not in durations and c not in numeric]

    formats: dict[Any, Any] = {c: _in_seconds(unit) for c, unit in durations.items()}
    formats.update({c: format_number for c in numeric})
    formats.update({c: _upper for c in statuses})
    formats.update({c: _text for c in text if c not in statuses})
    styler = frame.style.format(formats, escape="html").hide(axis="index")
    # ids from the content, not random: the same table renders the same HTML every time
    content = repr((list(map(str, frame.columns)), frame.to_dict("records")))
    styler = styler.set_uuid("irlib-" + hashlib.sha1(content.encode()).hexdigest()[:10])
    styles: list[dict[str, Any]] = [
        {"selector": "", "props": "border-collapse: collapse"},
        {"selector": "td, th", "props": "vertical-align: top; padding: 2px 8px"},
    ]
    for c in text:
        i = frame.columns.get_loc(c)
        styles.append({"selector": f"td.col{i}", "props": _LEFT})
        styles.append({"selector": f"th.col_heading.col{i}", "props": "text-align: left"})
    styler = styler.set_table_styles(styles)
    for c in statuses:
        styler = styler.map(status_css, subset=[c])
    labels = [_label(c) if c in durations else str(c) for c in frame.columns]
    if labels != [str(c) for c in frame.columns]:
        styler = styler.relabel_index(labels, axis="columns")
    return styler


_LEFT = f"text-align: left; {_WRAP}"


def html_table(rows: Any, *, status: Iterable[str] = STATUS_COLUMNS, empty: str = "") -> str:
    """A DataFrame, or rows (mappings), as an HTML table through `styled`; `empty` when there
    are no rows."""
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(_rows(rows))
    if frame.empty and empty:
        return empty
    return str(styled(frame, status=status).to_html())


def _rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]


def _label(column: Any) -> str:
    name = str(column)
    return name.rsplit("_", 1)[0] if "_" in name else name


def _in_seconds(unit: float) -> Any:
    def fmt(value: Any) -> str:
        return format_duration(float(value) * unit) if _is_number(value) else _text(value)

    return fmt


def _upper(value: Any) -> str:
    return "" if value is None or _is_nan(value) else str(value).upper()


def _text(value: Any) -> str:
    if value is None or _is_nan(value):
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if not isinstance(value, int | float) and not hasattr(value, "dtype"):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _is_nan(value: Any) -> bool:
    try:
        return isinstance(value, float) and math.isnan(value)
    except TypeError:
        return False
