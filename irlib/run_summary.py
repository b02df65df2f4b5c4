"""The summary that opens every evidence HTML: what the run concluded, before any table.

Made from the run's results.json (run_results.RunResults), never from notebook cells: the
verdict in its state colour, the top causes with their evidence, the recommended and executed
mitigations, who ran it, when, for which incident and how long it took, and links to the
notebook's sections (nbconvert gives each cell the anchor `cell-id=<id>`). A crashed run says
at the top that its evidence is partial. Pure HTML; talks to nothing.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from irlib import tables
from irlib.run_results import CRASHED, RunResults

TOP_CAUSES = 3
ANCHOR = "irlib-summary"  # the summary's own id, for a link or a test
CRASH_MARKER_TAG = "irlib-crash-marker"  # irlib.runner's cell after the one that failed
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"  # papermill's, before the cell that raised


def summary_html(results: RunResults, notebook: Any | None = None) -> str:
    """The summary of `results` as one HTML block; `notebook` (an nbformat node) adds links
    to its sections."""
    verdict = results.verdict or {}
    state = str(verdict.get("state") or ("crashed" if results.status == CRASHED else "none"))
    fg, bg = tables.WORD_COLOURS.get(state, tables.GREY)
    parts = [
        f'<div id="{ANCHOR}" style="border:2px solid {fg};border-radius:6px;padding:10px 14px;'
        'margin:8px 0 16px 0;text-align:left;line-height:1.4">'
    ]
    if results.status == CRASHED:
        parts.append(
            f'<p style="background:{tables.RED[1]};color:{tables.RED[0]};padding:6px;'
            f'margin:0 0 8px 0"><b>Partial evidence: this run crashed</b>: '
            f"{html.escape(str(results.reason or 'no reason recorded'))}. The cells after the "
            "failing one did not run; what follows is what it saw until then.</p>"
        )
    parts.append(_verdict_head(results, verdict, state, fg, bg))
    parts.append(_facts(results))
    parts.append(_runbooks(verdict.get("runbooks") or {}))
    parts.append(_causes(verdict.get("causes") or []))
    parts.append(_mitigations(verdict.get("mitigations") or [], results.mitigations))
    parts.append(_could_not_check(verdict.get("could_not_check") or []))
    if notebook is not None:
        parts.append(_sections(notebook))
    parts.append("</div>")
    return "".join(p for p in parts if p)


def with_summary(page: str, summary: str) -> str:
    """`page` (nbconvert's HTML) with `summary` first in its body: after `<main>` (the lab
    template's), else after `<body ...>`, else in front."""
    body = page.find("<body")
    main = page.find("<main>", max(body, 0))
    if main >= 0:
        at = main + len("<main>")
    elif body >= 0:
        at = page.index(">", body) + 1
    else:
        at = 0
    wrapped = f'<div style="padding:0 var(--jp-notebook-padding, 10px)">{summary}</div>'
    return page[:at] + wrapped + page[at:]


def _verdict_head(
    results: RunResults, verdict: Mapping[str, Any], state: str, fg: str, bg: str
) -> str:
    if not verdict:
        if results.status == CRASHED:
            said = "no verdict: the run crashed before its verdict"
        elif results.mode == "interactive":  # saved before its verdict cell ran
            said = "no verdict yet: the verdict cell has not run in this session"
        else:
            said = "no verdict: the runbook completed without one"
        return (
            f'<div style="background:{bg};color:{fg};padding:6px 10px;font-size:1.3em">'
            f"<b>{html.escape(said)}</b></div>"
        )
    severity = verdict.get("severity")
    return (
        f'<div style="background:{bg};color:{fg};padding:6px 10px;font-size:1.3em">'
        f"<b>Verdict: {html.escape(state.upper())}</b>"
        + (f" (suggested severity {html.escape(str(severity))})" if severity else "")
        + "</div>"
        + f'<p style="margin:6px 0">{html.escape(str(verdict.get("summary") or ""))}</p>'
    )


def _facts(results: RunResults) -> str:
    mode = results.mode or "headless"
    counts = dict((results.verdict or {}).get("counts") or {})
    if not counts:  # no verdict (a crash): count the checks that were recorded
        for check in results.checks:
            counts[str(check.get("status"))] = counts.get(str(check.get("status")), 0) + 1
    checks = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "none recorded"
    rows = [
        ("incident", results.incident),
        ("runbook", results.runbook),
        ("run by", f"{results.operator} ({mode})"),
        (
            "when (UTC)",
            f"{_utc(results.started_at.isoformat())} to {_utc(results.finished_at.isoformat())}",
        ),
        ("took", tables.format_duration(results.duration_s)),
        ("profile", str(results.profile.get("name") or "")),
        ("checks", checks),
        ("status", f"{results.status}, exit {results.exit_code}"),
    ]
    cells = "".join(
        f'<tr><th style="text-align:left;padding:1px 12px 1px 0">{html.escape(k)}</th>'
        f'<td style="text-align:left">{html.escape(str(v))}</td></tr>'
        for k, v in rows
    )
    return f'<table style="margin:4px 0">{cells}</table>'


def _runbooks(runbooks: Mapping[str, Any]) -> str:
    """A drill's verdict per runbook (the health drill's results carry one each)."""
    if not runbooks:
        return ""
    rows = [
        {"runbook": name, "state": r.get("state"), "summary": r.get("summary")}
        for name, r in runbooks.items()
        if isinstance(r, Mapping)
    ]
    return "<p style='margin:8px 0 2px 0'><b>Runbooks</b></p>" + tables.html_table(rows)


def _causes(causes: list[Mapping[str, Any]]) -> str:
    if not causes:
        return "<p><b>Probable causes</b>: none named.</p>"
    items = []
    for c in causes[:TOP_CAUSES]:
        supported = ", ".join(str(s) for s in c.get("supported_by") or [])
        items.append(
            f"<li><b>{html.escape(str(c.get('id')))}</b> "
            f"(score {tables.format_number(c.get('score'))}): "
            f"{html.escape(str(c.get('title') or ''))}<br>"
            f"<span>evidence: {html.escape(str(c.get('evidence') or ''))}</span>"
            + (f"<br><small>from the checks: {html.escape(supported)}</small>" if supported else "")
            + (
                f"<br>what to do: {html.escape(str(c['advice']))}"
                if c.get("advice") and not c.get("mitigations")
                else ""
            )
            + "</li>"
        )
    more = len(causes) - TOP_CAUSES
    tail = f"<p>... and {more} more in the verdict below.</p>" if more > 0 else ""
    return (
        "<p style='margin:8px 0 2px 0'><b>Probable causes</b></p>"
        f"<ol style='margin-top:0'>{''.join(items)}</ol>{tail}"
    )


def _mitigations(recommended: Iterable[str], attempts: Iterable[Mapping[str, Any]]) -> str:
    said = ", ".join(f"<code>{html.escape(str(m))}</code>" for m in recommended) or "none"
    out = [f"<p style='margin:8px 0 2px 0'><b>Recommended mitigations</b>: {said}</p>"]
    decided = _decisions(attempts)
    if not decided:
        out.append("<p style='margin:2px 0'><b>Executed</b>: nothing (nothing was confirmed).</p>")
        return "".join(out)
    rows = [
        {
            "mitigation": a.get("id"),
            "outcome": a.get("outcome"),
            "confirmed by": f"{a.get('operator')} ({a.get('confirmed_by') or 'not confirmed'})",
            "at": _utc(str(a.get("at") or "")),
            "detail": a.get("detail") or "",
        }
        for a in decided
    ]
    out.append("<p style='margin:2px 0'><b>Executed or attempted</b>:</p>")
    out.append(tables.html_table(rows))
    return "".join(out)


def _decisions(attempts: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Per mitigation, what became of it: executed or failed (a later refused click does not
    undo that), else refused; plans nobody confirmed are left out."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for a in attempts:
        mid, outcome = str(a.get("id")), a.get("outcome")
        ran = by_id.get(mid, {}).get("outcome") in ("executed", "failed")
        if outcome in ("executed", "failed") or (outcome == "refused" and not ran):
            by_id[mid] = a
    return list(by_id.values())


def _could_not_check(unanswered: list[Mapping[str, Any]]) -> str:
    if not unanswered:
        return ""
    items = "".join(
        f"<li><b>{html.escape(str(u.get('check')))}</b> ({html.escape(str(u.get('target')))}, "
        f"{html.escape(str(u.get('reason')))}): {html.escape(str(u.get('advice') or ''))}</li>"
        for u in unanswered
    )
    return (
        f"<p style='margin:8px 0 2px 0'><b>Could not check ({len(unanswered)})</b>, not a "
        f"pass:</p><ul style='margin-top:0'>{items}</ul>"
    )


def sections(notebook: Any) -> list[tuple[int, str, str]]:
    """(level, heading, anchor) of each markdown cell's headings, in the notebook's order,
    and the cell where a crashed run stopped; the anchor is nbconvert's `cell-id=<id>`."""
    out: list[tuple[int, str, str]] = []
    for cell in notebook.get("cells", []):
        cell_id = cell.get("id")
        if not cell_id or cell.get("cell_type") != "markdown":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        source = str(cell.get("source", ""))
        if CRASH_MARKER_TAG in tags or (
            PAPERMILL_ERROR_TAG in tags and 'id="papermill-error-cell"' in source
        ):
            out.append((1, "where the run stopped", f"cell-id={cell_id}"))
            continue
        for line in source.splitlines():
            stripped = line.lstrip()
            if stripped.startswith("#"):
                level = len(stripped) - len(stripped.lstrip("#"))
                text = stripped.lstrip("#").strip()
                if text:
                    out.append((level, text, f"cell-id={cell_id}"))
                break  # one link per cell: its first heading
    return out


def _sections(notebook: Any) -> str:
    found = sections(notebook)
    if not found:
        return ""
    top = min(level for level, _, _ in found)
    links = "".join(
        f'<li style="margin-left:{(level - top) * 1.2}em">'
        f'<a href="#{html.escape(anchor)}" style="color:#0b62a4;text-decoration:underline">'
        f"{html.escape(text)}</a></li>"
        for level, text, anchor in found
    )
    return (
        "<p style='margin:8px 0 2px 0'><b>Sections below</b></p>"
        f"<ul style='margin-top:0;list-style:none;padding-left:0'>{links}</ul>"
    )


def _utc(iso: str) -> str:
    return tables.format_time(iso)
