"""`irlib deploy ...`: what running irlib inside a cluster takes, as manifests to apply."""

from __future__ import annotations

import os
from pathlib import Path

import click

from irlib.cli import options


@click.group()
def deploy() -> None:
    """Run irlib inside the cluster it diagnoses, with least-privilege rights."""


@deploy.command(name="manifests")
@options.profile("Target profile [default: $IRLIB_PROFILE]; shipped in the ConfigMap.")
@click.option(
    "--with-mitigations",
    is_flag=True,
    help="Also a Role for the mitigations (patch, delete, scale), bound to the same account.",
)
@click.option(
    "--with-serve",
    is_flag=True,
    help="Also irlib serve: its ServiceAccount (bound to the read roles only), evidence "
    "claim, Deployment and Service.",
)
@click.option(
    "--every", default="30m", show_default=True, metavar="PERIOD", help="The drill's period."
)
@click.option("--image", default=None, metavar="IMAGE", help="[profile drills.image]")
@options.errors_to_exit
def deploy_manifests(
    profile: str | None, with_mitigations: bool, with_serve: bool, every: str, image: str | None
) -> None:
    """Print the ServiceAccount, its Roles and bindings, the profile's ConfigMap, the evidence
    PersistentVolumeClaim and the health drill's CronJob, for `kubectl apply -f -`.

    \b
    irlib deploy manifests --profile prod.yaml | kubectl apply -f -
    kubectl auth can-i --list --as=system:serviceaccount:trading:irlib-drill -n trading

    The read Role grants exactly what the read-only checks declare (irlib/k8s/permissions.py);
    nodes and node metrics, which only a cluster can grant, are in a ClusterRole. The Secret
    holding the profile's *_env values is not printed: the header says how to create it.

    With --with-serve, `irlib serve` too, as the account irlib-serve with the same read roles
    and nothing more; its token and chat webhook URL come from that Secret, by env var.
    """
    from irlib import deploy as generate
    from irlib.profile import load_profile

    loaded = load_profile(profile)  # ProfileError (exit 2) names what is missing
    path = Path(profile or os.environ["IRLIB_PROFILE"])
    click.echo(
        generate.manifests_yaml(
            loaded,
            profile_text=path.read_text(),
            every=every,
            image=image,
            with_mitigations=with_mitigations,
            with_serve=with_serve,
        ),
        nl=False,
    )
