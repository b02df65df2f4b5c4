"""The page `irlib serve` shows at `/`: its runs and the incidents they opened, recent first,
each coloured by what its verdict says (healthy, degraded, down, could-not-look) and linking
to its evidence HTML. One self-contained HTML document, every value escaped; it holds no
secret (no token, no webhook URL: neither is in what it is made from). Talks to nothing.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from irlib.tables import AMBER, GREEN, GREY, PURPLE, RED

COLOURS = {
    "healthy": GREEN,
    "degraded": AMBER,
    "down": RED,
    "could-not-look": PURPLE,
    "queued": GREY,
    "running": GREY,
}
REFRESH_S = 10  # an on-call engineer leaves it open: it follows new runs by itself


def badge(state: str) -> str:
    fg, bg = COLOURS.get(state, GREY)
    return (
        f'<span class="state state-{_e(state)}" style="color:{fg};background:{bg};'
        'font-weight:bold;padding:1px 6px;border-radius:3px;white-space:nowrap">'
        f"{_e(state.upper())}</span>"
    )


def render(runs: Iterable[Mapping[str, Any]], incidents: Iterable[Mapping[str, Any]]) -> str:
    """`runs`: Run.to_dict()s, recent first; `incidents`: {id, severity, title, status,
    opened_at, state, evidence, runs}, recent first."""
    run_rows = [_run_row(r) for r in runs]
    incident_rows = [_incident_row(i) for i in incidents]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<title>irlib serve: triage runs and incidents</title>
<style>
body {{ font-family: sans-serif; margin: 1em 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left;
  vertical-align: top; }}
td.summary {{ max-width: 40em; }}
</style></head><body>
<h1>irlib serve</h1>
<p>Read-only triage of firing alerts: each run's verdict, recent first. No mitigation runs from
here; the recommended one is applied by a person with the command in the chat message.</p>
<h2>Runs</h2>
<table id="runs"><thead><tr><th>received</th><th>run</th><th>state</th><th>runbook</th>
<th>alerts</th><th>incident</th><th>verdict</th><th>recommended (not run)</th>
<th>to message</th><th>evidence</th></tr></thead>
<tbody>{"".join(run_rows) or _empty(10, "no runs yet")}</tbody></table>
<h2>Incidents</h2>
<table id="incidents"><thead><tr><th>opened</th><th>incident</th><th>state</th>
<th>severity</th><th>status</th><th>title</th><th>runs</th><th>evidence</th></tr></thead>
<tbody>{"".join(incident_rows) or _empty(8, "no incidents yet")}</tbody></table>
</body></html>
"""


def _run_row(run: Mapping[str, Any]) -> str:
    state = str(run.get("outcome") or run.get("state") or "queued")
    verdict = run.get("verdict") or {}
    summary = verdict.get("summary") or run.get("error") or ""
    seconds = run.get("to_message_s")
    return (
        f'<tr class="run" data-state="{_e(state)}" data-run="{_e(run.get("id"))}">'
        f"<td>{_e(_short(run.get('received_at')))}</td><td>{_e(run.get('id'))}</td>"
        f"<td>{badge(state)}</td><td>{_e(run.get('runbook'))}</td>"
        f"<td>{_e(', '.join(run.get('alerts') or []))}</td><td>{_e(run.get('incident'))}</td>"
        f'<td class="summary">{_e(summary)}</td>'
        f"<td>{_e(', '.join(verdict.get('mitigations') or []))}</td>"
        f"<td>{'' if seconds is None else _e(f'{seconds:.1f} s')}</td>"
        f"<td>{_link(run.get('evidence'))}</td></tr>"
    )


def _incident_row(incident: Mapping[str, Any]) -> str:
    state = str(incident.get("state") or "queued")
    return (
        f'<tr class="incident" data-state="{_e(state)}" data-incident="{_e(incident.get("id"))}">'
        f"<td>{_e(_short(incident.get('opened_at')))}</td><td>{_e(incident.get('id'))}</td>"
        f"<td>{badge(state)}</td><td>{_e(incident.get('severity'))}</td>"
        f"<td>{_e(incident.get('status'))}</td><td>{_e(incident.get('title'))}</td>"
        f"<td>{_e(incident.get('runs'))}</td><td>{_link(incident.get('evidence'))}</td></tr>"
    )


def _link(url: Any) -> str:
    return f'<a class="evidence" href="{_e(url)}">notebook.html</a>' if url else ""


def _short(iso: Any) -> str:
    """'2026-12-05 06:39:37Z' from an ISO time: what a person reads at a glance."""
    text = str(iso or "")
    return text[:19].replace("T", " ") + ("Z" if text else "")


def _empty(columns: int, text: str) -> str:
    return f'<tr><td colspan="{columns}">{_e(text)}</td></tr>'


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


__all__ = ["COLOURS", "badge", "render"]
