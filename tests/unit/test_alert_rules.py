"""The alert rules irlib ships: built from the profile, valid for promtool, routed by labels."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from irlib.alerts.rules import FORMATS, alert_rules, prometheus_rule, render, rule_groups
from irlib.cli import main
from irlib.errors import ProfileError
from irlib.profile import dump_profile, profile_from_dict
from tests.helpers import require_binary
from tests.unit.test_profile import MINIMAL

RUNBOOKS = {
    "p1_system_unavailable",
    "p1_execution_failures",
    "p2_high_latency",
    "p2_calibration_failures",
}


def test_every_rule_names_its_runbook_severity_summary_and_url() -> None:
    profile = profile_from_dict(MINIMAL)
    rules = rule_groups(profile)["groups"][0]["rules"]
    assert {r["labels"]["runbook"] for r in rules} == RUNBOOKS
    for rule in rules:
        assert rule["labels"]["severity"] in ("P1", "P2")
        assert rule["for"] == "2m"
        assert rule["annotations"]["summary"]
        runbook = rule["labels"]["runbook"]
        assert rule["annotations"]["runbook_url"] == f"https://runbooks.example.com/irlib/{runbook}"
    names = [r.name for r in alert_rules(profile)]
    assert len(names) == len(set(names))


def test_rules_take_the_profiles_names_and_thresholds() -> None:
    data = {
        **MINIMAL,
        "prometheus": {"url": "http://p", "job": "trading-api", "latency_metric": "api_seconds"},
        "thresholds": {"api_latency_p99_s": 2.5, "calibration_rmse_max": 0.02},
        "alerts": {"pending": "30s", "window": "1m", "runbook_url": "https://wiki/{runbook}"},
    }
    exprs = {r.name: r.expr for r in alert_rules(profile_from_dict(data))}
    assert 'api_seconds_bucket{job="trading-api"}[1m]' in exprs["ApiLatencyHigh"]
    assert exprs["ApiLatencyHigh"].endswith("> 2.5")
    assert exprs["CalibrationRmseHigh"].endswith("> 0.02")
    rule = rule_groups(profile_from_dict(data))["groups"][0]["rules"][0]
    assert rule["for"] == "30s"
    assert rule["annotations"]["runbook_url"].startswith("https://wiki/p1_")


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ({"pending": "2 minutes"}, "alerts.pending"),
        ({"window": "5"}, "alerts.window"),
        ({"runbook_url": "https://wiki/"}, "{runbook}"),
    ],
    ids=["pending", "window", "url"],
)
def test_bad_alert_settings_are_refused(alerts: dict[str, str], message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("{", r"\{").replace("}", r"\}")):
        profile_from_dict({**MINIMAL, "alerts": alerts})


@pytest.mark.parametrize("fmt", FORMATS)
def test_promtool_accepts_the_rules(fmt: str, tmp_path: Path) -> None:
    promtool = require_binary("promtool", "prometheus")
    doc = yaml.safe_load(render(profile_from_dict(MINIMAL), fmt))
    groups = doc if fmt == "prometheus" else doc["spec"]  # the operator's spec is a rule file
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(groups))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules(profile_from_dict(MINIMAL)))} rules found" in result.stdout


def test_prometheus_rule_object() -> None:
    obj = prometheus_rule(profile_from_dict({**MINIMAL, "kubernetes": {"namespace": "prod"}}))
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["kind"] == "PrometheusRule"
    assert obj["metadata"]["namespace"] == "prod"
    assert obj["spec"]["groups"][0]["rules"]


def test_cli_prints_the_rules_and_refuses_a_bad_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    dump_profile(profile_from_dict(MINIMAL), path)
    out = CliRunner().invoke(
        main, ["alerts", "rules", "--emit", "prometheusrule", "--profile", str(path)]
    )
    assert out.exit_code == 0, out.output
    assert yaml.safe_load(out.output)["kind"] == "PrometheusRule"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**MINIMAL, "alerts": {"window": "soon"}}))
    out = CliRunner().invoke(main, ["alerts", "rules", "--profile", str(bad)])
    assert out.exit_code == 2
    assert "alerts.window" in out.output
    out = CliRunner().invoke(main, ["alerts", "rules", "--emit", "json", "--profile", str(path)])
    assert out.exit_code == 2
