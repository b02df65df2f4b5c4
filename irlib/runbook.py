"""What the notebooks call: run checks concurrently under per-check timeouts, show them.

A check that raises or overruns its timeout becomes a Check with status ERROR and the reason:
a dead dependency never stops the other checks or the runbook. Threads, not asyncio, because
the drivers (kubernetes, psycopg, redis) are blocking; a check left running past its timeout
is abandoned, never waited for.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from irlib import capture, evidence, interactive
from irlib.escalation import EscalatedVerdict, escalation_for
from irlib.guard import Guard, Plan, parse_mitigation_id
from irlib.io import operator_name, utcnow
from irlib.mitigation import MitigationPanel, build_panel
from irlib.profile import load_profile
from irlib.results import Check, Status, Verdict, checks_frame

if TYPE_CHECKING:
    from irlib.archive import RunResult

DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class CheckSpec:
    """A check to run: its name and target (known before it runs) and the call itself."""

    name: str
    target: str
    call: Callable[[], Check]
    timeout_s: float = DEFAULT_TIMEOUT_S


def run_check(spec: CheckSpec) -> Check:
    """Run one check in this thread, turning an exception into an ERROR check."""
    started, t0 = utcnow(), capture.monotonic()  # a replay's durations are the original's
    try:
        result = spec.call()
    except Exception as e:  # a check must never take the runbook down with it
        return Check(
            spec.name,
            spec.target,
            Status.ERROR,
            f"{type(e).__name__}: {e}",
            duration_s=capture.monotonic() - t0,
            started_at=started,
        )
    if result.duration_s == 0.0:
        result = replace(result, duration_s=capture.monotonic() - t0, started_at=started)
    return result


def run_checks(specs: Iterable[CheckSpec], max_workers: int = 16) -> list[Check]:
    """Run checks concurrently; each returns within its own timeout, in the order given."""
    specs = list(specs)
    if not specs:
        return []
    pool = ThreadPoolExecutor(
        max_workers=min(max_workers, len(specs)), thread_name_prefix="irlib-check"
    )
    try:
        started = utcnow()
        futures: list[tuple[CheckSpec, Future[Check], float]] = [
            (s, pool.submit(run_check, s), time.monotonic()) for s in specs
        ]
        results = []
        for spec, future, t0 in futures:
            remaining = max(0.0, spec.timeout_s - (time.monotonic() - t0))
            try:
                results.append(future.result(timeout=remaining))
            except TimeoutError:
                future.cancel()
                results.append(
                    Check(
                        spec.name,
                        spec.target,
                        Status.ERROR,
                        f"no answer within {spec.timeout_s:g} s (timed out)",
                        duration_s=spec.timeout_s,
                        started_at=started,
                    )
                )
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# -- what a notebook holds: one Runbook, whose steps run checks and show them ----------------


@dataclass(frozen=True)
class Step:
    """The checks of one runbook step, shown as a table coloured by status, worst first,
    with each check's evidence folded underneath."""

    title: str
    checks: tuple[Check, ...]

    def _repr_html_(self) -> str:
        parts = [f"<h3>{html.escape(self.title)}</h3>", str(checks_frame(self.checks).to_html())]
        for check in self.checks:
            if check.evidence:
                parts.append(
                    f"<details><summary>{html.escape(check.name)}: "
                    f"{html.escape(check.summary)}</summary>"
                    + "".join(e._repr_html_() for e in check.evidence)
                    + "</details>"
                )
        return "".join(parts)

    def __repr__(self) -> str:
        lines = [self.title] + [
            f"  [{c.status.value.upper():5}] {c.name}: {c.summary}"
            for c in sorted(self.checks, key=lambda c: -c.status.rank)
        ]
        return "\n".join(lines)

    def __getitem__(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)


class Runbook:
    """The state of one runbook session: profile, guard, and the latest result of each check.

    A scenario subclasses it with one method per step of the seed runbook; notebook cells call
    those methods and nothing else. Every check and decision is recorded as evidence.
    """

    name = "runbook"
    # The guard's actions this runbook may plan and apply (irlib.guard.ACTIONS); a confirmed
    # id of any other action is refused when the runbook starts, before anything runs.
    mitigation_actions: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        profile_path: str | None = None,
        incident: str = "adhoc",
        operator: str | None = None,
        confirm: Iterable[str] = (),
        timeout_s: float | None = None,
    ) -> None:
        self.profile = load_profile(profile_path)
        self.incident = incident
        self.operator = operator_name(operator)
        self.timeout_s = timeout_s or self.profile.timeouts.check_s
        # In JupyterLab: this session's own evidence folder, as `irlib run` makes (else None).
        self.session = interactive.start(self.name, incident, self.profile, profile_path)
        self.guard = Guard(confirm=confirm, operator=self.operator, record=self.record)
        for c in self.guard.confirmed:
            parse_mitigation_id(c, allowed=self.mitigation_actions)
        self.latest: dict[str, Check] = {}
        self.started_at = utcnow()
        self.record(
            "run",
            {
                "runbook": self.name,
                "incident": incident,
                "operator": self.operator,
                "profile": self.profile.name,
                "started_at": self.started_at.isoformat(),
                **(self.session.facts() if self.session else {}),
            },
        )
        if self.session:
            from IPython.display import display

            display(self.session)  # where the evidence goes; the save hook's marker

    def record(self, kind: str, data: dict) -> None:  # type: ignore[type-arg]
        session = self.session
        evidence.record(
            kind,
            data,
            run_dir=session.run_dir if session else None,
            secret_envs=session.secret_envs if session else (),
        )

    def archive(self) -> RunResult | None:
        """Refresh an interactive session's results.json and manifest now (JupyterLab's save
        hook archives the notebook itself); None headless, where `irlib run` archives."""
        if self.session is None:
            return None
        return interactive.archive(self.session.run_dir)

    def spec(self, name: str, target: str, call: Callable[[], Check]) -> CheckSpec:
        return CheckSpec(name, target, call, timeout_s=self.timeout_s)

    def with_escalation(self, verdict: Verdict) -> Verdict | EscalatedVerdict:
        """The verdict, shown with who must be engaged now when `incident` names an open
        incident record (irlib.incident); else the verdict itself, unchanged."""
        escalation = escalation_for(self.incident, self.profile.incident)
        return verdict if escalation is None else EscalatedVerdict(verdict, escalation)

    def diagnose(self, checks: Mapping[str, Check]) -> Verdict:
        """This scenario's verdict rule over `checks`: a subclass returns its module's pure
        `diagnose(checks, profile)`, which the drills also reach through irlib.runbooks."""
        raise NotImplementedError(f"{self.name} has no verdict rule")

    def verdict(self) -> Verdict | EscalatedVerdict:
        """The scenario's diagnosis of every check so far: recorded, and shown with the
        escalation when an open incident is named."""
        verdict = self.diagnose(self.latest)
        self.record("verdict", verdict.to_dict())
        return self.with_escalation(verdict)

    # -- mitigations: a scenario with guarded writes overrides plan, apply and recheck ---------

    def plan(self, mitigation_id: str, *, recommended: bool = True) -> Plan:
        """The irlib.guard.Plan of a mitigation id: what it would do, shown before it runs."""
        raise NotImplementedError(f"{self.name} has no mitigations")

    def apply(self, plan: Plan) -> dict[str, Any]:
        """Carry a confirmed plan out (only ever called by the guard); return what it did."""
        raise NotImplementedError(f"{self.name} has no mitigations")

    def recheck(self) -> Step | None:
        """The checks that show whether an executed mitigation worked."""
        return None

    def mitigate(
        self,
        title: str,
        verdict: Verdict | EscalatedVerdict,
        *,
        actions: Iterable[str] | None = None,
        wanted: Iterable[str] = (),
    ) -> MitigationPanel:
        """A MitigationPanel (irlib.mitigation): plans for what `verdict` recommends, for
        `wanted` ids and for confirmed ids of `actions`; runs only the confirmed ones."""
        plain = verdict.verdict if isinstance(verdict, EscalatedVerdict) else verdict
        return build_panel(self, plain, title, actions=actions, wanted=wanted)

    def run_step(self, title: str, specs: Iterable[CheckSpec]) -> Step:
        checks = run_checks(specs)
        for check in checks:
            self.latest[check.name] = check
            self.record("check", {"step": title, **check.to_dict()})
        return Step(title, tuple(checks))
