"""Alertmanager's webhook payload (version 4), read strictly: anything malformed is refused
before anything runs. Keeps only what triage needs: the group, its alerts' labels,
annotations, times and fingerprints. Talks to nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class MalformedPayload(ValueError):
    """The body is not an Alertmanager v4 webhook payload (the server answers 400)."""


@dataclass(frozen=True)
class Alert:
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "?")


@dataclass(frozen=True)
class AlertGroup:
    group_key: str
    status: str  # firing while any alert of the group fires
    receiver: str
    alerts: tuple[Alert, ...]
    common_labels: dict[str, str] = field(default_factory=dict)

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "resolved"]

    @property
    def names(self) -> list[str]:
        return sorted({a.name for a in self.alerts})

    @property
    def starts_at(self) -> datetime:
        return min(a.starts_at for a in (self.firing or list(self.alerts)))


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedPayload(f"{where}: expected an RFC 3339 time")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedPayload(f"{where}: {value[:40]!r} is not an RFC 3339 time") from None
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def _strings(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise MalformedPayload(f"{where}: expected a mapping of strings")
    return dict(value)


def _alert(data: Any, i: int) -> Alert:
    where = f"alerts[{i}]"
    if not isinstance(data, dict):
        raise MalformedPayload(f"{where}: expected an object")
    status = data.get("status")
    if status not in ("firing", "resolved"):
        raise MalformedPayload(f"{where}.status: expected firing or resolved")
    labels = _strings(data.get("labels"), f"{where}.labels")
    if not labels.get("alertname"):
        raise MalformedPayload(f"{where}.labels: no alertname")
    ends = data.get("endsAt")
    # Alertmanager sends 0001-01-01T00:00:00Z for "not ended"
    ends_at = _time(ends, f"{where}.endsAt") if isinstance(ends, str) else None
    if ends_at is not None and ends_at.year < 2:
        ends_at = None
    return Alert(
        status,
        labels,
        _strings(data.get("annotations"), f"{where}.annotations"),
        _time(data.get("startsAt"), f"{where}.startsAt"),
        ends_at,
        str(data.get("fingerprint") or ""),
    )


def parse(body: Any) -> AlertGroup:
    """An AlertGroup from the decoded JSON body; MalformedPayload says what is wrong."""
    if not isinstance(body, dict):
        raise MalformedPayload("expected a JSON object")
    if str(body.get("version")) != "4":
        raise MalformedPayload(f"version: expected 4, got {body.get('version')!r}")
    key = body.get("groupKey")
    if not isinstance(key, str) or not key:
        raise MalformedPayload("groupKey: expected a non-empty string")
    status = body.get("status")
    if status not in ("firing", "resolved"):
        raise MalformedPayload("status: expected firing or resolved")
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise MalformedPayload("alerts: expected a non-empty list")
    return AlertGroup(
        key,
        status,
        str(body.get("receiver") or ""),
        tuple(_alert(a, i) for i, a in enumerate(alerts)),
        _strings(body.get("commonLabels"), "commonLabels"),
    )
