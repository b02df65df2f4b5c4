"""The incident record: `outputs/<id>/incident.json`, written once, and `timeline.jsonl`, one JSON
line per entry, appended under an exclusive flock and fsynced, never rewritten; the state derived
from both, and the entries a run adds. Times are UTC and take `now` where the clock matters.
Talks only to those files: never to a target system or the network, and never writes a secret.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from irlib import io, run_results
from irlib.errors import UsageError
from irlib.io import utcnow
from irlib.profile import IncidentSettings

RECORD = "incident.json"
TIMELINE = "timeline.jsonl"
STAGES = ("alert", "acknowledge", "investigate", "mitigate", "resolve")
STAMPS = {"ack": "acknowledged", "mitigated": "mitigated", "resolved": "resolved"}
ID_PATTERN = re.compile(r"^INC-(\d{4})-(\d{4,})$")
_RANK = {s: i for i, s in enumerate(STAGES)}
# The stage an entry of each kind moves the incident to, at least; other kinds (notes,
# messages) belong to the stage the incident is in.
_FLOOR = {
    "opened": "alert",
    "acknowledged": "acknowledge",
    "run-started": "investigate",
    "verdict": "investigate",
    "root-cause": "investigate",
    "mitigation": "mitigate",
    "mitigated": "mitigate",
    "resolved": "resolve",
}


def as_utc(at: datetime | None) -> datetime:
    if at is None:
        return utcnow()
    if at.tzinfo is None:
        raise UsageError(f"time {at} has no timezone; irlib's times are UTC")
    return at.astimezone(UTC)


def settings_from(profile_path: str | os.PathLike[str] | None = None) -> IncidentSettings:
    """The profile's incident section; the seed's defaults when no profile is named."""
    from irlib.profile import load_profile

    if profile_path or os.environ.get("IRLIB_PROFILE"):
        return load_profile(profile_path).incident
    return IncidentSettings()


# -- the record and its entries ----------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """What is known when the incident is opened; incident.json, never changed."""

    id: str
    title: str
    severity: str
    opened_at: datetime
    commander: str
    trading_impact: bool = False
    impact: str = ""
    opened_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "opened_at": self.opened_at.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        return cls(**{**data, "opened_at": datetime.fromisoformat(data["opened_at"])})


@dataclass(frozen=True)
class Entry:
    """One line of the timeline. `stage` is where the incident stood with this entry."""

    seq: int  # append order
    at: datetime  # when it happened (a run's entries are appended when the run ends)
    kind: str
    stage: str
    text: str
    by: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat(), "data": dict(self.data)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        return cls(**{**data, "at": datetime.fromisoformat(data["at"])})


@dataclass(frozen=True)
class Incident:
    """The record and its timeline (in time order), and what follows from them."""

    record: Record
    entries: tuple[Entry, ...]
    folder: Path

    @property
    def id(self) -> str:
        return self.record.id

    def of_kind(self, *kinds: str) -> list[Entry]:
        return [e for e in self.entries if e.kind in kinds]

    def first(self, test: Callable[[Entry], bool]) -> Entry | None:
        return next((e for e in self.entries if test(e)), None)

    @property
    def resolved_at(self) -> datetime | None:
        entry = self.first(lambda e: e.kind == "resolved")
        return entry.at if entry else None

    def done_at(self, stage: str) -> datetime | None:
        """When the stage was done: acknowledged (any response beyond opening), root cause
        identified (a verdict naming a cause, a root-cause note, or a fix), fix applied."""
        if stage == "alert":
            return self.record.opened_at
        if stage == "acknowledge":
            found = self.first(lambda e: _RANK[e.stage] >= _RANK["acknowledge"])
            return found.at if found else None
        if stage == "investigate":
            found = self.first(_identifies_cause)
            mitigated = self.done_at("mitigate")
            times = [t for t in (found.at if found else None, mitigated) if t is not None]
            return min(times) if times else None
        if stage == "mitigate":
            found = self.first(_applies_fix)
            return found.at if found else None
        if stage == "resolve":
            return self.resolved_at
        raise ValueError(stage)

    @property
    def status(self) -> str:
        if self.resolved_at:
            return "resolved"
        if self.done_at("mitigate"):
            return "mitigated"
        if self.done_at("acknowledge"):
            return "investigating"
        return "open"

    @property
    def stage(self) -> str:
        return self.entries[-1].stage if self.entries else "alert"

    def duration(self, now: datetime | None = None) -> timedelta:
        return (self.resolved_at or as_utc(now)) - self.record.opened_at

    @property
    def verdicts(self) -> list[Mapping[str, Any]]:
        return [e.data for e in self.of_kind("verdict")]

    @property
    def root_cause(self) -> str | None:
        """The operator's words when given (a root-cause note, `resolved --root-cause`), else
        the top cause of the latest verdict that named one."""
        for e in reversed(self.entries):
            if e.kind == "root-cause" or (e.kind == "resolved" and e.data.get("root_cause")):
                return str(e.data.get("root_cause") or e.text)
        for v in reversed(self.verdicts):
            if v.get("cause") not in (None, "unknown"):
                return f"{v.get('cause_title')}: {v.get('evidence')}"
        return None

    @property
    def fixes(self) -> list[Entry]:
        return [e for e in self.entries if _applies_fix(e) and e.kind != "resolved"]

    @property
    def resolution(self) -> str | None:
        resolved = self.of_kind("resolved")
        if resolved and resolved[0].data.get("resolution"):
            return str(resolved[0].data["resolution"])
        fixes = [str(e.data.get("summary") or e.text) for e in self.fixes]
        return "; ".join(fixes) or None

    @property
    def worst_state(self) -> str | None:
        order = {"healthy": 0, "degraded": 1, "down": 2}
        states = [str(v.get("state")) for v in self.verdicts if v.get("state") in order]
        return max(states, key=order.__getitem__) if states else None

    @property
    def runs(self) -> list[Path]:
        """Every run folder of this incident (`irlib run --incident ID`), oldest first."""
        return sorted(
            p for p in self.folder.iterdir() if p.is_dir() and run_results.path(p).is_file()
        )

    def messages(self, template: str | None = None) -> list[Entry]:
        return [
            e
            for e in self.of_kind("message")
            if template is None or e.data.get("template") == template
        ]

    def delivery(self, message: Entry) -> Entry | None:
        found = [e for e in self.of_kind("delivery") if e.data.get("message_seq") == message.seq]
        return found[-1] if found else None


def _identifies_cause(e: Entry) -> bool:
    if e.kind == "root-cause":
        return True
    if e.kind == "resolved":
        return bool(e.data.get("root_cause"))
    return e.kind == "verdict" and e.data.get("cause") not in (None, "unknown")


def _applies_fix(e: Entry) -> bool:
    if e.kind == "mitigation":
        return e.data.get("outcome") == "executed"
    return e.kind in ("mitigated", "resolved")


# -- reading and writing ---------------------------------------------------------------------


def folder_of(outputs: str | os.PathLike[str], incident_id: str) -> Path:
    """The incident's folder; UsageError when no incident of that id was opened there."""
    folder = Path(outputs) / incident_id
    if not io.SAFE_NAME.match(incident_id) or not (folder / RECORD).is_file():
        known = ", ".join(list_ids(outputs)[-5:]) or "none"
        raise UsageError(
            f"no incident {incident_id!r} under {outputs} (latest: {known}); "
            "open one with `irlib incident open`"
        )
    return folder


def load(outputs: str | os.PathLike[str], incident_id: str) -> Incident:
    folder = folder_of(outputs, incident_id)
    return _incident(folder, _entries(io.read_jsonl(folder / TIMELINE)))


def list_ids(outputs: str | os.PathLike[str]) -> list[str]:
    """Ids of the incidents under `outputs`, oldest first."""
    root = Path(outputs)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), int(m.group(2)), p.name)
        for p in root.iterdir()
        if (m := ID_PATTERN.match(p.name)) and (p / RECORD).is_file()
    ]
    return [name for *_, name in sorted(found)]


def latest_id(outputs: str | os.PathLike[str]) -> str | None:
    ids = list_ids(outputs)
    return ids[-1] if ids else None


def _incident(folder: Path, entries: list[Entry]) -> Incident:
    record = Record.from_dict(json.loads((folder / RECORD).read_text(encoding="utf-8")))
    ordered = tuple(sorted(entries, key=lambda e: (e.at, e.seq)))
    return Incident(record, ordered, folder)


def _entries(records: Iterable[Mapping[str, Any]]) -> list[Entry]:
    """Every complete entry: a line torn by a process killed mid-write is skipped (irlib.io's
    JSONL readers), and so is a record that is not an entry."""
    entries = []
    for data in records:
        try:
            entries.append(Entry.from_dict(data))
        except (ValueError, TypeError, KeyError):
            continue
    return entries


@dataclass(frozen=True)
class New:
    """An entry to append: `at` defaults to now."""

    kind: str
    text: str
    data: Mapping[str, Any] = field(default_factory=dict)
    at: datetime | None = None


def append_with(
    outputs: str | os.PathLike[str],
    incident_id: str,
    make: Callable[[Incident], Iterable[New]],
    *,
    by: str | None = None,
) -> list[Entry]:
    """Append what `make` returns, seeing the timeline as it is under the lock: a check that
    raises UsageError there changes nothing, and two processes never interleave."""
    folder = folder_of(outputs, incident_id)
    with io.locked(folder / TIMELINE) as f:
        entries = _entries(io.parse_jsonl(f.read()))
        new = list(make(_incident(folder, entries)))
        written: list[Entry] = []
        seq = max((e.seq for e in entries), default=0)
        for item in new:
            at = as_utc(item.at)
            before = [e for e in entries if e.at <= at]
            current = max((e.stage for e in before), key=_RANK.__getitem__, default="alert")
            floor = _FLOOR.get(item.kind, "alert")
            seq += 1
            entry = Entry(
                seq,
                at,
                item.kind,
                max(current, floor, key=_RANK.__getitem__),
                item.text,
                io.operator_name(by),
                dict(item.data),
            )
            entries.append(entry)
            written.append(entry)
        # by another handle, under this one's lock; after a torn last line, on a new line
        io.append_jsonl(folder / TIMELINE, [e.to_dict() for e in written])
    return written


def append(
    outputs: str | os.PathLike[str],
    incident_id: str,
    kind: str,
    text: str,
    *,
    data: Mapping[str, Any] | None = None,
    by: str | None = None,
    now: datetime | None = None,
) -> Entry:
    return append_with(outputs, incident_id, lambda _: [New(kind, text, data or {}, now)], by=by)[0]


def open_incident(
    outputs: str | os.PathLike[str],
    *,
    severity: str,
    title: str,
    settings: IncidentSettings,
    commander: str | None = None,
    trading_impact: bool = False,
    impact: str = "",
    by: str | None = None,
    now: datetime | None = None,
) -> Incident:
    """Create `outputs/INC-<year>-<NNNN>/` with its record and an "opened" entry. The number
    is the next free one of the year, allocated under a lock; `mkdir` never reuses a folder."""
    level = settings.severity(severity)
    if not title.strip():
        raise UsageError("an incident needs a --title saying what is wrong")
    now, by = as_utc(now), io.operator_name(by)
    root = Path(outputs)
    root.mkdir(parents=True, exist_ok=True)
    with io.locked(root / f".incident-seq-{now.year}.lock"):
        taken = [
            int(m.group(2))
            for p in root.iterdir()
            if (m := ID_PATTERN.match(p.name)) and int(m.group(1)) == now.year
        ]
        number = max(taken, default=0) + 1
        while True:
            folder = root / f"INC-{now.year}-{number:04d}"
            try:
                folder.mkdir()
                break
            except FileExistsError:  # a run's folder (`irlib run --incident`) took the name
                number += 1
        record = Record(
            folder.name,
            title.strip(),
            level.name,
            now,
            commander or settings.commander or by,
            trading_impact,
            impact.strip(),
            by,
        )
        # written once: os.link fails if it exists, so a record is never overwritten
        io.write_json_atomic(folder / RECORD, record.to_dict(), fsync=True, overwrite=False)
    text = f"Incident opened ({level.name}, {level.impact}): {record.title}"
    append(root, record.id, "opened", text, data=record.to_dict(), by=by, now=now)
    return load(root, record.id)


def stamp(
    outputs: str | os.PathLike[str],
    incident_id: str,
    kind: str,
    text: str = "",
    *,
    data: Mapping[str, Any] | None = None,
    by: str | None = None,
    now: datetime | None = None,
) -> Entry:
    """Mark the incident acknowledged, mitigated or resolved, once each, never after resolved."""
    if kind not in STAMPS.values():
        raise UsageError(f"cannot stamp {kind!r}; one of {', '.join(STAMPS.values())}")
    by = io.operator_name(by)
    said = text.strip() or str((data or {}).get("resolution") or "")
    default = {
        "acknowledged": f"Acknowledged by {by}",
        "mitigated": "Mitigated: service restored, monitoring for stability",
        "resolved": "Resolved: incident closed",
    }[kind]
    text = f"{kind.capitalize()}: {said}" if said else default

    def make(incident: Incident) -> list[New]:
        resolved = incident.of_kind("resolved")
        if resolved:
            raise UsageError(
                f"{incident.id} was resolved at {resolved[0].at:%Y-%m-%d %H:%M:%S} UTC; "
                "nothing changed (open a new incident if it is back)"
            )
        done = incident.of_kind(kind)
        if done:
            raise UsageError(
                f"{incident.id} is already {kind} (at {done[0].at:%H:%M:%S} UTC); nothing changed"
            )
        return [New(kind, text, {**(data or {}), **({"summary": said} if said else {})}, now)]

    return append_with(outputs, incident_id, make, by=by)[0]


def note(
    outputs: str | os.PathLike[str],
    incident_id: str,
    text: str,
    *,
    kind: str = "note",
    by: str | None = None,
    now: datetime | None = None,
) -> Entry:
    """A free-text entry; kind "root-cause" or "action-item" feeds the post-mortem."""
    if kind not in ("note", "root-cause", "action-item"):
        raise UsageError(f"unknown note kind {kind!r}")
    if not text.strip():
        raise UsageError("a note needs some text")
    data = {"root_cause": text.strip()} if kind == "root-cause" else {}
    label = {"note": "", "root-cause": "Root cause identified: ", "action-item": "Action item: "}
    return append(outputs, incident_id, kind, label[kind] + text.strip(), data=data, by=by, now=now)


# -- what `irlib run --incident ID` adds --------------------------------------------------------


def attach_run(run_dir: Path) -> list[Entry]:
    """Add a finished run (its results.json) to its incident's timeline: run started, each
    mitigation executed, failed or refused, the verdict. Nothing when no record exists."""
    folder = run_dir.parent
    if not (folder / RECORD).is_file():
        return []
    results = run_results.read(run_dir)
    ref = {"run": run_dir.name, "runbook": results.runbook}
    operator = results.operator
    new = [
        New(
            "run-started",
            f"Runbook {ref['runbook']} started by {operator} ({run_dir.name})",
            {**ref, "operator": operator},
            results.started_at,
        )
    ]
    for m in results.mitigations:
        if m.get("outcome") in ("executed", "failed", "refused"):
            detail = "" if m["outcome"] == "executed" else f" ({m.get('detail')})"
            new.append(
                New(
                    "mitigation",
                    f"Mitigation {m['id']} {m['outcome']}: {m.get('summary')}{detail}",
                    {**ref, **{k: m.get(k) for k in ("id", "outcome", "summary", "detail")}},
                    datetime.fromisoformat(m["at"]),
                )
            )
    finished = results.finished_at
    verdict = results.verdict
    if verdict:
        causes = verdict.get("causes") or []
        top = results.top_cause
        severity = verdict.get("severity")
        text = f"Verdict {str(verdict.get('state')).upper()}" + (
            f" (suggests {severity})" if severity else ""
        )
        text += f": {top['id']}: {top.get('evidence')}" if top else f": {verdict.get('summary')}"
        data = {
            **ref,
            "state": verdict.get("state"),
            "summary": verdict.get("summary"),
            "severity": severity,
            "cause": top.get("id"),
            "cause_title": top.get("title"),
            "evidence": top.get("evidence"),
            "advice": [c.get("advice") for c in causes if c.get("advice")],
            "mitigations": verdict.get("mitigations") or [],
            "exit_code": results.exit_code,
        }
        new.append(New("verdict", text, data, finished))
    else:
        status = results.status
        why = f": {results.reason}" if results.reason else ""
        new.append(
            New(
                "run-finished",
                f"Runbook {ref['runbook']} {status}{why} (exit {results.exit_code})",
                {**ref, "status": status, "exit_code": results.exit_code},
                finished,
            )
        )
    return append_with(folder.parent, folder.name, lambda _: new, by=operator)
