"""`irlib replay EVIDENCE`: a run replayed from what it read, beside its original verdict."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from irlib.cli import options


@click.command(name="replay")
@click.argument("evidence", type=click.Path(file_okay=False, path_type=Path))
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
    evidence: Path, rules: str, outputs: Path | None, timeout: int, notebooks: Path | None
) -> None:
    """Run EVIDENCE's runbook again against what that run read, with no live system.

    \b
    irlib replay outputs/INC-2026-0042/20261205T091500Z-p1_system_unavailable

    No connection is attempted: every answer comes from the run's captures.jsonl, the clock is
    theirs and nothing is mitigated. A new evidence folder <UTC time>-<runbook>-replay (its
    path the last line of stdout) holds the notebook as today's rules decide it; both verdicts
    are printed, and what changed, rule by rule.

    \b
    Exit codes: 0 the same verdict, 1 a different one, 2 not replayable (no captures),
    3 the replay crashed.
    """
    from irlib.replay import replay

    done = replay(
        evidence,
        notebooks_dir=options.notebooks_dir(notebooks),
        outputs=outputs,
        execution_timeout_s=timeout,
        log=options.progress,
        # the verdicts as soon as they are known; the HTML is rendered after
        on_verdict=lambda known: click.echo(known.text()),
    )
    click.echo(str(done.result.run_dir))
    if sys.stdout is sys.__stdout__:  # the command itself, not click's test runner
        # Everything is written and closed. The interpreter's teardown of what a replay
        # imports (pandas, kubernetes, nbconvert, ...) would cost about 0.4 s of CPU more,
        # a fifth of the replay: end the process without it.
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        os._exit(done.exit_code)
    sys.exit(done.exit_code)
