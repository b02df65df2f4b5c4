"""The seed's three communication templates (initial alert, status update, resolution) filled
from an incident record, and their delivery to a Slack-compatible webhook. Talks to the record
(irlib.incident) and to the webhook whose URL is in the env var the profile names, with a short
timeout. A failed post is recorded, never raised; the URL is a secret and is never written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from irlib import incident as inc
from irlib import transport
from irlib.errors import TargetError, UsageError
from irlib.profile import IncidentSettings

TEMPLATES = ("initial", "update", "resolution")
_IMPACT = {
    "down": "Complete outage",
    "degraded": "Degraded service, partial outage",
    "healthy": "No user impact found",
}


@dataclass(frozen=True)
class Message:
    template: str
    subject: str
    body: str
    number: int | None = None  # UPDATE n

    @property
    def text(self) -> str:
        return f"Subject: {self.subject}\n\n{self.body}"

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        """The draft as Markdown, rendered alike in JupyterLab and in the evidence HTML (not a
        preformatted block): the subject in bold, every line of the body kept as a line."""
        lines = [f"**Subject**: {self.subject}", ""]
        for line in self.body.splitlines():
            # a hard line break ("  ") keeps "Status: ...", "Impact: ..." on lines of their own
            lines.append(line if not line or line.startswith("- ") else line + "  ")
        return "\n".join(lines)


def status_word(incident: inc.Incident) -> str:
    """The seed's statuses: INVESTIGATING, then MITIGATING once the cause or a fix is known."""
    if incident.resolved_at:
        return "RESOLVED"
    if incident.done_at("investigate"):
        return "MITIGATING"
    return "INVESTIGATING"


def current_impact(incident: inc.Incident) -> str:
    """What the latest verdict says, unless a fix came after it (the seed's update: "API
    restored, monitoring for stability"); the impact given at opening before any verdict."""
    verdicts = incident.of_kind("verdict")
    fixed = incident.done_at("mitigate")
    latest = verdicts[-1] if verdicts else None
    if fixed and (latest is None or latest.at < fixed or latest.data.get("state") == "healthy"):
        return "Service restored, monitoring for stability"
    if latest is None:
        return incident.record.impact or "Under assessment"
    state = str(latest.data.get("state"))
    return f"{_IMPACT.get(state, 'Impact')}: {latest.data.get('summary')}"


def overall_impact(incident: inc.Incident) -> str:
    if incident.record.impact:
        return incident.record.impact
    worst = incident.worst_state
    if worst is None:
        return "Not assessed by any runbook"
    return _IMPACT[worst] + ("" if worst == "healthy" else " (from the runbooks' verdicts)")


def current_actions(incident: inc.Incident) -> str:
    if incident.done_at("mitigate"):
        return "Fix applied; monitoring for stability"
    cause = incident.root_cause
    if cause:
        wanted = [m for v in incident.verdicts[-1:] for m in v.get("mitigations") or []]
        return f"Root cause identified ({cause}); next: {', '.join(wanted) or 'a fix'}"
    return "Investigating root cause"


def render(
    incident: inc.Incident,
    template: str,
    settings: IncidentSettings,
    *,
    eta: str | None = None,
    review: str | None = None,
    footer: Sequence[str] = (),
) -> Message:
    """One of the seed's templates, filled from the record and the latest verdicts; `footer`
    lines follow the template's (irlib serve adds the verdict, its evidence and how to act)."""
    r = incident.record
    head = f"[{r.severity}] {settings.subject}"
    if template == "initial":
        body = [
            f"Status: {status_word(incident)}",
            f"Impact: {current_impact(incident)}",
            f"Started: {r.opened_at:%Y-%m-%d %H:%M} UTC",
            "",
            f"Incident Commander: {r.commander}",
            f"Current Actions: {current_actions(incident)}",
            f"ETA for Update: {eta or f'{settings.update_every_min:g} minutes'}",
            "",
            f"War Room: {settings.war_room}",
        ]
        body += ["", *footer] if footer else []
        return Message(template, f"{head} - {r.title}", "\n".join(body))
    if template == "update":
        number = len(incident.messages("update")) + 1
        fixes = [str(e.data.get("summary") or e.text) for e in incident.fixes]
        latest = incident.verdicts[-1].get("summary") if incident.verdicts else None
        body = [
            f"Status: {status_word(incident)}",
            f"Impact: {current_impact(incident)}",
            "",
            "Progress:",
            f"- Root cause identified: {incident.root_cause}"
            if incident.root_cause
            else "- Root cause: still investigating",
            f"- Fix applied: {'; '.join(fixes)}" if fixes else "- Fix applied: none yet",
            f"- Monitoring: {latest}" if latest else "- Monitoring: no runbook run yet",
            "",
            f"ETA for Resolution: {eta or 'to be confirmed'}",
            f"Next Update: {settings.update_every_min:g} minutes or on resolution",
        ]
        return Message(template, f"{head} - UPDATE {number}", "\n".join(body), number)
    if template == "resolution":
        resolved = incident.resolved_at
        if resolved is None:
            raise UsageError(
                f"{incident.id} is not resolved: `irlib incident resolved {incident.id}` first"
            )
        minutes = int((resolved - r.opened_at).total_seconds() // 60)
        body = [
            "Status: RESOLVED",
            f"Duration: {minutes} minutes ({r.opened_at:%H:%M} - {resolved:%H:%M} UTC)",
            f"Impact: {overall_impact(incident)}",
            "",
            f"Root Cause: {incident.root_cause or 'not identified'}",
            "",
            f"Resolution: {incident.resolution or 'see the timeline'}",
            "",
            f"Post-Incident Review: {review or 'to be scheduled'}",
        ]
        return Message(template, f"{head} - RESOLVED", "\n".join(body))
    raise UsageError(f"unknown message {template!r}; one of {', '.join(TEMPLATES)}")


def preview(
    outputs: str | os.PathLike[str],
    incident_id: str,
    template: str,
    settings: IncidentSettings,
    *,
    eta: str | None = None,
    review: str | None = None,
) -> Message:
    return render(inc.load(outputs, incident_id), template, settings, eta=eta, review=review)


@dataclass(frozen=True)
class Sent:
    message: Message
    entry: inc.Entry
    delivered: bool | None  # None: no webhook configured, kept for pasting
    error: str | None = None


def send(
    outputs: str | os.PathLike[str],
    incident_id: str,
    template: str,
    settings: IncidentSettings,
    *,
    eta: str | None = None,
    review: str | None = None,
    by: str | None = None,
    now: datetime | None = None,
    footer: Sequence[str] = (),
) -> Sent:
    """Record the message in the timeline (numbered under the timeline's lock), then post it
    to the webhook when one is configured and record whether it arrived. The lock is not held
    while posting: a slow receiver never blocks anyone else's entries."""
    url_env = settings.webhook_url_env
    url = os.environ.get(url_env) if url_env else None
    rendered: list[Message] = []

    def make(incident: inc.Incident) -> list[inc.New]:
        message = render(incident, template, settings, eta=eta, review=review, footer=footer)
        rendered.append(message)
        channel = "webhook" if url else "paste"
        label = f"UPDATE {message.number}" if message.number else template
        where = f"to the webhook (${url_env})" if url else "for pasting (no webhook configured)"
        data = {
            "template": template,
            "number": message.number,
            "subject": message.subject,
            "text": message.text,
            "channel": channel,
        }
        return [inc.New("message", f"Message {label} issued {where}: {message.subject}", data, now)]

    entry = inc.append_with(outputs, incident_id, make, by=by)[0]
    message = rendered[-1]
    if not url:
        return Sent(message, entry, None)
    error = post(url, message.text, timeout_s=settings.webhook_timeout_s, url_env=url_env or "")
    text = "Delivered" if error is None else f"NOT delivered ({error}); kept in this record"
    inc.append(
        outputs,
        incident_id,
        "delivery",
        f"{text}: {message.subject}",
        data={"message_seq": entry.seq, "delivered": error is None, "error": error},
        by=by,
    )
    return Sent(message, entry, error is None, error)


def post(url: str, text: str, *, timeout_s: float, url_env: str = "") -> str | None:
    """POST `{"text": ...}` as Slack's incoming webhooks take it; None when it arrived, else
    why not, with the URL (a secret) replaced by its env var's name."""
    try:
        answer = transport.request("POST", url, timeout_s=timeout_s, json={"text": text})
    except TargetError as e:
        return str(e).replace(url, f"${url_env}" if url_env else "[webhook]")
    except Exception as e:  # a malformed URL and the like: recorded, never raised
        return f"{type(e).__name__}: {e}".replace(url, f"${url_env}" if url_env else "[webhook]")
    if 200 <= answer.status_code < 300:
        return None
    return f"the webhook answered HTTP {answer.status_code}"
