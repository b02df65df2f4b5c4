"""Target profiles: loading, defaults, and refusal of what a typo would silently change."""

from __future__ import annotations

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
