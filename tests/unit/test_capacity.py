"""irlib.k8s.capacity: the scheduler's arithmetic a verdict uses to size a scale-back."""

from __future__ import annotations

from irlib.k8s import capacity

MI = 2**20


def test_replicas_that_fit_count_what_other_apps_leave_on_each_node() -> None:
    nodes = {
        "a": {"cpu_m": 4000.0, "memory": 16384.0 * MI, "pods": 110.0},
        "b": {"cpu_m": 4000.0, "memory": 1024.0 * MI, "pods": 110.0},  # memory binds here
    }
    requested = {
        "a": {"db": {"cpu_m": 1500.0, "memory": 0.0, "pods": 1.0}, "api": {"cpu_m": 9e9}},
        "b": {},
    }
    per_pod = {"cpu_m": 250.0, "memory": 512.0 * MI}
    # a: (4000 - 1500) // 250 = 10 (the app's own pods do not count: it is placed afresh)
    # b: 1024Mi // 512Mi = 2
    assert capacity.replicas_that_fit(nodes, requested, "api", per_pod) == 12


def test_a_pod_without_requests_is_bounded_by_the_pod_count() -> None:
    nodes = {"a": {"cpu_m": 0.0, "memory": 0.0, "pods": 5.0}}
    assert capacity.replicas_that_fit(nodes, {}, "api", {"cpu_m": 0.0, "memory": 0.0}) == 5


def test_requests_of_a_pod_and_what_grew() -> None:
    pod = {
        "spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}},
                {"resources": {"requests": {"cpu": "1"}}},
                {},
            ]
        }
    }
    req = capacity.pod_requests(pod)
    assert req == {"cpu_m": 1250.0, "memory": 512.0 * MI, "pods": 1.0}
    assert capacity.grew({**req, "cpu_m": 8000.0}, req) == ["cpu_m"]
    assert capacity.grew(req, req) == [] and capacity.grew(req, None) == []
    assert capacity.describe({"cpu_m": 8000.0, "memory": 2048.0 * MI}) == "8 CPU, 2Gi memory"


def test_an_unreadable_quantity_counts_as_zero_not_an_error() -> None:
    assert capacity.amounts({"cpu": "lots", "memory": "x", "pods": "?"}) == {
        "cpu_m": 0.0,
        "memory": 0.0,
        "pods": 0.0,
    }
