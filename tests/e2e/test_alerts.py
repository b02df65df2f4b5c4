"""The alert rules in the lab: its Prometheus loads them all, a fault makes its alert fire, and
the lab's Alertmanager receives it and routes it to irlib with a bearer token from a file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from irlib.alerts.rules import alert_rules
from irlib.profile import load_profile
from tests.helpers import LabHandle, wait_until


def _get(url: str) -> Any:
    resp = httpx.get(url, timeout=5)
    resp.raise_for_status()
    return resp.json()


def _prometheus(lab: LabHandle) -> str:
    return lab.lab.config.url("prometheus")


def _firing(lab: LabHandle, alertname: str) -> dict[str, Any] | None:
    alerts = _get(_prometheus(lab) + "/api/v1/alerts")["data"]["alerts"]
    return next(
        (a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"),
        None,
    )


@pytest.fixture
def bad_deploy(lab: LabHandle) -> Iterator[None]:
    lab.irlib("lab", "inject", "bad-deploy", check=True)
    try:
        yield
    finally:
        # The alert resolves once its rate window has passed, about 30 s on: the one test that
        # needs no alert active, test_serve's `served`, waits for that itself (and for the
        # alerts of the faults injected in between), so this test does not wait twice.
        lab.irlib("lab", "clear", check=True)


def test_the_labs_prometheus_loads_every_rule_healthy(lab: LabHandle) -> None:
    profile = load_profile(lab.exports["IRLIB_PROFILE"])
    want = {r.name for r in alert_rules(profile)}

    def loaded() -> dict[str, str]:
        groups = _get(_prometheus(lab) + "/api/v1/rules")["data"]["groups"]
        rules = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        return rules if set(rules) == want and set(rules.values()) == {"ok"} else {}

    wait_until("every rule loaded and evaluated healthy", loaded, 30)
    config = yaml.safe_load((lab.lab.state_dir / "prometheus.yml").read_text())
    assert config["global"]["evaluation_interval"] == "1s"
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        lab.lab.config.url("alertmanager").removeprefix("http://")
    ]
    targets = _get(_prometheus(lab) + "/api/v1/targets")["data"]["activeTargets"]
    assert {t["labels"]["job"] for t in targets} == {
        "api-service",
        "execution-service",
        "calibration-service",
    }


def test_alertmanager_is_a_part_of_the_lab(lab: LabHandle) -> None:
    status = json.loads(lab.irlib("lab", "status", "--json", check=True).stdout)
    assert status["alertmanager"]["state"] == "ready"
    assert status["alertmanager"]["url"] == lab.lab.config.url("alertmanager")
    home = lab.lab.state_dir / "alertmanager"
    token_file = home / "serve.token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text()
    assert token == lab.exports["IRLIB_SERVE_TOKEN"]
    config_text = (home / "alertmanager.yml").read_text()
    assert token not in config_text
    receiver = yaml.safe_load(config_text)["receivers"][0]["webhook_configs"][0]
    assert receiver["send_resolved"] is True
    assert receiver["url"].endswith("/v1/alertmanager")
    assert receiver["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": str(token_file),
    }
    # what Alertmanager itself loaded: the file's path, never the token
    loaded = _get(lab.lab.config.url("alertmanager") + "/api/v2/status")["config"]["original"]
    assert str(token_file) in loaded
    assert token not in loaded


@pytest.mark.usefixtures("bad_deploy")
def test_bad_deploy_fires_its_alert_and_reaches_alertmanager(lab: LabHandle) -> None:
    alert = wait_until("ApiErrorRateHigh firing", lambda: _firing(lab, "ApiErrorRateHigh"), 60)
    assert alert["labels"]["runbook"] == "p1_system_unavailable"
    assert alert["labels"]["severity"] == "P1"
    assert alert["annotations"]["runbook_url"].endswith("/p1_system_unavailable.ipynb")
    assert "5xx" in alert["annotations"]["summary"]

    def in_alertmanager() -> list[dict[str, Any]]:
        groups = _get(lab.lab.config.url("alertmanager") + "/api/v2/alerts/groups")
        return [
            g
            for g in groups
            if any(a["labels"]["alertname"] == "ApiErrorRateHigh" for a in g["alerts"])
        ]

    group = wait_until("the alert grouped in Alertmanager", in_alertmanager, 30)[0]
    assert group["labels"] == {"runbook": "p1_system_unavailable"}  # one group per runbook
    assert group["receiver"]["name"] == "irlib"


def test_the_lab_profile_makes_drills_quick(lab: LabHandle) -> None:
    alerts = load_profile(lab.exports["IRLIB_PROFILE"]).alerts
    assert alerts.pending == "3s"
    assert Path(
        alerts.runbook_url.removeprefix("file://").format(runbook="p1_system_unavailable")
    ).exists()
