"""The lab's controller under objects a new user applies, and the P1 verdict past capacity.

Against the session lab, with the real kubectl and `irlib`: a node applied with only its name
and a Ready condition gets pods; a malformed node makes one controller loop fail (logged,
shown by `irlib lab status` as a degraded part) while scaling goes on; a scale-up past what
the nodes hold is `pods-pending` with capacity or scale-back, never a rollback. Each test puts
the lab back as it found it (replicas, nodes) and waits until it is healthy again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from irlib.lab.faults import healthy
from tests.helpers import LabHandle, run_runbook, wait_until

NS = "trading"
API = "api-service"


def apply(lab: LabHandle, tmp_path: Path, obj: dict[str, Any]) -> None:
    path = tmp_path / f"{obj['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(obj))
    lab.kubectl("apply", "-f", str(path))


def bare_node(name: str, **status: Any) -> dict[str, Any]:
    """A Node with only what Kubernetes requires (a name), a Ready condition and `status`."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], **status},
    }


def api_pods(lab: LabHandle) -> list[dict[str, Any]]:
    out = lab.kubectl("get", "pods", "-n", NS, "-l", f"app={API}", "-o", "json").stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def replicas(lab: LabHandle) -> int:
    out = lab.kubectl("get", "deployment", API, "-n", NS, "-o", "json").stdout
    return int(json.loads(out)["spec"]["replicas"])


def scale(lab: LabHandle, n: int) -> None:
    lab.kubectl("scale", f"deployment/{API}", "-n", NS, f"--replicas={n}")


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def lab_status(lab: LabHandle) -> dict[str, Any]:
    result = lab.irlib("lab", "status", "--json", check=True)
    return dict(json.loads(result.stdout))


@contextmanager
def restored(lab: LabHandle, *nodes: str) -> Iterator[None]:
    """Whatever the test does: api-service back to its replicas, `nodes` deleted, the lab
    healthy again (every part ready, every pod ready) before the next test."""
    before = replicas(lab)
    try:
        yield
    finally:
        scale(lab, before)
        for node in nodes:
            lab.kubectl("delete", "node", node, "--ignore-not-found")
        wait_until(
            f"{before} {API} pods, none on {nodes}",
            lambda: (
                len(pods := api_pods(lab)) == before
                and not any(p["spec"].get("nodeName") in nodes for p in pods)
            ),
            timeout=90,
        )
        wait_until("the lab to be healthy again", lambda: healthy(lab.lab), timeout=90)


def test_a_node_with_only_a_name_and_a_ready_condition_gets_new_pods(
    lab: LabHandle, tmp_path: Path
) -> None:
    node = "node-minimal"
    with restored(lab, node):
        apply(lab, tmp_path, bare_node(node))
        start = replicas(lab)
        scale(lab, start + 3)
        # the scheduler spreads an app's pods: the empty node takes the first new one; its
        # (emulated) kubelet runs it, with an address from the pod CIDR the node was given
        placed = wait_until(
            f"a ready {API} pod on {node}",
            lambda: [p for p in api_pods(lab) if p["spec"].get("nodeName") == node and ready(p)],
        )
        assert placed[0]["status"]["podIP"] and placed[0]["status"]["hostIP"]
        wait_until(
            f"{start + 3} ready {API} pods",
            lambda: sum(ready(p) for p in api_pods(lab)) == start + 3,
        )
        nodes = lab.kubectl("get", "nodes", "-o", "json").stdout
        mine = next(n for n in json.loads(nodes)["items"] if n["metadata"]["name"] == node)
        # what its kubelet and the IPAM controller would have filled in
        assert mine["spec"]["podCIDR"] and mine["status"]["allocatable"]["cpu"]
        listed = lab.kubectl("get", "nodes", "--no-headers").stdout.splitlines()
        assert any(line.split()[:2] == [node, "Ready"] for line in listed), listed
        top = lab.kubectl("top", "nodes", "--no-headers").stdout.splitlines()
        assert any(line.split()[0] == node for line in top), top
        assert lab_status(lab)["kubernetes"]["state"] == "ready"


def test_a_malformed_node_fails_one_loop_visibly_while_scaling_goes_on(
    lab: LabHandle, tmp_path: Path
) -> None:
    bare, broken = "node-no-fields", "node-malformed"
    with restored(lab, bare, broken):
        # what crashed the controller before: a node with no spec, addresses or capacity
        apply(lab, tmp_path, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": bare}})
        # and one that no loop can read: an allocatable CPU that is not a quantity
        apply(lab, tmp_path, bare_node(broken, allocatable={"cpu": "lots"}))

        def failing() -> list[dict[str, Any]]:
            k = lab_status(lab)["kubernetes"]
            return [
                p
                for p in k.get("problems", [])
                if k["state"] == "degraded" and p["object"] == f"Node/{broken}"
            ]

        problem = wait_until("the failing loop in `irlib lab status`", failing)[0]
        assert problem["loop"] == "node-lifecycle" and "lots" in problem["error"]
        text = lab.irlib("lab", "status", check=True).stdout
        assert f"node-lifecycle loop failing on Node/{broken}" in text
        assert not healthy(lab.lab)  # a lab whose controller fails is not ready
        log = Path(lab.state_dir, "logs", "kubernetes.log").read_text()
        assert f"node-lifecycle loop failed on Node/{broken}" in log

        start = replicas(lab)
        scale(lab, start + 2)
        wait_until(
            f"{start + 2} ready {API} pods beside the failing loop",
            lambda: sum(ready(p) for p in api_pods(lab)) == start + 2,
        )
        assert any(p["spec"].get("nodeName") == bare for p in api_pods(lab))
        assert not any(p["spec"].get("nodeName") == broken for p in api_pods(lab))
        assert failing()  # still failing, still shown

        lab.kubectl("delete", "node", broken)
        wait_until(
            "the kubernetes part ready once the node is gone",
            lambda: lab_status(lab)["kubernetes"]["state"] == "ready",
        )


def test_a_scale_up_past_capacity_is_pods_pending_with_capacity_not_a_rollback(
    lab: LabHandle, tmp_path: Path
) -> None:
    with restored(lab):
        # three 4-CPU nodes hold about 40 api-service pods of 250m beside the other apps
        want = 60
        scale(lab, want)
        wait_until(
            "Pending api-service pods and the rest placed",
            lambda: (
                (pods := api_pods(lab))
                and len(pods) == want
                and any(p["status"].get("phase") == "Pending" for p in pods)
                and all(p["spec"].get("nodeName") or p["status"].get("conditions") for p in pods)
            ),  # every pod seen by the scheduler: bound, or marked Unschedulable
        )
        placed = sum(1 for p in api_pods(lab) if p["spec"].get("nodeName"))
        code, _, results = run_runbook(lab, "p1_system_unavailable", tmp_path)
        assert code == 1, results.get("verdict")
        causes = {c["id"]: c for c in results["verdict"]["causes"]}
        assert "pods-pending" in causes, causes
        cause = causes["pods-pending"]
        mitigations = [m for c in causes.values() for m in c["mitigations"]]
        assert not any(m.startswith("rollback:") for m in mitigations), mitigations
        assert "Request emergency node addition" in cause["advice"]
        # scale back to what the nodes hold: as many as the scheduler could place
        assert cause["mitigations"] == [f"scale:{API}={placed}"], cause
        assert f"fit {placed} {API} pod(s)" in cause["evidence"]
