"""`irlib incident ...`: the incident record, its timeline, escalation, messages and
post-mortem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from irlib.cli import options


@click.group()
def incident() -> None:
    """The incident record: timeline, targets, escalation, messages, post-mortem.

    \b
    id=$(irlib incident open --severity P1 --title "API unavailable")
    irlib incident ack $id
    irlib run p1_system_unavailable --incident $id      # adds its runs to the timeline
    irlib incident message $id update --send
    irlib incident resolved $id
    irlib incident postmortem $id

    Records live in OUTPUTS/<id>/ (incident.json, timeline.jsonl); entries are only appended.
    Settings (severities, targets, escalation, contacts, webhook) come from the profile's
    `incident` section, or the seed's defaults when no profile is named.
    """


def _incident_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = options.outputs(fn)
    fn = options.profile(
        "Profile YAML with the incident settings [default: $IRLIB_PROFILE, else the seed's]."
    )(fn)
    return click.option("--by", default=None, help="Who does it, for the timeline [$USER].")(fn)


def _parse_at(value: str | None) -> Any:
    from datetime import UTC, datetime

    from irlib.errors import UsageError

    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError as e:
        raise UsageError(f"--at {value!r}: expected an ISO time, e.g. 2026-01-15T09:31Z") from e
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at  # irlib's times are UTC


@incident.command(name="open")
@click.option("--severity", required=True, help="P1 (critical) to P4 (low), as in the profile.")
@click.option("--title", required=True, help='What is wrong, e.g. "API unavailable".')
@click.option("--commander", default=None, help="Incident commander [profile, else --by].")
@click.option("--impact", default="", help="Who or what is affected, for the messages.")
@click.option("--trading-impact", is_flag=True, help="Trading is affected: engage compliance now.")
@_incident_options
@options.errors_to_exit
def incident_open(
    severity: str,
    title: str,
    commander: str | None,
    impact: str,
    trading_impact: bool,
    outputs: Path,
    profile: str | None,
    by: str | None,
) -> None:
    """Open an incident and print its id.

    The id is INC-<year>-<NNNN>, the next free number of the year; the record is
    OUTPUTS/<id>/incident.json, written once, and its timeline starts with "opened".
    """
    from irlib import incident as inc

    opened = inc.open_incident(
        outputs,
        severity=severity,
        title=title,
        settings=inc.settings_from(profile),
        commander=commander,
        trading_impact=trading_impact,
        impact=impact,
        by=by,
    )
    click.echo(opened.id)


def _stamp_command(name: str, kind: str, summary: str) -> None:
    @click.argument("incident_id", metavar="ID")
    @click.argument("text", required=False, default="")
    @_incident_options
    @options.errors_to_exit
    def command(
        incident_id: str,
        text: str,
        outputs: Path,
        profile: str | None,
        by: str | None,
        **extra: str | None,
    ) -> None:
        from irlib import incident as inc

        data = {k: v for k, v in extra.items() if v}
        entry = inc.stamp(outputs, incident_id, kind, text, data=data, by=by)
        options.progress(f"{incident_id}: {entry.text} at {entry.at:%H:%M:%S} UTC")

    command.__doc__ = f"{summary}\n\nTEXT (optional) says what happened, for the timeline."
    if kind == "resolved":
        root_cause = click.option("--root-cause", default=None, help="The root cause, in words.")
        resolution = click.option("--resolution", default=None, help="The fix applied, in words.")
        command = root_cause(resolution(command))
    incident.command(name=name)(command)


_stamp_command("ack", "acknowledged", "Stamp ID acknowledged (once; not after resolved).")
_stamp_command("mitigated", "mitigated", "Stamp ID mitigated: a fix is applied.")
_stamp_command("resolved", "resolved", "Stamp ID resolved: the incident is over.")


@incident.command(name="note")
@click.argument("incident_id", metavar="ID")
@click.argument("text")
@click.option("--root-cause", "kind", flag_value="root-cause", help="TEXT is the root cause.")
@click.option("--action-item", "kind", flag_value="action-item", help="TEXT is an action item.")
@_incident_options
@options.errors_to_exit
def incident_note(
    incident_id: str,
    text: str,
    kind: str | None,
    outputs: Path,
    profile: str | None,
    by: str | None,
) -> None:
    """Add TEXT to ID's timeline.

    Safe from several processes at once: entries are appended under a file lock.
    """
    from irlib import incident as inc

    entry = inc.note(outputs, incident_id, text, kind=kind or "note", by=by)
    options.progress(f"{incident_id}: note {entry.seq} at {entry.at:%H:%M:%S} UTC")


@incident.command(name="show")
@click.argument("incident_id", metavar="ID")
@options.as_json
@_incident_options
@options.errors_to_exit
def incident_show(
    incident_id: str, as_json: bool, outputs: Path, profile: str | None, by: str | None
) -> None:
    """Print ID: status, targets, timeline.

    Status and stage, each target met or missed, who must be engaged now, the timeline in
    time order (UTC) and the evidence folders of its runs.
    """
    from irlib import incident as inc
    from irlib.escalation import View

    view = View(inc.load(outputs, incident_id), inc.settings_from(profile), inc.utcnow())
    click.echo(json.dumps(view.to_dict(), indent=2) if as_json else repr(view))


@incident.command(name="list")
@_incident_options
@options.errors_to_exit
def incident_list(outputs: Path, profile: str | None, by: str | None) -> None:
    """One line per incident under OUTPUTS, oldest first."""
    from irlib import incident as inc

    for incident_id in inc.list_ids(outputs):
        i = inc.load(outputs, incident_id)
        r = i.record
        click.echo(f"{r.id}  {r.severity}  {i.status:<13} {r.opened_at:%Y-%m-%d %H:%M}  {r.title}")


@incident.command(name="escalation")
@click.argument("incident_id", metavar="ID")
@click.option("--at", "at", default=None, help="Another time (ISO, UTC) instead of now.")
@options.as_json
@_incident_options
@options.errors_to_exit
def incident_escalation(
    incident_id: str,
    at: str | None,
    as_json: bool,
    outputs: Path,
    profile: str | None,
    by: str | None,
) -> None:
    """Who must be engaged now, with contacts.

    The seed's escalation path from the time since ID's alert and its severity; with
    trading impact, compliance from minute 0. Contacts come from the profile.
    """
    from irlib import incident as inc
    from irlib.escalation import escalation

    esc = escalation(inc.load(outputs, incident_id), inc.settings_from(profile), _parse_at(at))
    click.echo(json.dumps(esc.to_dict(), indent=2) if as_json else repr(esc))


@incident.command(name="message")
@click.argument("incident_id", metavar="ID")
@click.argument("template", type=click.Choice(["initial", "update", "resolution"]))
@click.option("--send", is_flag=True, help="Record it (and post it to the profile's webhook).")
@click.option("--eta", default=None, help='"ETA for Update" (initial) or "for Resolution".')
@click.option("--review", default=None, help='"Post-Incident Review" (resolution).')
@_incident_options
@options.errors_to_exit
def incident_message(
    incident_id: str,
    template: str,
    send: bool,
    eta: str | None,
    review: str | None,
    outputs: Path,
    profile: str | None,
    by: str | None,
) -> None:
    """Fill the seed's TEMPLATE for ID and print it, ready to paste.

    With --send it becomes a timeline entry (updates are numbered UPDATE 1, 2, ...) and is
    posted to the webhook in the env var the profile names (incident.webhook_url_env); a
    webhook that fails is recorded as not delivered, with the error, and never blocks.
    """
    from irlib import comms
    from irlib import incident as inc

    settings = inc.settings_from(profile)
    if not send:
        preview = comms.preview(outputs, incident_id, template, settings, eta=eta, review=review)
        click.echo(preview.text)
        return
    sent = comms.send(outputs, incident_id, template, settings, eta=eta, review=review, by=by)
    click.echo(sent.message.text)
    if sent.delivered is None:
        options.progress(f"recorded (no webhook: ${settings.webhook_url_env} is not set); paste it")
    elif sent.delivered:
        options.progress("recorded and delivered to the webhook")
    else:
        options.progress(f"recorded, NOT delivered: {sent.error}")


@incident.command(name="postmortem")
@click.argument("incident_id", metavar="ID")
@click.option(
    "--replay",
    is_flag=True,
    help="Also replay each run with today's rules (OUTPUTS/ID/replays/) and show what changed.",
)
@_incident_options
@options.notebooks
@options.errors_to_exit
def incident_postmortem(
    incident_id: str,
    replay: bool,
    outputs: Path,
    profile: str | None,
    by: str | None,
    notebooks: Path | None,
) -> None:
    """Write OUTPUTS/ID/postmortem.md and .html; print their paths.

    Summary, timeline, targets, escalation, root cause and fix, action items, messages, and
    every evidence folder of ID with its manifest's hashes and the evidence chain verified;
    with --replay, each run replayed from its captures (would today's rules have seen it?).
    """
    from functools import partial

    from irlib import postmortem
    from irlib.replay import replay_incident

    replays = (
        partial(
            replay_incident, notebooks_dir=options.notebooks_dir(notebooks), log=options.progress
        )
        if replay
        else None
    )
    pm = postmortem.assemble(
        incident_id, outputs_dir=outputs, profile_path=profile, replays=replays
    )
    written = pm.write()
    if isinstance(written, postmortem.Written):
        options.progress(f"{written.verified} of {written.runs} evidence folder(s) verified")
        click.echo("\n".join(str(p) for p in written.paths))
