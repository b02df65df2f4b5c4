"""Named faults of the drill lab: each breaks the platform the way one real cause would.

A fault is named after the cause a runbook must diagnose and says which runbook that is.
Adding one is local: write its inject/clear (and what makes it visible) in its runbook's fault
module, built from irlib.lab.fault_kit, and append it to that module's FAULTS. This module
injects and clears them.
"""

from __future__ import annotations

from functools import partial

from irlib.errors import LabNotRunning, UsageError
from irlib.lab import faults_calibration, faults_execution, faults_latency, faults_unavailable
from irlib.lab.config import Control, read_control, update_control
from irlib.lab.fault_kit import Fault, kube, wait
from irlib.lab.lab import PARTS_BY_NAME, Lab

__all__ = ["FAULTS", "Fault", "active_faults", "clear", "get_fault", "healthy", "inject"]
# Every fault by name, in the seed's order of its runbooks (`irlib lab faults`, every drill).
MODULES = (faults_unavailable, faults_execution, faults_latency, faults_calibration)
FAULTS: dict[str, Fault] = {fault.name: fault for module in MODULES for fault in module.FAULTS}


def get_fault(name: str) -> Fault:
    try:
        return FAULTS[name]
    except KeyError:
        raise UsageError(f"unknown fault {name!r}; known faults: {', '.join(FAULTS)}") from None


def active_faults(lab: Lab) -> list[str]:
    return list(read_control(lab.config).get("faults", []))


def inject(lab: Lab, name: str, timeout: float = 45.0) -> bool:
    """Break the lab with fault `name`; False when it was already injected."""
    fault = get_fault(name)
    if not lab.is_up():
        raise LabNotRunning(
            f"the lab in {lab.state_dir} is not running: start it with `irlib lab up`"
        )
    if name in active_faults(lab):
        return False
    fault.inject(lab)
    update_control(lab.config, partial(_remember, fault))
    wait(f"fault {name} to show", lambda: fault.visible(lab), timeout + _size_allowance(lab))
    return True


def clear(lab: Lab, name: str | None = None, timeout: float = 60.0) -> list[str]:
    """Heal fault `name`, or every active fault; returns what was cleared."""
    if name is not None:
        get_fault(name)
    if not lab.is_up():
        raise LabNotRunning(f"the lab in {lab.state_dir} is not running")
    names = [n for n in active_faults(lab) if name in (None, n)]
    for n in names:
        FAULTS[n].clear(lab)
        update_control(lab.config, partial(_forget, FAULTS[n]))
    if names:
        wait("the lab to be healthy again", lambda: healthy(lab), timeout + _size_allowance(lab))
    return names


def _size_allowance(lab: Lab) -> float:
    """Extra seconds to wait in a big lab: a rollout of 2,000 pods takes the controller more
    passes than one of 3 (a second per 20 pods)."""
    return lab.config.size.pods() / 20


def healthy(lab: Lab) -> bool:
    """Every part answers well and every pod of the namespace is ready."""
    status = lab.status()
    if any(status[p]["state"] != "ready" for p in PARTS_BY_NAME):
        return False
    pods = kube(lab, "GET", f"/api/v1/namespaces/{lab.config.namespace}/pods").json()["items"]
    return all(_pod_ready(p) for p in pods)


def _pod_ready(pod: dict) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _remember(fault: Fault, control: Control) -> None:
    control.setdefault("faults", []).append(fault.name)
    if fault.stops:  # so that `irlib lab up` does not heal it (irlib.lab.lab)
        control.setdefault("stopped_parts", []).append(fault.stops)


def _forget(fault: Fault, control: Control) -> None:
    control["faults"].remove(fault.name)
    if fault.stops:
        control["stopped_parts"].remove(fault.stops)
