"""Drills: the health drill, the fault drill (game day), their schedule and their history.

Against the session's lab: real `irlib drill ...` processes, real papermill runs of the
notebooks, faults injected and cleared by the lab, the CronJob applied with the real kubectl.
The registry, coverage, cron and history rules are also tested on their own, without the lab.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from irlib import run_results
from irlib.drills import history, schedule
from irlib.errors import UsageError
from irlib.lab import gameday
from irlib.lab.config import CONTROL_KEYS, PARTS
from irlib.lab.faults import FAULTS, Fault
from irlib.lab.lab import Lab
from irlib.runbooks import SCENARIOS, Scenario
from tests.helpers import ROOT, LabHandle, irlib
from tests.lab import latency_lab
from tests.lab.fault_evidence import EVIDENCE, api_health, api_pods

NOTEBOOKS = ROOT / "notebooks"
P1 = "p1_system_unavailable"
MITIGATING = {"immediate_mitigation", "plan", "apply", "recheck"}


# -- the registry and coverage, without the lab ------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS), ids=list(SCENARIOS))
def test_each_scenario_registers_existing_read_only_steps_and_a_notebook(name: str) -> None:
    scenario = SCENARIOS[name]
    cls = scenario.runbook_class()
    assert cls.name == name
    assert (NOTEBOOKS / f"{name}.ipynb").is_file()
    assert scenario.read_only_steps and not MITIGATING & set(scenario.read_only_steps)
    for step in scenario.read_only_steps:
        assert callable(getattr(cls, step)), step
    assert callable(scenario.diagnose_fn())


def test_every_lab_fault_is_claimed_by_a_runbook_with_a_notebook() -> None:
    covered, uncovered = gameday.coverage(FAULTS, NOTEBOOKS)
    assert uncovered == []
    assert set(covered) == set(FAULTS)


def _ghost(runbook: str) -> Fault:
    return Fault("ghost", "a fault from a future issue", print, print, bool, runbook=runbook)


@pytest.mark.parametrize(
    ("fault", "scenarios", "covered_by"),
    [
        (_ghost("p9_nobody"), SCENARIOS, None),
        (_ghost(P1), SCENARIOS, [P1]),
        (
            _ghost("p9_nobody"),
            {**SCENARIOS, "x": Scenario("x", "X", "m:C", ("a",), "m:f", ("ghost",))},
            None,  # claimed by x, but x has no notebook: still nobody can run it
        ),
        (
            _ghost("p9_nobody"),
            {P1: Scenario(P1, "P1", "m:C", ("a",), "m:f", also_diagnoses=("ghost",))},
            [P1],
        ),
    ],
    ids=["unclaimed", "claimed-by-its-runbook", "claimant-without-notebook", "also-diagnoses"],
)
def test_coverage_reports_a_fault_no_runnable_runbook_claims_as_uncovered(
    fault: Fault, scenarios: dict[str, Scenario], covered_by: list[str] | None
) -> None:
    covered, uncovered = gameday.coverage({"ghost": fault}, NOTEBOOKS, scenarios)
    assert covered.get("ghost") == covered_by
    assert uncovered == ([] if covered_by else ["ghost"])


# -- scheduling, without the lab -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "cron"),
    [
        ("30m", "*/30 * * * *"),
        ("1m", "* * * * *"),
        ("60m", "0 * * * *"),
        ("6h", "0 */6 * * *"),
        ("1d", "0 0 * * *"),
    ],
    ids=["30m", "1m", "60m", "6h", "1d"],
)
def test_every_period_becomes_a_cron_expression(every: str, cron: str) -> None:
    assert schedule.cron_expression(every) == cron


@pytest.mark.parametrize("every", ["45m", "7h", "0m", "soon"], ids=["45m", "7h", "0m", "words"])
def test_a_period_cron_cannot_repeat_evenly_is_refused(every: str) -> None:
    with pytest.raises(UsageError, match="--every"):
        schedule.cron_expression(every)


def test_the_crontab_line_runs_the_health_drill_with_absolute_paths(tmp_path: Path) -> None:
    line = schedule.crontab_line("15m", profile_path="p.yaml", outputs=Path("out"))
    assert line.startswith("*/15 * * * * /")
    assert " drill health --profile /" in line and "p.yaml --outputs /" in line
    assert line.endswith("cron.log 2>&1")


# -- history, without the lab: archives written as the drills write them -----------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _fault_drill(outputs: Path, at: datetime, diagnosed: bool, took: float) -> None:
    drill_dir = outputs / "drills" / f"{at:%Y-%m-%d}" / f"{at:%Y%m%dT%H%M%SZ}-faults"
    drill_dir.mkdir(parents=True)
    matrix = gameday.Matrix(drill_dir, at, [P1], ["redis-down"], [], "lab", "notebooks")
    outcome = gameday.DIAGNOSED if diagnosed else gameday.MISSED
    matrix.cells.append(gameday.Cell("redis-down", P1, outcome, None, "down", 1, took, "r"))
    (drill_dir / "matrix.json").write_text(json.dumps(matrix.to_dict()))


def _health_drill(outputs: Path, at: datetime, healthy: bool) -> None:
    run_dir = outputs / "drills" / f"{at:%Y-%m-%d}" / f"{at:%Y%m%dT%H%M%SZ}-health"
    run_dir.mkdir(parents=True)
    verdict = {"state": "healthy", "runbooks": {P1: {"healthy": healthy, "summary": "s"}}}
    results = run_results.RunResults(
        runbook="health_drill",
        incident="drill",
        operator="cron",
        started_at=at,
        finished_at=at + timedelta(seconds=30),
        duration_s=30.0,
        status=run_results.COMPLETED,
        exit_code=0 if healthy else 1,
        verdict=verdict,
    )
    run_results.write(run_dir, results, lambda value: value)


@pytest.mark.parametrize(
    ("fault_drills", "stale"),
    [
        ([(9, True, 14.0), (2, True, 12.0)], None),
        ([(9, True, 14.0), (2, False, 30.0)], "last fault drill failed"),
        ([(9, True, 14.0)], "not fault-drilled for 9.0 days (limit 7)"),
        ([], "never fault-drilled"),
    ],
    ids=["passed-recently", "last-failed", "too-long-ago", "never"],
)
def test_history_shows_passes_and_trend_and_flags_stale_runbooks(
    tmp_path: Path, fault_drills: list[tuple[int, bool, float]], stale: str | None
) -> None:
    for days_ago, diagnosed, took in fault_drills:
        _fault_drill(tmp_path, NOW - timedelta(days=days_ago), diagnosed, took)
    _health_drill(tmp_path, NOW - timedelta(days=1), healthy=True)
    _health_drill(tmp_path, NOW - timedelta(days=40), healthy=False)  # outside --days 30
    row = history.load_history(tmp_path, days=30, now=NOW).runbooks[0]
    assert row.runbook == P1
    assert len(row.outcomes) == len(fault_drills) + 1
    assert row.last_run is not None and row.last_run.at == NOW - timedelta(days=1)
    assert row.last_pass is not None and row.last_pass.kind == "health"
    assert (row.stale or "").startswith(stale) if stale else row.stale is None
    diagnosed = [took for _, ok, took in fault_drills if ok]
    assert [s for _, s in row.diagnosis_times] == diagnosed
    chart = history.TrendChart({P1: row.diagnosis_times}, 30)._repr_svg_()
    assert (chart is not None and "<polyline" in chart) == bool(diagnosed)


# -- the lab: what a drill may change, and the commands ------------------------------------------


def lab_state(lab: LabHandle) -> dict[str, Any]:
    """Everything a drill could change: specs and generations, pod names, parts, faults."""

    def items(kind: str) -> list[dict[str, Any]]:
        args = ("get", kind, "-o", "json") + (("-n", "trading") if kind != "nodes" else ())
        return json.loads(lab.kubectl(*args).stdout)["items"]

    state: dict[str, Any] = {
        kind: {
            o["metadata"]["name"]: (o.get("spec"), o["metadata"].get("generation"))
            for o in items(kind)
        }
        for kind in ("deployments", "replicasets", "statefulsets", "nodes", "cronjobs")
    }
    state["pods"] = sorted(p["metadata"]["name"] for p in items("pods"))
    status = json.loads(lab.irlib("lab", "status", "--json", check=True).stdout)
    state["parts"] = {k: v["state"] for k, v in status.items() if k != "faults"}
    state["faults"] = status["faults"]
    return state


def drill(lab: LabHandle, *args: str, timeout: float = 300) -> Any:
    """`irlib drill ...` in a real process, with the lab's exports."""
    return irlib("drill", *args, env=lab.env, timeout=timeout)


def test_health_drill_on_a_healthy_lab_exits_0_and_changes_nothing(
    lab: LabHandle, tmp_path: Path
) -> None:
    # The drill's P2 reads the API's p99 over the seed's 5 minutes: a healthy lab is one that
    # earlier tests' latency faults (tests/lab/test_p2_latency.py) have left for that long.
    latency_lab.wait_calm(lab, window="5m", timeout=330)
    before = lab_state(lab)
    result = drill(lab, "health", "--outputs", str(tmp_path))
    assert lab_state(lab) == before
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent.parent == tmp_path.resolve() / "drills"
    assert run_dir.name.endswith("Z-health")
    for name in ("notebook.ipynb", "notebook.html", "results.json", "manifest.json"):
        assert (run_dir / name).is_file()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["verdict"]["state"] == "healthy"
    assert set(results["verdict"]["runbooks"]) == set(SCENARIOS)
    assert {c["runbook"] for c in results["checks"]} == set(SCENARIOS)
    assert results["mitigations"] == []
    # one connection for all runbooks: the namespace's pods listed once, not once per runbook
    lists = [
        r["call"]["query"]
        for r in map(json.loads, (run_dir / "captures.jsonl").read_text().splitlines())
        if r["target"] == "kubernetes" and r["call"]["path"] == "/api/v1/namespaces/trading/pods"
    ]
    assert len([q for q in lists if set(q) == {"limit"}]) == 1, lists


def test_health_drill_with_redis_down_exits_1_names_redis_and_changes_nothing(
    lab: LabHandle, tmp_path: Path
) -> None:
    lab.irlib("lab", "inject", "redis-down", check=True)
    try:
        before = lab_state(lab)
        result = drill(lab, "health", "--outputs", str(tmp_path))
        after = lab_state(lab)
    finally:
        lab.irlib("lab", "clear", check=True)
    assert after == before
    assert result.returncode == 1, result.stdout + result.stderr
    summary = result.stdout.splitlines()[0]
    assert "Redis" in summary and "redis-down" in summary
    assert "[FAIL] redis ping" in result.stdout
    results = json.loads(
        (Path(result.stdout.strip().splitlines()[-1]) / "results.json").read_text()
    )
    assert results["verdict"]["causes"][0]["id"] == "redis-down"


def test_health_drill_ignores_confirm_even_for_the_recommended_rollback(
    lab: LabHandle, tmp_path: Path
) -> None:
    lab.irlib("lab", "inject", "bad-deploy", check=True)
    try:
        before = lab_state(lab)
        result = irlib(
            "run", "health_drill", "--outputs", str(tmp_path),
            "--confirm", "rollback:api-service", env=lab.env, timeout=300,
        )  # fmt: skip
        after = lab_state(lab)
    finally:
        lab.irlib("lab", "clear", check=True)
    assert after == before
    assert result.returncode == 1, result.stderr
    results = json.loads(
        (Path(result.stdout.strip().splitlines()[-1]) / "results.json").read_text()
    )
    assert results["verdict"]["causes"][0]["id"] == "bad-deploy"
    assert results["verdict"]["ignored_confirm"] == ["rollback:api-service"]
    assert results["mitigations"] == []


def test_every_fault_has_its_production_evidence() -> None:
    assert set(EVIDENCE) == set(FAULTS)


def test_fault_drill_over_every_fault_diagnoses_each_shows_each_and_archives_the_matrix(
    lab: LabHandle, tmp_path: Path, cpu_hog: list[int]
) -> None:
    """On a busy core (the `cpu_hog` fixture): a diagnosis that holds only on an idle machine
    fails here (the idle figures come from benchmarks/fault_drill_margins.py).

    The one injection of each fault in the suite that is not about its mitigation: while it is
    on, after its runbooks ran, it is also read where production shows it (tests/lab/
    fault_evidence.py, with kubectl, psql, redis-cli and HTTP), which shows too that the
    unconfirmed runs changed nothing the fault broke; the drill's clear then waits until the
    lab is healthy again. The command line around the drill is tested with one fault below.
    """
    observed = []

    def observe(fault: str) -> None:
        control = json.loads(Path(lab.state_dir, "control.json").read_text())
        assert control["faults"] == [fault]
        # every switch the fault set is one that irlib.lab.config.Control declares
        assert set(control) <= CONTROL_KEYS
        EVIDENCE[fault](lab)
        observed.append(fault)

    log: list[str] = []
    drilled = gameday.run_fault_drill(
        Lab(lab.state_dir), outputs=tmp_path, notebooks_dir=NOTEBOOKS, log=log.append,
        observe=observe,
    )  # fmt: skip
    print("\n".join(log))  # the per-fault times, for the record
    assert drilled.exit_code == 0, drilled.text()
    assert observed == list(FAULTS)
    assert f"{len(FAULTS)} fault(s): {len(FAULTS)} diagnosed" in drilled.verdict_line()
    assert all(t.error is None for t in drilled.timings), drilled.timings
    drill_dir = drilled.drill_dir
    matrix = json.loads((drill_dir / "matrix.json").read_text())
    assert matrix["faults"] == list(FAULTS) and matrix["uncovered"] == []
    for cell in matrix["cells"]:
        assert cell["outcome"] == "diagnosed" and cell["top_cause"] == cell["fault"], cell
        assert cell["time_to_verdict_s"] > 0
        assert cell["score"] is not None and cell["evidence"], cell  # its margin is recorded
        assert cell["run_dir"] in (drill_dir / "matrix.md").read_text()
        # This is the one run of each fault's own runbook in the suite (the runbook tests
        # inject a fault again only to mitigate it): its evidence, exit code, verdict and
        # severity, and that nothing ran unconfirmed.
        results = json.loads((drill_dir / cell["run_dir"] / "results.json").read_text())
        verdict = results["verdict"]
        assert cell["exit_code"] == results["exit_code"] == 1, cell
        assert verdict["causes"][0]["id"] == cell["fault"], verdict
        # The seed's severities: P2 runbooks stay P2 and degraded; the system-unavailable
        # runbook is P1 only when the API is down (a NotReady node degrades it: P2); a found
        # execution-failure cause is P1.
        states = ("degraded",) if cell["runbook"].startswith("p2_") else ("down", "degraded")
        assert verdict["state"] == cell["state"] and cell["state"] in states, verdict
        p1 = cell["state"] == "down" or cell["runbook"] == "p1_execution_failures"
        assert verdict["severity"] == ("P1" if p1 else "P2"), verdict
        assert all(m["outcome"] != "executed" for m in results["mitigations"]), results
    assert {c["fault"] for c in matrix["cells"]} == set(FAULTS)
    assert [t["fault"] for t in matrix["timings"]] == list(FAULTS)
    status = json.loads(lab.irlib("lab", "status", "--json", check=True).stdout)
    assert status["faults"] == [] and all(status[p]["state"] == "ready" for p in PARTS), status
    assert api_health(lab) == 200
    assert all(pod["status"]["phase"] == "Running" for pod in api_pods(lab))
    assert "NotReady" not in lab.kubectl("get", "nodes").stdout
    # no switch is left on: slow-query's clear paused the dashboard only while it healed
    assert json.loads(Path(lab.state_dir, "control.json").read_text()) == {
        "faults": [],
        "stopped_parts": [],
    }

    shown = json.loads(drill(lab, "history", "--outputs", str(tmp_path), "--json").stdout)
    p1 = next(r for r in shown["runbooks"] if r["runbook"] == P1)
    assert p1["stale"] is None and p1["pass rate"] == "100%"
    assert len(p1["diagnosis_times"]) == 1


BROKEN = {
    "check-always-passes": (
        "import irlib.runbooks.p1_system_unavailable as p1\n"
        "from irlib.results import Check, Status\n"
        'p1.check_ping = lambda *a, **k: Check("redis ping", "redis", Status.OK, "PONG")\n'
        "rb.check_dependencies()"
    ),
    "check-raises": (
        "import irlib.runbooks.p1_system_unavailable as p1\n"
        "p1.check_ping = lambda *a, **k: 1 / 0\n"
        "rb.check_dependencies()"
    ),
    "cell-raises": 'raise RuntimeError("broken on purpose")',
}


@pytest.mark.parametrize("breakage", list(BROKEN), ids=list(BROKEN))
def test_fault_drill_of_a_runbook_broken_on_purpose_exits_1_and_names_it(
    lab: LabHandle, tmp_path: Path, breakage: str
) -> None:
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks)
    path = notebooks / f"{P1}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.source.strip() == "rb.check_dependencies()")
    cell.source = BROKEN[breakage]
    nbformat.write(nb, path)

    result = lab.irlib(
        "drill", "faults", "--fault", "redis-down", "--outputs", str(tmp_path / "out"),
        "--notebooks", str(notebooks), timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"failing runbook(s): {P1}" in result.stdout
    matrix = json.loads((Path(result.stdout.strip().splitlines()[-1]) / "matrix.json").read_text())
    assert matrix["failed_runbooks"] == [P1] and matrix["not_diagnosed"] == ["redis-down"]
    expected = "crashed" if breakage == "cell-raises" else "missed"
    assert matrix["cells"][0]["outcome"] == expected
    assert json.loads(lab.irlib("lab", "status", "--json").stdout)["faults"] == []

    shown = drill(lab, "history", "--outputs", str(tmp_path / "out"))
    assert "last fault drill failed (missed redis-down)" in shown.stdout


def test_the_cronjob_manifest_applies_to_the_lab_and_lists_with_its_schedule(
    lab: LabHandle, tmp_path: Path
) -> None:
    result = drill(lab, "schedule", "--every", "15m", "--emit", "cronjob", "--image", "irlib:t")
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    container = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["irlib", "drill", "health"]
    assert container["image"] == "irlib:t"
    assert lab.exports["IRLIB_ADMIN_TOKEN"] not in result.stdout  # names only, never values
    path = tmp_path / "cronjob.yaml"
    path.write_text(result.stdout)
    try:
        lab.kubectl("apply", "-f", str(path))
        listed = lab.kubectl("get", "cronjob", "-n", "trading").stdout.splitlines()
        again = lab.kubectl("apply", "-f", str(path)).stdout
    finally:
        lab.kubectl("delete", "cronjob", "irlib-health-drill", "-n", "trading", check=False)
    assert listed[0].split()[:4] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND"]
    assert listed[1].startswith("irlib-health-drill") and "*/15 * * * *" in listed[1]
    assert "unchanged" in again


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("schedule", "--every", "45m"), "--every '45m'"),
        (("schedule", "--every", "30m", "--profile", "missing.yaml"), "does not exist"),
        (("health", "--profile", "missing.yaml"), "does not exist"),
        (("faults", "--fault", "no-such-fault"), "unknown fault"),
        (("faults", "--runbook", "p9_nothing"), "unknown runbook"),
    ],
    ids=["uneven-period", "schedule-no-profile", "health-no-profile", "fault", "runbook"],
)
def test_drill_commands_refuse_bad_usage_with_exit_2(
    lab: LabHandle, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    extra = ("--state-dir", lab.state_dir) if args[0] == "faults" else ()
    result = drill(lab, *args, *extra, "--outputs", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not any(tmp_path.iterdir())


def test_fault_drill_refuses_a_lab_with_a_fault_already_injected(
    lab: LabHandle, tmp_path: Path
) -> None:
    lab.irlib("lab", "inject", "node-not-ready", check=True)
    try:
        result = lab.irlib("drill", "faults", "--outputs", str(tmp_path))
        active = json.loads(lab.irlib("lab", "status", "--json").stdout)["faults"]
    finally:
        lab.irlib("lab", "clear", check=True)
    assert result.returncode == 2 and "node-not-ready" in result.stderr
    assert active == ["node-not-ready"]  # left as the operator had it
