"""One module per scenario of the seed runbook: its steps, in the seed's order, and its verdict.

`SCENARIOS` is the registry the drills read: a new scenario registers here (its notebook is
`notebooks/<name>.ipynb`) and every drill picks it up. Entries name their class and functions
by import path, so that reading the registry imports no driver.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from irlib.errors import UsageError

if TYPE_CHECKING:
    from irlib.profile import Profile
    from irlib.results import Check, Verdict
    from irlib.runbook import Runbook


@dataclass(frozen=True)
class Scenario:
    """A scenario runbook as the drills see it."""

    name: str  # the notebook's stem and the Runbook's `name`
    title: str  # the seed's heading
    runbook: str  # "module:Class", a subclass of irlib.runbook.Runbook
    # The methods that only read, in the seed's order: all that a health drill may call.
    read_only_steps: tuple[str, ...]
    diagnose: str  # "module:function", pure: (checks by name, profile) -> Verdict
    # Lab faults this runbook must diagnose besides those whose `runbook` names it.
    also_diagnoses: tuple[str, ...] = ()
    # "module:function" (the run's parameters) -> None, raising UsageError: `irlib run` calls it
    # before anything runs, so that a bad value is exit 2, not a crashed notebook.
    validate: str | None = None

    def runbook_class(self) -> type[Runbook]:
        return _load(self.runbook)  # type: ignore[no-any-return]

    def diagnose_fn(self) -> Callable[[Mapping[str, Check], Profile], Verdict]:
        return _load(self.diagnose)  # type: ignore[no-any-return]


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    SCENARIOS[scenario.name] = scenario
    return scenario


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UsageError(
            f"unknown runbook {name!r}; scenario runbooks: {', '.join(SCENARIOS)}"
        ) from None


register(
    Scenario(
        "p1_system_unavailable",
        "P1: System Unavailable",
        "irlib.runbooks.p1_system_unavailable:SystemUnavailable",
        (
            "confirm_scope",
            "obvious_causes",
            "check_logs",
            "check_dependencies",
            "check_external_dependencies",
        ),
        "irlib.runbooks.p1_system_unavailable:diagnose",
    )
)

register(
    Scenario(
        "p1_execution_failures",
        "P1: Execution Failures",
        "irlib.runbooks.p1_execution_failures:ExecutionFailures",
        ("running_strategies", "reconcile_positions", "broker_connection", "pending_orders"),
        "irlib.runbooks.p1_execution_failures:diagnose",
        validate="irlib.runbooks.p1_execution_failures:validate_parameters",
    )
)

register(
    Scenario(
        "p2_high_latency",
        "P2: High Latency",
        "irlib.runbooks.p2_high_latency:HighLatency",
        ("identify_bottleneck", "resource_utilization"),
        "irlib.runbooks.p2_high_latency:diagnose",
    )
)

register(
    Scenario(
        "p2_calibration_failures",
        "P2: Calibration Failures",
        "irlib.runbooks.p2_calibration_failures:CalibrationFailures",
        (
            "check_service_status",
            "check_last_calibration",
            "manual_calibration_test",
            "market_data_unavailable",
            "optimization_not_converging",
        ),
        "irlib.runbooks.p2_calibration_failures:diagnose",
        validate="irlib.runbooks.p2_calibration_failures:validate_parameters",
    )
)
