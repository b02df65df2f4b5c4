"""Target profiles: loading, defaults, and refusal of what a typo would silently change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from irlib.errors import ProfileError
from irlib.profile import dump_profile, load_profile, profile_from_dict

MINIMAL = {
    "name": "prod",
    "kubernetes": {"namespace": "trading"},
    "api": {"url": "https://api.trading.example.com", "token_env": "ADMIN_TOKEN"},
    "broker": {"url": "https://api.broker.com"},
    "market_data": {"url": "https://api.marketdata.provider.com"},
    "postgres": {"dsn": "postgresql://postgres@timescaledb:5432/trading"},
    "redis": {"url": "redis://redis:6379/0"},
    "prometheus": {"url": "http://localhost:9090"},
}


def test_minimal_profile_takes_the_seed_defaults() -> None:
    profile = profile_from_dict(MINIMAL)
    assert profile.thresholds.api_latency_p99_s == 5.0
    assert profile.thresholds.calibration_max_age_h == 24.0
    assert profile.timeouts.check_s == 5.0
    assert profile.kubernetes.api_deployment == "api-service"


def test_profile_round_trips_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    dump_profile(profile_from_dict(MINIMAL), path)
    assert load_profile(path) == profile_from_dict(MINIMAL)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kubernetes": {"namespce": "trading"}}, "unknown setting(s) namespce"),
        ({"thresholds": {"api_latency_p99_s": "fast"}}, "expected float"),
        ({"timeouts": {"check_s": True}}, "expected float"),
        ({"api": {}}, "missing required setting 'url'"),
        ({"redis": "redis://x"}, "expected a mapping"),
    ],
    ids=["misspelled-key", "wrong-type", "bool-is-not-a-number", "missing-url", "not-a-mapping"],
)
def test_invalid_profile_is_refused_with_the_setting_named(change: dict, message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        profile_from_dict({**MINIMAL, **change})


def test_load_profile_needs_a_path_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IRLIB_PROFILE", raising=False)
    with pytest.raises(ProfileError, match="IRLIB_PROFILE"):
        load_profile()


def test_missing_and_malformed_files_are_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(bad)
    bad.write_text(yaml.safe_dump({**MINIMAL, "secret_token": "x"}))
    with pytest.raises(ProfileError, match="secret_token"):
        load_profile(bad)


def test_a_profile_without_an_incident_section_takes_the_seeds_lifecycle() -> None:
    settings = profile_from_dict(MINIMAL).incident
    assert [(s.name, s.impact, s.response_min) for s in settings.severities] == [
        ("P1", "Critical", 15.0),
        ("P2", "Major", 60.0),
        ("P3", "Minor", 240.0),
        ("P4", "Low", 1440.0),
    ]
    assert settings.severity("p1").examples == "System down, data loss, execution failures"
    t = settings.targets
    assert (t.acknowledge_min, t.investigate_min, t.mitigate_min) == (5.0, 30.0, 60.0)
    assert [(e.after_min, e.role) for e in settings.escalation] == [
        (0.0, "On-call"),
        (15.0, "Engineering Lead"),
        (30.0, "VP Engineering"),
        (60.0, "CTO"),
    ]
    assert settings.contact("on-call").primary == "PagerDuty rotation"
    assert settings.trading_impact_role == "Compliance" and settings.contact("Compliance")
    assert settings.webhook_url_env == "IRLIB_INCIDENT_WEBHOOK_URL"


def test_the_incident_section_is_read_and_round_trips(tmp_path: Path) -> None:
    incident = {
        "contacts": [
            {"role": "On-call", "primary": "PagerDuty trading-primary"},
            {"role": "CTO", "primary": "+44 20 7946 0000", "backup": "+44 20 7946 0001"},
        ],
        "targets": {"acknowledge_min": 10},
        "war_room": "#inc-trading",
        "webhook_url_env": "TRADING_SLACK_WEBHOOK",
    }
    profile = profile_from_dict({**MINIMAL, "incident": incident})
    assert profile.incident.contact("cto").backup == "+44 20 7946 0001"
    assert profile.incident.contact("On-call").backup == "-"
    assert profile.incident.targets.acknowledge_min == 10.0
    assert profile.incident.targets.mitigate_min == 60.0
    assert profile.incident.contact("Engineering Lead") is None  # contacts replace, not merge
    path = tmp_path / "p.yaml"
    dump_profile(profile, path)
    assert load_profile(path) == profile


@pytest.mark.parametrize(
    ("incident", "message"),
    [
        ({"webhok_url_env": "X"}, "unknown setting(s) webhok_url_env"),
        (
            {"severities": [{"name": "P1", "impact": "Critical"}]},
            "missing required setting 'response_min'",
        ),
        ({"severities": {"name": "P1"}}, "incident.severities: expected a list"),
        (
            {"severities": [{"name": "P1", "impact": "x", "response_min": 15}] * 2},
            "need unique names",
        ),
        ({"escalation": [{"after_min": 5, "role": "On-call"}]}, "must start at 0 and rise"),
        (
            {"contacts": [{"role": "CTO", "primary": 5}]},
            "incident.contacts[0].primary: expected str",
        ),
    ],
    ids=[
        "misspelled-key",
        "severity-without-response-time",
        "severities-not-a-list",
        "duplicate-severity",
        "escalation-not-from-0",
        "contact-not-text",
    ],
)
def test_an_invalid_incident_section_is_refused(incident: dict, message: str) -> None:
    with pytest.raises(ProfileError, match=re.escape(message)):
        profile_from_dict({**MINIMAL, "incident": incident})


def test_the_drills_section_is_optional_and_has_defaults() -> None:
    drills = profile_from_dict(MINIMAL).drills
    assert drills.stale_after_days == 7.0 and drills.image is None
    assert drills.cronjob == "irlib-health-drill" and drills.evidence_pvc == "irlib-evidence"


@pytest.mark.parametrize(
    ("drills", "message"),
    [({"stale_after_days": "weekly"}, "expected float"), ({"stale_days": 3}, "stale_days")],
    ids=["wrong-type", "misspelled"],
)
def test_a_bad_drills_setting_is_refused(drills: dict, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        profile_from_dict({**MINIMAL, "drills": drills})


def test_drills_settings_are_read_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "drills": {"stale_after_days": 3, "image": "i:1"}}))
    drills = load_profile(path).drills
    assert drills.stale_after_days == 3.0 and drills.image == "i:1"
