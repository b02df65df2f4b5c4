"""The lab's size (`irlib lab up --nodes --api-replicas --events`): the node shape that fits
the platform, the sizes refused before anything starts (exit 2), and the event history a big
lab is built with, in process over the emulator's store."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from irlib.cli import main
from irlib.errors import UsageError
from irlib.lab.config import LabConfig
from irlib.lab.kube import cluster, history
from irlib.lab.kube.context import Context
from irlib.lab.kube.events import EVENTS, Recorder
from irlib.lab.kube.loop_health import LoopHealth
from irlib.lab.kube.meta import rfc3339
from irlib.lab.kube.resources import resource
from irlib.lab.kube.store import Store
from irlib.lab.size import LabSize


def test_the_default_size_is_the_lab_as_it_was() -> None:
    assert LabSize() == LabSize(3, 3, 0)
    assert LabSize().shape() == ("m5.xlarge", 4, 16)


def test_a_big_lab_gets_nodes_that_hold_its_pods_with_headroom() -> None:
    kind, cpus, gib = LabSize(40, 2000, 20000).shape()
    # 2,000 pods of 250m and 512Mi, and a rollout's 2,000 more, beside the other apps: 1,002
    # CPUs, at most 80% of the nodes
    assert (kind, cpus, gib) == ("m5.8xlarge", 32, 128)
    assert 0.8 * 40 * cpus >= 2 * 2000 * 0.25 + 2.2


@pytest.mark.parametrize(
    ("size", "says"),
    [
        (LabSize(0, 3, 0), "--nodes must be a whole number from 1"),
        (LabSize(3, -1, 0), "--api-replicas must be a whole number from 0"),
        (LabSize(3, 3, 10**7), "--events must be a whole number from 0"),
        (LabSize(3, 2000, 0), "ask for --nodes 37 or more"),
    ],
    ids=["no-nodes", "negative-replicas", "too-many-events", "pods-per-node"],
)
def test_a_size_that_cannot_be_built_is_refused(size: LabSize, says: str) -> None:
    with pytest.raises(UsageError) as err:
        size.shape()
    assert says in str(err.value)


@pytest.mark.parametrize(
    "args",
    [["--nodes", "0"], ["--api-replicas", "2000"], ["--events", "lots"]],
    ids=["zero-nodes", "no-room", "not-a-number"],
)
def test_lab_up_with_a_bad_size_exits_2_and_starts_nothing(tmp_path: Path, args: list[str]) -> None:
    state = tmp_path / "lab"
    result = CliRunner().invoke(main, ["lab", "up", "--state-dir", str(state), *args])
    assert result.exit_code == 2, result.output
    assert "--" in result.output  # names the option at fault
    assert not state.exists()


def context(tmp_path: Path, size: LabSize) -> Context:
    store = Store()
    config = LabConfig(
        state_dir=str(tmp_path),
        ports={},
        pg_data_dir=str(tmp_path / "pg"),
        nodes=size.nodes,
        api_replicas=size.api_replicas,
        events=size.events,
    )
    config.pods_dir.mkdir(parents=True)
    health = LoopHealth(time.time, logging.getLogger("test.lab_size"))
    return Context(store, config, Recorder(store, time.time), time.time, health)


def test_the_cluster_is_built_at_its_size_with_an_hour_of_mostly_normal_events(
    tmp_path: Path,
) -> None:
    size = LabSize(12, 40, 600)
    ctx = context(tmp_path, size)
    cluster.populate(ctx.store, ctx.config, time.time())
    nodes = list(ctx.store.all(resource("nodes")))
    assert [n["metadata"]["name"] for n in nodes][-1] == "node-12" and len(nodes) == 12
    zones = Counter(n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes)
    assert len(zones) == 3 and len({n["status"]["addresses"][0]["address"] for n in nodes}) == 12
    api = ctx.store.get(resource("deployments.apps"), "trading", "api-service")
    assert api is not None and api["spec"]["replicas"] == 40

    # the history needs pods: a few stand-ins, as the controller's first passes make them
    for i in range(5):
        ctx.store.create(
            resource("pods"),
            {
                "metadata": {
                    "name": f"api-service-abc-{i}",
                    "namespace": "trading",
                    "labels": {"app": "api-service"},
                },
                "spec": {
                    "nodeName": "node-1",
                    "containers": [{"name": "api-service", "image": "api:1"}],
                },
            },
        )
    history.write_history(ctx, size.events, lambda line: None)
    events = list(ctx.store.all(EVENTS))
    assert len(events) == 600
    types = Counter(e["type"] for e in events)
    assert types["Warning"] < types["Normal"] / 5 and types["Warning"] > 0
    now = time.time()
    stamps = sorted(e["lastTimestamp"] for e in events)
    newest_warning = max(e["lastTimestamp"] for e in events if e["type"] == "Warning")
    # over the last hour, none older than the apiserver's event TTL, no warning of late
    assert stamps[0] >= rfc3339(now - 3600) and stamps[-1] <= rfc3339(now)
    assert newest_warning <= rfc3339(now - history.QUIET)
    log = (ctx.config.pods_dir / "api-service-abc-0.log").read_text().splitlines()
    assert len(log) == 40 and all(" GET " in ln or " POST " in ln for ln in log)
    assert not any("ERROR" in ln for ln in log)
