"""Triage: each firing alert group becomes one read-only runbook run, its incident record and
its message in the chat. A bounded number of runs at once and waiting (past that the webhook
answers 503 and Alertmanager retries); one run per group at a time, and repeats within the
group's cooldown are noted in its incident's timeline, never re-run. Resolutions never run
anything: they are noted. A run is `irlib run` in a child process without `--confirm`, so no
mitigation can run from an alert; the message says which one the verdict recommends and
the command by which a person confirms it. Writes only the outputs folder.
"""

from __future__ import annotations

import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from irlib import comms, io, run_results
from irlib import incident as inc
from irlib.errors import UsageError
from irlib.kernels import KernelPool, WarmKernel
from irlib.profile import Profile
from irlib.serve.metrics import Metrics
from irlib.serve.payload import AlertGroup
from irlib.serve.routing import route

OPERATOR = "irlib-serve"
JOURNAL = "serve/alerts.jsonl"  # under outputs: every webhook and what became of it
NOT_RUNBOOKS = {"postmortem"}  # notebooks that are not triage
RECENT_INCIDENTS = 100  # how far back a restarted server looks for a group's open incident
OUTCOMES = ("healthy", "degraded", "down", "could-not-look")  # a run's, for the page and metrics


@dataclass
class Run:
    """One triage run of one alert group, from queued to its message."""

    id: str
    group_key: str
    alerts: list[str]
    runbook: str
    incident: str
    received_at: str
    state: str = "queued"  # queued | running | done | failed
    started_at: str | None = None
    finished_at: str | None = None
    run_dir: str | None = None
    evidence: str | None = None  # the link to its notebook.html
    exit_code: int | None = None
    verdict: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    to_verdict_s: float | None = None  # from the webhook's arrival
    to_message_s: float | None = None
    arrived: float = 0.0  # time.monotonic() when its webhook arrived (not shown)

    @property
    def outcome(self) -> str | None:
        """One of OUTCOMES (see outcome()); None while it is queued or running."""
        if self.state in ("queued", "running"):
            return None
        v = self.verdict
        return outcome(
            v.get("state") if self.state == "done" else None,
            v.get("cause"),
            int(v.get("could_not_check") or 0),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["arrived"]
        return {**data, "outcome": self.outcome}


def outcome(state: Any, top_cause: Any, could_not_check: int) -> str:
    """healthy, degraded or down as a verdict says; could-not-look when there is no verdict
    (the run failed or crashed) or its leading finding is that a target did not answer, so
    that a run that could not look never reads as healthy."""
    if state not in OUTCOMES[:3]:
        return "could-not-look"
    cause = str(top_cause or "")
    if state == "degraded" and (cause.startswith("unanswered-") or (not cause and could_not_check)):
        return "could-not-look"
    return str(state)


@dataclass
class _Group:
    incident: str | None = None
    active: Run | None = None
    finished: float | None = None  # monotonic time its last run ended
    noted: frozenset[str] = frozenset()  # the firing alerts its last timeline entry named


@dataclass(frozen=True)
class Answer:
    """What the webhook answers: HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


class Triage:
    def __init__(
        self,
        profile: Profile,
        profile_path: Path,
        outputs: Path,
        notebooks: Path,
        base_url: str,
        log: Callable[[str], None] = lambda msg: None,
    ) -> None:
        self.profile = profile
        self.settings = profile.serve
        self.profile_path = Path(profile_path).resolve()
        self.outputs = Path(outputs).resolve()
        self.notebooks = Path(notebooks).resolve()
        self.base_url = base_url.rstrip("/")
        self.log = log
        self.known = sorted(
            p.stem for p in self.notebooks.glob("*.ipynb") if p.stem not in NOT_RUNBOOKS
        )
        # queued + running, bounded: a slot is taken before anything is written
        self._slots = threading.BoundedSemaphore(self.settings.workers + self.settings.queue)
        self._jobs: queue.Queue[Run] = queue.Queue()
        self._lock = threading.Lock()
        self._groups: dict[str, _Group] = {}
        self.runs: list[Run] = []
        self.running = 0
        self.most_running = 0  # the most runs seen at once, for /v1/status
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self._children: set[subprocess.Popen[str]] = set()
        self._kernels: set[WarmKernel] = set()  # in use by a run
        self.metrics = Metrics()
        self.pool: KernelPool | None = None

    def start(self) -> None:
        (self.outputs / JOURNAL).parent.mkdir(parents=True, exist_ok=True)
        self._recover()
        if self.settings.warm_kernels > 0 and self.pool is None:
            # started with the runs' environment: without the server's token or chat URL
            self.pool = KernelPool(
                self.notebooks, self._child_env(), self.settings.warm_kernels, log=self.log
            )
            self.pool.start()
        for n in range(self.settings.workers):
            t = threading.Thread(target=self._work, name=f"triage-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """End the runs under way (SIGTERM to each `irlib run`, SIGKILL after 10 s): a stopped
        server leaves no run behind. Their folders keep what was written so far."""
        if self.pool is not None:
            self.pool.close()
        with self._lock:
            children = list(self._children)
            kernels = list(self._kernels)
        for kernel in kernels:  # its run ends as a crashed one, its notebook kept
            kernel.shutdown()
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()

    # -- the webhook ----------------------------------------------------------------------

    def receive(self, group: AlertGroup, arrived: float | None = None) -> Answer:
        """Decide what one webhook call does; everything it decides is journaled.
        `arrived`: time.monotonic() when the request came in (now when not given)."""
        arrived = time.monotonic() if arrived is None else arrived
        with self._lock:
            answer = self._decide(group, arrived)
            self._journal(group, answer)
        self.metrics.webhook(str(answer.body.get("action")))
        return answer

    def _decide(self, group: AlertGroup, arrived: float) -> Answer:
        state = self._groups.setdefault(group.group_key, _Group())
        for alert in group.resolved:
            if state.incident:
                self._note(
                    state.incident,
                    "alert-resolved",
                    f"Alert {alert.name} resolved: {alert.annotations.get('summary', '')}".strip(),
                    group,
                    at=alert.ends_at,
                )
        if not group.firing:
            action = "resolution-noted" if state.incident else "resolution-recorded"
            return Answer(200, {"action": action, "incident": state.incident})
        runbook, why = route(group, self.settings.routes, self.known)
        if runbook is None:
            return Answer(200, {"action": "unrouted", "reason": why})
        if state.active is not None:
            self._repeat(state, group, f"run {state.active.id} is {state.active.state}")
            return Answer(200, {"action": "already-running", "run": state.active.id})
        if state.finished is not None:
            since = time.monotonic() - state.finished
            if since < self.settings.cooldown_s:
                why_not = f"within the cooldown ({since:.0f} of {self.settings.cooldown_s:g} s)"
                self._repeat(state, group, why_not)
                return Answer(200, {"action": "cooldown", "incident": state.incident})
        if not self._slots.acquire(blocking=False):
            return Answer(503, {"action": "full", "reason": "every run slot is taken; retry"})
        try:
            state.incident = self._incident_for(state, group)
        except Exception:
            self._slots.release()
            raise
        first = group.firing[0]
        state.noted = frozenset(f"{a.name}/{a.fingerprint}" for a in group.firing)
        self._note(
            state.incident,
            "alert",
            f"Alert {first.name} firing: {first.annotations.get('summary', '')} "
            f"(routed to {runbook} by {why})",
            group,
            at=group.starts_at,
        )
        run = Run(
            id=f"R{next(self._ids):05d}",
            group_key=group.group_key,
            alerts=[a.name for a in group.firing],
            runbook=runbook,
            incident=state.incident,
            received_at=io.utcnow().isoformat(),
            arrived=arrived,
        )
        state.active = run
        self.runs.append(run)
        self._jobs.put(run)
        return Answer(202, {"action": "queued", "run": run.id, "incident": run.incident})

    def _repeat(self, state: _Group, group: AlertGroup, why: str) -> None:
        if state.incident:
            self._note(
                state.incident,
                "alert-repeat",
                f"Alert {group.names[0]} again, not re-run: {why}",
                group,
            )

    def _note(
        self, incident: str, kind: str, text: str, group: AlertGroup, at: datetime | None = None
    ) -> None:
        data = {
            "group_key": group.group_key,
            "alerts": [
                {"name": a.name, "status": a.status, "fingerprint": a.fingerprint}
                for a in group.alerts
            ],
        }
        inc.append(self.outputs, incident, kind, text, data=data, by=OPERATOR, now=at)

    def _incident_for(self, state: _Group, group: AlertGroup) -> str:
        """The group's incident while it is open; else a new one, started at the alert."""
        if state.incident is not None:
            try:
                if inc.load(self.outputs, state.incident).resolved_at is None:
                    return state.incident
            except UsageError:
                pass  # its folder is gone: open a new one
        first = group.firing[0]
        severities = [s.name for s in self.profile.incident.severities]
        wanted = sorted({a.labels.get("severity", "") for a in group.firing} & set(severities))
        severity = wanted[0] if wanted else severities[min(1, len(severities) - 1)]
        title = first.annotations.get("summary") or first.name
        opened = inc.open_incident(
            self.outputs,
            severity=severity,
            title=f"{first.name}: {title}",
            settings=self.profile.incident,
            by=OPERATOR,
            now=group.starts_at,
        )
        return opened.id

    def _recover(self) -> None:
        """After a restart: each group's open incident, from the recent incidents' timelines
        (read once here, never per webhook)."""
        for incident_id in inc.list_ids(self.outputs)[-RECENT_INCIDENTS:]:
            found = inc.load(self.outputs, incident_id)
            if found.resolved_at is not None:
                continue
            for entry in found.of_kind("alert"):
                key = entry.data.get("group_key")
                if isinstance(key, str):
                    self._groups.setdefault(key, _Group()).incident = incident_id

    def _journal(self, group: AlertGroup, answer: Answer) -> None:
        # not under try: a decision that cannot be journaled answers 500, and Alertmanager
        # retries it
        io.append_jsonl(
            self.outputs / JOURNAL,
            [
                {
                    "at": io.utcnow().isoformat(),
                    "group_key": group.group_key,
                    "status": group.status,
                    "alerts": group.names,
                    "http": answer.status,
                    **answer.body,
                }
            ],
        )

    def journal(self) -> list[dict[str, Any]]:
        return io.read_jsonl(self.outputs / JOURNAL) if (self.outputs / JOURNAL).exists() else []

    # -- the runs ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            run = self._jobs.get()
            with self._lock:
                self.running += 1
                self.most_running = max(self.most_running, self.running)
                run.state, run.started_at = "running", io.utcnow().isoformat()
            try:
                self._execute(run)
                run.state = "done"
            except Exception as e:  # a run that fails is recorded; the server goes on
                run.state, run.error = "failed", f"{type(e).__name__}: {e}"
                self.log(f"run {run.id} failed: {run.error}")
            finally:
                with self._lock:
                    self.running -= 1
                    run.finished_at = io.utcnow().isoformat()
                    state = self._groups[run.group_key]
                    state.active, state.finished = None, time.monotonic()
                    self._slots.release()
                self._measure(run)

    def _measure(self, run: Run) -> None:
        self.metrics.run_finished(run.runbook, run.outcome or "could-not-look")
        if run.to_verdict_s is not None:
            self.metrics.observe(
                "irlib_serve_webhook_to_verdict_seconds", run.runbook, run.to_verdict_s
            )
        if run.to_message_s is not None:
            self.metrics.observe(
                "irlib_serve_webhook_to_message_seconds", run.runbook, run.to_message_s
            )

    def _child_env(self) -> dict[str, str]:
        """The run needs the targets' secrets, never the server's token or the chat's URL."""
        drop = {self.settings.token_env, self.profile.incident.webhook_url_env}
        return {k: v for k, v in os.environ.items() if k not in drop}

    def _execute(self, run: Run) -> None:
        self.log(f"run {run.id}: {run.runbook} for {', '.join(run.alerts)} ({run.incident})")
        if self.pool is not None:
            return self._execute_warm(run, self.pool)
        return self._execute_cold(run)

    def _execute_warm(self, run: Run, pool: KernelPool) -> None:
        """In a warm kernel, in this process: irlib run's own steps (runner.run_runbook), the
        message sent as soon as results.json is written, the HTML and manifest after it."""
        from irlib.runner import run_runbook

        kernel = pool.take()
        with self._lock:
            self._kernels.add(kernel)
        try:
            result = run_runbook(
                run.runbook,
                profile=str(self.profile_path),
                incident=run.incident,
                params={},
                confirm=[],  # read-only: never a mitigation from an alert
                operator=OPERATOR,
                outputs=self.outputs,
                notebooks_dir=self.notebooks,
                execution_timeout_s=self.settings.run_timeout_s,
                log=lambda message: self.log(f"run {run.id}: {message}"),
                kernel=kernel,
                on_results=lambda run_dir, results: self._report(run, run_dir, results),
            )
        finally:
            with self._lock:
                self._kernels.discard(kernel)
            pool.done(kernel)  # used once: shut down; its replacement is already starting
        run.exit_code = result.exit_code
        if not run.message:
            raise RuntimeError(f"no message sent for {result.run_dir.name}: see the log")

    def _execute_cold(self, run: Run) -> None:
        """`irlib run` in a child process (serve.warm_kernels: 0)."""
        timeout = self.settings.run_timeout_s
        cmd = [
            sys.executable,
            "-m",
            "irlib.cli",
            "run",
            run.runbook,
            "--profile",
            str(self.profile_path),
            "--incident",
            run.incident,
            "--outputs",
            str(self.outputs),
            "--operator",
            OPERATOR,
            "--timeout",
            str(int(timeout)),
            "--notebooks",
            str(self.notebooks),
        ]  # never --confirm: read-only
        child = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._child_env(),
            cwd=self.outputs,
        )
        with self._lock:
            self._children.add(child)
        try:
            # every cell is bounded by `timeout`; this bounds a hang of the whole run
            stdout, stderr = child.communicate(timeout=timeout * 10 + 60)
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
        finally:
            with self._lock:
                self._children.discard(child)
        done = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
        run.exit_code = done.returncode
        lines = done.stdout.strip().splitlines()
        run_dir = Path(lines[-1]) if lines else None
        if run_dir is None or not (run_dir / run_results.FILE).is_file():
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"irlib run exited {done.returncode}: {tail[0]}")
        self._report(run, run_dir, run_results.read(run_dir))

    def _report(self, run: Run, run_dir: Path, results: run_results.RunResults) -> None:
        """The verdict into the run, a note when it suggests another severity, the message."""
        run.run_dir = str(run_dir)
        run.evidence = self.evidence_url(run.incident, run_dir.name, "notebook.html")
        verdict = results.verdict or {}
        top = results.top_cause
        run.verdict = {
            "state": verdict.get("state") or results.status,
            "summary": verdict.get("summary") or results.reason,
            "severity": verdict.get("severity"),
            "cause": top.get("id"),
            "evidence": top.get("evidence"),
            "mitigations": list(verdict.get("mitigations") or []),
            "could_not_check": len(verdict.get("could_not_check") or []),
        }
        run.to_verdict_s = round(time.monotonic() - run.arrived, 3)
        suggested = run.verdict["severity"]
        opened_as = inc.load(self.outputs, run.incident).record.severity
        if suggested and suggested != opened_as:
            # the record is written once, at the alert; the verdict's word is kept beside it
            inc.append(
                self.outputs,
                run.incident,
                "note",
                f"The verdict suggests {suggested}; the incident was opened as {opened_as} "
                "from the alert's severity",
                data={"suggested_severity": suggested, "run": run_dir.name},
                by=OPERATOR,
            )
        sent = comms.send(
            self.outputs,
            run.incident,
            "initial",
            self.profile.incident,
            by=OPERATOR,
            footer=self.footer(run),
        )
        run.message = {"delivered": sent.delivered, "error": sent.error, "seq": sent.entry.seq}
        run.to_message_s = round(time.monotonic() - run.arrived, 3)

    def evidence_url(self, incident: str, run_dir: str, name: str) -> str:
        return f"{self.base_url}/v1/evidence/{incident}/{run_dir}/{name}"

    def footer(self, run: Run) -> list[str]:
        """What the chat message adds to the seed's template: the verdict, what to do and
        how a person does it, and where the evidence is."""
        v = run.verdict
        lines = [
            f"Triage (read-only, by irlib serve): {run.runbook} on alert {', '.join(run.alerts)}",
            f"Verdict: {str(v.get('state')).upper()} - {v.get('summary')}",
        ]
        if v.get("cause"):
            lines.append(f"Probable cause: {v['cause']}: {v.get('evidence')}")
        mitigations = v.get("mitigations") or []
        if mitigations:
            lines.append(f"Recommended mitigation: {', '.join(mitigations)} (NOT run)")
            confirms = " ".join(f"--confirm {m}" for m in mitigations[:1])
            lines.append(
                f"To apply it, a person runs: irlib run {run.runbook} --incident {run.incident} "
                f"{confirms}"
            )
        else:
            lines.append("Recommended mitigation: none named by the verdict")
        lines.append(f"Evidence: {run.evidence}")
        return lines

    # -- what the server shows -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "workers": self.settings.workers,
                "queue": self.settings.queue,
                "running": self.running,
                "most_running": self.most_running,
                "queued": sum(r.state == "queued" for r in self.runs),
                "runs": len(self.runs),
                "runbooks": self.known,
                "warm_kernels": self.pool.ready() if self.pool else 0,
            }

    def gauges(self) -> dict[str, tuple[str, float]]:
        """What /metrics reads at each scrape, beside the counters."""
        with self._lock:
            queued = sum(r.state == "queued" for r in self.runs)
            return {
                "irlib_serve_queue_length": ("Runs waiting for a worker.", queued),
                "irlib_serve_queue_capacity": (
                    "Runs that may wait (serve.queue).",
                    self.settings.queue,
                ),
                "irlib_serve_running": ("Runs under way.", self.running),
                "irlib_serve_warm_kernels_ready": (
                    "Warm kernels ready for the next run.",
                    self.pool.ready() if self.pool else 0,
                ),
                "irlib_serve_workers": (
                    "Runs at once at most (serve.workers).",
                    self.settings.workers,
                ),
            }

    def run_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_dict() for r in reversed(self.runs)]
