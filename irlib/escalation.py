"""What an incident record means against the clock: whether acknowledgement and each stage met
its target, who must be engaged now (the seed's escalation path, contacts from the profile), the
verdict cell's escalation block and `irlib incident show`. Reads records through irlib.incident;
writes nothing and talks to nothing else. Every function that depends on the clock takes `now`.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from irlib import io
from irlib.errors import UsageError
from irlib.incident import RECORD, Entry, Incident, as_utc, load
from irlib.profile import IncidentSettings


@dataclass(frozen=True)
class Target:
    stage: str
    label: str
    target_min: float
    done_at: datetime | None
    minutes: float | None  # from the alert to done, or to now when not done
    state: str  # met | missed | pending | overdue

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "done_at": self.done_at.isoformat() if self.done_at else None}


def targets(
    incident: Incident, settings: IncidentSettings, now: datetime | None = None
) -> list[Target]:
    """The severity's response time (met by the acknowledgement) and the seed's stage targets,
    stretched for lower severities when the profile says so."""
    now = as_utc(now)
    sev = incident.record.severity
    level = settings.severity(sev)
    k = settings.stretch(sev)
    t = settings.targets
    wanted = [
        ("acknowledge", f"respond ({sev} response time)", level.response_min),
        ("acknowledge", "acknowledge", t.acknowledge_min * k),
        ("investigate", "investigate (root cause)", t.investigate_min * k),
        ("mitigate", "mitigate (fix applied)", t.mitigate_min * k),
    ]
    out = []
    for stage, label, limit in wanted:
        done = incident.done_at(stage)
        end = done or incident.resolved_at or now
        minutes = (end - incident.record.opened_at).total_seconds() / 60
        if done:
            state = "met" if minutes <= limit else "missed"
        else:
            state = "pending" if minutes <= limit else "overdue"
        out.append(Target(stage, label, limit, done, round(minutes, 1), state))
    return out


@dataclass(frozen=True)
class Engagement:
    role: str
    since_min: float  # engaged from this many minutes after the alert
    action: str
    primary: str
    backup: str

    def line(self) -> str:
        return (
            f"{self.role} (from {_minutes(self.since_min)}): {self.primary}"
            f" (backup: {self.backup}) - {self.action}"
        )


@dataclass(frozen=True)
class Escalation:
    """Who must be engaged now, from the time since the alert and the severity."""

    incident_id: str
    severity: str
    elapsed_min: float
    engage: tuple[Engagement, ...]
    next_role: str | None
    next_at_min: float | None
    resolved: bool = False

    @property
    def roles(self) -> list[str]:
        return [e.role for e in self.engage]

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident": self.incident_id,
            "severity": self.severity,
            "elapsed_min": round(self.elapsed_min, 1),
            "engage": [e.__dict__ for e in self.engage],
            "next_role": self.next_role,
            "next_at_min": self.next_at_min,
            "resolved": self.resolved,
        }

    @property
    def head(self) -> str:
        state = "resolved; engaged by then" if self.resolved else "engage now"
        return (
            f"Escalation for {self.incident_id} ({self.severity}, "
            f"{_minutes(self.elapsed_min)} since the alert): {state}"
        )

    @property
    def next_line(self) -> str | None:
        if not self.next_role or self.resolved:
            return None
        at = self.next_at_min or 0.0
        return f"next: {self.next_role} at {_minutes(at)} (in {_minutes(at - self.elapsed_min)})"

    def lines(self) -> list[str]:
        out = [self.head] + [f"  - {e.line()}" for e in self.engage]
        return out + ([f"  {self.next_line}"] if self.next_line else [])

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(e.line())}</li>" for e in self.engage)
        after = f"<p>{html.escape(self.next_line)}</p>" if self.next_line else ""
        return (
            '<div style="border:1px solid #a94442;padding:6px;margin-top:6px">'
            f"<b>{html.escape(self.head)}</b><ul>{items}</ul>{after}</div>"
        )


def _minutes(value: float) -> str:
    return f"{round(value, 1):g} min" if value < 120 else f"{value / 60:.1f} h"


def escalation(
    incident: Incident, settings: IncidentSettings, now: datetime | None = None
) -> Escalation:
    """The seed's path (0-15 min on-call, 15-30 engineering lead, 30-60 VP Engineering, 60+
    CTO) read as who must be engaged by then, cumulatively; with trading impact the
    compliance role from minute 0. After resolution: the engagement as it stood then."""
    now = as_utc(now)
    resolved = incident.resolved_at is not None and incident.resolved_at <= now
    end = incident.resolved_at if resolved and incident.resolved_at else now
    elapsed = max(0.0, (end - incident.record.opened_at).total_seconds() / 60)
    return ladder(
        settings,
        incident.record.severity,
        elapsed,
        trading_impact=incident.record.trading_impact,
        incident_id=incident.id,
        resolved=resolved,
    )


def ladder(
    settings: IncidentSettings,
    severity: str,
    elapsed_min: float,
    *,
    trading_impact: bool = False,
    incident_id: str = "",
    resolved: bool = False,
) -> Escalation:
    k = settings.stretch(severity)
    engage: list[Engagement] = []
    upcoming: list[Engagement] = []
    for level in settings.escalation:
        since = level.after_min * k
        (engage if elapsed_min >= since else upcoming).append(
            _engagement(settings, level.role, since, level.action)
        )
    if trading_impact:
        role = settings.trading_impact_role
        engage.insert(1, _engagement(settings, role, 0.0, f"Notify {role.lower()} immediately"))
    nxt = upcoming[0] if upcoming else None
    return Escalation(
        incident_id,
        settings.severity(severity).name,
        elapsed_min,
        tuple(engage),
        nxt.role if nxt else None,
        nxt.since_min if nxt else None,
        resolved,
    )


def _engagement(settings: IncidentSettings, role: str, since: float, action: str) -> Engagement:
    contact = settings.contact(role)
    if contact is None:
        return Engagement(role, since, action, "no contact in the profile (incident.contacts)", "-")
    return Engagement(role, since, action, contact.primary, contact.backup)


def escalation_for(
    incident_id: str,
    settings: IncidentSettings,
    outputs: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> Escalation | None:
    """The escalation of the open incident `incident_id`, for a runbook's verdict cell; None
    when there is no such record or it is resolved (nothing then changes in the cell)."""
    root = io.outputs_root(outputs)
    if not io.SAFE_NAME.match(incident_id) or not (root / incident_id / RECORD).is_file():
        return None
    try:
        incident = load(root, incident_id)
    except (OSError, ValueError, KeyError, TypeError, UsageError):
        return None  # an unreadable record must not take the verdict cell down
    if incident.resolved_at:
        return None
    return escalation(incident, settings, now)


@dataclass(frozen=True)
class EscalatedVerdict:
    """A verdict shown with the open incident's escalation below it; reads like the verdict."""

    verdict: Any
    escalation: Escalation

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("verdict", "escalation"):
            raise AttributeError(name)
        return getattr(self.verdict, name)

    def __repr__(self) -> str:
        return f"{self.verdict!r}\n{self.escalation!r}"

    def _repr_html_(self) -> str:
        return str(self.verdict._repr_html_()) + self.escalation._repr_html_()

    def _repr_markdown_(self) -> str:
        return str(self.verdict._repr_markdown_()) + "\n\n```\n" + repr(self.escalation) + "\n```"


# -- `irlib incident show` -------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """The incident as `show` prints it: summary, targets, escalation, timeline, evidence."""

    incident: Incident
    settings: IncidentSettings
    now: datetime

    def to_dict(self) -> dict[str, Any]:
        i = self.incident
        return {
            "record": i.record.to_dict(),
            "status": i.status,
            "stage": i.stage,
            "duration_min": round(i.duration(self.now).total_seconds() / 60, 1),
            "root_cause": i.root_cause,
            "targets": [t.to_dict() for t in targets(i, self.settings, self.now)],
            "escalation": escalation(i, self.settings, self.now).to_dict(),
            "timeline": [e.to_dict() for e in i.entries],
            "runs": [p.name for p in i.runs],
        }

    def lines(self) -> list[str]:
        i, r = self.incident, self.incident.record
        minutes = int(i.duration(self.now).total_seconds() // 60)
        out = [
            f"{r.id} [{r.severity}] {r.title}",
            f"  status: {i.status.upper()} (stage {i.stage}); opened "
            f"{r.opened_at:%Y-%m-%d %H:%M:%S} UTC by {r.opened_by}; commander {r.commander}",
            f"  duration: {minutes} min"
            + ("" if i.resolved_at else " so far")
            + ("; trading impact" if r.trading_impact else ""),
        ]
        suggested = [v.get("severity") for v in i.verdicts if v.get("severity")]
        if suggested and suggested[-1] != r.severity:
            out.append(f"  the latest verdict suggests {suggested[-1]} (opened as {r.severity})")
        if i.root_cause:
            out.append(f"  root cause: {i.root_cause}")
        out.append("Targets:")
        for t in targets(i, self.settings, self.now):
            when = f"at {t.minutes:g} min" if t.done_at else f"{t.minutes:g} min so far"
            out.append(
                f"  {t.label:<32} by {_minutes(t.target_min):<8} {t.state.upper():<8} {when}"
            )
        out += escalation(i, self.settings, self.now).lines()
        out.append("Timeline (UTC):")
        for e in i.entries:
            out.append(f"  {e.at:%H:%M:%S} [{e.stage:<11}] {e.text}" + _delivery_note(i, e))
        if i.runs:
            out.append("Evidence:")
            out += [f"  {p}" for p in i.runs]
        return out

    def __repr__(self) -> str:
        return "\n".join(self.lines())


def _delivery_note(incident: Incident, entry: Entry) -> str:
    if entry.kind != "message" or entry.data.get("channel") != "webhook":
        return ""
    d = incident.delivery(entry)
    if d is None:
        return " [delivery unknown]"
    return " [delivered]" if d.data.get("delivered") else f" [NOT delivered: {d.data.get('error')}]"
