"""`irlib drill ...`: the health drill, the fault drill (game day), their schedule and their
history."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from irlib.cli import options


@click.group()
def drill() -> None:
    """Drills: prove that every runbook still works, on a schedule and on the lab.

    \b
    irlib drill health --profile prod.yaml    every read-only check of every runbook
    irlib drill faults                        game day: break the lab, check each diagnosis
    irlib drill schedule --every 30m --emit cronjob | kubectl apply -f -
    irlib drill history --days 30             per runbook: passes, time to diagnosis, stale

    Drills archive under OUTPUTS/drills/<UTC date>/<UTC time>-<health|faults>/.
    """


def _optional_profile(path: str | None) -> Any:
    """The profile at `path` or $IRLIB_PROFILE; None when neither is set."""
    import os

    from irlib.profile import load_profile

    path = path or os.environ.get("IRLIB_PROFILE") or None
    return load_profile(path) if path else None


@drill.command(name="health")
@options.profile()
@options.operator
@options.outputs
@options.timeout
@click.option(
    "--check-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Each check's timeout (the notebook's timeout_s) [default: 5]. A check that gets "
    "no answer in time counts as failing, never as passing.",
)
@options.notebooks
@options.errors_to_exit
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
        notebooks_dir=options.notebooks_dir(notebooks),
        operator=operator,
        timeout_s=timeout,
        check_timeout_s=check_timeout,
        log=options.progress,
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
@options.state_dir
@options.outputs
@options.timeout
@options.notebooks
@options.errors_to_exit
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
    from irlib.lab import require_extra

    require_extra()
    from irlib.lab.gameday import lab_for_drill, run_fault_drill

    with lab_for_drill(state_dir, options.progress) as the_lab:
        matrix = run_fault_drill(
            the_lab,
            outputs=outputs,
            notebooks_dir=options.notebooks_dir(notebooks),
            faults=fault_names,
            runbooks=runbook_names,
            timeout_s=timeout,
            log=options.progress,
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
@options.profile(
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
@options.outputs
@options.errors_to_exit
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
@options.profile(
    "Profile with the staleness limit, drills.stale_after_days [default: $IRLIB_PROFILE, "
    "else 7 days]."
)
@options.outputs
@options.as_json
@options.errors_to_exit
def drill_history(days: float | None, profile: str | None, outputs: Path, as_json: bool) -> None:
    """Per runbook: last run, last pass, pass rate, time to diagnosis trend; flags stale ones.

    Reads the archived drills under OUTPUTS/drills/. A runbook is stale when its last fault
    drill failed, or when no fault drill ran it within the profile's drills.stale_after_days.
    """
    from irlib.drills.history import load_history

    history = load_history(outputs, days=days, profile=_optional_profile(profile))
    click.echo(json.dumps(history.to_dict(), indent=2) if as_json else repr(history))
