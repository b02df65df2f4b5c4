"""The lab's Heston pricer and calibration, and the runbook's pure pieces: no servers.

The pricer is checked against Black-Scholes (the Heston model with a vanishing vol of
variance) and against scipy's adaptive quadrature of the same integral; the calibration
against surfaces generated from known parameters.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy.integrate import quad

from irlib.calibration.plot import SurfacePlot
from irlib.lab import surfaces
from irlib.lab.heston import (
    PARAMS,
    HestonParams,
    OptimiserConfig,
    Surface,
    bs_prices,
    calibrate,
    char_fn,
    heston_prices,
    heston_vols,
    implied_vols,
)
from irlib.lab.seed import SYMBOLS
from irlib.runbooks.p2_calibration_failures import batch_bound

SPY = surfaces.GENERATING["SPY"]


def spy_surface(spot: float = 590.0) -> Surface:
    days, strikes, is_call = surfaces.grid(spot, float(np.sqrt(SPY.v0)))
    return Surface(spot, strikes, days / 365.0, is_call, surfaces.RATE)


def test_heston_without_vol_of_variance_is_black_scholes() -> None:
    s = spy_surface()
    flat = HestonParams(kappa=1.0, theta=0.0225, sigma=1e-4, rho=0.0, v0=0.0225)
    bs = bs_prices(np.full(len(s), 0.15), s)
    assert np.max(np.abs(heston_prices(flat, s) - bs)) < 1e-6 * s.spot


@pytest.mark.parametrize("symbol", list(surfaces.GENERATING), ids=list(surfaces.GENERATING))
def test_the_fixed_grid_matches_adaptive_quadrature(symbol: str) -> None:
    p, spot = surfaces.GENERATING[symbol], SYMBOLS[symbol].price
    days, strikes, is_call = surfaces.grid(spot, float(np.sqrt(p.v0)))
    s = Surface(spot, strikes, days / 365.0, is_call, surfaces.RATE)
    fast = heston_vols(p, s)
    reference = []
    for k, t, call in list(zip(strikes, days / 365.0, is_call, strict=True))[::4]:
        forward = spot * np.exp(surfaces.RATE * t)
        x = np.log(forward / k)

        def integrand(u: float, x: float = x, t: float = t) -> float:
            phi = char_fn(np.array([u - 0.5j]), t, p)[0]
            return float(np.real(np.exp(1j * u * x) * phi) / (u * u + 0.25))

        value = quad(integrand, 0, np.inf, limit=400)[0]
        c = np.exp(-surfaces.RATE * t) * (forward - np.sqrt(forward * k) / np.pi * value)
        reference.append(c if call else c - np.exp(-surfaces.RATE * t) * (forward - k))
    sub = Surface(spot, strikes[::4], days[::4] / 365.0, is_call[::4], surfaces.RATE)
    assert np.nanmax(np.abs(fast[::4] - implied_vols(np.array(reference), sub))) < 5e-5


def test_implied_vols_invert_black_scholes_and_refuse_arbitrage() -> None:
    s = spy_surface()
    vols = np.linspace(0.05, 1.2, len(s))
    assert np.max(np.abs(implied_vols(bs_prices(vols, s), s) - vols)) < 1e-9
    below_intrinsic = np.zeros(len(s))
    assert np.isnan(implied_vols(below_intrinsic, s)).all()


def test_calibration_recovers_exact_parameters_from_noise_free_vols() -> None:
    s = spy_surface()
    fit = calibrate(heston_vols(SPY, s), s)
    assert fit.converged and fit.rmse < 1e-5
    np.testing.assert_allclose(fit.params.array(), SPY.array(), rtol=1e-3, atol=1e-4)


# The tolerance a healthy calibration meets on the lab's noisy quotes (0.2 vol points of
# noise): relative for the variance levels and vol of variance, absolute for rho, and
# loosest for kappa, which a 1-year surface pins down least.
TOLERANCE = {"kappa": 0.35, "theta": 0.1, "sigma": 0.15, "rho": 0.05, "v0": 0.05}


def within_tolerance(fitted: HestonParams, true: HestonParams) -> dict[str, float]:
    """The parameters outside TOLERANCE, with their error."""
    out = {}
    for k in PARAMS:
        got, want = getattr(fitted, k), getattr(true, k)
        err = abs(got - want) if k == "rho" else abs(got / want - 1)
        if err > TOLERANCE[k]:
            out[k] = err
    return out


@pytest.mark.parametrize("symbol", list(surfaces.GENERATING), ids=list(surfaces.GENERATING))
def test_calibration_recovers_the_generating_parameters_from_a_noisy_snapshot(
    symbol: str,
) -> None:
    spot = SYMBOLS[symbol].price
    rows = surfaces.snapshot(symbol, spot, dt.datetime.now(dt.UTC), np.random.default_rng(3))
    s = Surface(
        spot,
        np.array([r["strike"] for r in rows]),
        np.array([(r["expiry"] - r["ts"].date()).days / 365.0 for r in rows]),
        np.array([r["option_type"] == "call" for r in rows]),
        surfaces.RATE,
    )
    fit = calibrate(np.array([r["implied_vol"] for r in rows]), s)
    assert fit.converged, fit.message
    assert fit.rmse < 2.0 * surfaces.NOISE
    assert within_tolerance(fit.params, surfaces.GENERATING[symbol]) == {}
    assert fit.duration_s < 2.0


def test_too_tight_bounds_stop_the_fit_unconverged_at_a_bound() -> None:
    s = spy_surface()
    config = OptimiserConfig.of({"bounds": {"rho": [0.0, 0.5]}, "max_iterations": 10})
    fit = calibrate(heston_vols(SPY, s), s, config)
    assert not fit.converged and "rho" in fit.at_bounds
    assert "did not converge" in fit.message


def test_a_poor_fit_is_rejected_even_when_the_optimiser_converges() -> None:
    s = spy_surface()
    fit = calibrate(heston_vols(SPY, s), s, OptimiserConfig.of({"bounds": {"rho": [0.0, 0.5]}}))
    assert not fit.converged
    assert fit.rmse > OptimiserConfig().max_rmse


def test_snapshots_quote_out_of_the_money_options_with_the_noise_stated() -> None:
    rows = surfaces.snapshot("SPY", 590.0, dt.datetime.now(dt.UTC), np.random.default_rng(0))
    assert len(rows) == len(surfaces.EXPIRY_DAYS) * len(surfaces.STANDARD_MOVES)
    assert all((r["option_type"] == "call") == (r["strike"] >= 590.0) for r in rows)
    assert all(r["bid"] < r["ask"] for r in rows)
    s = spy_surface()
    noise = np.array([r["implied_vol"] for r in rows]) - heston_vols(SPY, s)
    assert 0.5 * surfaces.NOISE < float(np.std(noise)) < 2 * surfaces.NOISE


def test_the_batch_bound_fits_the_memory_limit_with_headroom() -> None:
    assert batch_bound(1180, "3.1Gi", "2Gi") == 500  # 0.7 * 2048 MiB / 2.69 MiB = 532
    assert batch_bound(1180, "3.1Gi", "4Gi") == 1050
    assert batch_bound(0, "3.1Gi", "2Gi") is None
    assert batch_bound(1180, "lots", "2Gi") is None


def test_the_plot_is_inline_svg_and_says_why_when_empty() -> None:
    quotes = tuple(
        {"days": d, "strike": k, "implied_vol": 0.2 + 0.01 * i, "model_vol": 0.2 + 0.01 * i}
        for i, (d, k) in enumerate([(30, 90.0), (30, 100.0), (30, 110.0), (60, 100.0)])
    )
    plot = SurfacePlot("SPY", spot=100.0, quotes=quotes, test_vols={30: [(100.0, 0.21)]})
    html = plot._repr_html_()
    assert html.count("<svg") == 1 and "<polyline" in html and "30 days" in html
    assert "RMSE" in repr(plot)
    empty = SurfacePlot("NVDA", note="HTTP 422: no option quotes")
    assert "<svg" not in empty._repr_html_() and "no option quotes" in repr(empty)
