"""The emulated cluster's control plane loop: every ~0.5 s (sooner after an API write) it
re-reads the lab's fault switches, probes the real processes and runs the node, scheduler,
kubelet, workload and endpoints loops over the store.

At start it builds the cluster's past: objects and pods dated days ago, without events.
Each loop runs under loop_health's guard, so a failure on one object is logged and the pass
goes on; the failing loops are written to `kube-controller.json` for `irlib lab status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator

import httpx

from irlib.io import write_json_atomic
from irlib.lab.config import LabConfig, read_control
from irlib.lab.kube import (
    cluster,
    deployments,
    endpoints,
    history,
    kubelet,
    nodes,
    probes,
    scheduler,
    workloads,
)
from irlib.lab.kube.context import PODS, Context
from irlib.lab.kube.events import Recorder
from irlib.lab.kube.loop_health import LoopHealth
from irlib.lab.kube.meta import Obj
from irlib.lab.kube.metrics import Metrics
from irlib.lab.kube.store import Store, WatchEvent

log = logging.getLogger(__name__)
TICK = 0.5
PASS_SHARE = 5.0  # wait at least this many times the last pass's length between passes
PAST = 2 * 86400 + 3 * 3600 + 17 * 60  # the running pods were started this long ago
EXPIRE_EVERY = 30.0
HEALTH_EVERY = 5.0  # the status file is rewritten at a change, else this often (a heartbeat)
LOOPS = (  # in the order a pass runs them
    ("node-lifecycle", nodes.node_lifecycle),
    ("garbage-collector", workloads.collect_garbage),
    ("deployments", deployments.sync_deployments),
    ("replicasets", workloads.sync_replicasets),
    ("statefulsets", workloads.sync_statefulsets),
    ("scheduler", scheduler.schedule),
    ("kubelet", kubelet.run_pods),
    ("replicaset-status", workloads.replicaset_status),
    ("statefulset-status", workloads.statefulset_status),
    ("deployment-status", deployments.deployment_status),
    ("endpoints", endpoints.sync_endpoints),
)


# loops that read only the store (no clock, no switch): a pass skips them when nothing was
# written since they last ran, so an idle 2,000-pod lab does not re-read every pod each tick
STORE_DRIVEN = frozenset(
    ("garbage-collector", "replicasets", "statefulsets", "replicaset-status", "endpoints")
)


class Controller:
    def __init__(self, store: Store, config: LabConfig) -> None:
        self.store = store
        self.config = config
        self._frozen: float | None = None
        self.recorder = Recorder(store, self.now)
        self.health = LoopHealth(time.time, log)
        self._health_written = 0.0
        self.ctx = Context(store, config, self.recorder, self.now, self.health)
        self.metrics = Metrics(self.ctx)
        self.probes = cluster.probe_table(config)
        self._streaks = probes.Streaks()
        self._wake = asyncio.Event()
        self._busy = False
        self._deleted: list[Obj] = []
        self._last_expire = 0.0
        self._loop_rv: dict[str, int] = {}
        self._last_pass = 0.0
        store.clock = self.now
        store.add_listener(self._on_change)

    def now(self) -> float:
        return self._frozen if self._frozen is not None else time.time()

    def _on_change(self, event: WatchEvent) -> None:
        if event.type == "DELETED" and event.key == PODS.key:
            self._deleted.append(event.old or event.obj)
        if not self._busy:
            self._wake.set()  # an API write: react now rather than at the next tick

    async def _probe(self, client: httpx.AsyncClient) -> None:
        self.ctx.probe_results = self._streaks.update(await probes.run_all(self.probes, client))

    def reconcile(self, probe_error: Exception | None = None) -> None:
        for _ in self._pass(probe_error):
            pass

    async def reconcile_async(self, probe_error: Exception | None = None) -> None:
        """A pass that lets the API answer between its loops: in a 2,000-pod lab a pass takes
        a tenth of a second or more, and a request should not wait for all of it."""
        for _ in self._pass(probe_error):
            await asyncio.sleep(0)

    def _pass(self, probe_error: Exception | None) -> Iterator[None]:
        self._busy = True
        health = self.health
        try:
            health.begin_pass()
            if probe_error is not None:
                health.failed("probes", "-", probe_error)
            with health.guard("control"):  # a torn control.json: keep the switches in force
                self.ctx.control = read_control(self.config)
            deleted, self._deleted = self._deleted, []
            for pod in deleted:
                with health.guard("kubelet", pod):
                    kubelet.forget(self.ctx, pod)
            for name, loop in LOOPS:
                if name in STORE_DRIVEN and self._loop_rv.get(name) == self.store.rv:
                    continue  # nothing it reads changed since its last run
                with health.guard(name):  # a failure outside any one object's part
                    loop(self.ctx)
                self._loop_rv[name] = self.store.rv
                yield
            with health.guard("metrics"):
                self.metrics.sample()
            if self.now() - self._last_expire > EXPIRE_EVERY:
                self._last_expire = self.now()
                with health.guard("events"):
                    self.recorder.expire()
            changed = health.end_pass()
            if changed or time.time() - self._health_written >= HEALTH_EVERY:
                self.write_health()
        finally:
            self._busy = False

    def write_health(self) -> None:
        """The failing loops, for `irlib lab status` (the pid tells a stale file apart)."""
        self._health_written = time.time()
        try:
            write_json_atomic(
                self.config.controller_status_file, {"pid": os.getpid(), **self.health.report()}
            )
        except OSError:
            log.exception("cannot write %s", self.config.controller_status_file)

    async def bootstrap(self) -> None:
        """Create the cluster and run it through its past, quietly, so pods are days old."""
        start = time.time()
        self._frozen = start - PAST
        self.recorder.enabled = False
        self.ctx.bootstrapping = True
        size = self.config.size
        self._progress(f"building the cluster: {size.describe()}")
        cluster.populate(self.store, self.config, start)
        async with httpx.AsyncClient() as client:
            await self._probe(client)
        for i in range(6):
            self.reconcile()
            self._frozen += 2.0
            pods = list(self.store.all(PODS))
            running = sum(1 for p in pods if p.get("status", {}).get("phase") == "Running")
            self._progress(
                f"building the cluster: pass {i + 1} of 6, {running}/{len(pods)} pods running"
            )
        self._frozen = None
        history.write_history(self.ctx, size.events, self._progress)
        self.ctx.bootstrapping = False
        self.recorder.enabled = True
        self._deleted.clear()
        self._progress("cluster built, serving")

    def _progress(self, line: str) -> None:
        """What `irlib lab up` shows while a big cluster is built (a file: no API yet)."""
        try:
            self.config.progress_file.write_text(line + "\n")
        except OSError:
            log.exception("cannot write %s", self.config.progress_file)

    async def run(self) -> None:
        async with httpx.AsyncClient() as client:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._tick())
                self._wake.clear()
                await asyncio.sleep(0.02)  # let a burst of writes land together
                probe_error = None
                try:
                    await self._probe(client)
                except Exception as exc:  # readiness stays as last probed; reported below
                    probe_error = exc
                started = time.monotonic()
                try:
                    await self.reconcile_async(probe_error)
                except Exception:  # each loop is guarded; this is the last net
                    log.exception("controller pass failed")
                self._last_pass = time.monotonic() - started

    def _tick(self) -> float:
        """The wait between passes: TICK, or longer when a pass is long (a 2,000-pod lab on
        a busy machine), so that the controller keeps to about a sixth of the API's time."""
        return max(TICK, PASS_SHARE * self._last_pass)
