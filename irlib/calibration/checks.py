"""Read-only checks of the calibration-service and its market data, one per command of the
seed's "P2: Calibration Failures": last calibrations, parameters in use, the test calibration,
market-data freshness, the optimiser config, and whether a recalibration moved `calibrated_at`
or left the fallback served. An error answer is FAIL; no answer in time is ERROR.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from irlib import transport
from irlib.errors import TargetError, Unreachable
from irlib.results import Check, Evidence, Status, guarded

TARGET = "calibration"
PARAMS = ("kappa", "theta", "sigma", "rho", "v0")


def _call(
    name: str,
    method: str,
    url: str,
    *,
    timeout_s: float,
    params: dict[str, str] | None = None,
    body: Callable[[transport.Answer], Check],
) -> Check:
    """One request; its answer made into a Check by `body`. A service that refuses
    connections is FAIL (it is down), one that is silent is ERROR (we could not find out)."""
    return guarded(
        name,
        TARGET,
        lambda: body(transport.request(method, url, timeout_s=timeout_s, params=params)),
        failing=(Unreachable,),
    )


def _http_failure(name: str, answer: transport.Answer, what: str) -> Check:
    status = Status.ERROR if answer.status_code in (401, 403) else Status.FAIL
    return Check(
        name,
        TARGET,
        status,
        f"{what}: HTTP {answer.status_code}: {answer.error}",
        facts={"http_status": answer.status_code, "error": answer.error, "reason": answer.reason},
    )


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


# -- Check last successful calibration ------------------------------------------------------


def _problems(
    r: dict[str, Any], max_age_h: float, rmse_max: float, duration_max_s: float
) -> dict[str, str]:
    """What is wrong with one symbol's calibrations, by kind."""
    found: dict[str, str] = {}
    age_h = _hours(r.get("last_success_age_s"))
    if r.get("last_success_at") is None:
        found["failed"] = "never converged"
    elif age_h is not None and age_h > max_age_h:
        found["stale"] = f"last success {age_h:.1f} h ago (limit {max_age_h:g} h)"
    if not r.get("converged", True):
        found["failed"] = f"last attempt failed: {r.get('message') or 'did not converge'}"
    rmse = r.get("rmse_in_use")
    if rmse is not None and rmse > rmse_max:
        found["bad_rmse"] = f"RMSE {rmse:.4f} > {rmse_max:g}"
    if not r.get("surface_quotes"):
        found["missing_surface"] = "no option quotes in the window: surface missing"
    duration = r.get("duration_s")
    if duration is not None and duration > duration_max_s:
        found["slow"] = f"took {duration:.0f} s (limit {duration_max_s:g} s)"
    return found


def check_calibration_status(
    base_url: str,
    *,
    timeout_s: float,
    max_age_h: float,
    rmse_max: float,
    duration_max_s: float,
) -> Check:
    """`curl /v1/calibration/status`: per symbol the last successful calibration, its age,
    RMSE and the last attempt, against the thresholds; stale and bad rows first."""
    name = "last successful calibration"

    def body(answer: transport.Answer) -> Check:
        if not answer.ok:
            return _http_failure(name, answer, "calibration status")
        rows_in = answer.body.get("calibrations", [])
        window = answer.body.get("quote_window_s")
        table, facts = (
            [],
            {
                "stale": [],
                "failed": [],
                "bad_rmse": [],
                "missing_surface": [],
                "fallback": [],
                "slow": [],
                "symbols": [r["symbol"] for r in rows_in],
                "quote_window_s": window,
                "config_overridden": bool(answer.body.get("config_overridden")),
            },
        )
        for r in rows_in:
            found = _problems(r, max_age_h, rmse_max, duration_max_s)
            base = {
                "symbol": r["symbol"],
                "last_success_at": r.get("last_success_at"),
                "age_h": _hours(r.get("last_success_age_s")),
            }
            for kind in found:
                entry = {**base, "why": found[kind]}
                if kind == "failed":
                    entry.update(
                        at=r.get("calibrated_at"),
                        rmse=r.get("rmse"),
                        iterations=r.get("iterations"),
                        message=r.get("message"),
                    )
                facts[kind].append(entry if kind != "missing_surface" else r["symbol"])
            if r.get("fallback"):
                facts["fallback"].append(r["symbol"])
            bad = {k: v for k, v in found.items() if k != "slow"}
            table.append(
                {
                    "symbol": r["symbol"],
                    "status": "FAIL" if bad else "WARN" if found else "ok",
                    "last_success_at": r.get("last_success_at"),
                    "age_h": base["age_h"],
                    "rmse": r.get("rmse_in_use"),
                    "last_attempt": "converged" if r.get("converged") else "FAILED",
                    "iterations": r.get("iterations"),
                    "fallback": bool(r.get("fallback")),
                    "surface_quotes": r.get("surface_quotes"),
                    "problems": "; ".join(found.values()),
                }
            )
        table.sort(key=lambda t: ({"FAIL": 0, "WARN": 1}.get(t["status"], 2), t["symbol"]))
        kinds = ("stale", "failed", "bad_rmse", "missing_surface")
        bad_symbols = sorted({t["symbol"] for t in table if t["status"] == "FAIL"})
        if bad_symbols:
            counts = ", ".join(f"{len(facts[k])} {k.replace('_', ' ')}" for k in kinds if facts[k])
            status, summary = Status.FAIL, f"{', '.join(bad_symbols)}: {counts}"
        else:
            status = Status.WARN if facts["slow"] else Status.OK
            summary = (
                f"{len(table)} symbols calibrated within {max_age_h:g} h, "
                f"RMSE <= {rmse_max:g}, surfaces present"
            )
        return Check(
            name,
            TARGET,
            status,
            summary,
            (Evidence.table("GET /v1/calibration/status (stale and bad rows first)", table),),
            facts=facts,
        )

    return _call(name, "GET", base_url + "/v1/calibration/status", timeout_s=timeout_s, body=body)


# -- the parameters in use, and whether a recalibration moved them ---------------------------


def _parameter_rows(used: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"field": k, "value": used.get("params", {}).get(k)} for k in PARAMS
    ]
    for key in ("calibrated_at", "rmse", "iterations", "fallback", "fallback_reason"):
        if key in used:
            rows.append({"field": key, "value": used[key]})
    return rows


def _in_use_facts(symbol: str, used: dict[str, Any]) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "params": used.get("params"),
        "calibrated_at": used.get("calibrated_at"),
        "age_h": _hours(used.get("age_s")),
        "rmse": used.get("rmse"),
        "fallback": bool(used.get("fallback")),
        "fallback_reason": used.get("fallback_reason"),
    }


def check_parameters_in_use(
    base_url: str, symbol: str, *, timeout_s: float, max_age_h: float, rmse_max: float
) -> Check:
    """`curl /v1/calibration/heston?symbol=SPY`: what trading uses now; FAIL when that is the
    fallback (the last attempt failed), stale, or a poor fit."""
    name = "parameters in use"

    def body(answer: transport.Answer) -> Check:
        if not answer.ok:
            return _http_failure(name, answer, f"parameters of {symbol}")
        used = answer.body
        facts = _in_use_facts(symbol, used)
        age_h = facts["age_h"] or 0.0
        rmse = facts["rmse"]
        if facts["fallback"]:
            status = Status.FAIL
            summary = (
                f"{symbol}: fallback in use: the previous parameters from "
                f"{facts['calibrated_at']} are served ({facts['fallback_reason']})"
            )
        elif age_h > max_age_h:
            status, summary = Status.FAIL, f"{symbol}: parameters {age_h:.1f} h old (stale)"
        elif rmse is not None and rmse > rmse_max:
            status, summary = Status.FAIL, f"{symbol}: RMSE {rmse:.4f} > {rmse_max:g}"
        else:
            status = Status.OK
            summary = f"{symbol}: calibrated {age_h:.1f} h ago, RMSE {rmse}, not a fallback"
        return Check(
            name,
            TARGET,
            status,
            summary,
            (Evidence.table(f"GET /v1/calibration/heston?symbol={symbol}", _parameter_rows(used)),),
            facts=facts,
        )

    return _call(
        name,
        "GET",
        base_url + "/v1/calibration/heston",
        timeout_s=timeout_s,
        params={"symbol": symbol},
        body=body,
    )


def check_recalibrated(
    base_url: str,
    symbol: str,
    *,
    before: str | None,
    timeout_s: float,
    max_age_h: float,
    rmse_max: float,
) -> Check:
    """After `recalibrate:SYMBOL`: `calibrated_at` moved past `before` and the fit is good;
    or, when the recalibration failed, the fallback (previous parameters) is still served."""
    name = f"recalibration {symbol}"

    def body(answer: transport.Answer) -> Check:
        if not answer.ok:
            return _http_failure(name, answer, f"parameters of {symbol}")
        facts = _in_use_facts(symbol, answer.body)
        moved = facts["calibrated_at"] != before
        facts.update(before=before, moved=moved)
        rmse = facts["rmse"]
        if facts["fallback"]:
            status = Status.FAIL
            summary = (
                f"the recalibration of {symbol} failed; fallback working: the previous "
                f"parameters from {facts['calibrated_at']} are still served "
                f"({facts['fallback_reason']})"
            )
        elif not moved:
            status = Status.FAIL
            summary = f"calibrated_at of {symbol} did not move ({before})"
        elif rmse is None or rmse > rmse_max or (facts["age_h"] or 0) > max_age_h:
            status = Status.FAIL
            summary = f"{symbol} recalibrated at {facts['calibrated_at']} but RMSE is {rmse}"
        else:
            status = Status.OK
            summary = (
                f"calibrated_at of {symbol} moved from {before} to {facts['calibrated_at']}; "
                f"RMSE {rmse:.4f} <= {rmse_max:g}"
            )
        return Check(
            name,
            TARGET,
            status,
            summary,
            (
                Evidence.table(
                    f"GET /v1/calibration/heston?symbol={symbol} (before: {before})",
                    _parameter_rows(answer.body),
                ),
            ),
            facts=facts,
        )

    return _call(
        name,
        "GET",
        base_url + "/v1/calibration/heston",
        timeout_s=timeout_s,
        params={"symbol": symbol},
        body=body,
    )


# -- Manual calibration test -------------------------------------------------------------------


def check_test_calibration(
    base_url: str, symbol: str, *, timeout_s: float, rmse_max: float
) -> Check:
    """The seed's `test_calibration --symbol SPY`: a fit with the service's config now,
    stored nowhere; RMSE, iterations and fitted parameters beside the stored ones."""
    name = "manual calibration test"

    def body(answer: transport.Answer) -> Check:
        if not answer.ok:
            check = _http_failure(name, answer, f"test calibration of {symbol}")
            reason = answer.reason if answer.reason in DATA_REASONS else "unavailable"
            return Check(
                name,
                TARGET,
                check.status,
                check.summary,
                facts={**check.facts, "symbol": symbol, "reason": reason},
            )
        fit = answer.body
        stored = (fit.get("stored") or {}).get("params") or {}
        fitted = fit.get("params") or {}
        rows = [
            {
                "param": k,
                "fitted": fitted.get(k),
                "stored": stored.get(k),
                "difference": None
                if fitted.get(k) is None or stored.get(k) is None
                else round(fitted[k] - stored[k], 6),
            }
            for k in PARAMS
        ]
        details = [
            {"field": k, "value": fit.get(k)}
            for k in (
                "rmse",
                "iterations",
                "converged",
                "message",
                "duration_s",
                "n_quotes",
                "quoted_at",
                "at_bounds",
            )
        ]
        rmse = fit.get("rmse")
        good = bool(fit.get("converged")) and rmse is not None and rmse <= rmse_max
        summary = (
            f"{symbol}: RMSE {rmse if rmse is None else round(rmse, 4)} in "
            f"{fit.get('iterations')} iterations ({fit.get('duration_s')} s), "
            + ("converged" if good else f"FAILED: {fit.get('message')}")
        )
        if fit.get("at_bounds"):
            summary += f"; at bounds: {', '.join(fit['at_bounds'])}"
        return Check(
            name,
            TARGET,
            Status.OK if good else Status.FAIL,
            summary,
            (
                Evidence.table(f"test calibration of {symbol}: fitted vs stored", rows),
                Evidence.table("fit", details),
            ),
            facts={
                "symbol": symbol,
                "reason": "ok" if good else "fit",
                "converged": bool(fit.get("converged")),
                "rmse": rmse,
                "iterations": fit.get("iterations"),
                "message": fit.get("message"),
                "params": fitted,
                "stored": stored,
                "at_bounds": fit.get("at_bounds") or [],
                "quotes": fit.get("quotes") or [],
            },
        )

    return _call(
        name,
        "GET",
        base_url + "/v1/calibration/test",
        timeout_s=timeout_s,
        params={"symbol": symbol},
        body=body,
    )


DATA_REASONS = ("no-market-data", "market-data-stale", "no-surface")


# -- Market data unavailable -----------------------------------------------------------------


def check_market_data(
    base_url: str, symbols: Iterable[str], *, timeout_s: float, max_age_s: float
) -> Check:
    """`curl /v1/market-data/SPY/latest` for each symbol: the newest tick and its age."""
    name = "market data"
    t0 = time.monotonic()
    rows, stale, missing, errors = [], [], [], []
    for symbol in symbols:
        url = f"{base_url}/v1/market-data/{symbol}/latest"
        try:
            answer = transport.request("GET", url, timeout_s=timeout_s)
        except TargetError as e:
            errors.append(f"{symbol}: {e}")
            continue
        if not answer.ok:
            missing.append(symbol)
            rows.append(
                {"symbol": symbol, "ts": None, "age_s": None, "fresh": False, "error": answer.error}
            )
            continue
        tick = answer.body
        age = tick.get("age_s")
        fresh = age is not None and age <= max_age_s
        if not fresh:
            stale.append(symbol)
        rows.append(
            {
                "symbol": symbol,
                "ts": tick.get("ts"),
                "age_s": age,
                "last": tick.get("last"),
                "source": tick.get("source"),
                "fresh": fresh,
            }
        )
    rows.sort(key=lambda r: (r["fresh"], r["symbol"]))
    facts = {
        "checked": [r["symbol"] for r in rows],
        "stale": stale,
        "missing": missing,
        "ages": {r["symbol"]: r["age_s"] for r in rows},
        "errors": errors,
        "max_age_s": max_age_s,
    }
    if errors and not rows:
        status, summary = Status.ERROR, f"no answer: {errors[0]}"
    elif stale or missing:
        worst = max((r["age_s"] or 0 for r in rows), default=0)
        status = Status.FAIL
        summary = (
            f"stale market data for {len(stale + missing)}/{len(rows)} symbols "
            f"(oldest {worst:.0f} s; limit {max_age_s:g} s)"
        )
    else:
        status, summary = Status.OK, f"{len(rows)} symbols ticked within {max_age_s:g} s"
    return Check(
        name,
        "api",
        status,
        summary,
        (Evidence.table("GET /v1/market-data/{symbol}/latest", rows),),
        duration_s=time.monotonic() - t0,
        facts=facts,
    )


# -- Optimization not converging: check calibration parameters ------------------------------


def check_optimiser_config(base_url: str, *, timeout_s: float) -> Check:
    """`HestonCalibrator().get_default_config()`: bounds, tolerances and iteration budget in
    force, beside the built-in defaults; a setting that differs is shown first (WARN)."""
    name = "optimiser config"

    def body(answer: transport.Answer) -> Check:
        if not answer.ok:
            return _http_failure(name, answer, "optimiser config")
        config, defaults = answer.body.get("config", {}), answer.body.get("defaults", {})
        overridden = list(answer.body.get("overridden", []))
        rows = []
        for key, value in config.items():
            if key == "bounds":
                for param, bound in value.items():
                    rows.append(
                        {
                            "setting": f"bounds.{param}",
                            "in_force": bound,
                            "default": defaults.get("bounds", {}).get(param),
                        }
                    )
            else:
                rows.append({"setting": key, "in_force": value, "default": defaults.get(key)})
        for r in rows:
            r["changed"] = r["setting"] in overridden
        rows.sort(key=lambda r: not r["changed"])
        if overridden:
            changes = "; ".join(
                f"{r['setting']} {r['in_force']} (default {r['default']})"
                for r in rows
                if r["changed"]
            )
            status, summary = Status.WARN, f"differs from the defaults: {changes}"
        else:
            status, summary = Status.OK, "the built-in defaults are in force"
        return Check(
            name,
            TARGET,
            status,
            summary,
            (Evidence.table("GET /v1/calibration/config", rows),),
            facts={
                "overridden": overridden,
                "config": config,
                "defaults": defaults,
                "changes": [r for r in rows if r["changed"]],
            },
        )

    return _call(name, "GET", base_url + "/v1/calibration/config", timeout_s=timeout_s, body=body)
