"""The Heston model the lab's calibration-service fits and its data-ingestion quotes from:
prices by Lewis' integral over the "little trap" characteristic function (Albrecher et al.
2007) on a fixed Gauss-Legendre grid, vectorised over quotes (a surface in about a
millisecond); Black-Scholes implied vols; a bounded least-squares fit. numpy/scipy, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares
from scipy.special import ndtr

Array = NDArray[np.float64]
PARAMS = ("kappa", "theta", "sigma", "rho", "v0")

# Integration grid of u in [0, U_MAX]: the integrand decays like exp(-u^2 v T / 2), so 200
# covers 15% vol at 30 days to 1e-20; 160 nodes resolve the oscillation exp(i u k), |k| < 1.
U_MAX = 200.0
NODES = 160
_x, _w = np.polynomial.legendre.leggauss(NODES)
_U: Array = (_x + 1.0) * U_MAX / 2.0
_W: Array = _w * U_MAX / 2.0
IV_LOW, IV_HIGH = 1e-4, 5.0


@dataclass(frozen=True)
class HestonParams:
    kappa: float  # speed of mean reversion of the variance
    theta: float  # long-run variance
    sigma: float  # volatility of variance
    rho: float  # correlation of price and variance
    v0: float  # variance now

    def array(self) -> Array:
        return np.array([self.kappa, self.theta, self.sigma, self.rho, self.v0], dtype=float)

    @classmethod
    def of(cls, values: Sequence[float] | Mapping[str, float] | Array) -> HestonParams:
        if isinstance(values, Mapping):
            return cls(**{k: float(values[k]) for k in PARAMS})
        return cls(*(float(v) for v in values))

    def to_dict(self, digits: int = 6) -> dict[str, float]:
        return {k: round(v, digits) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Surface:
    """Option quotes of one underlying: forward-style inputs, one entry per quote."""

    spot: float
    strikes: Array
    maturities: Array  # years
    is_call: NDArray[np.bool_]
    rate: float = 0.0

    @property
    def forwards(self) -> Array:
        return self.spot * np.exp(self.rate * self.maturities)

    @property
    def discounts(self) -> Array:
        return np.exp(-self.rate * self.maturities)

    def __len__(self) -> int:
        return len(self.strikes)


def char_fn(u: NDArray[Any], t: float, p: HestonParams) -> NDArray[np.complex128]:
    """E[exp(i u X_T)] for X_T = ln(S_T / F_T), the little-trap form (no branch jumps)."""
    iu = 1j * u
    beta = p.kappa - p.rho * p.sigma * iu
    d = np.sqrt(beta * beta + p.sigma**2 * (iu + u * u))
    g = (beta - d) / (beta + d)
    e = np.exp(-d * t)
    c = (p.kappa * p.theta / p.sigma**2) * ((beta - d) * t - 2.0 * np.log((1 - g * e) / (1 - g)))
    dd = (beta - d) / p.sigma**2 * (1 - e) / (1 - g * e)
    return np.asarray(np.exp(c + dd * p.v0))


def heston_prices(p: HestonParams, s: Surface) -> Array:
    """Prices of every quote of `s` under `p` (Lewis: C = D (F - sqrt(F K)/pi * I))."""
    f, df = s.forwards, s.discounts
    k = np.log(f / s.strikes)
    integral = np.empty(len(s))
    shifted = _U - 0.5j
    for t in np.unique(s.maturities):
        rows = s.maturities == t
        phi = char_fn(shifted, float(t), p)  # (nodes,)
        integrand = np.real(np.exp(1j * np.outer(k[rows], _U)) * phi) / (_U * _U + 0.25)
        integral[rows] = integrand @ _W
    calls = df * (f - np.sqrt(f * s.strikes) / np.pi * integral)
    puts = calls - df * (f - s.strikes)
    return np.where(s.is_call, calls, puts)


def bs_prices(vol: Array, s: Surface) -> Array:
    f, df, t = s.forwards, s.discounts, s.maturities
    sd = vol * np.sqrt(t)
    d1 = np.log(f / s.strikes) / sd + sd / 2
    d2 = d1 - sd
    calls = df * (f * ndtr(d1) - s.strikes * ndtr(d2))
    puts = df * (s.strikes * ndtr(-d2) - f * ndtr(-d1))
    return np.where(s.is_call, calls, puts)


def bs_vegas(vol: Array, s: Surface) -> Array:
    f, t = s.forwards, s.maturities
    sd = vol * np.sqrt(t)
    d1 = np.log(f / s.strikes) / sd + sd / 2
    return np.asarray(s.discounts * f * np.exp(-d1 * d1 / 2) / np.sqrt(2 * np.pi) * np.sqrt(t))


def implied_vols(prices: Array, s: Surface, iterations: int = 60) -> Array:
    """Black-Scholes implied vols by safeguarded Newton (bisection when Newton strays);
    NaN where a price is outside the no-arbitrage bounds."""
    f, df = s.forwards, s.discounts
    intrinsic = np.where(
        s.is_call, df * np.maximum(f - s.strikes, 0), df * np.maximum(s.strikes - f, 0)
    )
    upper = np.where(s.is_call, df * f, df * s.strikes)
    ok = (prices > intrinsic) & (prices < upper)
    lo = np.full(len(s), IV_LOW)
    hi = np.full(len(s), IV_HIGH)
    vol = np.full(len(s), 0.3)
    for _ in range(iterations):
        diff = bs_prices(vol, s) - prices
        lo = np.where(diff < 0, vol, lo)
        hi = np.where(diff > 0, vol, hi)
        vega = bs_vegas(vol, s)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            newton = vol - diff / vega
        inside = (newton > lo) & (newton < hi) & np.isfinite(newton)
        nxt = np.where(inside, newton, (lo + hi) / 2)
        if np.all(np.abs(nxt - vol) < 1e-10):
            vol = nxt
            break
        vol = nxt
    return np.where(ok, vol, np.nan)


def heston_vols(p: HestonParams, s: Surface) -> Array:
    return implied_vols(heston_prices(p, s), s)


# -- calibration ------------------------------------------------------------------------------

DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "kappa": (0.05, 10.0),
    "theta": (0.0005, 1.5),
    "sigma": (0.01, 2.5),
    "rho": (-0.99, 0.5),
    "v0": (0.0005, 1.5),
}


@dataclass(frozen=True)
class OptimiserConfig:
    """What the calibration-service's `get_default_config()` returns: bounds, tolerances, the
    iteration budget, and the RMSE (in implied-vol units) above which a fit is rejected."""

    bounds: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_BOUNDS))
    max_iterations: int = 200  # least_squares' max_nfev
    ftol: float = 1e-10
    xtol: float = 1e-10
    gtol: float = 1e-10
    max_rmse: float = 0.02
    method: str = "trf"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bounds"] = {k: list(v) for k, v in self.bounds.items()}
        return d

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> OptimiserConfig:
        base = cls()
        bounds = {
            **base.bounds,
            **{k: (float(v[0]), float(v[1])) for k, v in data.get("bounds", {}).items()},
        }
        other = {k: v for k, v in data.items() if k != "bounds"}
        return replace(base, bounds=bounds, **other)


@dataclass(frozen=True)
class Fit:
    params: HestonParams
    rmse: float  # implied-vol RMSE of the fitted model against the quotes
    iterations: int
    optimiser_converged: bool
    converged: bool  # the optimiser converged and the RMSE is acceptable
    message: str
    duration_s: float
    model_vols: Array
    at_bounds: tuple[str, ...]  # parameters pinned at a bound: the constraints bind

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params.to_dict(),
            "rmse": round(self.rmse, 6) if np.isfinite(self.rmse) else None,
            "iterations": self.iterations,
            "converged": self.converged,
            "optimiser_converged": self.optimiser_converged,
            "message": self.message,
            "duration_s": round(self.duration_s, 3),
            "at_bounds": list(self.at_bounds),
        }


def initial_guess(market_vols: Array, s: Surface) -> HestonParams:
    """A start from the data: v0 from the shortest expiry's smallest vol, theta from the
    longest's, typical values for the rest."""
    short, long = s.maturities.min(), s.maturities.max()
    v0 = float(np.nanmin(market_vols[s.maturities == short])) ** 2
    theta = float(np.nanmin(market_vols[s.maturities == long])) ** 2
    return HestonParams(kappa=2.0, theta=theta, sigma=0.5, rho=-0.5, v0=v0)


def calibrate(market_vols: Array, s: Surface, config: OptimiserConfig | None = None) -> Fit:
    """Fit the Heston parameters to implied vols. The residuals are price errors divided by
    the market vega (first-order vol errors, without an inversion per step); the RMSE is then
    measured exactly on implied vols."""
    config = config or OptimiserConfig()
    t0 = time.perf_counter()
    lower = np.array([config.bounds[k][0] for k in PARAMS])
    upper = np.array([config.bounds[k][1] for k in PARAMS])
    target = bs_prices(market_vols, s)
    vega = np.maximum(bs_vegas(market_vols, s), 1e-8 * s.spot)
    x0 = np.clip(initial_guess(market_vols, s).array(), lower, upper)
    x0 = np.where(x0 <= lower, lower + 1e-6 * (upper - lower), x0)
    x0 = np.where(x0 >= upper, upper - 1e-6 * (upper - lower), x0)

    def residuals(x: Array) -> Array:
        return (heston_prices(HestonParams.of(x), s) - target) / vega

    result = least_squares(
        residuals,
        x0,
        bounds=(lower, upper),
        method=config.method,
        ftol=config.ftol,
        xtol=config.xtol,
        gtol=config.gtol,
        max_nfev=config.max_iterations,
        x_scale="jac",
    )
    params = HestonParams.of(result.x)
    model = heston_vols(params, s)
    errors = model - market_vols
    rmse = (
        float(np.sqrt(np.nanmean(errors * errors))) if np.isfinite(errors).any() else float("nan")
    )
    if np.isnan(errors).any():
        rmse = max(rmse, 1.0) if np.isfinite(rmse) else float("nan")  # unpriceable quotes
    span = upper - lower
    pinned = tuple(
        k
        for k, x, lo, hi, w in zip(PARAMS, result.x, lower, upper, span, strict=True)
        if x - lo < 1e-4 * w or hi - x < 1e-4 * w
    )
    ok = bool(result.success)
    good = ok and np.isfinite(rmse) and rmse <= config.max_rmse
    if not ok:
        message = f"did not converge: {result.message}"
    elif not good:
        message = f"converged to a poor fit: RMSE {rmse:.4f} > {config.max_rmse:g}"
    else:
        message = str(result.message)
    return Fit(
        params,
        rmse,
        int(result.nfev),
        ok,
        bool(good),
        message,
        time.perf_counter() - t0,
        model,
        pinned,
    )
