"""The target profile: every name, address, threshold and timeout a runbook needs.

A profile is a YAML file; another firm's platform differs only in its profile. Secrets are
never in it: it names the environment variables that hold them (`*_env`), read at run time.
Unknown keys are refused, so a misspelled setting never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from irlib.errors import ProfileError


@dataclass(frozen=True)
class KubernetesTarget:
    kubeconfig: str | None = None  # None: the client's default ($KUBECONFIG, ~/.kube/config)
    context: str | None = None
    namespace: str = "trading"
    app_label: str = "app"
    api_deployment: str = "api-service"
    execution_deployment: str = "execution-service"
    calibration_deployment: str = "calibration-service"
    ingestion_deployment: str = "data-ingestion"
    database_statefulset: str = "timescaledb"
    redis_statefulset: str = "redis"
    ingress: str = "trading-api"


@dataclass(frozen=True)
class HttpTarget:
    url: str
    health_path: str = "/health"
    status_path: str = "/status"
    token_env: str | None = None


@dataclass(frozen=True)
class PostgresTarget:
    dsn: str
    password_env: str | None = None


@dataclass(frozen=True)
class RedisTarget:
    url: str
    password_env: str | None = None


@dataclass(frozen=True)
class PrometheusTarget:
    url: str
    latency_metric: str = "http_request_duration_seconds"
    job: str = "api-service"


@dataclass(frozen=True)
class Thresholds:
    api_latency_p99_s: float = 5.0  # the seed: "API response time > 5 seconds"
    calibration_max_age_h: float = 24.0  # the seed: "model parameters stale (> 24h old)"
    calibration_rmse_max: float = 0.05
    calibration_duration_max_s: float = 300.0  # the seed: "calibration taking > 5 minutes"
    db_connections_warn_ratio: float = 0.8
    market_data_max_age_s: float = 60.0
    restarts_warn: int = 3


@dataclass(frozen=True)
class Timeouts:
    check_s: float = 5.0
    http_s: float = 2.0


@dataclass(frozen=True)
class Profile:
    name: str
    kubernetes: KubernetesTarget
    api: HttpTarget
    broker: HttpTarget
    market_data: HttpTarget
    postgres: PostgresTarget
    redis: RedisTarget
    prometheus: PrometheusTarget
    thresholds: Thresholds = field(default_factory=Thresholds)
    timeouts: Timeouts = field(default_factory=Timeouts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_profile(path: str | os.PathLike[str] | None = None) -> Profile:
    """Read a profile from `path`, else from $IRLIB_PROFILE; ProfileError says what is wrong."""
    if path is None:
        path = os.environ.get("IRLIB_PROFILE")
        if not path:
            raise ProfileError(
                "no profile: pass --profile PATH or set IRLIB_PROFILE "
                "(`irlib lab up` prints it for the drill lab)"
            )
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise ProfileError(f"profile {path} does not exist") from e
    except yaml.YAMLError as e:
        raise ProfileError(f"profile {path} is not valid YAML: {e}") from e
    return profile_from_dict(data, source=str(path))


def profile_from_dict(data: Any, source: str = "profile") -> Profile:
    return _build(Profile, data, source)


def dump_profile(profile: Profile, path: Path) -> None:
    path.write_text(yaml.safe_dump(profile.to_dict(), sort_keys=False))


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ProfileError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProfileError(f"{where}: missing required setting {name!r}")
            continue
        values[name] = _coerce(hints[name], data[name], f"{where}.{name}")
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)  # type: ignore[arg-type]
    optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
    if optional:
        if value is None:
            return None
        hint = next(a for a in hint.__args__ if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ProfileError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
