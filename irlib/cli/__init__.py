"""The `irlib` command line: one module per command group, the options they share in
`options`.

Errors that irlib raises on purpose end the command with their `exit_code` and one clear
line on stderr; stdout carries only what a script would consume (exports, JSON, paths).
"""

from __future__ import annotations

import click

from irlib import __version__
from irlib.cli.alerts import alerts
from irlib.cli.deploy import deploy
from irlib.cli.drill import drill
from irlib.cli.evidence import evidence
from irlib.cli.incident import incident
from irlib.cli.lab import lab
from irlib.cli.replay import replay_command
from irlib.cli.run import run_command
from irlib.cli.serve import serve_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="irlib")
def main() -> None:
    """Executable incident-response runbooks for the trading platform.

    \b
    irlib run p1_system_unavailable --profile prod.yaml   one runbook, evidence archived
    irlib drill health --profile prod.yaml                every read-only check, never mitigates
    irlib incident open --severity P1 --title "API unavailable"
    irlib replay outputs/INC-2026-0042/<run>              that run again, from what it read
    irlib evidence verify outputs/INC-2026-0042           every file, chain link and signature
    irlib alerts rules --emit prometheusrule              alert rules routed to runbooks
    irlib serve --profile prod.yaml                       alerts in, read-only triage out
    irlib deploy manifests --profile prod.yaml | kubectl apply -f -    the drill in-cluster
    eval "$(irlib lab up)"                                a drill lab to practise on ([lab] extra)
    """


for command in (
    lab,
    run_command,
    replay_command,
    incident,
    drill,
    evidence,
    deploy,
    alerts,
    serve_command,
):
    main.add_command(command)

__all__ = ["main"]
