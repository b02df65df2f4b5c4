"""The lab controller's loop guard: a failure on one object is logged with the loop and the
object's kind/name, the loop goes on, and a failure not seen again has recovered."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from irlib.io import write_json_atomic
from irlib.lab.config import LabConfig
from irlib.lab.kube import controller_problems
from irlib.lab.kube.loop_health import LoopHealth, describe

NODES = [
    {"kind": "Node", "metadata": {"name": "node-1"}, "spec": {}},
    {"kind": "Node", "metadata": {"name": "node-bare"}},
    {"kind": "Node", "metadata": {"name": "node-3"}, "spec": {}},
]


def one_pass(health: LoopHealth, objects: list[dict]) -> list[str]:
    done = []
    health.begin_pass()
    for obj in objects:
        with health.guard("node-lifecycle", obj):
            obj["spec"]["seen"] = True  # KeyError on the node without a spec
            done.append(obj["metadata"]["name"])
    health.end_pass()
    return done


def test_a_failing_object_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    health = LoopHealth(lambda: 100.0, logging.getLogger("test.loops"))
    with caplog.at_level(logging.ERROR, logger="test.loops"):
        assert one_pass(health, NODES) == ["node-1", "node-3"]
        assert one_pass(health, NODES) == ["node-1", "node-3"]  # the next pass too
    [failure] = health.report()["failing"]
    assert failure["loop"] == "node-lifecycle" and failure["object"] == "Node/node-bare"
    assert failure["error"] == "KeyError: 'spec'" and failure["count"] == 2
    # logged once with its traceback, not at every pass
    logged = [r for r in caplog.records if "Node/node-bare" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_a_failure_not_seen_again_has_recovered() -> None:
    health = LoopHealth(lambda: 100.0, logging.getLogger("test.loops"))
    one_pass(health, NODES)
    NODES[1].setdefault("spec", {})
    try:
        assert one_pass(health, NODES) == ["node-1", "node-bare", "node-3"]
    finally:
        NODES[1].pop("spec")
    assert health.report()["failing"] == [] and health.report()["passes"] == 2


def test_a_cancellation_is_not_swallowed() -> None:
    health = LoopHealth(lambda: 0.0, logging.getLogger("test.loops"))
    with pytest.raises(KeyboardInterrupt), health.guard("kubelet"):
        raise KeyboardInterrupt


def test_describe_names_kind_namespace_and_name_whatever_is_missing() -> None:
    pod = {"kind": "Pod", "metadata": {"namespace": "trading", "name": "api-1"}}
    assert describe(pod) == "Pod/trading/api-1"
    assert describe({"metadata": None}) == "Object/?"
    assert describe(None) == "-"


def test_lab_status_reads_the_failing_loops_of_the_running_process_only(tmp_path: Path) -> None:
    config = LabConfig(state_dir=str(tmp_path), ports={}, pg_data_dir=str(tmp_path / "pg"))
    failure = {"loop": "scheduler", "object": "Node/x", "error": "E", "since": 1.0, "count": 3}
    now = time.time()
    write_json_atomic(
        config.controller_status_file, {"pid": 42, "last_pass": now, "failing": [failure]}
    )
    assert controller_problems(config, 42) == [failure]
    assert controller_problems(config, 43) == []  # a file left by an earlier process
    write_json_atomic(config.controller_status_file, {"pid": 42, "last_pass": now, "failing": []})
    assert controller_problems(config, 42) == []
    # a controller that stopped passing is failing too, whatever it last wrote
    write_json_atomic(
        config.controller_status_file, {"pid": 42, "last_pass": now - 600, "failing": []}
    )
    [stuck] = controller_problems(config, 42)
    assert stuck["loop"] == "controller" and "no reconcile pass" in stuck["error"]
    config.controller_status_file.unlink()
    assert controller_problems(config, 42) == []
