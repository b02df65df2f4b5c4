"""The broker's API as the P1 "Execution Failures" runbook reads it: status, authentication,
latency, positions per account, fills and order rejections. Read-only."""

from irlib.broker.checks import (
    Broker,
    accounts,
    check_auth,
    check_latency,
    check_rejections,
    check_status,
    fills,
    positions,
)

__all__ = [
    "Broker",
    "accounts",
    "check_auth",
    "check_latency",
    "check_rejections",
    "check_status",
    "fills",
    "positions",
]
