"""A platform's size in the lab: 40 nodes, 2,000 api-service pods, 20,000 events, a lab of its
own (`irlib lab up --nodes 40 --api-replicas 2000 --events 20000`) for this module only.

Against it, with the real kubectl and `irlib`: the API pages and selects as an apiserver does;
P1 System Unavailable is healthy with no ERROR check, and says what its logs covered; the
health drill passes; under bad-deploy the top cause is bad-deploy and its evidence names
crash-looping pods. The checks' timeouts are raised to a minute here: a test must not depend
on the machine's speed (benchmarks/scale.py measures the runs at the default 5 s).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from irlib.k8s import Kube
from tests.helpers import LabHandle, irlib, run_runbook, running_lab

NS, API = "trading", "api-service"
NODES, REPLICAS, EVENTS = 40, 2000, 20000
SLOW = ("-p", "timeout_s", "60")  # a bound for a failure, not a speed asserted


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir = tmp_path_factory.mktemp("big-lab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRLIB_")}
    size = ("--nodes", str(NODES), "--api-replicas", str(REPLICAS), "--events", str(EVENTS))
    with running_lab(state_dir, *size, env=env, up_s=900, down_s=300) as handle:
        yield handle


def raw(lab: LabHandle, path: str, check: bool = True) -> dict:
    done = lab.kubectl("get", "--raw", path, check=check)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr}


def test_the_api_pages_and_selects_as_an_apiserver_at_2000_pods(big: LabHandle) -> None:
    assert "kubernetes   building the cluster" in big.up_output.stderr  # progress shown
    other = big.irlib("lab", "up", "--nodes", "3")  # a running lab keeps its size
    assert other.returncode == 2 and "is up with 40 node(s)" in other.stderr
    pods = big.kubectl("get", "pods", "-n", NS, "--no-headers").stdout.splitlines()
    assert len(pods) == REPLICAS + 7  # kubectl paged them (its --chunk-size is 500)
    nodes = big.kubectl("get", "nodes", "--no-headers").stdout.splitlines()
    assert len(nodes) == NODES and all(line.split()[1] == "Ready" for line in nodes)

    first = raw(big, f"/api/v1/namespaces/{NS}/pods?limit=500")
    assert len(first["items"]) == 500
    assert first["metadata"]["remainingItemCount"] == REPLICAS + 7 - 500
    token = first["metadata"]["continue"]
    second = raw(big, f"/api/v1/namespaces/{NS}/pods?limit=500&continue={token}")
    assert second["items"][0]["metadata"]["name"] > first["items"][-1]["metadata"]["name"]
    selected = raw(big, f"/api/v1/namespaces/{NS}/pods?limit=500&labelSelector=app%3D{API}")
    assert "remainingItemCount" not in selected["metadata"]  # filtered: not counted
    assert all(p["metadata"]["labels"]["app"] == API for p in selected["items"])
    old = base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":1,"start":"x\\u0000"}').decode()
    expired = big.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods?limit=5&continue={old}",
                          check=False)  # fmt: skip
    assert expired.returncode != 0 and "Expired" in expired.stderr

    events = raw(big, f"/api/v1/namespaces/{NS}/events?limit=1")
    assert events["metadata"]["remainingItemCount"] >= EVENTS * 0.9  # some have expired since
    warnings = raw(big, f"/api/v1/namespaces/{NS}/events?fieldSelector=type%3DWarning")["items"]
    assert 0 < len(warnings) < EVENTS / 5  # mostly Normal

    # the client selects from a list it holds as the server does: the same pods, no request
    kube = Kube(kubeconfig=big.exports["KUBECONFIG"], context=None, namespace=NS)
    everything = kube.pods()
    mine = kube.pods(f"app={API}")
    assert {id(p) for p in mine} <= {id(p) for p in everything}  # from the list held
    fresh = Kube(kubeconfig=big.exports["KUBECONFIG"], context=None, namespace=NS)
    by_server = fresh.pods(f"app={API}")
    assert [p["metadata"]["name"] for p in mine] == [p["metadata"]["name"] for p in by_server]
    assert len(mine) == REPLICAS

    name = selected["items"][0]["metadata"]["name"]
    log = big.kubectl("logs", "-n", NS, name, "--tail=5").stdout.splitlines()
    assert len(log) == 5 and all(" GET " in ln or " POST " in ln for ln in log)
    top = big.kubectl("top", "pods", "-n", NS, "--no-headers").stdout.splitlines()
    assert len(top) == REPLICAS + 7


def test_p1_is_healthy_with_no_error_and_says_what_it_covered(
    big: LabHandle, tmp_path: Path
) -> None:
    code, run_dir, results = run_runbook(big, "p1_system_unavailable", tmp_path, *SLOW, timeout=900)
    checks = {c["check"]: c for c in results["checks"]}
    assert not [c for c in checks.values() if c["status"] == "error"], checks
    assert code == 0, results["verdict"]
    assert checks["pods"]["summary"].startswith(f"{REPLICAS + 7}/{REPLICAS + 7} pods ready")
    assert checks[f"logs {API}"]["summary"].startswith(
        f"logs of 20 of {REPLICAS:,} pods: 20 sampled"
    )
    shown = checks["pods"]["evidence"][0]
    assert len(shown["rows"]) == 100 and "first 100 of 2,007" in shown["title"]
    # the 2,007 pods are read once: the logs' api-service pods are selected from that list
    assert run_dir is not None
    lists = [
        r["call"]["query"]
        for r in map(json.loads, (run_dir / "captures.jsonl").read_text().splitlines())
        if r["target"] == "kubernetes" and r["call"]["path"] == f"/api/v1/namespaces/{NS}/pods"
    ]
    assert [q for q in lists if "continue" not in q] == [{"limit": "500"}], lists


def test_the_health_drill_passes(big: LabHandle, tmp_path: Path) -> None:
    done = irlib("drill", "health", "--outputs", str(tmp_path), "--check-timeout", "60",
                 env=big.env, timeout=1500)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_bad_deploy_names_its_crash_looping_pods(big: LabHandle, tmp_path: Path) -> None:
    big.irlib("lab", "inject", "bad-deploy", check=True, timeout=900)
    code, _, results = run_runbook(big, "p1_system_unavailable", tmp_path, *SLOW, timeout=900)
    assert code == 1
    top = results["verdict"]["causes"][0]
    assert top["id"] == "bad-deploy", results["verdict"]["causes"]
    crashing = {
        p["pod"] for c in results["checks"] if c["check"] == "pods"
        for p in c["facts"]["crashlooping"]
    }  # fmt: skip
    named = [p for p in crashing if p in top["evidence"]]
    assert named, top["evidence"]
    checks = {c["check"]: c for c in results["checks"]}
    assert "crash-looping" in checks[f"logs {API}"]["summary"]
    assert "previous logs of 10 of" in checks["previous logs"]["summary"]
