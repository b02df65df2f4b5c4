"""`irlib lab ...`: start, break, heal and stop the drill lab (the `lab` extra)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from irlib.cli import options

if TYPE_CHECKING:
    from irlib.lab.lab import Lab


@click.group()
@options.errors_to_exit
def lab() -> None:
    """The drill lab: a trading platform on loopback, built from real servers.

    \b
    eval "$(irlib lab up)"     start it and export KUBECONFIG, IRLIB_PROFILE, tokens
    irlib lab inject bad-deploy
    kubectl get pods -n trading
    irlib lab clear
    irlib lab down

    Needs the `lab` extra (pip install 'irlib[lab]'); `make setup` installs it.
    """
    from irlib.lab import require_extra

    require_extra()


def _lab(state_dir: Path | None) -> Lab:
    from irlib.lab.lab import Lab

    return Lab(state_dir, log=options.progress)


@lab.command()
@options.state_dir
@click.option(
    "--nodes", type=int, default=None, help="Nodes of the cluster [3; sized to fit the pods]."
)
@click.option("--api-replicas", type=int, default=None, help="api-service pods [3].")
@click.option(
    "--events",
    type=int,
    default=None,
    help="Events of history over the last hour, mostly Normal, and pod logs to match [0].",
)
@options.errors_to_exit
def up(
    state_dir: Path | None, nodes: int | None, api_replicas: int | None, events: int | None
) -> None:
    """Start every part (idempotent), wait until ready, print shell exports.

    \b
    irlib lab up --nodes 40 --api-replicas 2000 --events 20000
    A bad size exits 2 and starts nothing; a running lab keeps its size."""
    from irlib.lab.size import LabSize

    size = None
    if (nodes, api_replicas, events) != (None, None, None):
        default = LabSize()
        size = LabSize(
            default.nodes if nodes is None else nodes,
            default.api_replicas if api_replicas is None else api_replicas,
            default.events if events is None else events,
        )
        size.shape()  # a size that cannot be built: exit 2 before anything starts
    the_lab = _lab(state_dir)
    click.echo(the_lab.format_exports(the_lab.up(size)), nl=False)


@lab.command()
@options.state_dir
@options.as_json
@options.errors_to_exit
def status(state_dir: Path | None, as_json: bool) -> None:
    """Each part of the lab with its state and address, and the active faults; a part
    `degraded` lists what fails inside it (the Kubernetes API's controller loops)."""
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
        for p in part.get("problems") or []:  # e.g. a controller loop failing on one object
            click.echo(
                f"{'':<12}   {p['loop']} loop failing on {p['object']}: {p['error']} "
                f"({p['count']} time(s))"
            )
    click.echo(f"faults       {', '.join(st['faults']) or 'none'}")


@lab.command()
@options.errors_to_exit
def faults() -> None:
    """List the faults the lab can inject, one line each."""
    from irlib.lab.faults import FAULTS

    width = max(len(n) for n in FAULTS)
    for f in FAULTS.values():
        click.echo(f"{f.name:<{width}}  {f.summary}  [{f.runbook}]")


@lab.command()
@click.argument("name")
@options.state_dir
@options.errors_to_exit
def inject(name: str, state_dir: Path | None) -> None:
    """Break the lab with fault NAME (see `irlib lab faults`) and wait until it shows."""
    from irlib.lab import faults as lab_faults

    lab_faults.get_fault(name)  # an unknown name is refused before anything else
    if lab_faults.inject(_lab(state_dir), name):
        options.progress(f"injected {name}")
    else:
        options.progress(f"{name} is already injected")


@lab.command()
@click.argument("name", required=False)
@options.state_dir
@options.errors_to_exit
def clear(name: str | None, state_dir: Path | None) -> None:
    """Heal fault NAME, or every active fault, and wait until the lab is healthy."""
    from irlib.lab import faults as lab_faults

    cleared = lab_faults.clear(_lab(state_dir), name)
    options.progress(f"cleared {', '.join(cleared)}" if cleared else "no active fault to clear")


@lab.command()
@options.state_dir
@click.option("--purge", is_flag=True, help="Also delete the lab's data and state directory.")
@options.errors_to_exit
def down(state_dir: Path | None, purge: bool) -> None:
    """Stop every part of the lab by pid (idempotent)."""
    _lab(state_dir).down(purge=purge)
