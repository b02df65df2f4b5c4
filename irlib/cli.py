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


if __name__ == "__main__":
    main()
