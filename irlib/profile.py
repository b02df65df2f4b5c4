"""The target profile: every name, address, threshold and timeout a runbook needs.

A profile is a YAML file; another firm's platform differs only in its profile. Secrets are
never in it: it names the environment variables that hold them (`*_env`), read at run time.
Unknown keys are refused, so a misspelled setting never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from irlib.errors import ProfileError


@dataclass(frozen=True)
class KubernetesTarget:
    # None: the client's default ($KUBECONFIG, ~/.kube/config); when neither exists, the
    # in-cluster configuration: the pod's service-account token and CA (below) and
    # $KUBERNETES_SERVICE_HOST / $KUBERNETES_SERVICE_PORT, as the kubelet provides them.
    kubeconfig: str | None = None
    context: str | None = None
    # where the in-cluster token and CA are: None means $IRLIB_K8S_TOKEN_FILE / $IRLIB_K8S_CA_FILE,
    # else the kubelet's mount, /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}
    token_file: str | None = None
    ca_file: str | None = None
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
    db_statement_mean_ms: float = 25.0  # a hot statement slower than this on average is slow
    # What makes a statement the slow-query cause on any machine: its share of the database's
    # time over the sample, its growth against its own earlier mean, and a plan that scans a
    # table of at least db_seq_scan_rows rows where an index on its filter is missing. A
    # statement called fewer than db_statement_min_calls times over the sample weighs
    # nothing: one call is all of a calm database's time, and a busy machine can make that one
    # call many times its usual mean.
    db_statement_min_calls: int = 3
    db_statement_share: float = 0.5
    db_statement_growth: float = 5.0
    db_seq_scan_rows: int = 100_000


@dataclass(frozen=True)
class Timeouts:
    check_s: float = 5.0
    http_s: float = 2.0


# -- the incident lifecycle: the seed's "Severity Levels", timeline and "Escalation Path" --------


@dataclass(frozen=True)
class SeverityLevel:
    name: str  # "P1"
    impact: str  # "Critical"
    response_min: float  # the seed's "Response Time"
    examples: str = ""


@dataclass(frozen=True)
class StageTargets:
    """Minutes from the alert by which each stage is done (the seed's incident timeline)."""

    acknowledge_min: float = 5.0
    investigate_min: float = 30.0
    mitigate_min: float = 60.0


@dataclass(frozen=True)
class EscalationLevel:
    after_min: float  # engaged from this many minutes after the alert
    role: str
    action: str = ""


@dataclass(frozen=True)
class Contact:
    role: str
    primary: str
    backup: str = "-"


SEED_SEVERITIES = (
    SeverityLevel("P1", "Critical", 15.0, "System down, data loss, execution failures"),
    SeverityLevel("P2", "Major", 60.0, "Degraded performance, partial outage"),
    SeverityLevel("P3", "Minor", 240.0, "Non-critical feature broken"),
    SeverityLevel("P4", "Low", 1440.0, "Cosmetic issues, documentation"),
)
SEED_ESCALATION = (
    EscalationLevel(0.0, "On-call", "On-call engineer investigates"),
    EscalationLevel(15.0, "Engineering Lead", "Escalate to engineering lead"),
    EscalationLevel(30.0, "VP Engineering", "Escalate to VP Engineering"),
    EscalationLevel(60.0, "CTO", "Escalate to CTO"),
)
SEED_CONTACTS = (  # the seed's placeholders: a real profile puts numbers here
    Contact("On-call", "PagerDuty rotation", "-"),
    Contact("Engineering Lead", "[Phone]", "[Phone]"),
    Contact("VP Engineering", "[Phone]", "[Phone]"),
    Contact("Compliance", "[Phone]", "[Phone]"),
)


@dataclass(frozen=True)
class IncidentSettings:
    severities: tuple[SeverityLevel, ...] = SEED_SEVERITIES
    targets: StageTargets = field(default_factory=StageTargets)
    escalation: tuple[EscalationLevel, ...] = SEED_ESCALATION
    trading_impact_role: str = "Compliance"  # the seed: "Trading impact: notify immediately"
    contacts: tuple[Contact, ...] = SEED_CONTACTS
    # The seed's timeline and escalation minutes are P1's; a lower severity stretches them by
    # its response time over P1's (P2 x4, P3 x16, P4 x96). False: the same minutes for all.
    stretch_with_severity: bool = True
    commander: str | None = None  # None: whoever opens the incident
    war_room: str = "[Slack Channel]"
    subject: str = "Trading System Incident"
    update_every_min: float = 15.0  # "ETA for Update" in the messages
    webhook_url_env: str | None = "IRLIB_INCIDENT_WEBHOOK_URL"  # a Slack-compatible webhook
    webhook_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        names = [s.name for s in self.severities]
        if not names or len(set(names)) != len(names):
            raise ProfileError(f"incident.severities: need unique names, got {names}")
        after = [level.after_min for level in self.escalation]
        if not after or after[0] != 0 or after != sorted(after):
            raise ProfileError(
                f"incident.escalation: after_min must start at 0 and rise, got {after}"
            )

    def severity(self, name: str) -> SeverityLevel:
        for level in self.severities:
            if level.name == name.upper():
                return level
        raise ProfileError(
            f"unknown severity {name!r}; known: {', '.join(s.name for s in self.severities)}"
        )

    def stretch(self, severity: str) -> float:
        """How much longer than the seed's (P1) minutes this severity's targets are."""
        if not self.stretch_with_severity:
            return 1.0
        return self.severity(severity).response_min / self.severities[0].response_min

    def contact(self, role: str) -> Contact | None:
        return next((c for c in self.contacts if c.role.lower() == role.lower()), None)


@dataclass(frozen=True)
class DrillSettings:
    """The drills (irlib.drills): staleness, and what the scheduled CronJob is made of."""

    stale_after_days: float = 7.0  # a runbook not fault-drilled for longer is flagged stale
    history_days: float = 30.0  # how far back `irlib drill history` reads by default
    image: str | None = None  # None: registry.example.com/trading/irlib:<irlib version>
    cronjob: str = "irlib-health-drill"
    evidence_pvc: str = "irlib-evidence"  # the volume the evidence is archived on
    profile_configmap: str = "irlib-profile"  # holds this profile as profile.yaml
    secret: str = "irlib-secrets"  # holds each *_env secret under its env var's name
    service_account: str = "irlib-drill"  # the account the CronJob runs as (irlib deploy)
    evidence_size: str = "1Gi"  # the evidence PersistentVolumeClaim's request


@dataclass(frozen=True)
class EvidenceSettings:
    """The evidence folders (irlib.archive, irlib.chain)."""

    # The env var holding the key that signs each run's manifest (HMAC-SHA256); None: unsigned.
    # Named, the key must be set when a run starts (`irlib evidence verify` checks it).
    signing_key_env: str | None = None


DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d))+$")  # Prometheus's duration syntax


@dataclass(frozen=True)
class AlertSettings:
    """The alert rules irlib ships (irlib.alerts.rules): how long a symptom must last, the
    range its rates are taken over, where the runbooks are read, and what counts as bad."""

    pending: str = "2m"  # every rule's `for:`
    window: str = "5m"  # the range of rate() and increase()
    group: str = "irlib-runbooks"
    runbook_url: str = "https://runbooks.example.com/irlib/{runbook}"  # {runbook}: its name
    execution_job: str = "execution-service"  # Prometheus jobs (the api's: prometheus.job)
    calibration_job: str = "calibration-service"
    api_error_ratio: float = 0.05  # share of 5xx answers that is an outage
    orders_rejected_ratio: float = 0.2  # share of orders the broker rejects
    no_trading_s: float = 300.0  # no fill for this long: trading has stopped
    order_unsent_max_s: float = 60.0  # a running strategy's order not sent after this long

    def __post_init__(self) -> None:
        for name in ("pending", "window"):
            if not DURATION.match(getattr(self, name)):
                raise ProfileError(
                    f"alerts.{name}: expected a Prometheus duration such as 30s or 5m, "
                    f"got {getattr(self, name)!r}"
                )
        if "{runbook}" not in self.runbook_url:
            raise ProfileError("alerts.runbook_url: must contain {runbook}")


MATCHER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)(.*)$")  # Alertmanager's syntax


@dataclass(frozen=True)
class AlertRoute:
    """Alerts whose labels match every matcher (`label=value`, `!=`, `=~regex`, `!~regex`)
    go to `runbook`; an alert's own `runbook` label wins over every route."""

    runbook: str
    matchers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for m in self.matchers:
            found = MATCHER.match(m)
            if not found:
                raise ProfileError(f"serve.routes: {m!r} is not a matcher like alertname=ApiDown")
            if "~" in found.group(2):
                try:
                    re.compile(found.group(3))
                except re.error as e:
                    raise ProfileError(f"serve.routes: {m!r}: bad regex ({e})") from None


@dataclass(frozen=True)
class ServeSettings:
    """`irlib serve` (irlib.serve): its token, how many runs at once and waiting, the cooldown
    of an alert group, where its links point, and the routes of alerts without a runbook label."""

    token_env: str = "IRLIB_SERVE_TOKEN"  # every endpoint but /healthz wants this bearer token
    workers: int = 2  # runs at once (each a process with its kernel)
    queue: int = 20  # runs waiting; past that the webhook answers 503 and Alertmanager retries
    cooldown_s: float = 600.0  # a group's repeats within this long after its run are noted only
    run_timeout_s: float = 120.0  # per cell, as `irlib run --timeout`
    # kernels started ahead with the runbooks imported, each for one run (irlib.kernels);
    # 0: each run is `irlib run` in a child process, with a kernel of its own
    warm_kernels: int = 2
    public_url: str | None = None  # the links' base URL; None: http://HOST:PORT it listens on
    routes: tuple[AlertRoute, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue < 0 or self.cooldown_s < 0 or self.warm_kernels < 0:
            raise ProfileError(
                "serve: workers >= 1, queue >= 0, cooldown_s >= 0 and warm_kernels >= 0 please"
            )


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
    incident: IncidentSettings = field(default_factory=IncidentSettings)
    drills: DrillSettings = field(default_factory=DrillSettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# libyaml's loader where PyYAML was built with it (its wheels are): the same safe loading, in
# a twentieth of the time; each run reads the profile twice (the runner and the kernel)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        data = yaml.load(path.read_text(), Loader=_LOADER)
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
    if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a YAML list of X
        if not isinstance(value, list | tuple):
            raise ProfileError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
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
