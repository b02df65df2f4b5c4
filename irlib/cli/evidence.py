"""`irlib evidence ...`: what an evidence folder proves, checked after the fact."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from irlib.cli import options
from irlib.errors import UsageError


@click.group()
def evidence() -> None:
    """Check archived evidence: every file, the chain of runs, the signatures."""


@evidence.command(name="verify")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--key-env",
    default=None,
    metavar="NAME",
    help="The env var holding the signing key [default: the one each manifest names].",
)
@options.profile("Take --key-env from this profile's evidence.signing_key_env.")
@options.as_json
@options.errors_to_exit
def evidence_verify(folder: Path, key_env: str | None, profile: str | None, as_json: bool) -> None:
    """Verify the runs in FOLDER (OUTPUTS/INCIDENT, or a drill's folder).

    \b
    irlib evidence verify outputs/INC-2026-0042
    IRLIB_EVIDENCE_KEY=... irlib evidence verify outputs/INC-2026-0042 --key-env IRLIB_EVIDENCE_KEY

    Every file against its run's manifest (changed, missing, added), every manifest against
    the folder's chain.jsonl (a run changed, removed, inserted or copied in from another
    folder), every signature with its key. Prints each problem by run.

    \b
    Exit codes: 0 everything verified, 1 a problem found, 2 usage (no such folder, no run).
    """
    from irlib import chain
    from irlib.profile import load_profile

    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder of runs (OUTPUTS/INCIDENT)")
    if key_env is None and profile is not None:
        key_env = load_profile(profile).evidence.signing_key_env
    report = chain.verify(folder, key_env=key_env)
    if not report.runs:
        raise UsageError(f"{folder} holds no run folder to verify")
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.text())
    sys.exit(0 if report.ok else 1)
