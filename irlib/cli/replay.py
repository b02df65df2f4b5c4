"""`irlib replay EVIDENCE`: a run replayed from what it read, beside its original verdict."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from irlib.cli import options


@click.command(name="replay")
@click.argument(
    "evidence", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--rules",
    type=click.Choice(["current"]),
    default="current",
    show_default=True,
    help="Whose rules decide: the installed irlib's (the only ones at hand).",
)
@click.option(
    "--outputs",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the replay to OUTPUTS/<incident>/ [default: beside the original].",
)
@options.timeout
@options.notebooks
@options.errors_to_exit
def replay_command(
    evidence: tuple[Path, ...],
    rules: str,
    outputs: Path | None,
    timeout: int,
    notebooks: Path | None,
) -> None:
    """Run EVIDENCE's runbook again against what that run read, with no live system.

    \b
    irlib replay outputs/INC-2026-0042/20261205T091500Z-p1_system_unavailable
    irlib replay outputs/INC-2026-0042        (each of the incident's runs)

    No connection is attempted: every answer comes from the run's captures.jsonl, the clock is
    theirs and nothing is mitigated. A new evidence folder <UTC time>-<runbook>-replay (its
    path the line after the verdicts on stdout) holds the notebook as today's rules decide it;
    both verdicts are printed, and what changed, rule by rule.

    Several EVIDENCE folders (runs, or incidents' folders: their runs that kept captures) are
    replayed one after the other in this one process, which is much cheaper per run than one
    command each: Python, pandas and papermill are loaded once. All are checked before the
    first one runs.

    \b
    Exit codes: 0 the same verdict(s), 1 a different one, 2 not replayable (no captures),
    3 a replay crashed.
    """
    from irlib.replay import replay, runs_to_replay

    runs = runs_to_replay(list(evidence))
    codes = []
    for n, run in enumerate(runs, 1):
        if len(runs) > 1:
            options.progress(f"[{n}/{len(runs)}] {run}")
        done = replay(
            run,
            notebooks_dir=options.notebooks_dir(notebooks),
            outputs=outputs,
            execution_timeout_s=timeout,
            log=options.progress,
            # the verdicts as soon as they are known; the HTML is rendered after
            on_verdict=lambda known: click.echo(known.text()),
        )
        click.echo(str(done.result.run_dir))
        codes.append(done.exit_code)
    code = max(codes)  # the worst: 3 a crash, 1 a difference, 0 the same
    if sys.stdout is sys.__stdout__:  # the command itself, not click's test runner
        # Everything is written and closed. The interpreter's teardown of what a replay
        # imports (pandas, kubernetes, nbconvert, ...) would cost about 0.4 s of CPU more,
        # a fifth of the replay: end the process without it.
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        os._exit(code)
    sys.exit(code)
