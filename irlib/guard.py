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
from irlib.io import utcnow

_NAME = r"(?P<target>[a-z0-9][a-z0-9.-]*)"  # a Kubernetes object name
_IDENT = r"[A-Za-z_][A-Za-z0-9_]{0,62}"  # a plain SQL identifier (quoted again when used)

# action -> (pattern of the part after "action:", what it does, an example for error messages).
# Patterns are strict on purpose: an id is checked here, before any runbook sees it, so a
# malformed or malicious id (SQL, shell, a path) never reaches a driver.
ACTIONS: dict[str, tuple[str, str, str]] = {
    "rollback": (_NAME, "roll a deployment back to its previous revision", "DEPLOYMENT"),
    "delete-pod": (_NAME, "delete a pod so its controller replaces it", "POD"),
    "scale": (rf"{_NAME}=(?P<value>\d{{1,3}})", "scale a deployment to N replicas", "DEPLOYMENT=N"),
    "restart": (_NAME, "rollout restart a deployment (new pods, same spec)", "DEPLOYMENT"),
    "pause-all": ("", "pause every trading strategy through the admin API", ""),
    "cancel-orders": (
        r"(?P<target>all|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})",
        "cancel the pending orders of a strategy (or all)",
        "STRATEGY|all",
    ),
    "create-index": (
        rf"(?P<target>{_IDENT})\((?P<value>{_IDENT}(?:,{_IDENT}){{0,7}})\)",
        "CREATE INDEX CONCURRENTLY on a table's columns",
        "TABLE(COLUMN,...)",
    ),
    "analyze": (rf"(?P<target>{_IDENT})", "ANALYZE a table (refresh planner statistics)", "TABLE"),
    "terminate": (r"(?P<target>[1-9][0-9]{0,9})", "terminate a PostgreSQL backend by pid", "PID"),
    "recalibrate": (
        r"(?P<target>[A-Z][A-Z0-9.]{0,11})",
        "force a Heston recalibration of a symbol",
        "SYMBOL",
    ),
}


@dataclass(frozen=True)
class MitigationId:
    action: str
    target: str = ""
    value: str | None = None

    def __str__(self) -> str:
        if not self.target:
            return self.action
        if self.action == "create-index":
            return f"{self.action}:{self.target}({self.value})"
        return f"{self.action}:{self.target}" + (f"={self.value}" if self.value else "")


def parse_mitigation_id(text: str, allowed: Iterable[str] | None = None) -> MitigationId:
    """`rollback:api-service`, `scale:api-service=5`, `pause-all`, `terminate:4242`,
    `create-index:orders(symbol,created_at)`...: checked against the action's pattern."""
    action, sep, rest = text.partition(":")
    known = list(allowed) if allowed is not None else list(ACTIONS)
    if action not in known:
        raise UsageError(
            f"unknown mitigation {text!r}; mitigations look like "
            + ", ".join(_example(a) for a in known)
        )
    pattern = ACTIONS[action][0]
    if not pattern:  # an action without a target, like pause-all
        if sep:
            raise UsageError(f"mitigation {text!r} is malformed; expected {action}")
        return MitigationId(action)
    m = re.fullmatch(pattern, rest) if sep else None
    if not m:
        raise UsageError(f"mitigation {text!r} is malformed; expected {_example(action)}")
    return MitigationId(action, m.group("target"), m.groupdict().get("value"))


def _example(action: str) -> str:
    example = ACTIONS[action][2]
    return f"{action}:{example}" if example else action


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
