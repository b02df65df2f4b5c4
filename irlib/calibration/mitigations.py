"""The guarded write of the calibration runbook: a forced recalibration of one symbol
(`POST /v1/calibration/heston {"symbol": ..., "force": true}` with the admin token).

Only the guard calls `apply_recalibration`, after `plan_recalibration` was shown. A fit that
the service rejects raises Refused (irlib.errors): the guard records the attempt as failed.
"""

from __future__ import annotations

from typing import Any

from irlib import transport
from irlib.errors import Refused, TargetError
from irlib.guard import Plan


def plan_recalibration(
    base_url: str, symbol: str, *, timeout_s: float, token_env: str | None, recommended: bool
) -> Plan:
    """What a forced recalibration of `symbol` will do, with what is in use now."""
    before: dict[str, Any] = {"symbol": symbol}
    try:
        answer = transport.request(
            "GET", base_url + "/v1/calibration/heston", timeout_s=timeout_s,
            params={"symbol": symbol},
        )  # fmt: skip
        if answer.ok:
            before.update(
                calibrated_at=answer.body.get("calibrated_at"),
                rmse=answer.body.get("rmse"),
                params=answer.body.get("params"),
                fallback=answer.body.get("fallback"),
            )
        else:
            before["in_use"] = f"HTTP {answer.status_code}: {answer.error}"
    except TargetError as e:
        before["in_use"] = f"unknown: {e}"
    token = f"${token_env}" if token_env else "$TOKEN"
    return Plan(
        id=f"recalibrate:{symbol}",
        summary=f"force a Heston recalibration of {symbol} (in use now: calibrated "
        f"{before.get('calibrated_at', '?')}); if it fails, the previous parameters stay",
        command=(
            f"curl -X POST {base_url}/v1/calibration/heston "
            f'-H "Authorization: Bearer {token}" -H "Content-Type: application/json" '
            f'-d \'{{"symbol": "{symbol}", "force": true}}\''
        ),
        before=before,
        recommended=recommended,
    )


def apply_recalibration(
    base_url: str, symbol: str, *, timeout_s: float, token_env: str | None
) -> dict[str, Any]:
    answer = transport.request(
        "POST",
        base_url + "/v1/calibration/heston",
        timeout_s=timeout_s,
        token_env=token_env,
        json={"symbol": symbol, "force": True},
    )
    if not answer.ok:
        # the service tried and failed (or refused): the previous parameters stay in use
        raise Refused(f"HTTP {answer.status_code}: {answer.error}", answer.status_code)
    row = answer.body.get("calibration") or {}
    return {
        "symbol": symbol,
        "recalibrated": answer.body.get("recalibrated"),
        "calibrated_at": row.get("calibrated_at"),
        "rmse": row.get("rmse"),
        "iterations": row.get("iterations"),
        "converged": row.get("converged"),
        "params": row.get("params"),
    }
