"""The health drill: every read-only step of every registered scenario runbook, one profile.

`HealthDrill` runs in the health_drill notebook's kernel; `run_health_drill` executes that
notebook with the runner into OUTPUTS/drills/<date>/<time>-health/. It calls only the steps a
scenario registers as read-only, on runbooks built with nothing confirmed: it never mitigates,
whatever `confirm` says. The checks and the diagnoses are the runbooks' own code.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irlib import evidence, tables
from irlib.drills import HEALTH, HEALTH_NOTEBOOK, day_folder
from irlib.io import utcnow
from irlib.k8s import Kube
from irlib.results import Cause, Check, Health, Status, Verdict
from irlib.runbook import Step
from irlib.runbooks import SCENARIOS, Scenario, get_scenario

if TYPE_CHECKING:
    from irlib.archive import RunResult
    from irlib.runbook import Runbook

UNHEALTHY = (Status.FAIL, Status.ERROR)  # ERROR too: a check that cannot answer is no pass
_WORST = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.DOWN: 2}
COLUMNS = ["runbook", "step", "check", "target", "status", "summary", "duration_s"]


def _naming(record: Callable[[str, dict[str, Any]], None], runbook: str) -> Callable[..., None]:
    """The runbook's own `record`, each record naming the runbook: two runbooks may both have
    an "api health" check."""
    return lambda kind, data: record(kind, {"runbook": runbook, **data})


def _share_one_kube(runbooks: Iterable[Runbook]) -> None:
    """One Kubernetes connection for the drill's runbooks, which name the same cluster,
    namespace and timeout: a list one runbook read (at a platform's size, 2,000 pods or 20,000
    events) is shared with the next within LIST_FRESH_S, as a run's own steps share it."""
    shared: Kube | None = None
    for rb in runbooks:
        kube = getattr(rb, "kube", None)
        if not isinstance(kube, Kube):
            continue
        if shared is None:
            shared = kube
        elif (kube.namespace, kube.timeout_s) == (shared.namespace, shared.timeout_s):
            rb.kube = shared  # type: ignore[attr-defined]


class HealthDrill:
    """One drill session: a runbook object per scenario, run step by step, then one verdict."""

    name = HEALTH_NOTEBOOK

    def __init__(
        self,
        *,
        profile_path: str | None = None,
        incident: str = "drill",
        operator: str | None = None,
        confirm: Iterable[str] = (),
        timeout_s: float | None = None,
        runbooks: Iterable[str] = (),
    ) -> None:
        from irlib.profile import load_profile

        self.profile = load_profile(profile_path)
        self.ignored_confirm = tuple(confirm)  # shown, never used: a drill does not mitigate
        names = list(runbooks) or list(SCENARIOS)
        self.scenarios: list[Scenario] = [get_scenario(n) for n in names]
        self.runbooks: dict[str, Runbook] = {}
        for s in self.scenarios:
            rb = s.runbook_class()(
                profile_path=profile_path,
                incident=incident,
                operator=operator,
                confirm=(),
                timeout_s=timeout_s,
            )
            rb.record = _naming(rb.record, s.name)  # type: ignore[method-assign]
            self.runbooks[s.name] = rb
        _share_one_kube(self.runbooks.values())
        self.steps: dict[str, list[Step]] = {}

    def plan(self) -> Table:
        """What will run: each runbook's read-only steps. Mitigation steps are never called."""
        rows = [
            {"runbook": s.name, "title": s.title, "read-only steps": ", ".join(s.read_only_steps)}
            for s in self.scenarios
        ]
        note = f"Profile {self.profile.name}; no mitigation runs in a health drill."
        if self.ignored_confirm:
            note += f" Ignored confirm: {', '.join(self.ignored_confirm)}."
        return Table("Health drill plan", rows, note)

    def run(self) -> Steps:
        """Every read-only step of every runbook, in the registry's order."""
        for s in self.scenarios:
            rb = self.runbooks[s.name]
            steps = []
            for method in s.read_only_steps:
                step = getattr(rb, method)()
                if not isinstance(step, Step):  # a registry mistake: the drill itself is broken
                    raise TypeError(f"{s.name}.{method}() returned {type(step).__name__}")
                steps.append(step)
            self.steps[s.name] = steps
        return Steps(self.scenarios, self.steps)

    def checks(self) -> list[tuple[str, Check]]:
        return [(name, c) for name, rb in self.runbooks.items() for c in rb.latest.values()]

    def summary(self) -> Summary:
        """One table of every check of every runbook, worst first."""
        if not self.steps:
            self.run()
        order = {s.name: i for i, s in enumerate(self.scenarios)}
        rows = []
        for name, steps in self.steps.items():
            for step in steps:
                for c in step.checks:
                    rows.append({"runbook": name, "step": step.title, **c.row()})
        rows.sort(key=lambda r: (-Status(r["status"]).rank, order[r["runbook"]]))
        return Summary(rows)

    def verdict(self) -> HealthVerdict:
        """Healthy only when every runbook's own diagnosis is healthy and no check failed."""
        if not self.steps:
            self.run()
        per = []
        for s in self.scenarios:
            rb = self.runbooks[s.name]
            diagnosis = s.diagnose_fn()(rb.latest, rb.profile)
            failing = tuple(c for c in rb.latest.values() if c.status in UNHEALTHY)
            per.append(RunbookHealth(s.name, s.title, diagnosis, failing, len(rb.latest)))
        verdict = HealthVerdict.decide(per, self.ignored_confirm)
        evidence.record("verdict", verdict.to_dict())
        return verdict


@dataclass(frozen=True)
class RunbookHealth:
    name: str
    title: str
    diagnosis: Verdict
    failing: tuple[Check, ...]
    checks: int

    @property
    def healthy(self) -> bool:
        return self.diagnosis.state is Health.HEALTHY and not self.failing

    def to_dict(self) -> dict[str, Any]:
        top = self.diagnosis.top_cause
        return {
            "title": self.title,
            "state": self.diagnosis.state.value,
            "healthy": self.healthy,
            "summary": self.diagnosis.summary,
            "top_cause": top.id if top else None,
            "checks": self.checks,
            "failing": [
                {"check": c.name, "status": c.status.value, "summary": c.summary}
                for c in self.failing
            ],
        }


@dataclass(frozen=True)
class HealthVerdict:
    """The drill's verdict: a Verdict over all runbooks (what the runner's exit code reads),
    with each runbook's own diagnosis and failing checks."""

    verdict: Verdict
    runbooks: tuple[RunbookHealth, ...]
    ignored_confirm: tuple[str, ...] = ()

    @classmethod
    def decide(
        cls, per: Iterable[RunbookHealth], ignored_confirm: tuple[str, ...] = ()
    ) -> HealthVerdict:
        per = tuple(per)
        state = max(
            (r.diagnosis.state for r in per), key=lambda h: _WORST[h], default=Health.HEALTHY
        )
        if state is Health.HEALTHY and any(r.failing for r in per):
            state = Health.DEGRADED
        causes: list[Cause] = sorted(
            (c for r in per for c in r.diagnosis.causes), key=lambda c: -c.score
        )
        severities = sorted(r.diagnosis.severity for r in per if r.diagnosis.severity)
        if state is Health.HEALTHY:
            total = sum(r.checks for r in per)
            summary = f"healthy: {total} checks of {len(per)} runbook(s) passed"
        else:
            summary = "unhealthy: " + "; ".join(_problem(r) for r in per if not r.healthy)
        counts: dict[str, int] = {}
        for r in per:
            for status, n in r.diagnosis.counts.items():
                counts[status] = counts.get(status, 0) + n
        verdict = Verdict(
            state,
            summary,
            tuple(causes),
            severities[0] if severities else None,
            tuple(u for r in per for u in r.diagnosis.unanswered),
            counts,
        )
        return cls(verdict, per, ignored_confirm)

    @property
    def healthy(self) -> bool:
        return self.verdict.state is Health.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.verdict.to_dict(),
            "drill": HEALTH,
            "runbooks": {r.name: r.to_dict() for r in self.runbooks},
            "ignored_confirm": list(self.ignored_confirm),
        }

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "runbook": r.name,
                "state": r.diagnosis.state.value,
                "diagnosis": r.diagnosis.summary,
                "failing checks": ", ".join(f"{c.name} ({c.summary})" for c in r.failing),
            }
            for r in self.runbooks
        ]

    def __repr__(self) -> str:
        lines = [f"Health drill: {self.verdict.state.value.upper()} - {self.verdict.summary}"]
        lines += [f"  {r['runbook']}: {r['diagnosis']}" for r in self.rows()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.verdict._repr_html_() + tables.html_table(self.rows())


def _problem(r: RunbookHealth) -> str:
    failing = ", ".join(c.name for c in r.failing)  # their summaries are in `runbooks`
    return f"{r.name} {r.diagnosis.summary}" + (f"; failing: {failing}" if failing else "")


# -- what the notebook shows -------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A titled table of rows with a note, shown as HTML in a notebook and as text elsewhere."""

    title: str
    rows: list[dict[str, Any]]
    note: str = ""

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)

    def __repr__(self) -> str:
        return "\n".join([self.title, self.frame().to_string(index=False), self.note]).strip()

    def _repr_html_(self) -> str:
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        table = tables.html_table(self.frame()) if self.rows else "<p>(none)</p>"
        return f"<h3>{html.escape(self.title)}</h3>{table}{note}"


@dataclass(frozen=True)
class Steps:
    """Each runbook's steps, as its own notebook would show them."""

    scenarios: list[Scenario]
    steps: Mapping[str, list[Step]]

    def __repr__(self) -> str:
        out = []
        for s in self.scenarios:
            out.append(f"== {s.title} ({s.name})")
            out += [repr(step) for step in self.steps.get(s.name, [])]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        out = []
        for s in self.scenarios:
            out.append(f"<h2>{html.escape(s.title)}</h2>")
            out += [step._repr_html_() for step in self.steps.get(s.name, [])]
        return "".join(out)


@dataclass(frozen=True)
class Summary:
    """Every check of the drill in one table, worst first, coloured by status."""

    rows: list[dict[str, Any]]

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=COLUMNS)

    def __repr__(self) -> str:
        lines = ["Health drill summary (worst first)"]
        lines += [
            f"  [{r['status'].upper():5}] {r['runbook']} / {r['check']}: {r['summary']}"
            for r in self.rows
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return "<h3>Health drill summary (worst first)</h3>" + tables.html_table(self.frame())


# -- the command line's side: run the notebook -------------------------------------------------


def run_health_drill(
    *,
    profile: str | None,
    outputs: Path,
    notebooks_dir: Path,
    operator: str | None = None,
    timeout_s: float = 120,
    check_timeout_s: float | None = None,
    log: Callable[[str], None],
) -> RunResult:
    """Execute notebooks/health_drill.ipynb into OUTPUTS/drills/<UTC date>/<UTC time>-health/:
    exit code 0 healthy, 1 a check failed or could not answer, 3 the drill broke (2 is raised
    before it runs). `check_timeout_s` is each check's timeout (the notebook's `timeout_s`)."""
    from irlib.runner import run_runbook

    return run_runbook(
        HEALTH_NOTEBOOK,
        profile=profile,
        incident="drill",
        params={} if check_timeout_s is None else {"timeout_s": check_timeout_s},
        confirm=[],
        operator=operator,
        outputs=outputs,
        notebooks_dir=notebooks_dir,
        execution_timeout_s=timeout_s,
        log=log,
        parent=day_folder(outputs, utcnow()),
        label=HEALTH,
    )


def summary_lines(result: RunResult) -> list[str]:
    """What `irlib drill health` prints: the verdict, then each unhealthy runbook's failures."""
    if result.verdict is None:
        return [f"Health drill BROKE: {result.reason or 'no verdict'}"]
    v = result.verdict
    lines = [f"Health drill: {str(v.get('state')).upper()} - {v.get('summary')}"]
    for name, r in (v.get("runbooks") or {}).items():
        mark = "ok  " if r.get("healthy") else "FAIL"
        lines.append(f"  {mark} {name}: {r.get('summary')}")
        lines += [
            f"         [{f['status'].upper()}] {f['check']}: {f['summary']}"
            for f in r.get("failing") or []
        ]
    return lines
