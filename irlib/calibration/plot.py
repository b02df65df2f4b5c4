"""A picture of a calibration: the quotes' implied vols (dots) against the vols of the
parameters in use (lines) and of the test fit (dashed), per expiry, as an inline SVG that
survives in the evidence HTML without a kernel. Plain SVG text: no plotting library.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from irlib import transport
from irlib.errors import TargetError

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
WIDTH, HEIGHT = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 60, 150, 40, 50


@dataclass(frozen=True)
class SurfacePlot:
    symbol: str
    spot: float | None = None
    quotes: tuple[dict[str, Any], ...] = ()  # days, strike, implied_vol, model_vol (in use)
    # the test fit's model vols: days -> [(strike, vol)], from its own (maybe newer) quotes
    test_vols: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    note: str = ""  # when there is nothing to draw: why

    def __repr__(self) -> str:
        if not self.quotes:
            return f"{self.symbol}: no plot ({self.note})"
        errors = [q["model_vol"] - q["implied_vol"] for q in self.quotes if q.get("model_vol")]
        rmse = (sum(e * e for e in errors) / len(errors)) ** 0.5 if errors else float("nan")
        return (
            f"{self.symbol}: {len(self.quotes)} quotes; implied-vol RMSE of the parameters in "
            f"use {rmse:.4f}" + (" (test fit dashed)" if self.test_vols else "")
        )

    def _repr_html_(self) -> str:
        caption = html.escape(repr(self))
        if not self.quotes:
            return f"<p><b>Implied vols of {html.escape(self.symbol)}</b>: {caption}</p>"
        return f"<figure>{self.svg()}<figcaption>{caption}</figcaption></figure>"

    def svg(self) -> str:
        spot = self.spot or 1.0
        by_expiry: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for q in self.quotes:
            by_expiry[int(q["days"])].append(q)
        xs = [float(q["strike"]) / spot for q in self.quotes]
        ys = [
            v
            for q in self.quotes
            for v in (q.get("implied_vol"), q.get("model_vol"))
            if v is not None
        ] + [v for curve in self.test_vols.values() for _, v in curve]
        x0, x1 = _padded(min(xs), max(xs))
        y0, y1 = _padded(min(ys), max(ys))
        w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

        def px(x: float) -> float:
            return LEFT + (x - x0) / (x1 - x0) * w

        def py(y: float) -> float:
            return TOP + h - (y - y0) / (y1 - y0) * h

        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'font-family="sans-serif" font-size="11">',
            f'<text x="{LEFT}" y="20" font-size="13" font-weight="bold">'
            f"{html.escape(self.symbol)} implied vols: quotes (dots), parameters in use "
            f"(lines), test fit (dashed)</text>",
            f'<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
        ]
        for x in _ticks(x0, x1):
            parts.append(
                f'<line x1="{px(x):.1f}" y1="{TOP + h}" x2="{px(x):.1f}" y2="{TOP + h + 4}" '
                f'stroke="#999"/><text x="{px(x):.1f}" y="{TOP + h + 16}" '
                f'text-anchor="middle">{x:.2f}</text>'
            )
        for y in _ticks(y0, y1):
            parts.append(
                f'<line x1="{LEFT - 4}" y1="{py(y):.1f}" x2="{LEFT}" y2="{py(y):.1f}" '
                f'stroke="#999"/><text x="{LEFT - 6}" y="{py(y) + 4:.1f}" '
                f'text-anchor="end">{y * 100:.3g}%</text>'
            )
        parts.append(
            f'<text x="{LEFT + w / 2}" y="{HEIGHT - 12}" text-anchor="middle">strike / spot</text>'
        )
        for i, (days, rows) in enumerate(sorted(by_expiry.items())):
            colour = COLOURS[i % len(COLOURS)]
            rows.sort(key=lambda q: float(q["strike"]))
            model = [
                (px(float(q["strike"]) / spot), py(q["model_vol"]))
                for q in rows
                if q.get("model_vol") is not None
            ]
            parts.append(_polyline(model, colour, dashed=False))
            test = [(px(k / spot), py(v)) for k, v in sorted(self.test_vols.get(days, []))]
            parts.append(_polyline(test, colour, dashed=True))
            parts += [
                f'<circle cx="{px(float(q["strike"]) / spot):.1f}" '
                f'cy="{py(q["implied_vol"]):.1f}" r="3" fill="{colour}"/>'
                for q in rows
            ]
            ly = TOP + 14 + i * 18
            parts.append(
                f'<circle cx="{WIDTH - RIGHT + 18}" cy="{ly - 4}" r="4" fill="{colour}"/>'
                f'<text x="{WIDTH - RIGHT + 28}" y="{ly}">{days} days</text>'
            )
        parts.append("</svg>")
        return "".join(p for p in parts if p)


def _polyline(points: Sequence[tuple[float, float]], colour: str, *, dashed: bool) -> str:
    if len(points) < 2:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash = ' stroke-dasharray="5,4"' if dashed else ""
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>'


def _padded(lo: float, hi: float) -> tuple[float, float]:
    pad = (hi - lo) * 0.05 or 0.01
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round values (1, 2, 2.5 or 5 times a power of ten apart) inside [lo, hi]."""
    raw = (hi - lo) / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def surface_plot(
    base_url: str,
    symbol: str,
    *,
    timeout_s: float,
    test_quotes: Sequence[dict[str, Any]] = (),
) -> SurfacePlot:
    """The newest quotes of `symbol` beside the model vols of the parameters in use (from the
    service), and of the test fit when given. Never raises: a failure is the plot's note."""
    try:
        answer = transport.request(
            "GET",
            base_url + "/v1/calibration/surface",
            timeout_s=timeout_s,
            params={"symbol": symbol},
        )
    except TargetError as e:
        return SurfacePlot(symbol, note=str(e))
    if not answer.ok:
        return SurfacePlot(symbol, note=f"HTTP {answer.status_code}: {answer.error}")
    test: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for q in test_quotes:
        if q.get("model_vol") is not None:
            test[int(q["days"])].append((float(q["strike"]), float(q["model_vol"])))
    return SurfacePlot(
        symbol,
        spot=float(answer.body.get("spot") or 0) or None,
        quotes=tuple(answer.body.get("quotes") or ()),
        test_vols=dict(test),
    )
