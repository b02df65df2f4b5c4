"""The emulated cluster's control plane loop: every ~0.5 s (sooner after an API write) it
re-reads the lab's fault switches, probes the real processes and runs the node, scheduler,
kubelet, workload and endpoints loops over the store.

At start it builds the cluster's past: objects and pods dated days ago, without events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx

from irlib.lab.config import LabConfig, read_control
from irlib.lab.kube import (
    cluster,
    deployments,
    endpoints,
    kubelet,
    nodes,
    probes,
    scheduler,
    workloads,
)
from irlib.lab.kube.context import PODS, Context
from irlib.lab.kube.events import Recorder
from irlib.lab.kube.meta import Obj
from irlib.lab.kube.metrics import Metrics
from irlib.lab.kube.store import Store, WatchEvent

log = logging.getLogger(__name__)
TICK = 0.5
PAST = 2 * 86400 + 3 * 3600 + 17 * 60  # the running pods were started this long ago
EXPIRE_EVERY = 30.0


class Controller:
    def __init__(self, store: Store, config: LabConfig) -> None:
        self.store = store
        self.config = config
        self._frozen: float | None = None
        self.recorder = Recorder(store, self.now)
        self.ctx = Context(store, config, self.recorder, self.now)
        self.metrics = Metrics(self.ctx)
        self.probes = cluster.probe_table(config)
        self._streaks = probes.Streaks()
        self._wake = asyncio.Event()
        self._busy = False
        self._deleted: list[Obj] = []
        self._last_expire = 0.0
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

    def reconcile(self) -> None:
        self._busy = True
        try:
            self.ctx.control = read_control(self.config)
            deleted, self._deleted = self._deleted, []
            for pod in deleted:
                kubelet.forget(self.ctx, pod)
            nodes.node_lifecycle(self.ctx)
            workloads.collect_garbage(self.ctx)
            deployments.sync_deployments(self.ctx)
            workloads.sync_replicasets(self.ctx)
            workloads.sync_statefulsets(self.ctx)
            scheduler.schedule(self.ctx)
            kubelet.run_pods(self.ctx)
            workloads.replicaset_status(self.ctx)
            workloads.statefulset_status(self.ctx)
            deployments.deployment_status(self.ctx)
            endpoints.sync_endpoints(self.ctx)
            self.metrics.sample()
            if self.now() - self._last_expire > EXPIRE_EVERY:
                self._last_expire = self.now()
                self.recorder.expire()
        finally:
            self._busy = False

    async def bootstrap(self) -> None:
        """Create the cluster and run it through its past, quietly, so pods are days old."""
        start = time.time()
        self._frozen = start - PAST
        self.recorder.enabled = False
        self.ctx.bootstrapping = True
        cluster.populate(self.store, self.config, start)
        async with httpx.AsyncClient() as client:
            await self._probe(client)
        for _ in range(6):
            self.reconcile()
            self._frozen += 2.0
        self._frozen = None
        self.ctx.bootstrapping = False
        self.recorder.enabled = True
        self._deleted.clear()

    async def run(self) -> None:
        async with httpx.AsyncClient() as client:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), TICK)
                self._wake.clear()
                await asyncio.sleep(0.02)  # let a burst of writes land together
                try:
                    await self._probe(client)
                    self.reconcile()
                except Exception:  # a bug in one pass must not stop the cluster
                    log.exception("controller pass failed")
