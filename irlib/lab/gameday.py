"""The fault drill (game day): inject each lab fault, run the runbooks that must diagnose it,
check that each verdict's top cause is that fault, clear it; archive the coverage matrix.
Talks to the lab (faults.py), the runner (a papermill run per fault and runbook) and its own
folder OUTPUTS/drills/<date>/<time>-faults/. It must leave the lab as it found it: every fault
it injects is cleared, even on Ctrl-C.

Each run gets a kernel of its own (irlib.kernels), warmed while the lab injects or clears a
fault, which is mostly waiting: a run then costs its checks' time, not a kernel's start and
the runbooks' imports (about 3 s on a quiet machine, three times that beside a CPU hog).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from irlib import evidence, io, runner
from irlib.archive import RunResult, make_run_dir
from irlib.drills import FAULTS, MATRIX_JSON, MATRIX_MD, day_folder
from irlib.errors import LabError, UsageError
from irlib.kernels import KernelPool
from irlib.lab import faults as lab_faults
from irlib.lab.faults import Fault
from irlib.lab.lab import Lab
from irlib.runbooks import SCENARIOS, Scenario

DIAGNOSED, MISSED, CRASHED = "diagnosed", "missed", "crashed"
EXIT_OK, EXIT_NOT_DIAGNOSED, EXIT_BROKE = 0, 1, 3
HEALTHY_WAIT_S = 60.0


def claimants(fault: Fault, scenarios: Mapping[str, Scenario] = SCENARIOS) -> list[str]:
    """The runbooks that must diagnose `fault`: the one it names, and any scenario that
    lists it in `also_diagnoses`."""
    names = [fault.runbook] + [s.name for s in scenarios.values() if fault.name in s.also_diagnoses]
    return list(dict.fromkeys(names))


def coverage(
    faults: Mapping[str, Fault],
    notebooks_dir: Path,
    scenarios: Mapping[str, Scenario] = SCENARIOS,
) -> tuple[dict[str, list[str]], list[str]]:
    """Each fault's runnable claimants (a notebook exists), and the faults none can diagnose."""
    covered: dict[str, list[str]] = {}
    uncovered = []
    for name, fault in faults.items():
        runnable = [
            r for r in claimants(fault, scenarios) if (notebooks_dir / f"{r}.ipynb").is_file()
        ]
        if runnable:
            covered[name] = runnable
        else:
            uncovered.append(name)
    return covered, uncovered


@dataclass(frozen=True)
class Cell:
    """One runbook run against one fault."""

    fault: str
    runbook: str
    outcome: str  # DIAGNOSED, MISSED or CRASHED
    top_cause: str | None
    state: str | None  # the verdict's healthy / degraded / down
    exit_code: int
    time_to_verdict_s: float | None  # from the start of the injection to the recorded verdict
    run_dir: str  # relative to the drill folder
    reason: str | None = None
    # The margin: how clearly the verdict names the fault. Its cause's score, the runner-up's
    # and the evidence line (the symptom as the runbook measured it).
    score: float | None = None
    runner_up: str | None = None
    runner_up_score: float | None = None
    evidence: str | None = None


@dataclass(frozen=True)
class FaultTiming:
    fault: str
    inject_s: float  # until the fault shows where production would show it
    clear_s: float  # until the lab is healthy again
    total_s: float  # inject, every run, clear
    error: str | None = None  # the lab could not inject or clear it


@dataclass
class Matrix:
    drill_dir: Path
    started_at: datetime
    runbooks: list[str]
    selected: list[str]
    uncovered: list[str]
    lab: str  # its state directory
    notebooks: str
    cells: list[Cell] = field(default_factory=list)
    timings: list[FaultTiming] = field(default_factory=list)
    finished_at: datetime | None = None
    duration_s: float = 0.0
    broke: str | None = None  # why the drill stopped early

    @property
    def not_diagnosed(self) -> list[str]:
        missed = {c.fault for c in self.cells if c.outcome != DIAGNOSED}
        return [f for f in self.selected if f in missed] + self.uncovered

    @property
    def failed_runbooks(self) -> list[str]:
        return sorted({c.runbook for c in self.cells if c.outcome != DIAGNOSED})

    @property
    def exit_code(self) -> int:
        if self.broke or any(t.error for t in self.timings):
            return EXIT_BROKE
        return EXIT_NOT_DIAGNOSED if self.not_diagnosed else EXIT_OK

    def cell(self, fault: str, runbook: str) -> Cell | None:
        return next((c for c in self.cells if (c.fault, c.runbook) == (fault, runbook)), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": FAULTS,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": round(self.duration_s, 1),
            "lab": self.lab,
            "notebooks": self.notebooks,
            "runbooks": self.runbooks,
            "faults": self.selected,
            "uncovered": self.uncovered,
            "not_diagnosed": self.not_diagnosed,
            "failed_runbooks": self.failed_runbooks,
            "broke": self.broke,
            "exit_code": self.exit_code,
            "cells": [asdict(c) for c in self.cells],
            "timings": [asdict(t) for t in self.timings],
        }

    def _grid(self, link: bool) -> list[list[str]]:
        rows = []
        for fault in self.selected + self.uncovered:
            row = [fault]
            t = next((t for t in self.timings if t.fault == fault), None)
            for runbook in self.runbooks:
                c = self.cell(fault, runbook)
                if c:
                    row.append(_cell_text(c, link))
                elif fault in self.uncovered:
                    row.append("UNCOVERED")
                else:  # not claimed by this runbook, or the lab failed before it ran
                    row.append(f"LAB FAILED: {t.error}" if t and t.error else "-")
            row.append(f"{t.total_s:.1f} s" if t else "-")
            rows.append(row)
        return rows

    def text(self) -> str:
        head = ["fault", *self.runbooks, "fault time"]
        rows = [head, *self._grid(link=False)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        return "\n".join([*lines, self.verdict_line()])

    def markdown(self) -> str:
        head = ["fault", *self.runbooks, "fault time"]
        lines = [
            f"# Fault drill {self.started_at:%Y-%m-%d %H:%M:%S} UTC",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in self._grid(link=True)),
            "",
            self.verdict_line(),
        ]
        return "\n".join(lines) + "\n"

    def verdict_line(self) -> str:
        diagnosed = len(self.selected) - len([f for f in self.not_diagnosed if f in self.selected])
        line = (
            f"{len(self.selected) + len(self.uncovered)} fault(s): {diagnosed} diagnosed, "
            f"{len(self.not_diagnosed) - len(self.uncovered)} not diagnosed, "
            f"{len(self.uncovered)} uncovered"
        )
        if self.failed_runbooks:
            line += f"; failing runbook(s): {', '.join(self.failed_runbooks)}"
        if self.broke:
            line += f"; the drill broke: {self.broke}"
        return line + f"; total {self.duration_s:.1f} s"


def _cell_text(c: Cell, link: bool) -> str:
    took = f"{c.time_to_verdict_s:.1f} s" if c.time_to_verdict_s is not None else "no verdict"
    if c.outcome == DIAGNOSED:
        text = f"diagnosed in {took}"
    elif c.outcome == MISSED:
        text = f"MISSED: top cause {c.top_cause or 'none'} ({took})"
    else:
        text = f"CRASHED: {c.reason}"
    if link:
        text = text.replace("|", "/") + f" ([run]({c.run_dir}/notebook.html))"
    return text


# -- running it ---------------------------------------------------------------------------------


def run_fault_drill(
    lab: Lab,
    *,
    outputs: Path,
    notebooks_dir: Path,
    faults: Sequence[str] = (),
    runbooks: Sequence[str] = (),
    timeout_s: float = 120,
    log: Callable[[str], None],
    observe: Callable[[str], None] | None = None,
) -> Matrix:
    """Drill `faults` (default: every fault of the lab) on `lab`, which must be up and have no
    active fault; archive and return the matrix. UsageError (exit 2) before anything changes.

    `observe(fault)` is called while each fault is still on, after its runbooks ran: a check
    of your own of what the fault shows (the suite reads it with kubectl, psql and redis-cli
    there). Whatever it raises stops the drill, after the fault is cleared and the matrix
    archived."""
    selected, covered, uncovered = _select(faults, runbooks, notebooks_dir)
    active = lab_faults.active_faults(lab)
    if active:
        raise UsageError(
            f"fault(s) {', '.join(active)} already injected in {lab.state_dir}: "
            "clear them first (`irlib lab clear`)"
        )
    _wait_healthy(lab)
    started = io.utcnow()
    drill_dir = make_run_dir(day_folder(outputs, started), started, FAULTS)
    names = list(dict.fromkeys(r for f in selected for r in covered[f]))
    matrix = Matrix(
        drill_dir, started, names, selected, uncovered, str(lab.state_dir), str(notebooks_dir)
    )
    for name in uncovered:
        log(f"{name}: UNCOVERED: no runbook with a notebook claims it")
    t0 = time.monotonic()
    kernels = None
    try:
        # the runbooks' kernels inherit the lab's exports (kubeconfig, profile, tokens); one is
        # warmed ahead, and its replacement as soon as it is taken
        with runner.environment(lab.exports()):
            kernels = KernelPool(notebooks_dir, os.environ, size=1, log=log)
            kernels.start()
            for i, name in enumerate(selected, 1):
                log(f"[{i}/{len(selected)}] {name}: injecting ...")
                timing = _drill_one(
                    lab, name, covered[name], matrix, notebooks_dir, timeout_s, log, observe,
                    kernels,
                )  # fmt: skip
                matrix.timings.append(timing)
                if timing.error and lab_faults.active_faults(lab):
                    matrix.broke = f"{name} could not be cleared: {timing.error}"
                    break
    except KeyboardInterrupt:
        matrix.broke = "interrupted by the operator (Ctrl-C)"
        lab_faults.clear(lab)
    finally:
        if kernels is not None:
            kernels.close()
        matrix.finished_at = io.utcnow()
        matrix.duration_s = time.monotonic() - t0
        _archive(matrix)
    return matrix


def _select(
    faults: Sequence[str], runbooks: Sequence[str], notebooks_dir: Path
) -> tuple[list[str], dict[str, list[str]], list[str]]:
    for name in faults:
        lab_faults.get_fault(name)  # an unknown fault is refused before anything changes
    for name in runbooks:
        if not (notebooks_dir / f"{name}.ipynb").is_file():
            raise UsageError(
                f"unknown runbook {name!r}: no notebook {name}.ipynb in {notebooks_dir}"
            )
    pool = {n: f for n, f in lab_faults.FAULTS.items() if not faults or n in faults}
    covered, uncovered = coverage(pool, notebooks_dir)
    if runbooks:  # only these runbooks, on the faults they claim
        covered = {f: [r for r in rs if r in runbooks] for f, rs in covered.items()}
        covered = {f: rs for f, rs in covered.items() if rs}
        uncovered = [f for f in uncovered if set(claimants(pool[f])) & set(runbooks)]
        if not covered and not uncovered:
            raise UsageError(f"no selected fault is claimed by {', '.join(runbooks)}")
    return [f for f in pool if f in covered], covered, uncovered


def _drill_one(
    lab: Lab,
    name: str,
    runbooks: list[str],
    matrix: Matrix,
    notebooks_dir: Path,
    timeout_s: float,
    log: Callable[[str], None],
    observe: Callable[[str], None] | None,
    kernels: KernelPool,
) -> FaultTiming:
    t0, injected_at = time.monotonic(), io.utcnow()
    inject_s = clear_s = 0.0
    error = None
    try:
        lab_faults.inject(lab, name)
        inject_s = time.monotonic() - t0
        log(f"  {name}: showing after {inject_s:.1f} s")
        for runbook in runbooks:
            result = _run(runbook, name, lab, matrix, notebooks_dir, timeout_s, kernels, log)
            cell = _cell(name, runbook, result, injected_at, matrix.drill_dir)
            matrix.cells.append(cell)
            log(f"  {name} x {runbook}: {_cell_text(cell, link=False)}")
        if observe is not None:
            observe(name)
    except LabError as e:
        error = str(e)
        log(f"  {name}: the lab failed: {e}")
    finally:
        t1 = time.monotonic()
        try:
            lab_faults.clear(lab, name)
        except LabError as e:
            error = error or str(e)
            log(f"  {name}: could not clear: {e}")
        clear_s = time.monotonic() - t1
    total = time.monotonic() - t0
    log(f"  {name}: cleared in {clear_s:.1f} s; {total:.1f} s for this fault")
    return FaultTiming(name, round(inject_s, 1), round(clear_s, 1), round(total, 1), error)


def _run(
    runbook: str,
    fault: str,
    lab: Lab,
    matrix: Matrix,
    notebooks_dir: Path,
    timeout_s: float,
    kernels: KernelPool,
    log: Callable[[str], None],
) -> RunResult:
    """One run in a warm kernel; in a cold one (as `irlib run`'s) when none could be started:
    a kernel that cannot be warmed costs the run its speed, not its evidence."""
    kernel = None
    try:
        kernel = kernels.take()
    except Exception as e:  # KernelError, or whatever stopped jupyter_client starting one
        log(f"  no warm kernel ({type(e).__name__}: {e}): {runbook} runs in a cold one")
    try:
        return runner.run_runbook(
            runbook,
            profile=str(lab.state_dir / "profile.yaml"),
            incident=f"drill-{fault}",
            params={},
            confirm=[],
            operator="fault-drill",
            outputs=matrix.drill_dir,
            notebooks_dir=notebooks_dir,
            execution_timeout_s=timeout_s,
            log=lambda msg: None,  # the drill says what matters, one line per run
            parent=matrix.drill_dir / fault,
            kernel=kernel,
        )
    finally:
        if kernel is not None:
            kernels.done(kernel)  # used once: shut down


def _cell(
    name: str, runbook: str, result: RunResult, injected_at: datetime, drill_dir: Path
) -> Cell:
    verdict = result.verdict or {}
    causes = verdict.get("causes") or []
    top = causes[0]["id"] if causes else None
    verdicts = [
        r
        for r in evidence.read_records(result.run_dir / evidence.EVENTS_FILE)
        if r["kind"] == "verdict"
    ]
    took = None
    if verdicts:
        at = datetime.fromisoformat(verdicts[-1]["at"])
        took = round((at - injected_at).total_seconds(), 1)
    outcome = CRASHED if result.status == "crashed" else DIAGNOSED if top == name else MISSED
    own = next((c for c in causes if c["id"] == name), None)
    other = next((c for c in causes if c["id"] != name), None)
    return Cell(
        name,
        runbook,
        outcome,
        top,
        verdict.get("state"),
        result.exit_code,
        took,
        result.run_dir.relative_to(drill_dir).as_posix(),
        result.reason,
        score=own["score"] if own else None,
        runner_up=other["id"] if other else None,
        runner_up_score=other["score"] if other else None,
        evidence=own["evidence"] if own else None,
    )


def _wait_healthy(lab: Lab) -> None:
    deadline = time.monotonic() + HEALTHY_WAIT_S
    while not lab_faults.healthy(lab):
        if time.monotonic() > deadline:
            raise LabError(f"the lab in {lab.state_dir} is not healthy: see `irlib lab status`")
        time.sleep(0.5)


def _archive(matrix: Matrix) -> None:
    io.write_json_atomic(matrix.drill_dir / MATRIX_JSON, matrix.to_dict())
    io.write_atomic(matrix.drill_dir / MATRIX_MD, matrix.markdown())


@contextmanager
def lab_for_drill(state_dir: Path | None, log: Callable[[str], None]) -> Iterator[Lab]:
    """The running lab named by `state_dir`; or one started there, and stopped afterwards."""
    lab = Lab(state_dir, log=log)
    if lab.is_up():
        yield lab
        return
    log(f"no lab running in {lab.state_dir}: starting one for this drill")
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
