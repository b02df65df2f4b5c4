"""The lab's node lifecycle and scheduler on nodes applied with only what Kubernetes requires,
in process over the emulator's store (the same, end to end with kubectl, in
tests/lab/test_lab_scale.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from irlib.lab.config import LabConfig
from irlib.lab.kube import nodes, scheduler, workloads
from irlib.lab.kube.context import NODES, PODS, Context
from irlib.lab.kube.events import Recorder
from irlib.lab.kube.loop_health import LoopHealth
from irlib.lab.kube.store import Store


def context(tmp_path: Path) -> Context:
    store = Store()
    config = LabConfig(state_dir=str(tmp_path), ports={}, pg_data_dir=str(tmp_path / "pg"))
    health = LoopHealth(time.time, logging.getLogger("test.lab_nodes"))
    return Context(store, config, Recorder(store, time.time), time.time, health)


def pending_pod(ctx: Context, name: str, cpu: str = "250m") -> None:
    ctx.store.create(
        PODS,
        {
            "metadata": {"name": name, "namespace": "trading", "labels": {"app": "api-service"}},
            "spec": {
                "containers": [
                    {"name": "api", "image": "api:1", "resources": {"requests": {"cpu": cpu}}}
                ]
            },
            "status": {"phase": "Pending"},
        },
    )


def test_a_node_with_only_a_name_is_completed_as_its_kubelet_would_and_gets_a_pod(
    tmp_path: Path,
) -> None:
    ctx = context(tmp_path)
    ctx.store.create(NODES, {"metadata": {"name": "node-a"}})
    ctx.store.create(NODES, {"metadata": {"name": "node-b"}, "status": {"capacity": {"cpu": "64"}}})
    nodes.node_lifecycle(ctx)
    a = ctx.store.get(NODES, None, "node-a")
    b = ctx.store.get(NODES, None, "node-b")
    assert a is not None and b is not None
    assert a["spec"]["podCIDR"] != b["spec"]["podCIDR"]
    assert nodes.internal_ip(a) and nodes.internal_ip(a) != nodes.internal_ip(b)
    assert a["status"]["allocatable"]["cpu"] == "4"  # the lab's machine shape
    assert b["status"]["allocatable"] == {"cpu": "64", "memory": "16Gi", "pods": "110"}
    assert {c["type"]: c["status"] for c in a["status"]["conditions"]}["Ready"] == "True"
    pending_pod(ctx, "big", cpu="32")  # fits only the 64-CPU node
    scheduler.schedule(ctx)
    pod = ctx.store.get(PODS, "trading", "big")
    assert pod is not None and pod["spec"]["nodeName"] == "node-b"
    assert ctx.health.report()["failing"] == []


def test_a_malformed_node_fails_its_loops_alone(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.store.create(NODES, {"metadata": {"name": "node-a"}})
    ctx.store.create(
        NODES, {"metadata": {"name": "node-x"}, "status": {"allocatable": {"cpu": "lots"}}}
    )
    ctx.health.begin_pass()
    nodes.node_lifecycle(ctx)
    pending_pod(ctx, "p1")
    scheduler.schedule(ctx)
    ctx.health.end_pass()
    failing = {(f["loop"], f["object"]) for f in ctx.health.report()["failing"]}
    assert failing == {("node-lifecycle", "Node/node-x"), ("scheduler", "Node/node-x")}
    pod = ctx.store.get(PODS, "trading", "p1")
    assert pod is not None and pod["spec"]["nodeName"] == "node-a"


def test_pods_of_a_deleted_node_are_collected(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.store.create(NODES, {"metadata": {"name": "node-a"}})
    nodes.node_lifecycle(ctx)
    pending_pod(ctx, "p1")
    scheduler.schedule(ctx)
    ctx.store.delete(NODES, None, "node-a")
    workloads.collect_garbage(ctx)
    assert ctx.store.get(PODS, "trading", "p1") is None
