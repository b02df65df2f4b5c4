"""The post-mortem of one incident, assembled from its record: the seed's "Incident Summary",
the timeline, targets, root cause and fix, action items, messages, and every evidence folder of
the incident with its manifest verified (the sha256 of each file). Reads the incident's folder
and writes only postmortem.md and postmortem.html into it; needs no kernel and no network.
"""

from __future__ import annotations

import contextlib
import html
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from irlib import chain, comms, escalation, io, run_results
from irlib import incident as inc
from irlib.profile import IncidentSettings

MARKDOWN = "postmortem.md"
HTML = "postmortem.html"


@dataclass(frozen=True)
class Link:
    text: str
    href: str


Cell = str | Link


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True)
class Items:
    lines: tuple[str, ...]
    checklist: bool = False


Block = str | Table | Items  # a str is a paragraph


# -- evidence ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceRun:
    """One run folder of the incident and whether its files still match its manifest."""

    folder: str  # relative to the incident folder
    runbook: str
    started_at: str
    status: str
    verdict: str
    manifest_sha256: str | None
    notebook_sha256: str | None
    problems: tuple[str, ...]

    @property
    def verified(self) -> bool:
        return self.manifest_sha256 is not None and not self.problems


def verify_run(run_dir: Path, check: chain.RunCheck | None = None) -> EvidenceRun:
    """A run folder as the post-mortem lists it: its runbook and verdict (results.json) and
    what irlib.chain found wrong with it (`check`; verified alone when not given)."""
    if check is None:
        check = chain.verify(run_dir.parent).run(run_dir.name)
    results: run_results.RunResults | None = None
    with contextlib.suppress(OSError, ValueError):  # a crashed run may have no results
        results = run_results.read(run_dir)
    verdict = (results.verdict if results else None) or {}
    top = results.top_cause if results else {}
    summary = str(verdict.get("state", "no verdict")).upper() + (f": {top['id']}" if top else "")
    return EvidenceRun(
        run_dir.name,
        results.runbook if results else "?",
        results.started_at.isoformat() if results else "?",
        results.status if results else "?",
        summary,
        check.manifest_sha256 if check else None,
        check.notebook_sha256 if check else None,
        check.problems if check else ("not a run folder",),
    )


@dataclass(frozen=True)
class ReplayRow:
    """One run of the incident replayed with today's rules (irlib.replay.replay_incident)."""

    folder: str  # the original run, relative to the incident folder
    original: str  # its verdict in one line
    replayed: str  # the replay's
    differences: tuple[str, ...]  # empty: the same verdict
    replay_folder: str  # relative to the incident folder

    @property
    def outcome(self) -> str:
        return "the same" if not self.differences else "; ".join(self.differences)


# -- the document ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PostMortem:
    incident: inc.Incident
    settings: IncidentSettings
    now: datetime
    runs: tuple[EvidenceRun, ...]
    chain: chain.Report | None = None  # the incident folder's evidence chain, verified
    replays: tuple[ReplayRow, ...] | None = None  # None: not asked for

    def sections(self) -> list[tuple[str, list[Block]]]:
        i, r = self.incident, self.incident.record
        level = self.settings.severity(r.severity)
        minutes = int(i.duration(self.now).total_seconds() // 60)
        end = f"{i.resolved_at:%H:%M} UTC" if i.resolved_at else "now, still open"
        summary = Items(
            (
                f"**Incident ID**: {r.id}",
                f"**Title**: {r.title}",
                f"**Severity**: {r.severity} ({level.impact})",
                f"**Duration**: {minutes} minutes ({r.opened_at:%H:%M} - {end})",
                f"**Impact**: {comms.overall_impact(i)}",
                f"**Incident Commander**: {r.commander}",
                f"**Status**: {i.status}",
            )
        )
        timeline = Items(
            tuple(f"{e.at:%H:%M:%S} - {e.text}" for e in i.entries if e.kind != "delivery")
        )
        goals = escalation.targets(i, self.settings, self.now)
        target_table = Table(
            ("stage", "target", "done at", "result"),
            tuple(
                (
                    t.label,
                    f"{t.target_min:g} min",
                    f"{t.minutes:g} min" if t.done_at else "not done",
                    t.state,
                )
                for t in goals
            ),
        )
        esc = escalation.escalation(i, self.settings, self.now)
        fixes = [f"{e.at:%H:%M:%S} {e.text}" for e in i.fixes]
        if i.resolution and i.resolution not in " ".join(fixes):
            fixes.append(i.resolution)
        messages = []
        for m in i.messages():
            d = i.delivery(m)
            state = (
                "for pasting"
                if m.data.get("channel") != "webhook"
                else "delivered"
                if d and d.data.get("delivered")
                else f"NOT delivered: {d.data.get('error') if d else 'unknown'}"
            )
            messages.append(f"{m.at:%H:%M:%S} {m.data.get('subject')} ({state})")
        evidence = Table(
            ("run", "runbook", "verdict", "notebook sha256", "manifest sha256", "verified"),
            tuple(
                (
                    Link(run.folder, f"{run.folder}/notebook.html"),
                    Link(run.runbook, f"{run.folder}/notebook.ipynb"),
                    run.verdict,
                    run.notebook_sha256 or "-",
                    run.manifest_sha256 or "-",
                    "verified" if run.verified else "FAILED: " + "; ".join(run.problems),
                )
                for run in self.runs
            ),
        )
        proof: list[Block] = []
        if self.chain is not None and self.runs:
            proof.append(f"Evidence chain ({chain.CHAIN}): {self.chain.summary()}.")
            if self.chain.problems:
                proof.append(Items(self.chain.problems))
        sections: list[tuple[str, list[Block]]] = [
            ("Incident Summary", [summary]),
            ("Timeline", [timeline]),
            ("Response Targets", [target_table]),
            ("Escalation", [esc.head, Items(tuple(e.line() for e in esc.engage))]),
            ("Root Cause", [i.root_cause or "Not identified: complete this section."]),
            ("Fix", [Items(tuple(fixes)) if fixes else "No fix recorded."]),
            ("Action Items", [Items(tuple(self.action_items()), checklist=True)]),
            ("Communications", [Items(tuple(messages)) if messages else "No message sent."]),
            (
                "Evidence",
                [evidence, *proof] if self.runs else ["No runbook was run for this incident."],
            ),
        ]
        if self.replays is not None:
            sections.append(("Replays (today's rules)", self._replays()))
        return sections

    def _replays(self) -> list[Block]:
        """Would today's rules have seen it? Each run again from its captures (irlib.replay)."""
        assert self.replays is not None
        if not self.replays:
            return ["No run of this incident kept captures to replay."]
        changed = sum(bool(r.differences) for r in self.replays)
        head = (
            f"{len(self.replays)} run(s) replayed from what they read, with the installed "
            f"irlib's rules: {changed} verdict(s) differ."
        )
        table = Table(
            ("run", "original verdict", "replayed", "what changed"),
            tuple(
                (
                    Link(r.folder, f"{r.folder}/notebook.html"),
                    r.original,
                    Link(r.replayed, f"{r.replay_folder}/notebook.html"),
                    r.outcome,
                )
                for r in self.replays
            ),
        )
        return [head, table]

    def action_items(self) -> list[str]:
        i = self.incident
        items = [e.text.removeprefix("Action item: ") for e in i.of_kind("action-item")]
        for v in i.verdicts:
            items += [a for a in v.get("advice") or [] if v.get("state") != "healthy"]
        items += [
            f"Find why {e.data.get('id')} failed: {e.data.get('detail')}"
            for e in i.of_kind("mitigation")
            if e.data.get("outcome") == "failed"
        ]
        items += [
            f"Review why the {t.label} target ({t.target_min:g} min) was {t.state}"
            for t in escalation.targets(i, self.settings, self.now)
            if t.state in ("missed", "overdue")
        ]
        items += [f"Evidence {r.folder} fails verification" for r in self.runs if not r.verified]
        items += [f"Evidence chain: {p}" for p in (self.chain.problems if self.chain else ())]
        items.append("Hold the post-incident review and assign an owner to each item")
        return list(dict.fromkeys(items))

    @property
    def title(self) -> str:
        return f"Post-mortem {self.incident.id}: {self.incident.record.title}"

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for heading, blocks in self.sections():
            out += [f"## {heading}", ""]
            for block in blocks:
                out += [*_md_block(block), ""]
        return "\n".join(out)

    def html(self) -> str:
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        for heading, blocks in self.sections():
            parts.append(f"<h2>{html.escape(heading)}</h2>")
            parts += [_html_block(b) for b in blocks]
        body = "\n".join(parts)
        return (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n"
        )

    def write(self) -> Written:
        """postmortem.md and postmortem.html in the incident's folder (links are relative)."""
        md, page = self.incident.folder / MARKDOWN, self.incident.folder / HTML
        io.write_atomic(md, self.markdown())
        io.write_atomic(page, self.html())
        return Written((md, page), sum(r.verified for r in self.runs), len(self.runs))

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_html_(self) -> str:
        return "\n".join(
            f"<h2>{html.escape(h)}</h2>" + "".join(_html_block(b) for b in blocks)
            for h, blocks in self.sections()
        )

    def __repr__(self) -> str:
        return self.markdown()


@dataclass(frozen=True)
class Written:
    paths: tuple[Path, ...]
    verified: int
    runs: int

    def __repr__(self) -> str:
        lines = [f"{self.verified} of {self.runs} evidence folder(s) verified; written:"]
        return "\n".join(lines + [f"  {p}" for p in self.paths])


@dataclass(frozen=True)
class NoIncident:
    """What the post-mortem notebook shows when there is nothing to write about."""

    outputs: Path

    def write(self) -> NoIncident:
        return self

    def __repr__(self) -> str:
        return (
            f"No incident under {self.outputs}: nothing to write. Open one with "
            "`irlib incident open --severity P1 --title ...`, or set `incident` and `outputs_dir`."
        )

    def _repr_markdown_(self) -> str:
        return f"*{self!r}*"


def assemble(
    incident_id: str | None = None,
    *,
    outputs_dir: str | os.PathLike[str] | None = None,
    profile_path: str | None = None,
    settings: IncidentSettings | None = None,
    now: datetime | None = None,
    replays: Callable[[Path], tuple[ReplayRow, ...]] | None = None,
) -> PostMortem | NoIncident:
    """The post-mortem of `incident_id` (None: the latest incident under the outputs dir).
    `replays` (irlib.replay.replay_incident) replays its runs for the "Replays" section."""
    root = io.outputs_root(outputs_dir)
    incident_id = incident_id or inc.latest_id(root)
    if incident_id is None:
        return NoIncident(root)
    incident = inc.load(root, incident_id)
    running = os.environ.get(io.RUN_DIR_ENV)  # a post-mortem run's own folder is not done yet
    own = Path(running).name if running and Path(running).parent == incident.folder else None
    report = chain.verify(incident.folder, exclude=(own,) if own else ())
    runs = tuple(verify_run(p, report.run(p.name)) for p in incident.runs if p.name != own)
    settings = settings or inc.settings_from(profile_path)
    replayed = replays(incident.folder) if replays is not None else None
    return PostMortem(incident, settings, inc.as_utc(now), runs, report, replayed)


# -- rendering -------------------------------------------------------------------------------


_CSS = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;"
    "font-size:.9em}code{word-break:break-all}"
)


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f"[{cell.text}]({cell.href})"
    return cell.replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Table):
        head = "| " + " | ".join(block.columns) + " |"
        rule = "|" + "---|" * len(block.columns)
        return [head, rule] + ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
    if isinstance(block, Items):
        mark = "- [ ] " if block.checklist else "- "
        return [mark + line for line in block.lines]
    return [block]


def _html_text(text: str) -> str:
    """Escape, keeping the one Markdown emphasis the sections use (**label**)."""
    escaped = html.escape(text)
    if escaped.startswith("**") and "**" in escaped[2:]:
        label, _, rest = escaped[2:].partition("**")
        return f"<b>{label}</b>{rest}"
    return escaped


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<a href="{html.escape(cell.href)}">{html.escape(cell.text)}</a>'
    return html.escape(cell)


def _html_block(block: Block) -> str:
    if isinstance(block, Table):
        # left-aligned text, top-aligned rows: JupyterLab's stylesheet right-aligns table cells
        left = ' style="text-align:left;vertical-align:top"'
        head = "".join(f"<th{left}>{html.escape(c)}</th>" for c in block.columns)
        rows = "".join(
            "<tr>" + "".join(f"<td{left}>{_html_cell(c)}</td>" for c in row) + "</tr>"
            for row in block.rows
        )
        return f"<table><tr>{head}</tr>{rows}</table>"
    if isinstance(block, Items):
        box = '<input type="checkbox" disabled> ' if block.checklist else ""
        return "<ul>" + "".join(f"<li>{box}{_html_text(x)}</li>" for x in block.lines) + "</ul>"
    return f"<p>{html.escape(block)}</p>"
