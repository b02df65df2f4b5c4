"""`irlib alerts ...`: the alert rules irlib ships, for Prometheus or the Prometheus Operator."""

from __future__ import annotations

import click

from irlib.cli import options


@click.group()
def alerts() -> None:
    """Alert rules for the seed's symptoms, each labelled with the runbook that diagnoses it."""


@alerts.command(name="rules")
@click.option(
    "--emit",
    type=click.Choice(["prometheus", "prometheusrule"]),
    default="prometheus",
    show_default=True,
    help="A Prometheus rule file (rule_files), or a monitoring.coreos.com/v1 PrometheusRule.",
)
@options.profile("Names and thresholds from this profile [default: $IRLIB_PROFILE].")
@options.errors_to_exit
def alerts_rules(emit: str, profile: str | None) -> None:
    """Print the alert rules built from the profile's names and thresholds.

    \b
    irlib alerts rules --emit prometheus > irlib-rules.yml     # then: promtool check rules
    irlib alerts rules --emit prometheusrule | kubectl apply -f -

    Each alert carries the labels `runbook` and `severity` and the annotations `summary` and
    `runbook_url`; every rule's `for:` and range come from the profile's `alerts` section.
    """
    from irlib.alerts.rules import render
    from irlib.profile import load_profile

    click.echo(render(load_profile(profile), emit), nl=False)
