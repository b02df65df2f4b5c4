"""The `irlib` command line: `irlib lab ...` drives the drill lab.

Errors that irlib raises on purpose end the command with their `exit_code` and one clear
line on stderr; stdout carries only what a script would consume (exports, JSON).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from irlib import __version__
from irlib.errors import IrlibError


def _errors_to_exit(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except IrlibError as e:
            click.echo(f"irlib: error: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper


def _progress(msg: str) -> None:
    click.echo(msg, err=True)


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The lab's state directory [default: $IRLIB_LAB_DIR or ~/.cache/irlib/lab].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="irlib")
def main() -> None:
    """Executable incident-response runbooks for the trading platform.

    Start with `irlib lab up` to get a drill lab to practise on.
    """


@main.group()
def lab() -> None:
    """The drill lab: a trading platform on loopback, built from real servers.

    \b
    eval "$(irlib lab up)"     start it and export KUBECONFIG, IRLIB_PROFILE, tokens
    irlib lab inject bad-deploy
    kubectl get pods -n trading
    irlib lab clear
    irlib lab down
    """


def _lab(state_dir: Path | None) -> Any:
    from irlib.lab.lab import Lab

    return Lab(state_dir, log=_progress)


@lab.command()
@state_dir_option
@_errors_to_exit
def up(state_dir: Path | None) -> None:
    """Start every part (idempotent), wait until ready, print shell exports."""
    the_lab = _lab(state_dir)
    click.echo(the_lab.format_exports(the_lab.up()), nl=False)


@lab.command()
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_errors_to_exit
def status(state_dir: Path | None, as_json: bool) -> None:
    """Each part of the lab with its state and address, and the active faults."""
    the_lab = _lab(state_dir)
    st = the_lab.status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    for name, part in st.items():
        if name == "faults":
            continue
        address = next(v for k, v in part.items() if k not in ("state", "pid"))
        click.echo(f"{name:<12} {part['state']:<14} {address}")
    click.echo(f"faults       {', '.join(st['faults']) or 'none'}")


@lab.command()
@_errors_to_exit
def faults() -> None:
    """List the faults the lab can inject, one line each."""
    from irlib.lab.faults import FAULTS

    width = max(len(n) for n in FAULTS)
    for f in FAULTS.values():
        click.echo(f"{f.name:<{width}}  {f.summary}  [{f.runbook}]")


@lab.command()
@click.argument("name")
@state_dir_option
@_errors_to_exit
def inject(name: str, state_dir: Path | None) -> None:
    """Break the lab with fault NAME (see `irlib lab faults`) and wait until it shows."""
    from irlib.lab import faults as lab_faults

    lab_faults.get_fault(name)  # an unknown name is refused before anything else
    if lab_faults.inject(_lab(state_dir), name):
        _progress(f"injected {name}")
    else:
        _progress(f"{name} is already injected")


@lab.command()
@click.argument("name", required=False)
@state_dir_option
@_errors_to_exit
def clear(name: str | None, state_dir: Path | None) -> None:
    """Heal fault NAME, or every active fault, and wait until the lab is healthy."""
    from irlib.lab import faults as lab_faults

    cleared = lab_faults.clear(_lab(state_dir), name)
    _progress(f"cleared {', '.join(cleared)}" if cleared else "no active fault to clear")


@lab.command()
@state_dir_option
@click.option("--purge", is_flag=True, help="Also delete the lab's data and state directory.")
@_errors_to_exit
def down(state_dir: Path | None, purge: bool) -> None:
    """Stop every part of the lab by pid (idempotent)."""
    _lab(state_dir).down(purge=purge)


@main.command(name="run")
@click.argument("runbook")
@click.option(
    "--profile",
    "profile",
    type=click.Path(dir_okay=False),
    default=None,
    help="Target profile YAML [default: $IRLIB_PROFILE].",
)
@click.option("--incident", default=None, help="Incident id; names the evidence folder [adhoc].")
@click.option(
    "-p",
    "--parameter",
    "parameters",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="Set a notebook parameter; checked against the notebook's parameters cell. Repeatable.",
)
@click.option(
    "--confirm",
    multiple=True,
    metavar="ID",
    help="Execute this mitigation (planned and recorded first). Without it nothing changes.",
)
@click.option("--operator", default=None, help="Who runs it, for the audit trail [$USER].")
@click.option(
    "--outputs",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outputs"),
    show_default=True,
    help="The evidence archive.",
)
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help="Longest any one cell may run before the run counts as crashed.",
)
@click.option(
    "--notebooks",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    hidden=True,
)
@_errors_to_exit
def run_command(
    runbook: str,
    profile: str | None,
    incident: str | None,
    parameters: tuple[tuple[str, str], ...],
    confirm: tuple[str, ...],
    operator: str | None,
    outputs: Path,
    timeout: int,
    notebooks: Path | None,
) -> None:
    """Run runbook notebook RUNBOOK headless and archive its evidence.

    \b
    irlib run p1_system_unavailable --profile lab.yaml --incident INC-2026-0042 \\
        -p timeout_s 3 --confirm rollback:api-service

    The executed notebook, its HTML, results.json and manifest.json land in
    OUTPUTS/INCIDENT/<UTC time>-RUNBOOK/, whose path is the last line of stdout.
    Secrets are never parameters: name their environment variable (e.g. admin_token_env).

    \b
    Exit codes: 0 healthy, 1 a problem found, 2 usage or profile error (nothing ran),
    3 the runbook crashed (cell error, timeout, dead kernel; the partial notebook is kept).
    """
    import irlib
    from irlib.runner import run_runbook

    result = run_runbook(
        runbook,
        profile=profile,
        incident=incident,
        params=dict(parameters),
        confirm=list(confirm),
        operator=operator,
        outputs=outputs,
        notebooks_dir=notebooks or Path(irlib.__file__).parent.parent / "notebooks",
        execution_timeout_s=timeout,
        log=_progress,
    )
    click.echo(str(result.run_dir))
    sys.exit(result.exit_code)


# -- irlib incident ... ------------------------------------------------------------------------


@main.group()
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
    fn = click.option(
        "--outputs",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("outputs"),
        show_default=True,
        help="The evidence archive holding the incidents (as for `irlib run`).",
    )(fn)
    fn = click.option(
        "--profile",
        type=click.Path(dir_okay=False),
        default=None,
        help="Profile YAML with the incident settings [default: $IRLIB_PROFILE, else the seed's].",
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
@_errors_to_exit
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
    @_errors_to_exit
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
        _progress(f"{incident_id}: {entry.text} at {entry.at:%H:%M:%S} UTC")

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
@_errors_to_exit
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
    _progress(f"{incident_id}: note {entry.seq} at {entry.at:%H:%M:%S} UTC")


@incident.command(name="show")
@click.argument("incident_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_incident_options
@_errors_to_exit
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
@_errors_to_exit
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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_incident_options
@_errors_to_exit
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
@_errors_to_exit
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
        _progress(f"recorded (no webhook: ${settings.webhook_url_env} is not set); paste it")
    elif sent.delivered:
        _progress("recorded and delivered to the webhook")
    else:
        _progress(f"recorded, NOT delivered: {sent.error}")


@incident.command(name="postmortem")
@click.argument("incident_id", metavar="ID")
@_incident_options
@_errors_to_exit
def incident_postmortem(
    incident_id: str, outputs: Path, profile: str | None, by: str | None
) -> None:
    """Write OUTPUTS/ID/postmortem.md and .html; print their paths.

    Summary, timeline, targets, escalation, root cause and fix, action items, messages, and
    every evidence folder of ID with its manifest's hashes verified.
    """
    from irlib import postmortem

    pm = postmortem.assemble(incident_id, outputs_dir=outputs, profile_path=profile)
    written = pm.write()
    if isinstance(written, postmortem.Written):
        _progress(f"{written.verified} of {written.runs} evidence folder(s) verified")
        click.echo("\n".join(str(p) for p in written.paths))


# -- irlib drill ... ---------------------------------------------------------------------------


@main.group()
def drill() -> None:
    """Drills: prove that every runbook still works, on a schedule and on the lab.

    \b
    irlib drill health --profile prod.yaml    every read-only check of every runbook
    irlib drill faults                        game day: break the lab, check each diagnosis
    irlib drill schedule --every 30m --emit cronjob | kubectl apply -f -
    irlib drill history --days 30             per runbook: passes, time to diagnosis, stale

    Drills archive under OUTPUTS/drills/<UTC date>/<UTC time>-<health|faults>/.
    """


_drill_outputs = click.option(
    "--outputs",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outputs"),
    show_default=True,
    help="The evidence archive (as for `irlib run`); drills go to OUTPUTS/drills/.",
)
_drill_notebooks = click.option(
    "--notebooks", type=click.Path(file_okay=False, path_type=Path), default=None, hidden=True
)
_drill_timeout = click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help="Longest any one cell may run before a run counts as crashed.",
)


def _drill_profile(help_text: str) -> Callable[..., Any]:
    return click.option("--profile", type=click.Path(dir_okay=False), default=None, help=help_text)


def _notebooks_dir(notebooks: Path | None) -> Path:
    import irlib

    return notebooks or Path(irlib.__file__).parent.parent / "notebooks"


def _optional_profile(path: str | None) -> Any:
    """The profile at `path` or $IRLIB_PROFILE; None when neither is set."""
    import os

    from irlib.profile import load_profile

    path = path or os.environ.get("IRLIB_PROFILE") or None
    return load_profile(path) if path else None


@drill.command(name="health")
@_drill_profile("Target profile YAML [default: $IRLIB_PROFILE].")
@click.option("--operator", default=None, help="Who runs it, for the audit trail [$USER].")
@_drill_outputs
@_drill_timeout
@click.option(
    "--check-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Each check's timeout (the notebook's timeout_s) [default: 5]. A check that gets "
    "no answer in time counts as failing, never as passing.",
)
@_drill_notebooks
@_errors_to_exit
def drill_health(
    profile: str | None,
    operator: str | None,
    outputs: Path,
    timeout: int,
    check_timeout: float | None,
    notebooks: Path | None,
) -> None:
    """Run every read-only check of every scenario runbook; never mitigates.

    Executes notebooks/health_drill.ipynb with papermill into
    OUTPUTS/drills/<UTC date>/<UTC time>-health/ (notebook, HTML, results.json,
    manifest.json), prints the summary (worst first), then that folder's path.

    \b
    Exit codes: 0 all healthy, 1 a check failed or could not answer, 2 usage or profile
    error (nothing ran), 3 the drill itself broke (its partial notebook is kept).
    """
    from irlib.drills.health import run_health_drill, summary_lines

    result = run_health_drill(
        profile=profile,
        outputs=outputs,
        notebooks_dir=_notebooks_dir(notebooks),
        operator=operator,
        timeout_s=timeout,
        check_timeout_s=check_timeout,
        log=_progress,
    )
    click.echo("\n".join(summary_lines(result)))
    click.echo(str(result.run_dir))
    sys.exit(result.exit_code)


@drill.command(name="faults")
@click.option(
    "--fault",
    "fault_names",
    multiple=True,
    metavar="NAME",
    help="Drill only this fault (see `irlib lab faults`). Repeatable. [every fault]",
)
@click.option(
    "--runbook",
    "runbook_names",
    multiple=True,
    metavar="NAME",
    help="Run only this runbook, on the faults it claims. Repeatable. [every claimant]",
)
@state_dir_option
@_drill_outputs
@_drill_timeout
@_drill_notebooks
@_errors_to_exit
def drill_faults(
    fault_names: tuple[str, ...],
    runbook_names: tuple[str, ...],
    state_dir: Path | None,
    outputs: Path,
    timeout: int,
    notebooks: Path | None,
) -> None:
    """Game day on the lab: inject each fault, run the runbook(s) that must diagnose it,
    check that the verdict's top cause is that fault, clear it, move on.

    Uses the running lab named by --state-dir, or starts one there and stops it afterwards.
    Progress goes to stderr; the coverage matrix (fault x runbook: diagnosed or not, time
    from injection to verdict) and the total time to stdout, and with every run's folder to
    OUTPUTS/drills/<UTC date>/<UTC time>-faults/ (matrix.json, matrix.md), whose path is
    the last line.

    \b
    Exit codes: 0 every fault diagnosed, 1 a fault not diagnosed or uncovered (no runbook
    claims it), 2 usage error or a fault already injected, 3 the lab failed the drill.
    """
    from irlib.lab.gameday import lab_for_drill, run_fault_drill

    with lab_for_drill(state_dir, _progress) as the_lab:
        matrix = run_fault_drill(
            the_lab,
            outputs=outputs,
            notebooks_dir=_notebooks_dir(notebooks),
            faults=fault_names,
            runbooks=runbook_names,
            timeout_s=timeout,
            log=_progress,
        )
    click.echo(matrix.text())
    click.echo(str(matrix.drill_dir))
    sys.exit(matrix.exit_code)


@drill.command(name="schedule")
@click.option(
    "--every",
    required=True,
    metavar="PERIOD",
    help="How often: 15m, 30m, 1h, 6h, 1d (a divisor of an hour or of a day).",
)
@click.option(
    "--emit",
    type=click.Choice(["crontab", "cronjob"]),
    default="crontab",
    show_default=True,
    help="A crontab line, or a Kubernetes CronJob manifest.",
)
@_drill_profile(
    "Target profile [default: $IRLIB_PROFILE]: the crontab runs with it; the CronJob takes "
    "its namespace, secrets' env names and `drills` settings."
)
@click.option(
    "--image",
    default=None,
    metavar="IMAGE",
    help="The CronJob's image [profile drills.image, else registry.example.com/trading/"
    "irlib:VERSION].",
)
@_drill_outputs
@_errors_to_exit
def drill_schedule(
    every: str, emit: str, profile: str | None, image: str | None, outputs: Path
) -> None:
    """Print a crontab line, or a CronJob manifest, that runs the health drill every PERIOD.

    \b
    irlib drill schedule --every 30m --profile /etc/irlib/prod.yaml | crontab -
    irlib drill schedule --every 30m --emit cronjob | kubectl apply -f -

    The CronJob runs `irlib drill health --profile /etc/irlib/profile.yaml --outputs
    /evidence` with the profile from a ConfigMap, the evidence on a PersistentVolumeClaim and
    the secrets from a Secret (by name; the manifest's header says which).
    """
    from irlib.drills import schedule
    from irlib.errors import UsageError

    loaded = _optional_profile(profile)
    if emit == "cronjob":
        click.echo(schedule.cronjob_yaml(schedule.cronjob_spec(every, loaded, image)), nl=False)
        return
    if loaded is None:
        raise UsageError("cron passes no environment: name the profile with --profile PATH")
    import os

    path = profile or os.environ["IRLIB_PROFILE"]
    click.echo(schedule.crontab_line(every, profile_path=path, outputs=outputs))


@drill.command(name="history")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="N",
    help="How many days back to read [profile drills.history_days: 30].",
)
@_drill_profile(
    "Profile with the staleness limit, drills.stale_after_days [default: $IRLIB_PROFILE, "
    "else 7 days]."
)
@_drill_outputs
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_errors_to_exit
def drill_history(days: float | None, profile: str | None, outputs: Path, as_json: bool) -> None:
    """Per runbook: last run, last pass, pass rate, time to diagnosis trend; flags stale ones.

    Reads the archived drills under OUTPUTS/drills/. A runbook is stale when its last fault
    drill failed, or when no fault drill ran it within the profile's drills.stale_after_days.
    """
    from irlib.drills.history import load_history

    history = load_history(outputs, days=days, profile=_optional_profile(profile))
    click.echo(json.dumps(history.to_dict(), indent=2) if as_json else repr(history))


if __name__ == "__main__":
    main()
