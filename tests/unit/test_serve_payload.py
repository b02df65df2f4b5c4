"""`irlib serve`'s reading of Alertmanager's webhook and its routing of a group to a runbook."""

from __future__ import annotations

from typing import Any

import pytest

from irlib.errors import ProfileError
from irlib.profile import AlertRoute, ServeSettings
from irlib.serve.payload import MalformedPayload, parse
from irlib.serve.routing import matches, route

KNOWN = ["p1_system_unavailable", "p2_high_latency"]


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{runbook=\"x\"}", "status": status,
            "receiver": "irlib", "alerts": list(alerts)}  # fmt: skip


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "ApiDown", **labels},
        "annotations": {"summary": "down"},
        "startsAt": "2026-12-05T06:00:00.123Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "abc",
    }


def test_a_v4_payload_is_read() -> None:
    group = parse(payload(alert(), alert("resolved", alertname="ApiHealthFailing")))
    assert group.status == "firing"
    assert [a.name for a in group.firing] == ["ApiDown"]
    assert [a.name for a in group.resolved] == ["ApiHealthFailing"]
    assert group.firing[0].ends_at is None
    assert group.starts_at.isoformat() == "2026-12-05T06:00:00.123000+00:00"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {**payload(alert()), "version": "3"},
        {**payload(alert()), "groupKey": ""},
        {**payload(alert()), "status": "pending"},
        payload(),
        payload({**alert(), "startsAt": "yesterday"}),
        payload({**alert(), "labels": {"alertname": 3}}),
        payload({**alert(), "labels": {}}),
        payload({**alert(), "status": None}),
    ],
    ids=[
        "list",
        "version",
        "group-key",
        "status",
        "no-alerts",
        "time",
        "label-type",
        "no-name",
        "alert-status",
    ],
)
def test_a_malformed_payload_is_refused(body: Any) -> None:
    with pytest.raises(MalformedPayload):
        parse(body)


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        ("alertname=ApiDown", True),
        ("alertname!=ApiDown", False),
        ("alertname=~Api.*", True),
        ("alertname=~Api", False),  # anchored, as in Alertmanager
        ("alertname!~Cal.*", True),
        ("team=", True),  # a missing label is the empty string
    ],
)
def test_matchers_follow_alertmanager(matcher: str, expected: bool) -> None:
    assert matches(matcher, {"alertname": "ApiDown"}) is expected


def test_the_runbook_label_wins_then_the_profiles_routes() -> None:
    routes = ServeSettings(
        routes=(AlertRoute("p2_high_latency", ("alertname=~Api.*", "team=trading")),)
    ).routes
    labelled = parse(payload(alert(runbook="p1_system_unavailable", team="trading")))
    assert route(labelled, routes, KNOWN) == (
        "p1_system_unavailable",
        "label runbook=p1_system_unavailable",
    )
    by_route = parse(payload(alert(team="trading")))
    assert route(by_route, routes, KNOWN)[0] == "p2_high_latency"
    nowhere = parse(payload(alert(team="other")))
    assert route(nowhere, routes, KNOWN) == (
        None,
        "no runbook label and no route of the profile matches",
    )
    unknown = parse(payload(alert(runbook="rm_rf")))
    assert route(unknown, routes, KNOWN)[0] is None


def test_bad_routes_are_refused_by_the_profile() -> None:
    with pytest.raises(ProfileError, match="not a matcher"):
        AlertRoute("p2_high_latency", ("alertname ApiDown",))
    with pytest.raises(ProfileError, match="bad regex"):
        AlertRoute("p2_high_latency", ("alertname=~(",))
