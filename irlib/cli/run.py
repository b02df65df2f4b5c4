"""`irlib run RUNBOOK`: one runbook notebook, headless, with its evidence archived."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from irlib.cli import options


@click.command(name="run")
@click.argument("runbook")
@options.profile()
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
@options.operator
@options.outputs
@options.timeout
@options.notebooks
@options.errors_to_exit
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
    from irlib.runner import run_runbook

    result = run_runbook(
        runbook,
        profile=profile,
        incident=incident,
        params=dict(parameters),
        confirm=list(confirm),
        operator=operator,
        outputs=outputs,
        notebooks_dir=options.notebooks_dir(notebooks),
        execution_timeout_s=timeout,
        log=options.progress,
    )
    click.echo(str(result.run_dir))
    sys.exit(result.exit_code)
