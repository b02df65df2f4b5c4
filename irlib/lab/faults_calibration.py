"""The lab's calibration faults, named after the causes the P2 "Calibration Failures" runbook
must find: stale parameters, fits that diverge, a market-data gap, a missing volatility surface,
calibration pods OOM-killed by a large batch. They act through the lab's real parts: SQL,
switches in control.json that the calibration-service and the feed read, the calibration API.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg

from irlib.errors import LabError
from irlib.lab.config import Control, read_control, update_control
from irlib.lab.fault_kit import (
    Fault,
    container,
    deployment_path,
    kube,
    pods,
    wait,
)
from irlib.lab.lab import Lab

FAULTS: list[Fault] = []  # this runbook's faults, in the order `irlib lab faults` lists them

P2_CALIBRATION = "p2_calibration_failures"
CALIBRATION_DEPLOYMENT = "calibration-service"
STALE_SYMBOL = "SPY"  # the seed's example symbol: its scheduled calibration stopped
STALE_BY_H = 30  # further back than the 24 h limit
DIVERGING_SYMBOL = "SPY"
# A deployed optimiser config that forbids the negative spot-vol correlation every equity
# surface has, with a small iteration budget: fits hit the bound and stop unconverged.
DIVERGING_CONFIG: dict[str, Any] = {"bounds": {"rho": [0.0, 0.5]}, "max_iterations": 10}
GAP_S = 300  # market-data-gap: ingestion stopped this long ago
MISSING_SYMBOL = "NVDA"
QUOTE_WINDOW_S = 600  # the calibration-service's window (apps/calibration_service.py)
OOM_BATCH = {"surfaces": 1180, "per_surface_mib": 2.7}  # 3.1Gi: more than the 2Gi limit


def _sql(lab: Lab, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(lab.config.postgres_dsn, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _api(lab: Lab, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, lab.config.url("api") + path, timeout=60, **kw)


def _recalibrate(lab: Lab, symbol: str) -> httpx.Response:
    token = lab.tokens()["tokens"]["IRLIB_ADMIN_TOKEN"]
    return _api(
        lab,
        "POST",
        "/v1/calibration/heston",
        json={"symbol": symbol, "force": True},
        headers={"Authorization": f"Bearer {token}"},
    )


def _status_row(lab: Lab, symbol: str) -> dict[str, Any]:
    try:
        resp = _api(lab, "GET", "/v1/calibration/status")
        rows = resp.json().get("calibrations", []) if resp.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return {}
    return next((r for r in rows if r["symbol"] == symbol), {})


# -- stale-calibration ------------------------------------------------------------------------


def _inject_stale(lab: Lab) -> None:
    update_control(lab.config, lambda c: c.update({"calibration_paused": True}))
    rows = _sql(
        lab,
        f"""UPDATE calibrations SET calibrated_at = calibrated_at - interval '{STALE_BY_H} hours',
               data_window_start = data_window_start - interval '{STALE_BY_H} hours',
               data_window_end = data_window_end - interval '{STALE_BY_H} hours'
           WHERE symbol = %s RETURNING id""",
        (STALE_SYMBOL,),
    )
    ids = [r[0] for r in rows]
    update_control(lab.config, lambda c: c.update({"stale_calibration": {"ids": ids}}))


def _clear_stale(lab: Lab) -> None:
    ids = (read_control(lab.config).get("stale_calibration") or {}).get("ids", [])
    _sql(
        lab,
        f"""UPDATE calibrations SET calibrated_at = calibrated_at + interval '{STALE_BY_H} hours',
               data_window_start = data_window_start + interval '{STALE_BY_H} hours',
               data_window_end = data_window_end + interval '{STALE_BY_H} hours'
           WHERE id = ANY(%s)""",
        (ids,),
    )
    update_control(
        lab.config, lambda c: (c.pop("stale_calibration", None), c.pop("calibration_paused", None))
    )


def _stale_visible(lab: Lab) -> bool:
    age = _status_row(lab, STALE_SYMBOL).get("last_success_age_s")
    return age is not None and age > 24 * 3600


FAULTS.append(
    Fault(
        "stale-calibration",
        f"{STALE_SYMBOL}'s scheduled calibration stopped: its last success is {STALE_BY_H} h old",
        _inject_stale,
        _clear_stale,
        _stale_visible,
        runbook=P2_CALIBRATION,
    )
)


# -- calibration-divergence -------------------------------------------------------------------


def _inject_divergence(lab: Lab) -> None:
    update_control(lab.config, lambda c: c.update({"calibration_config": DIVERGING_CONFIG}))
    resp = _recalibrate(lab, DIVERGING_SYMBOL)  # the scheduled run that fails
    if resp.status_code != 422:
        raise LabError(f"expected the fit of {DIVERGING_SYMBOL} to fail, got {resp.text[:200]}")


def _clear_divergence(lab: Lab) -> None:
    update_control(lab.config, lambda c: c.pop("calibration_config", None))
    # what an operator does once the config is fixed: calibrate again, off the fallback
    resp = _recalibrate(lab, DIVERGING_SYMBOL)
    if resp.status_code != 201:
        raise LabError(f"recalibration of {DIVERGING_SYMBOL} failed: {resp.text[:200]}")


def _divergence_visible(lab: Lab) -> bool:
    row = _status_row(lab, DIVERGING_SYMBOL)
    return bool(row.get("fallback")) and row.get("converged") is False


FAULTS.append(
    Fault(
        "calibration-divergence",
        "a deployed optimiser config (rho >= 0, 10 iterations) makes fits fail to converge; "
        "the previous parameters are served",
        _inject_divergence,
        _clear_divergence,
        _divergence_visible,
        runbook=P2_CALIBRATION,
    )
)


# -- market-data-gap --------------------------------------------------------------------------


def _inject_gap(lab: Lab) -> None:
    update_control(lab.config, lambda c: c.update({"ingestion_stopped": True}))
    time.sleep(1.5)  # the feed's current tick finishes
    # as if ingestion had stopped GAP_S ago: the ticks and surfaces since never arrived
    _sql(lab, f"DELETE FROM market_data_ticks WHERE ts > now() - interval '{GAP_S} seconds'")
    _sql(lab, f"DELETE FROM option_quotes WHERE ts > now() - interval '{GAP_S} seconds'")


def _latest_tick_age(lab: Lab) -> float | None:
    try:
        resp = _api(lab, "GET", "/v1/market-data/SPY/latest")
    except httpx.HTTPError:
        return None
    return resp.json().get("age_s") if resp.status_code == 200 else None


def _gap_visible(lab: Lab) -> bool:
    age = _latest_tick_age(lab)
    return age is not None and age > GAP_S - 10


def _fresh_surfaces(lab: Lab) -> int:
    rows = _sql(
        lab,
        "SELECT count(DISTINCT symbol) FROM option_quotes WHERE ts > now() - interval '1 minute'",
    )
    return int(rows[0][0])


def _clear_gap(lab: Lab) -> None:
    symbols = _sql(lab, "SELECT count(DISTINCT symbol) FROM calibrations")[0][0]
    update_control(lab.config, lambda c: c.pop("ingestion_stopped", None))
    wait("fresh market data", lambda: (_latest_tick_age(lab) or 1e9) < 5)
    wait("fresh option surfaces", lambda: _fresh_surfaces(lab) >= symbols)


FAULTS.append(
    Fault(
        "market-data-gap",
        f"data-ingestion lost its market-data session {GAP_S} s ago: no new ticks or "
        "surfaces, errors in its logs",
        _inject_gap,
        _clear_gap,
        _gap_visible,
        runbook=P2_CALIBRATION,
    )
)


# -- missing-surface --------------------------------------------------------------------------


def _inject_missing(lab: Lab) -> None:
    update_control(lab.config, lambda c: c.update({"missing_surfaces": [MISSING_SYMBOL]}))
    time.sleep(1.5)
    _sql(
        lab,
        f"DELETE FROM option_quotes WHERE symbol = %s "
        f"AND ts > now() - interval '{QUOTE_WINDOW_S + 60} seconds'",
        (MISSING_SYMBOL,),
    )


def _surface_quotes(lab: Lab) -> int:
    """NVDA's quotes in the window, read from the database (the API may be down too)."""
    rows = _sql(
        lab,
        f"SELECT count(*) FROM option_quotes WHERE symbol = %s "
        f"AND ts > now() - interval '{QUOTE_WINDOW_S} seconds'",
        (MISSING_SYMBOL,),
    )
    return int(rows[0][0])


def _clear_missing(lab: Lab) -> None:
    update_control(lab.config, lambda c: c.pop("missing_surfaces", None))
    wait(f"a surface of {MISSING_SYMBOL}", lambda: _surface_quotes(lab) > 0)


FAULTS.append(
    Fault(
        "missing-surface",
        f"no option quotes for {MISSING_SYMBOL} in the calibration window: its volatility "
        "surface is missing",
        _inject_missing,
        _clear_missing,
        lambda lab: _surface_quotes(lab) == 0,
        runbook=P2_CALIBRATION,
    )
)


# -- calibration-oom --------------------------------------------------------------------------


def _inject_oom(lab: Lab) -> None:
    limit = (
        container(lab, CALIBRATION_DEPLOYMENT)
        .get("resources", {})
        .get("limits", {})
        .get("memory", "2Gi")
    )

    def switch(c: Control) -> None:
        c.setdefault("oom_killed", {})[CALIBRATION_DEPLOYMENT] = limit
        c["calibration_batch"] = OOM_BATCH

    update_control(lab.config, switch)


def _clear_oom(lab: Lab) -> None:
    def switch(c: Control) -> None:
        oom = c.get("oom_killed") or {}
        oom.pop(CALIBRATION_DEPLOYMENT, None)
        if not oom:
            c.pop("oom_killed", None)
        c.pop("calibration_batch", None)

    update_control(lab.config, switch)
    # after the fix, `kubectl rollout restart`: no pod keeps an OOMKilled last state
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kube(
        lab,
        "PATCH",
        deployment_path(lab, CALIBRATION_DEPLOYMENT),
        {
            "spec": {
                "template": {
                    "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}
                }
            }
        },
    )
    wait("the restarted calibration-service pods", lambda: not _oom_killed_pods(lab), 30)


def _oom_killed_pods(lab: Lab) -> list[str]:
    return [
        pod["metadata"]["name"]
        for pod in pods(lab, CALIBRATION_DEPLOYMENT)
        for cs in pod["status"].get("containerStatuses", [])
        if cs.get("lastState", {}).get("terminated", {}).get("reason") == "OOMKilled"
    ]


def _oom_visible(lab: Lab) -> bool:
    """Killed at least once, and the killed container's log shows the batch."""
    for pod in pods(lab, CALIBRATION_DEPLOYMENT):
        for cs in pod["status"].get("containerStatuses", []):
            if cs.get("lastState", {}).get("terminated", {}).get("reason") != "OOMKilled":
                continue
            previous = lab.config.pods_dir / f"{pod['metadata']['name']}.previous.log"
            if previous.exists() and "batch_size=" in previous.read_text(errors="replace"):
                return True
    return False


FAULTS.append(
    Fault(
        "calibration-oom",
        "calibration-service pods OOM-killed by a batch of 1180 surfaces (3.1Gi) "
        "over their 2Gi memory limit",
        _inject_oom,
        _clear_oom,
        _oom_visible,
        runbook=P2_CALIBRATION,
    )
)
