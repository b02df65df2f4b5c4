"""The P1 verdict's rules on hand-made checks: each cause ranked first by its own evidence.
(The same rules are exercised end to end against the lab's faults in test_p1_runbook.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from irlib.profile import profile_from_dict
from irlib.results import Check, Health, Status
from irlib.runbooks.p1_system_unavailable import diagnose
from tests.unit.test_profile import MINIMAL

PROFILE = profile_from_dict(MINIMAL)


def pod(
    name: str,
    app: str,
    status: str = "Running",
    last: str = "",
    node: str = "node-1",
    restarts: int = 0,
) -> dict[str, Any]:
    return {
        "pod": name,
        "app": app,
        "ready": "1/1",
        "status": status,
        "restarts": restarts,
        "last_state": last,
        "node": node,
        "age": "5m",
    }


def healthy_checks(**override: Check) -> dict[str, Check]:
    checks = {
        "api health": Check("api health", "api", Status.OK, "200"),
        "pods": Check(
            "pods",
            "kubernetes",
            Status.OK,
            "all ready",
            facts={
                "crashlooping": [],
                "oom_killed": [],
                "pending": [],
                "not_ready": [],
                "restarting": [],
            },
        ),
        "rollout history": Check(
            "rollout history",
            "kubernetes",
            Status.OK,
            "rev 2",
            facts={
                "current_revision": 2,
                "current_image": "api:1.8.2",
                "current_age": "1d",
                "previous_image": "api:1.8.1",
            },
        ),
        "nodes": Check("nodes", "kubernetes", Status.OK, "3 Ready", facts={"not_ready": []}),
        "recent events": Check(
            "recent events", "kubernetes", Status.OK, "", facts={"warning_reasons": []}
        ),
        "database connectivity": Check("database connectivity", "postgres", Status.OK, ""),
        "redis ping": Check("redis ping", "redis", Status.OK, ""),
        "market data": Check("market data", "market_data", Status.OK, ""),
        "broker": Check("broker", "broker", Status.OK, ""),
    }
    checks.update(override)
    return checks


def pods_check(**facts: list[dict[str, Any]]) -> Check:
    base = {"crashlooping": [], "oom_killed": [], "pending": [], "not_ready": [], "restarting": []}
    return Check("pods", "kubernetes", Status.FAIL, "", facts={**base, **facts})


API_DOWN = Check("api health", "api", Status.FAIL, "503: no healthy upstream")
CRASH = pod("api-service-b-1", "api-service", "CrashLoopBackOff", "Error", restarts=4)
OOM = pod("api-service-a-1", "api-service", "CrashLoopBackOff", "OOMKilled", restarts=4)
PENDING = pod("api-service-c-1", "api-service", "Pending", node="")
STRANDED = pod("api-service-a-2", "api-service", node="node-2")

CASES = {
    "bad-deploy": {
        "api health": API_DOWN,
        "pods": pods_check(crashlooping=[CRASH], not_ready=[CRASH]),
    },
    "oom-killed": {
        "api health": API_DOWN,
        "pods": pods_check(crashlooping=[OOM], oom_killed=[OOM], not_ready=[OOM], restarting=[OOM]),
    },
    "pods-pending": {"pods": pods_check(pending=[PENDING], not_ready=[PENDING])},
    "node-not-ready": {
        "nodes": Check(
            "nodes", "kubernetes", Status.FAIL, "NotReady: node-2", facts={"not_ready": ["node-2"]}
        ),
        "pods": pods_check(not_ready=[STRANDED]),
    },
    "database-down": {
        "api health": API_DOWN,
        "database connectivity": Check(
            "database connectivity", "postgres", Status.FAIL, "cannot connect"
        ),
    },
    "redis-down": {"redis ping": Check("redis ping", "redis", Status.FAIL, "PING failed")},
    "broker-down": {"broker": Check("broker", "broker", Status.FAIL, "unreachable")},
    "market-data-down": {"market data": Check("market data", "market_data", Status.FAIL, "x")},
}


def test_healthy_checks_give_a_healthy_verdict_with_no_cause() -> None:
    verdict = diagnose(healthy_checks(), PROFILE)
    assert verdict.state is Health.HEALTHY and verdict.causes == () and verdict.severity is None


@pytest.mark.parametrize("cause", list(CASES), ids=list(CASES))
def test_each_cause_is_ranked_first_by_its_own_evidence(cause: str) -> None:
    verdict = diagnose(healthy_checks(**CASES[cause]), PROFILE)
    assert verdict.top_cause is not None and verdict.top_cause.id == cause, verdict.causes
    assert verdict.state is not Health.HEALTHY
    assert set(verdict.top_cause.supported_by) <= set(healthy_checks(**CASES[cause]))


def test_bad_deploy_recommends_the_rollback_and_down_is_p1() -> None:
    verdict = diagnose(healthy_checks(**CASES["bad-deploy"]), PROFILE)
    assert verdict.mitigations == ("rollback:api-service",)
    assert verdict.state is Health.DOWN and verdict.severity == "P1"


def test_stranded_pods_on_a_not_ready_node_are_to_be_deleted() -> None:
    verdict = diagnose(healthy_checks(**CASES["node-not-ready"]), PROFILE)
    assert verdict.mitigations == ("delete-pod:api-service-a-2",)


def test_an_api_failure_nobody_explains_is_an_unknown_cause() -> None:
    verdict = diagnose(healthy_checks(**{"api health": API_DOWN}), PROFILE)
    assert verdict.top_cause.id == "unknown" and verdict.state is Health.DOWN


def test_an_old_oom_kill_on_a_serving_pod_is_not_a_cause() -> None:
    healed = pod("api-service-a-1", "api-service", "Running", "OOMKilled", restarts=1)
    verdict = diagnose(healthy_checks(pods=pods_check(oom_killed=[healed])), PROFILE)
    assert verdict.causes == ()


# -- pods Pending: the remedy that fits why ----------------------------------------------------

MI = 2**20
API_POD = {"cpu_m": 250.0, "memory": 512.0 * MI, "pods": 1.0}
NODE = {"cpu_m": 4000.0, "memory": 16384.0 * MI, "pods": 110.0}
OTHERS = {"cpu_m": 1000.0, "memory": 2048.0 * MI, "pods": 3.0}  # other apps' pods on each node


def pending_checks(
    *, replicas: int, in_progress: bool, current: dict[str, float], previous: dict[str, float]
) -> dict[str, Check]:
    """Three 4-CPU nodes, each with 1 CPU of other apps' pods and 12 api-service pods (what fits
    beside them), and `replicas` asked for: the rest Pending, from the current revision."""
    bound = 3 * 12
    waiting = [
        {**pod(f"api-service-new-{i}", "api-service", "Pending", node=""), "template_hash": "new"}
        for i in range(max(replicas - bound, 1))
    ]
    requested = {
        f"node-{i}": {"execution-service": OTHERS, "api-service": {**API_POD, "pods": 12.0}}
        for i in (1, 2, 3)
    }
    return healthy_checks(
        pods=Check(
            "pods",
            "kubernetes",
            Status.FAIL,
            f"{bound}/{replicas} ready",
            facts={
                **pods_check(pending=waiting, not_ready=waiting).facts,
                "requested": requested,
            },
        ),
        nodes=Check(
            "nodes",
            "kubernetes",
            Status.OK,
            "3 nodes Ready",
            facts={"not_ready": [], "allocatable": {f"node-{i}": NODE for i in (1, 2, 3)}},
        ),
        **{
            "rollout history": Check(
                "rollout history",
                "kubernetes",
                Status.WARN,
                "rev 3",
                facts={
                    "current_revision": 3,
                    "current_image": "api:1.8.2",
                    "current_age": "2m",
                    "previous_image": "api:1.8.2",
                    "previous_revision": 2,
                    "replicas": replicas,
                    "current_hash": "new",
                    "current_requests": current,
                    "previous_requests": previous,
                    "rollout_in_progress": in_progress,
                },
            ),
            "recent events": Check(
                "recent events",
                "kubernetes",
                Status.WARN,
                "FailedScheduling",
                facts={"warning_reasons": ["FailedScheduling"]},
            ),
        },
    )


def test_pending_from_a_scale_up_past_capacity_scales_back_to_what_fits_not_a_rollback() -> None:
    checks = pending_checks(replicas=60, in_progress=False, current=API_POD, previous=API_POD)
    verdict = diagnose(checks, PROFILE)
    cause = verdict.top_cause
    assert cause is not None and cause.id == "pods-pending"
    # (4000m - 1000m of other apps) // 250m = 12 per node, 3 nodes
    assert verdict.mitigations == ("scale:api-service=36",)
    assert "Request emergency node addition" in cause.advice
    assert "fit 36 api-service pod(s)" in cause.evidence and "60 are asked for" in cause.evidence
    assert "nodes" in cause.supported_by


def test_pending_of_a_new_revision_whose_requests_grew_rolls_back() -> None:
    grown = {**API_POD, "cpu_m": 8000.0}
    checks = pending_checks(replicas=3, in_progress=True, current=grown, previous=API_POD)
    verdict = diagnose(checks, PROFILE)
    assert verdict.top_cause is not None and verdict.top_cause.id == "pods-pending"
    assert verdict.mitigations == ("rollback:api-service",)
    assert "8 CPU" in verdict.top_cause.evidence and "250m CPU" in verdict.top_cause.evidence


@pytest.mark.parametrize(
    ("in_progress", "grows"),
    [(True, False), (False, True)],
    ids=["new-revision-same-requests", "grown-revision-long-rolled-out"],
)
def test_pending_without_a_grown_revision_in_rollout_is_never_a_rollback(
    in_progress: bool, grows: bool
) -> None:
    current = {**API_POD, "cpu_m": 500.0} if grows else API_POD
    checks = pending_checks(replicas=60, in_progress=in_progress, current=current, previous=API_POD)
    verdict = diagnose(checks, PROFILE)
    assert verdict.top_cause is not None and verdict.top_cause.id == "pods-pending"
    assert not any(m.startswith("rollback:") for m in verdict.mitigations), verdict.mitigations
    assert "Request emergency node addition" in verdict.top_cause.advice


def test_pending_without_node_facts_advises_capacity_and_recommends_nothing_it_cannot_size() -> (
    None
):
    verdict = diagnose(healthy_checks(**CASES["pods-pending"]), PROFILE)
    assert verdict.top_cause is not None and verdict.top_cause.id == "pods-pending"
    assert verdict.mitigations == ()
    assert "Request emergency node addition" in verdict.top_cause.advice


def test_stranded_pods_with_no_room_left_on_the_ready_nodes_also_advise_capacity() -> None:
    checks = pending_checks(replicas=60, in_progress=False, current=API_POD, previous=API_POD)
    requested = checks["pods"].facts["requested"]
    stranded = pods_check(not_ready=[STRANDED])
    checks["pods"] = Check(
        "pods", "kubernetes", Status.FAIL, "", facts={**stranded.facts, "requested": requested}
    )
    checks["nodes"] = Check(
        "nodes",
        "kubernetes",
        Status.FAIL,
        "NotReady: node-2",
        facts={"not_ready": ["node-2"], "allocatable": {"node-1": NODE, "node-3": NODE}},
    )
    verdict = diagnose(checks, PROFILE)
    cause = next(c for c in verdict.causes if c.id == "node-not-ready")
    assert cause.mitigations == ("delete-pod:api-service-a-2",)
    assert "Request emergency node addition" in cause.advice and "fit 24" in cause.advice


def test_crashes_of_an_older_revision_only_are_not_rolled_back_again() -> None:
    # after a rollback, pods of the bad revision still crash while they are replaced: rolling
    # back again would bring that revision back
    old = {**CRASH, "template_hash": "bad"}
    history = Check(
        "rollout history",
        "kubernetes",
        Status.WARN,
        "rev 4",
        facts={
            "current_revision": 4,
            "current_image": "api:1.8.2",
            "current_age": "1m",
            "previous_image": "api:1.9.0",
            "current_hash": "good",
        },
    )
    checks = healthy_checks(
        pods=pods_check(crashlooping=[old], not_ready=[old]), **{"rollout history": history}
    )
    verdict = diagnose(checks, PROFILE)
    assert verdict.top_cause is not None and verdict.top_cause.id == "bad-deploy"
    assert verdict.mitigations == () and "no rollback" in verdict.top_cause.advice
    # the current revision's own crashes are still the bad deploy, rolled back
    new = {**CRASH, "template_hash": "good"}
    checks["pods"] = pods_check(crashlooping=[new], not_ready=[new])
    assert diagnose(checks, PROFILE).mitigations == ("rollback:api-service",)
