"""What every command group of the `irlib` command line shares: the options defined once,
how an irlib error ends a command, and where progress goes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from irlib.errors import IrlibError


def errors_to_exit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An IrlibError ends the command with its `exit_code` and one clear line on stderr."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except IrlibError as e:
            click.echo(f"irlib: error: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper


def progress(msg: str) -> None:
    """Progress goes to stderr: stdout carries only what a script would consume."""
    click.echo(msg, err=True)


def notebooks_dir(notebooks: Path | None) -> Path:
    from irlib.notebooks_dir import notebooks_dir as default

    return notebooks or default()


state_dir = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The lab's state directory [default: $IRLIB_LAB_DIR or ~/.cache/irlib/lab].",
)
outputs = click.option(
    "--outputs",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outputs"),
    show_default=True,
    help="The evidence archive: runs in OUTPUTS/<incident>/, incident records in "
    "OUTPUTS/<id>/, drills in OUTPUTS/drills/.",
)
operator = click.option(
    "--operator", default=None, help="Who runs it, for the audit trail [$USER]."
)
timeout = click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help="Longest any one cell may run before the run counts as crashed.",
)
# Another copy of the notebooks (tests break one on purpose); hidden: users run the shipped ones.
notebooks = click.option(
    "--notebooks", type=click.Path(file_okay=False, path_type=Path), default=None, hidden=True
)
as_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def profile(help_text: str = "Target profile YAML [default: $IRLIB_PROFILE].") -> Any:
    """--profile, with what this command takes from it."""
    return click.option("--profile", type=click.Path(dir_okay=False), default=None, help=help_text)
