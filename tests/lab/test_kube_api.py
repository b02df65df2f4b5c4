"""The lab's Kubernetes API emulator, driven as production is: the real kubectl and the
official Python client through a kubeconfig, against the emulator started as a process.

One emulator serves the module; a fake /livez makes api-service's pods ready. Each test puts
back what it changed (or works on a deployment of its own).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch

from irlib.lab.kube import patch, podlogs, selectors
from tests.helpers import wait_until
from tests.lab.kube_fixtures import Emulator, Listener, Livez, start_emulator

NS = "trading"
API = "api-service"
REGISTRY = "registry.example.com/trading"
CRASH_LOG = [
    "INFO starting crasher 0.1.0 on :8080",
    "Traceback (most recent call last):",
    '  File "/app/main.py", line 42, in <module>',
    "KeyError: 'TRADING_DB_POOL_SIZE'",
]


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = start_emulator(tmp_path_factory.mktemp("kube"))
    probe = emulator.livez = Livez(emulator.config.ports["api"]).start()
    # the execution-service's pods are ready when its process answers /livez, as api's are
    execution = Livez(emulator.config.ports["execution"]).start()
    calibration = Livez(emulator.config.ports["calibration_service"]).start()
    try:
        wait_until("api-service pods ready", lambda: _ready_count(emulator, API) == 3)
        yield emulator
    finally:
        execution.stop()
        calibration.stop()
        probe.stop()
        code = emulator.stop()
        assert code == 0, f"the emulator exited {code} on SIGTERM:\n{emulator.log.read_text()}"


@pytest.fixture(scope="module")
def api(emu: Emulator) -> client.ApiClient:
    return config.new_client_from_config(config_file=emu.kubeconfig)


def _pods(emu: Emulator, app: str) -> list[dict]:
    out = emu.kubectl("get", "pods", "-n", NS, "-l", f"app={app}", "-o", "json").stdout
    return json.loads(out)["items"]


def _ready(pod: dict) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _ready_count(emu: Emulator, app: str) -> int:
    return sum(1 for p in _pods(emu, app) if _ready(p))


def _columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def _api_pod(emu: Emulator) -> str:
    return next(p["metadata"]["name"] for p in _pods(emu, API) if _ready(p))


def _image(emu: Emulator, deployment: str) -> str:
    return emu.kubectl(
        "get",
        f"deployment/{deployment}",
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout


def _healthy_api(emu: Emulator) -> None:
    emu.kubectl("rollout", "status", f"deployment/{API}", "-n", NS, "--timeout=20s", timeout=30)
    wait_until("3 api pods", lambda: len(_pods(emu, API)) == 3)


# -- discovery and tables ---------------------------------------------------------------


def test_kubectl_discovers_the_api_groups(emu: Emulator) -> None:
    version = json.loads(emu.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.32")
    rows = {
        tuple(line.split())
        for line in emu.kubectl("api-resources", "--no-headers").stdout.splitlines()
    }
    assert {
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("pods", "po", "v1", "true", "Pod"),
        ("ingresses", "ing", "networking.k8s.io/v1", "true", "Ingress"),
        ("pods", "metrics.k8s.io/v1beta1", "true", "PodMetrics"),
        ("nodes", "metrics.k8s.io/v1beta1", "false", "NodeMetrics"),
    } <= rows


@pytest.mark.parametrize(
    ("resource", "header"),
    [
        ("pods", ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        ("deployments", ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]),
        ("replicasets", ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]),
        ("statefulsets", ["NAME", "READY", "AGE"]),
        ("nodes", ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]),
        ("events", ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]),
        ("ingress", ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]),
        ("services", ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]),
        ("endpoints", ["NAME", "ENDPOINTS", "AGE"]),
        ("namespaces", ["NAME", "STATUS", "AGE"]),
    ],
    ids=[
        "pods",
        "deployments",
        "replicasets",
        "statefulsets",
        "nodes",
        "events",
        "ingress",
        "services",
        "endpoints",
        "namespaces",
    ],
)
def test_get_prints_the_servers_table(emu: Emulator, resource: str, header: list[str]) -> None:
    lines = emu.kubectl("get", resource, "-n", NS).stdout.splitlines()
    assert _columns(lines[0]) == header
    assert len(lines) > 1


@pytest.mark.parametrize(
    ("resource", "extra"),
    [
        ("pods", ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]),
        ("deployments", ["CONTAINERS", "IMAGES", "SELECTOR"]),
        ("replicasets", ["CONTAINERS", "IMAGES", "SELECTOR"]),
        (
            "nodes",
            ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"],
        ),
    ],
    ids=["pods", "deployments", "replicasets", "nodes"],
)
def test_wide_output_adds_the_priority_columns(
    emu: Emulator, resource: str, extra: list[str]
) -> None:
    header = emu.kubectl("get", resource, "-n", NS, "-o", "wide").stdout.splitlines()[0]
    assert _columns(header)[-len(extra) :] == extra


def test_table_cells_read_like_a_cluster(emu: Emulator) -> None:
    pods = emu.kubectl("get", "pods", "-n", NS, "-l", f"app={API}", "-o", "wide").stdout
    for line in pods.splitlines()[1:]:
        _, ready, status, restarts, _, ip, node, *_ = _columns(line)
        assert (ready, status, restarts) == ("1/1", "Running", "0")
        assert re.fullmatch(r"10\.244\.\d+\.\d+", ip) and re.fullmatch(r"node-\d", node)
    deploy = emu.kubectl("get", "deployment", API, "-n", NS).stdout.splitlines()[1]
    assert _columns(deploy)[:4] == [API, "3/3", "3", "3"]
    nodes = emu.kubectl("get", "nodes", "-o", "wide").stdout.splitlines()[1:]
    assert [_columns(n)[:2] for n in nodes] == [[f"node-{i}", "Ready"] for i in (1, 2, 3)]
    assert "10.0.0.11" in nodes[0] and "v1.32" in nodes[0]
    ingress = emu.kubectl("get", "ingress", "-n", NS).stdout.splitlines()[1]
    assert _columns(ingress)[:5] == [
        "trading-api",
        "nginx",
        "api.trading.example.com",
        "127.0.0.1",
        "80",
    ]
    sts = emu.kubectl("get", "statefulsets", "-n", NS).stdout
    assert re.search(r"timescaledb\s+0/1", sts) and re.search(r"redis\s+0/1", sts)


@pytest.mark.parametrize(
    "output",
    ["json", "yaml", "jsonpath={.items[*].metadata.name}"],
    ids=["json", "yaml", "jsonpath"],
)
def test_get_pods_by_label_in_machine_formats(emu: Emulator, output: str) -> None:
    out = emu.kubectl("get", "pods", "-n", NS, "-l", f"app={API}", "-o", output).stdout
    if output == "json":
        names = [p["metadata"]["name"] for p in json.loads(out)["items"]]
    elif output == "yaml":
        doc = yaml.safe_load(out)
        assert doc["kind"] == "List" and doc["items"][0]["kind"] == "Pod"
        names = [p["metadata"]["name"] for p in doc["items"]]
    else:
        names = out.split()
    assert len(names) == 3 and all(n.startswith(f"{API}-") for n in names)


@pytest.mark.parametrize(
    ("selector", "apps"),
    [
        (f"app={API}", {API}),
        (f"app=={API}", {API}),
        ("app in (redis,timescaledb)", {"redis", "timescaledb"}),
        (
            "app notin (api-service,redis,timescaledb)",
            {"execution-service", "calibration-service", "data-ingestion"},
        ),
        (
            f"app!={API},!statefulset.kubernetes.io/pod-name",
            {"execution-service", "calibration-service", "data-ingestion"},
        ),
        ("statefulset.kubernetes.io/pod-name", {"redis", "timescaledb"}),
    ],
    ids=["equals", "double-equals", "in", "notin", "not-equal-and-not-exists", "exists"],
)
def test_label_selectors(emu: Emulator, selector: str, apps: set[str]) -> None:
    out = emu.kubectl("get", "pods", "-n", NS, "-l", selector, "-o", "json").stdout
    assert {p["metadata"]["labels"]["app"] for p in json.loads(out)["items"]} == apps


def test_field_selectors(emu: Emulator) -> None:
    pod = _api_pod(emu)
    one = emu.kubectl(
        "get", "pods", "-A", "--field-selector", f"metadata.name={pod}", "-o", "name"
    ).stdout
    assert one.split() == [f"pod/{pod}"]
    node = emu.kubectl("get", "pod", pod, "-n", NS, "-o", "jsonpath={.spec.nodeName}").stdout
    on_node = emu.kubectl(
        "get", "pods", "-n", NS, "--field-selector", f"spec.nodeName={node}", "-o", "json"
    ).stdout
    assert {p["spec"]["nodeName"] for p in json.loads(on_node)["items"]} == {node}


def test_not_found_is_a_status(emu: Emulator, api: client.ApiClient) -> None:
    result = emu.kubectl("get", "pod", "nope", "-n", NS, check=False)
    assert result.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in result.stderr
    with pytest.raises(client.ApiException) as info:
        client.AppsV1Api(api).read_namespaced_deployment("nope", NS)
    assert info.value.status == 404
    assert json.loads(info.value.body)["message"] == 'deployments.apps "nope" not found'


# -- events, describe, logs ---------------------------------------------------------------


def test_events_sort_by_last_timestamp(emu: Emulator) -> None:
    emu.kubectl("delete", "pod", _api_pod(emu), "-n", NS)  # some fresh events
    _healthy_api(emu)
    table = emu.kubectl("get", "events", "-n", NS, "--sort-by=.lastTimestamp").stdout.splitlines()
    assert _columns(table[0]) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    stamps = emu.kubectl(
        "get",
        "events",
        "-n",
        NS,
        "--sort-by=.lastTimestamp",
        "-o",
        "custom-columns=LAST:.lastTimestamp",
        "--no-headers",
    ).stdout.split()
    assert stamps == sorted(stamps) and len(stamps) >= 5
    reasons = {_columns(line)[2] for line in table[1:]}
    assert {"Scheduled", "Pulling", "Created", "Started", "Killing", "SuccessfulCreate"} <= reasons


def test_describe_pod(emu: Emulator) -> None:
    emu.kubectl("delete", "pod", _api_pod(emu), "-n", NS)
    _healthy_api(emu)
    newest = max(_pods(emu, API), key=lambda p: p["metadata"]["creationTimestamp"])
    name = newest["metadata"]["name"]
    text = emu.kubectl("describe", "pod", name, "-n", NS).stdout
    for expected in (
        f"Name:             {name}",
        "Namespace:        trading",
        "Status:           Running",
        "Controlled By:  ReplicaSet/api-service-",
        f"Image:          {REGISTRY}/api-service:1.8.2",
        "Readiness:  http-get http://:8080/livez",
        "QoS Class:                    Burstable",
        f"Successfully assigned trading/{name} to node-",
        "Started container api-service",
    ):
        assert expected in text, expected
    assert re.search(r"Ready\s+True", text)


def test_logs_of_a_pod_and_by_label(emu: Emulator) -> None:
    pod = _api_pod(emu)
    assert "INFO starting api-service 1.8.2 on :8080" in emu.kubectl("logs", pod, "-n", NS).stdout
    # the api process appends its request log to each pod's file
    now = time.time()
    for p in _pods(emu, API):
        name = p["metadata"]["name"]
        with open(podlogs.path(emu.config.pods_dir, name), "a") as f:
            f.write(f"{podlogs.stamp(now - 3600)} INFO GET /health 200 2.0ms pod={name} old\n")
            f.write(f"{podlogs.stamp(now)} INFO GET /health 200 3.1ms pod={name} new\n")
    out = emu.kubectl("logs", "-n", NS, "-l", f"app={API}", "--tail=5", "--since=10m").stdout
    for p in _pods(emu, API):
        assert f"pod={p['metadata']['name']} new" in out
        assert f"pod={p['metadata']['name']} old" not in out
    tail = emu.kubectl("logs", pod, "-n", NS, "--tail=1", "--timestamps").stdout.splitlines()
    assert len(tail) == 1 and tail[0].endswith(" new")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \d{4}-", tail[0])


def test_follow_streams_appended_lines(emu: Emulator) -> None:
    pod = _api_pod(emu)
    cmd = emu.command("logs", "-f", pod, "-n", NS, "--tail=0")
    follower = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert follower.stdout is not None
    try:
        # --tail=0: a line appended before kubectl is following is (rightly) never printed, and
        # kubectl may take seconds to start on a busy machine: append one each second until seen
        deadline, readable = time.monotonic() + 60, list[Any]()
        while not readable and time.monotonic() < deadline:
            with open(podlogs.path(emu.config.pods_dir, pod), "a") as f:
                f.write(f"{podlogs.stamp(time.time())} INFO order 4711 filled\n")
            readable, _, _ = select.select([follower.stdout], [], [], 1)
        assert readable, "kubectl logs -f printed nothing in 60 s"
        assert "INFO order 4711 filled" in follower.stdout.readline()
    finally:
        follower.terminate()
        follower.wait(5)


def test_previous_logs_of_a_container_that_never_restarted(emu: Emulator) -> None:
    pod = _api_pod(emu)
    result = emu.kubectl("logs", pod, "-n", NS, "--previous", check=False)
    assert result.returncode == 1
    assert f'previous terminated container "api-service" in pod "{pod}" not found' in result.stderr


# -- rollouts ----------------------------------------------------------------------------


def _history(emu: Emulator) -> dict[str, str]:
    out = emu.kubectl("rollout", "history", f"deployment/{API}", "-n", NS).stdout
    rows = [line.split(None, 1) for line in out.splitlines()[2:] if line.strip()]
    return {r[0]: r[1].strip() if len(r) > 1 else "" for r in rows}


def test_rollout_history_set_image_and_undo(emu: Emulator) -> None:
    history = _history(emu)
    assert history["1"] == "deploy api-service 1.8.1"
    assert history["2"].startswith("deploy api-service 1.8.2")
    top = max(int(r) for r in history)
    emu.kubectl(
        "set", "image", f"deployment/{API}", f"{API}={REGISTRY}/api-service:1.9.0", "-n", NS
    )
    wait_until("a new revision", lambda: str(top + 1) in _history(emu))
    assert _image(emu, API) == f"{REGISTRY}/api-service:1.9.0"
    _healthy_api(emu)
    assert {p["spec"]["containers"][0]["image"] for p in _pods(emu, API)} == {
        f"{REGISTRY}/api-service:1.9.0"
    }
    out = emu.kubectl("rollout", "undo", f"deployment/{API}", "-n", NS).stdout
    assert "rolled back" in out
    assert _image(emu, API) == f"{REGISTRY}/api-service:1.8.2"
    _healthy_api(emu)
    history = _history(emu)
    assert str(top + 2) in history and str(top) not in history  # re-numbered, as kube does
    rs = json.loads(emu.kubectl("get", "rs", "-n", NS, "-l", f"app={API}", "-o", "json").stdout)[
        "items"
    ]
    current = next(r for r in rs if r["spec"]["replicas"] == 3)
    annotations = current["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == str(top + 2)
    assert str(top) in annotations["deployment.kubernetes.io/revision-history"].split(",")
    assert current["metadata"]["ownerReferences"][0]["kind"] == "Deployment"


def test_rollout_status_waits_while_pods_are_not_ready(emu: Emulator) -> None:
    emu.livez.status = 503
    try:
        wait_until("api pods not ready", lambda: _ready_count(emu, API) == 0)
        t0 = time.monotonic()
        result = emu.kubectl(
            "rollout", "status", f"deployment/{API}", "-n", NS, "--timeout=2s", check=False
        )
        assert result.returncode == 1 and time.monotonic() - t0 >= 1.5
        assert "0 of 3 updated replicas are available" in result.stdout
        pods = emu.kubectl("get", "pods", "-n", NS, "-l", f"app={API}").stdout.splitlines()[1:]
        assert all(_columns(p)[1:3] == ["0/1", "Running"] for p in pods)
        endpoints = emu.kubectl("get", "endpoints", API, "-n", NS).stdout
        assert "<none>" in endpoints
        events = emu.kubectl(
            "get", "events", "-n", NS, "--field-selector", "reason=Unhealthy"
        ).stdout
        assert "HTTP probe failed with statuscode: 503" in events
    finally:
        emu.livez.status = 200
    _healthy_api(emu)
    assert (
        "successfully rolled out"
        in emu.kubectl("rollout", "status", f"deployment/{API}", "-n", NS, "--timeout=5s").stdout
    )


def test_scale_deployment(emu: Emulator) -> None:
    emu.kubectl("scale", f"deployment/{API}", "--replicas=5", "-n", NS)
    try:
        wait_until("5 ready api pods", lambda: _ready_count(emu, API) == 5)
        deploy = emu.kubectl("get", "deployment", API, "-n", NS).stdout.splitlines()[1]
        assert _columns(deploy)[1] == "5/5"
        endpoints = json.loads(emu.kubectl("get", "endpoints", API, "-n", NS, "-o", "json").stdout)
        assert len(endpoints["subsets"][0]["addresses"]) == 5
    finally:
        emu.kubectl("scale", f"deployment/{API}", "--replicas=3", "-n", NS)
    wait_until("3 api pods", lambda: len(_pods(emu, API)) == 3)


def test_delete_pod_returns_promptly_and_is_replaced(emu: Emulator) -> None:
    before = {p["metadata"]["name"] for p in _pods(emu, API)}
    victim = sorted(before)[0]
    t0 = time.monotonic()
    out = emu.kubectl("delete", "pod", victim, "-n", NS).stdout
    # well under the 30 s grace period a delete that waited for it would take (kubectl waits)
    assert f'pod "{victim}" deleted' in out and time.monotonic() - t0 < 25
    after = wait_until(
        "a replacement",
        lambda: (names := {p["metadata"]["name"] for p in _pods(emu, API)}) - before and names,
    )
    assert victim not in after and len(after) == 3
    _healthy_api(emu)


def test_statefulset_pod_comes_back_with_its_name(emu: Emulator) -> None:
    uid = json.loads(emu.kubectl("get", "pod", "redis-0", "-n", NS, "-o", "json").stdout)[
        "metadata"
    ]["uid"]
    emu.kubectl("delete", "pod", "redis-0", "-n", NS)

    def new_uid() -> str | None:
        result = emu.kubectl(
            "get", "pod", "redis-0", "-n", NS, "-o", "jsonpath={.metadata.uid}", check=False
        )
        return result.stdout if result.returncode == 0 and result.stdout not in ("", uid) else None

    wait_until("redis-0 again", new_uid)
    # and running: a later test (test_node_not_ready) must not find it still being created
    wait_until("redis-0 running", lambda: _all_running(emu, "redis"))


# -- metrics -----------------------------------------------------------------------------


def test_top_pods_and_nodes(emu: Emulator) -> None:
    pods = emu.kubectl("top", "pods", "-n", NS).stdout.splitlines()
    assert _columns(pods[0]) == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    rows = {_columns(r)[0]: _columns(r)[1:] for r in pods[1:]}
    api_rows = [v for k, v in rows.items() if k.startswith(API)]
    assert len(api_rows) == 3
    assert all(re.fullmatch(r"\d+m", cpu) and re.fullmatch(r"\d+Mi", mem) for cpu, mem in api_rows)
    nodes = emu.kubectl("top", "nodes").stdout.splitlines()
    assert _columns(nodes[0])[:3] == ["NAME", "CPU(cores)", "CPU(%)"]
    assert sorted(_columns(n)[0] for n in nodes[1:]) == ["node-1", "node-2", "node-3"]


def test_api_metrics_come_from_the_api_process(emu: Emulator) -> None:
    pid_file = emu.config.run_dir / "api.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()} 0\n")  # this test process stands in for the api
    rss_kib = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    try:

        def api_memory() -> list[int]:
            rows = emu.kubectl("top", "pods", "-n", NS, "-l", f"app={API}").stdout.splitlines()[1:]
            return [int(_columns(r)[2].rstrip("Mi")) for r in rows]

        share = rss_kib / 1024 / 3
        wait_until("real figures", lambda: all(abs(m - share) < share * 0.5 for m in api_memory()))
    finally:
        pid_file.unlink()


# -- faults from the control file ---------------------------------------------------------


def _restarts(pod: dict) -> int:
    return sum(s.get("restartCount", 0) for s in pod["status"].get("containerStatuses") or [])


@pytest.mark.slow
def test_crashing_image_crash_loops(emu: Emulator, api: client.ApiClient) -> None:
    image = f"{REGISTRY}/crasher:0.1.0"
    emu.control(crashing_images={image: {"reason": "Error", "exit_code": 1, "log": CRASH_LOG}})
    apps = client.AppsV1Api(api)
    body = {
        "metadata": {"name": "crasher", "labels": {"app": "crasher"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "crasher"}},
            "template": {
                "metadata": {"labels": {"app": "crasher"}},
                "spec": {"containers": [{"name": "crasher", "image": image}]},
            },
        },
    }
    apps.create_namespaced_deployment(NS, body)
    try:
        wait_until(
            "CrashLoopBackOff",
            lambda: (
                "CrashLoopBackOff"
                in emu.kubectl("get", "pods", "-n", NS, "-l", "app=crasher").stdout
            ),
        )
        first = _restarts(_pods(emu, "crasher")[0])
        wait_until(
            "restarts climbing", lambda: _restarts(_pods(emu, "crasher")[0]) > first, timeout=15
        )
        pod = _pods(emu, "crasher")[0]
        state = pod["status"]["containerStatuses"][0]
        assert state["lastState"]["terminated"]["exitCode"] == 1 and not state["ready"]
        row = emu.kubectl("get", "pods", "-n", NS, "-l", "app=crasher").stdout.splitlines()[1]
        assert re.fullmatch(r"\d+ \(\d+s ago\)", _columns(row)[3])
        name = pod["metadata"]["name"]
        previous = emu.kubectl("logs", name, "-n", NS, "--previous").stdout
        assert "KeyError: 'TRADING_DB_POOL_SIZE'" in previous
        text = client.CoreV1Api(api).read_namespaced_pod_log(name, NS, previous=True, tail_lines=1)
        assert text == "KeyError: 'TRADING_DB_POOL_SIZE'\n"
        events = emu.kubectl(
            "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={name}"
        ).stdout
        assert "Back-off restarting failed container crasher" in events
    finally:
        emu.control(crashing_images=None)
        apps.delete_namespaced_deployment("crasher", NS)
    wait_until("crasher's pods gone", lambda: not _pods(emu, "crasher"))


@pytest.mark.slow
def test_oom_killed_deployment(emu: Emulator) -> None:
    app = "calibration-service"
    emu.control(oom_killed={app: "2Gi"})
    try:
        wait_until(
            "OOMKilled",
            lambda: all(
                (s.get("lastState", {}).get("terminated") or {}).get("reason") == "OOMKilled"
                for p in _pods(emu, app)
                for s in p["status"]["containerStatuses"]
            ),
        )
        pod = _pods(emu, app)[0]["metadata"]["name"]
        text = emu.kubectl("describe", "pod", pod, "-n", NS).stdout
        assert re.search(r"Last State:\s+Terminated\s+Reason:\s+OOMKilled\s+Exit Code:\s+137", text)
        top = emu.kubectl("top", "pods", "-n", NS, "-l", f"app={app}").stdout.splitlines()[1:]
        assert all(1900 <= int(_columns(r)[2].rstrip("Mi")) <= 2048 for r in top)
        assert _ready_count(emu, app) == 0
    finally:
        emu.control(oom_killed=None)
    wait_until("recovered", lambda: _ready_count(emu, app) == 2, timeout=15)
    assert all(_restarts(p) >= 1 for p in _pods(emu, app))  # restarts are history, kept


def _all_running(emu: Emulator, app: str | None = None) -> bool:
    """Every container of the namespace's pods (of `app`) started: none is being created."""
    out = emu.kubectl("get", "pods", "-n", NS, *(["-l", f"app={app}"] if app else []), "-o", "json")
    pods = json.loads(out.stdout)["items"]
    return bool(pods) and all(
        "running" in s.get("state", {})
        for p in pods
        for s in p["status"].get("containerStatuses") or [{}]
    )


def test_node_not_ready(emu: Emulator) -> None:
    # a pod still being created when its node goes is not the stranded pod this test reads
    wait_until("every pod running", lambda: _all_running(emu))
    emu.control(not_ready_nodes=["node-3"])
    try:

        def status() -> dict[str, str]:
            rows = emu.kubectl("get", "nodes").stdout.splitlines()[1:]
            return {_columns(r)[0]: _columns(r)[1] for r in rows}

        wait_until("node-3 NotReady", lambda: status()["node-3"] == "NotReady")
        assert status()["node-1"] == status()["node-2"] == "Ready"
        node = json.loads(emu.kubectl("get", "node", "node-3", "-o", "json").stdout)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
        assert ready["message"] == "Kubelet stopped posting node status."
        taints = {(t["key"], t["effect"]) for t in node["spec"]["taints"]}
        assert ("node.kubernetes.io/unreachable", "NoSchedule") in taints
        selector = ["--field-selector", "spec.nodeName=node-3"]
        stranded = emu.kubectl("get", "pods", "-n", NS, *selector).stdout.splitlines()[1:]
        assert stranded and all(_columns(r)[1:3] == ["0/1", "Running"] for r in stranded)
        events = emu.kubectl("get", "events", "-A", "--field-selector", "involvedObject.kind=Node")
        assert re.search(r"NodeNotReady\s+node/node-3", events.stdout)
        # a new pod is not scheduled there
        before = {p["metadata"]["name"] for p in _pods(emu, API)}
        emu.kubectl("scale", f"deployment/{API}", "--replicas=4", "-n", NS)
        new = wait_until(
            "a 4th api pod",
            lambda: [
                p for p in _pods(emu, API) if p["metadata"]["name"] not in before and _ready(p)
            ],
        )
        assert new[0]["spec"]["nodeName"] != "node-3"
    finally:
        emu.kubectl("scale", f"deployment/{API}", "--replicas=3", "-n", NS)
        emu.control(not_ready_nodes=None)
    wait_until("Ready again", lambda: "NotReady" not in emu.kubectl("get", "nodes").stdout)
    _healthy_api(emu)


def test_huge_cpu_request_leaves_pods_pending(emu: Emulator, api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)

    def requests(cpu: str) -> dict:
        return {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": API, "resources": {"requests": {"cpu": cpu}}}]}
                }
            }
        }

    apps.patch_namespaced_deployment(API, NS, requests("64"))
    try:
        pending = wait_until(
            "Pending pods",
            lambda: [p for p in _pods(emu, API) if p["status"].get("phase") == "Pending"],
        )
        cond = next(c for c in pending[0]["status"]["conditions"] if c["type"] == "PodScheduled")
        assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
        name = pending[0]["metadata"]["name"]
        events = emu.kubectl(
            "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={name}"
        ).stdout
        assert "FailedScheduling" in events
        assert (
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
            "3 No preemption victims found for incoming pod."
        ) in events
        assert _ready_count(emu, API) == 3  # the rollout is stuck; the old pods keep serving
        result = emu.kubectl(
            "rollout", "status", f"deployment/{API}", "-n", NS, "--timeout=1s", check=False
        )
        assert result.returncode == 1
    finally:
        apps.patch_namespaced_deployment(API, NS, requests("250m"))
    wait_until(
        "no Pending pods",
        lambda: all(p["status"].get("phase") != "Pending" for p in _pods(emu, API)),
    )
    _healthy_api(emu)


def test_timescaledb_ready_follows_the_postgres_port(emu: Emulator) -> None:
    def ready() -> bool:
        pod = json.loads(emu.kubectl("get", "pod", "timescaledb-0", "-n", NS, "-o", "json").stdout)
        return _ready(pod)

    assert not ready()
    with Listener(emu.config.ports["postgres"]):
        wait_until("timescaledb-0 ready", ready)
        row = emu.kubectl("get", "pod", "timescaledb-0", "-n", NS).stdout.splitlines()[1]
        assert _columns(row)[1:3] == ["1/1", "Running"]
        endpoints = json.loads(
            emu.kubectl("get", "endpoints", "timescaledb", "-n", NS, "-o", "json").stdout
        )
        assert endpoints["subsets"][0]["addresses"][0]["hostname"] == "timescaledb-0"
    wait_until("timescaledb-0 not ready", lambda: not ready())


# -- the Python client -------------------------------------------------------------------


def test_python_client_reads(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(NS, label_selector=f"app={API}").items
    assert len(pods) == 3 and all(p.status.phase == "Running" for p in pods)
    assert all(p.metadata.owner_references[0].kind == "ReplicaSet" for p in pods)
    log = core.read_namespaced_pod_log(pods[0].metadata.name, NS, tail_lines=1)
    assert log.count("\n") == 1
    ingresses = client.NetworkingV1Api(api).list_namespaced_ingress(NS).items
    assert [i.spec.rules[0].host for i in ingresses] == ["api.trading.example.com"]
    metrics = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", NS, "pods"
    )
    names = {m["metadata"]["name"] for m in metrics["items"]}
    assert {p.metadata.name for p in pods} <= names
    assert all(c["usage"]["cpu"].endswith("n") for m in metrics["items"] for c in m["containers"])
    nodes = client.CustomObjectsApi(api).list_cluster_custom_object(
        "metrics.k8s.io", "v1beta1", "nodes"
    )
    assert len(nodes["items"]) == 3
    assert core.read_node("node-1").status.allocatable == {
        "cpu": "4",
        "ephemeral-storage": "96625420948",
        "hugepages-2Mi": "0",
        "memory": "16Gi",
        "pods": "110",
    }


def test_python_client_patches_and_scales(emu: Emulator, api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    app = "execution-service"
    generation = apps.read_namespaced_deployment(app, NS).metadata.generation
    dep = apps.patch_namespaced_deployment(
        app,
        NS,
        {
            "metadata": {"annotations": {"team": "execution"}},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": app, "env": [{"name": "BROKER_TIMEOUT_MS", "value": "1500"}]}
                        ]
                    }
                }
            },
        },
    )
    assert dep.metadata.generation == generation + 1
    assert dep.spec.template.spec.containers[0].image == f"{REGISTRY}/{app}:2.4.0"  # merged, kept
    assert dep.spec.template.spec.containers[0].env[0].value == "1500"
    scale = apps.patch_namespaced_deployment_scale(app, NS, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3 and scale.status.selector == f"app={app}"
    wait_until("3 ready pods", lambda: _ready_count(emu, app) == 3 and len(_pods(emu, app)) == 3)
    apps.patch_namespaced_deployment_scale(app, NS, {"spec": {"replicas": 2}})
    dep = apps.patch_namespaced_deployment(
        app, NS, [{"op": "remove", "path": "/spec/template/spec/containers/0/env"}]
    )
    assert dep.spec.template.spec.containers[0].env is None
    wait_until("2 pods", lambda: len(_pods(emu, app)) == 2 and _ready_count(emu, app) == 2)


def test_watch_with_field_selector_sees_the_change(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    listing = apps.list_namespaced_deployment(NS, field_selector="metadata.name=data-ingestion")
    rv = listing.metadata.resource_version
    apps.patch_namespaced_deployment(
        "data-ingestion", NS, {"metadata": {"labels": {"tier": "ingest"}}}
    )
    seen = []
    for event in watch.Watch().stream(
        apps.list_namespaced_deployment,
        NS,
        field_selector="metadata.name=data-ingestion",
        resource_version=rv,
        timeout_seconds=2,
    ):
        seen.append(
            (
                event["type"],
                event["object"].metadata.name,
                event["object"].metadata.labels.get("tier"),
            )
        )
        break
    assert seen == [("MODIFIED", "data-ingestion", "ingest")]
    apps.patch_namespaced_deployment("data-ingestion", NS, {"metadata": {"labels": {"tier": None}}})


def test_kubectl_apply_works_without_an_openapi_schema(emu: Emulator, tmp_path: Path) -> None:
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "applied", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "applied"}},
            "template": {
                "metadata": {"labels": {"app": "applied"}},
                "spec": {"containers": [{"name": "applied", "image": f"{REGISTRY}/applied:1"}]},
            },
        },
    }
    path = tmp_path / "applied.yaml"
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    try:
        for tag, verb in (("1", "created"), ("2", "configured")):
            container["image"] = f"{REGISTRY}/applied:{tag}"
            path.write_text(yaml.safe_dump(manifest))
            assert f"deployment.apps/applied {verb}" in emu.kubectl("apply", "-f", str(path)).stdout
            wait_until(
                f"applied:{tag} ready",
                lambda tag=tag: [
                    p
                    for p in _pods(emu, "applied")
                    if p["spec"]["containers"][0]["image"].endswith(f":{tag}") and _ready(p)
                ],
            )
    finally:
        emu.kubectl("delete", "-f", str(path), "--ignore-not-found")
    wait_until("applied's pods gone", lambda: not _pods(emu, "applied"))


# -- the process -------------------------------------------------------------------------


def test_sigterm_stops_it_cleanly_with_a_watch_open(tmp_path: Path) -> None:
    emulator = start_emulator(tmp_path)
    try:
        watcher = subprocess.Popen(
            emulator.command("get", "pods", "-n", NS, "--watch"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        assert emulator.stop() == 0  # stop() raises if it has not exited within 10 s
        watcher.wait(10)
    finally:
        if emulator.proc.poll() is None:
            emulator.proc.kill()


# -- patch flavours and selectors, as pure functions --------------------------------------

CONTAINERS = {
    "spec": {
        "containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"},
        ]
    }
}


@pytest.mark.parametrize(
    ("patch_body", "expected"),
    [
        (  # what `kubectl set image` sends
            {
                "spec": {
                    "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                    "containers": [{"image": "a:2", "name": "a"}],
                }
            },
            [("a", "a:2"), ("b", "b:1")],
        ),
        (
            {"spec": {"containers": [{"name": "c", "image": "c:1"}]}},
            [("a", "a:1"), ("b", "b:1"), ("c", "c:1")],
        ),
        ({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}, [("b", "b:1")]),
        (
            {"spec": {"containers": [{"name": "z", "image": "z:1"}, {"$patch": "replace"}]}},
            [("z", "z:1")],
        ),
        (
            {
                "spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                    "containers": [{"name": "b", "image": "b:2"}],
                }
            },
            [("b", "b:2"), ("a", "a:1")],
        ),
    ],
    ids=["set-image", "append", "delete-directive", "replace-directive", "element-order"],
)
def test_strategic_merge_patch(patch_body: dict, expected: list[tuple[str, str]]) -> None:
    out = patch.strategic_merge(CONTAINERS, patch_body)
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == expected
    if ("a", "a:1") in expected or ("a", "a:2") in expected:
        assert next(c for c in out["spec"]["containers"] if c["name"] == "a")["env"] == [
            {"name": "X", "value": "1"}
        ]


@pytest.mark.parametrize(
    ("content_type", "body", "replicas"),
    [
        ("application/merge-patch+json", {"spec": {"replicas": 4}}, 4),
        (
            "application/json-patch+json",
            [{"op": "replace", "path": "/spec/replicas", "value": 5}],
            5,
        ),
        ("application/strategic-merge-patch+json", {"spec": {"replicas": 6}}, 6),
    ],
    ids=["merge", "json", "strategic"],
)
def test_patch_types(content_type: str, body: object, replicas: int) -> None:
    assert patch.apply_patch(content_type, {"spec": {"replicas": 3, "x": 1}}, body) == {
        "spec": {"replicas": replicas, "x": 1}
    }


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("app=a,tier!=db", {"app": "a", "tier": "web"}, True),
        ("app in (a, b)", {"app": "b"}, True),
        ("app notin (a,b)", {}, True),
        ("!canary", {"canary": "1"}, False),
        ("canary", {"canary": "1"}, True),
    ],
    ids=["and", "in", "notin-absent", "not-exists", "exists"],
)
def test_label_selector_parsing(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert selectors.label_matcher(selector)(labels) is matches
