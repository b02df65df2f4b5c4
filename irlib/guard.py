"""Every mutation passes here: a plan shown first, then execution only when confirmed, and an
audit record of every attempt (planned, refused, executed, failed) with operator and time.

Headless, a mitigation is confirmed only by its id in `confirm` (`--confirm rollback:api-service`);
in JupyterLab, by a click. An id that has run once never runs twice in the same session.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from irlib.errors import UsageError
from irlib.results import utcnow

# action -> (pattern of the part after "action:", what it does)
ACTIONS: dict[str, tuple[str, str]] = {
    "rollback": (
        r"(?P<target>[a-z0-9][a-z0-9.-]*)",
        "roll a deployment back to its previous revision",
    ),
    "delete-pod": (
        r"(?P<target>[a-z0-9][a-z0-9.-]*)",
        "delete a pod so its controller replaces it",
    ),
    "scale": (
        r"(?P<target>[a-z0-9][a-z0-9.-]*)=(?P<value>\d{1,3})",
        "scale a deployment to N replicas",
    ),
}


@dataclass(frozen=True)
class MitigationId:
    action: str
    target: str
    value: str | None = None

    def __str__(self) -> str:
        return f"{self.action}:{self.target}" + (f"={self.value}" if self.value else "")


def parse_mitigation_id(text: str, allowed: Iterable[str] | None = None) -> MitigationId:
    """`rollback:api-service`, `delete-pod:api-service-7d4b9-x2x`, `scale:api-service=5`."""
    action, sep, rest = text.partition(":")
    known = list(allowed) if allowed is not None else list(ACTIONS)
    if not sep or action not in known:
        raise UsageError(
            f"unknown mitigation {text!r}; mitigations look like "
            + ", ".join(f"{a}:{_example(a)}" for a in known)
        )
    m = re.fullmatch(ACTIONS[action][0], rest)
    if not m:
        raise UsageError(f"mitigation {text!r} is malformed; expected {action}:{_example(action)}")
    return MitigationId(action, m.group("target"), m.groupdict().get("value"))


def _example(action: str) -> str:
    return {"rollback": "DEPLOYMENT", "delete-pod": "POD", "scale": "DEPLOYMENT=N"}.get(
        action, "TARGET"
    )


@dataclass(frozen=True)
class Plan:
    """What a mitigation will do, shown before anything runs."""

    id: str
    summary: str
    command: str  # the kubectl/psql equivalent, for the person reading the evidence
    before: dict[str, Any] = field(default_factory=dict)
    recommended: bool = True


@dataclass(frozen=True)
class Attempt:
    id: str
    outcome: str  # planned | refused | executed | failed
    operator: str
    at: str
    summary: str
    command: str
    detail: str = ""
    confirmed_by: str = ""  # "--confirm" or "button"
    result: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Guard:
    """Holds what was confirmed and what ran; records every attempt through `record`."""

    def __init__(
        self,
        *,
        confirm: Iterable[str],
        operator: str,
        record: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.confirmed = {str(parse_mitigation_id(c)) for c in confirm}
        self.operator = operator
        self._record = record
        self.attempts: list[Attempt] = []
        self._executed: set[str] = set()

    def _log(
        self,
        plan: Plan,
        outcome: str,
        detail: str = "",
        confirmed_by: str = "",
        result: dict[str, Any] | None = None,
    ) -> Attempt:
        attempt = Attempt(
            plan.id,
            outcome,
            self.operator,
            utcnow().isoformat(),
            plan.summary,
            plan.command,
            detail,
            confirmed_by,
            result or {},
        )
        self.attempts.append(attempt)
        self._record("mitigation", attempt.to_dict())
        return attempt

    def propose(self, plan: Plan) -> Attempt:
        return self._log(plan, "planned", "shown to the operator; nothing changed yet")

    def has_run(self, mitigation_id: str) -> bool:
        return mitigation_id in self._executed

    def execute(
        self, plan: Plan, action: Callable[[], dict[str, Any]], *, clicked: bool = False
    ) -> Attempt:
        """Run `action` if the plan's id was confirmed (or clicked); record the outcome."""
        if plan.id in self._executed:
            return self._log(plan, "refused", "already executed in this run; not run twice")
        if not clicked and plan.id not in self.confirmed:
            return self._log(
                plan, "refused", f"not confirmed: pass --confirm {plan.id} (or click in JupyterLab)"
            )
        how = "button" if clicked else "--confirm"
        self._executed.add(plan.id)
        try:
            result = action()
        except Exception as e:  # a failed mitigation is recorded, then shown; never hidden
            return self._log(plan, "failed", f"{type(e).__name__}: {e}", how)
        return self._log(plan, "executed", "done", how, result)

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    k: a.to_dict()[k]
                    for k in ("at", "id", "outcome", "operator", "confirmed_by", "detail")
                }
                for a in self.attempts
            ]
        )
