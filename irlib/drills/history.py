"""What the drills archived, per runbook: last run, last pass, pass rate, time to diagnosis.

Reads OUTPUTS/drills/<date>/<folder>/ (a health drill's results.json, a fault drill's
matrix.json) and nothing else; writes nothing. A runbook is stale when its last fault drill
failed, or when none ran within the profile's `drills.stale_after_days`: a health drill proves
that the checks run, only a fault drill proves that the diagnosis is right.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irlib import run_results, tables
from irlib.drills import FAULTS, HEALTH, MATRIX_JSON, drills_root
from irlib.io import outputs_root, utcnow
from irlib.runbooks import SCENARIOS

if TYPE_CHECKING:
    from irlib.profile import Profile

TREND_POINTS = 5  # the last few fault drills make the trend; older ones are noise
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True)
class Outcome:
    """One runbook in one archived drill."""

    runbook: str
    kind: str  # HEALTH or FAULTS
    at: datetime
    passed: bool
    folder: Path
    time_to_diagnosis_s: float | None = None  # fault drills: the mean over its faults
    detail: str = ""


def read_outcomes(outputs: Path, days: float, now: datetime | None = None) -> list[Outcome]:
    """Every runbook outcome archived in the last `days` days, oldest first."""
    since = (now or utcnow()) - timedelta(days=days)
    found: list[Outcome] = []
    root = drills_root(outputs)
    for folder in sorted(root.glob("*/*")) if root.is_dir() else []:
        try:
            if (folder / MATRIX_JSON).is_file():
                found += _fault_outcomes(folder, json.loads((folder / MATRIX_JSON).read_text()))
            elif run_results.path(folder).is_file():
                found += _health_outcomes(folder, run_results.read(folder))
        except (ValueError, KeyError, TypeError):  # a torn or foreign file: not a drill we read
            continue
    return sorted((o for o in found if o.at >= since), key=lambda o: o.at)


def _health_outcomes(folder: Path, results: run_results.RunResults) -> list[Outcome]:
    at = results.started_at
    verdict = results.verdict
    if not verdict or "runbooks" not in verdict:  # the drill broke before its verdict
        reason = f"health drill broke: {results.reason or 'no verdict'}"
        return [Outcome(name, HEALTH, at, False, folder, detail=reason) for name in SCENARIOS]
    return [
        Outcome(name, HEALTH, at, bool(r["healthy"]), folder, detail=r.get("summary", ""))
        for name, r in verdict["runbooks"].items()
    ]


def _fault_outcomes(folder: Path, matrix: dict[str, Any]) -> list[Outcome]:
    at = datetime.fromisoformat(matrix["started_at"])
    by_runbook: dict[str, list[dict[str, Any]]] = {}
    for cell in matrix["cells"]:
        by_runbook.setdefault(cell["runbook"], []).append(cell)
    out = []
    for name, cells in by_runbook.items():
        missed = [c["fault"] for c in cells if c["outcome"] != "diagnosed"]
        times = [c["time_to_verdict_s"] for c in cells if c["outcome"] == "diagnosed"]
        detail = f"missed {', '.join(missed)}" if missed else f"diagnosed {len(cells)} fault(s)"
        mean = round(sum(times) / len(times), 1) if times else None
        out.append(Outcome(name, FAULTS, at, not missed, folder, mean, detail))
    return out


@dataclass(frozen=True)
class RunbookHistory:
    runbook: str
    outcomes: tuple[Outcome, ...]  # oldest first
    stale: str | None  # why it is stale, or None

    @property
    def last_run(self) -> Outcome | None:
        return self.outcomes[-1] if self.outcomes else None

    @property
    def last_pass(self) -> Outcome | None:
        return next((o for o in reversed(self.outcomes) if o.passed), None)

    @property
    def last_fault_drill(self) -> Outcome | None:
        return next((o for o in reversed(self.outcomes) if o.kind == FAULTS), None)

    @property
    def pass_rate(self) -> float | None:
        if not self.outcomes:
            return None
        return sum(o.passed for o in self.outcomes) / len(self.outcomes)

    @property
    def diagnosis_times(self) -> list[tuple[datetime, float]]:
        return [
            (o.at, o.time_to_diagnosis_s)
            for o in self.outcomes
            if o.kind == FAULTS and o.time_to_diagnosis_s is not None
        ]

    def trend(self) -> str:
        times = [t for _, t in self.diagnosis_times][-TREND_POINTS:]
        if not times:
            return "-"
        text = " -> ".join(f"{t:.1f}" for t in times) + " s"
        if len(times) > 1 and abs(times[-1] - times[0]) >= 0.1 * times[0]:
            text += " (slower)" if times[-1] > times[0] else " (faster)"
        return text

    def row(self) -> dict[str, Any]:
        last, passed, fault = self.last_run, self.last_pass, self.last_fault_drill
        rate = self.pass_rate
        return {
            "runbook": self.runbook,
            "drills": len(self.outcomes),
            "last run": f"{_when(last.at)} {last.kind}" if last else "never",
            "last pass": f"{_when(passed.at)} {passed.kind}" if passed else "never",
            "pass rate": "-" if rate is None else f"{rate:.0%}",
            "last fault drill": (
                f"{_when(fault.at)} {'passed' if fault.passed else 'FAILED: ' + fault.detail}"
                if fault
                else "never"
            ),
            "time to diagnosis": self.trend(),
            "stale": self.stale or "no",
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.row(),
            "pass_rate": self.pass_rate,
            "stale": self.stale,
            "diagnosis_times": [{"at": at.isoformat(), "s": s} for at, s in self.diagnosis_times],
        }


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def staleness(
    outcomes: Iterable[Outcome], now: datetime, limit_days: float, days: float
) -> str | None:
    fault = next((o for o in reversed(list(outcomes)) if o.kind == FAULTS), None)
    if fault is None:
        return f"never fault-drilled in the last {days:g} days"
    if not fault.passed:
        return f"last fault drill failed ({fault.detail})"
    age = (now - fault.at).total_seconds() / 86400
    if age > limit_days:
        return f"not fault-drilled for {age:.1f} days (limit {limit_days:g})"
    return None


@dataclass(frozen=True)
class History:
    """Per runbook, what the drills of the last `days` days found."""

    outputs: Path
    days: float
    limit_days: float
    runbooks: tuple[RunbookHistory, ...]

    @property
    def stale(self) -> list[str]:
        return [r.runbook for r in self.runbooks if r.stale]

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.runbooks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "outputs": str(self.outputs),
            "days": self.days,
            "stale_after_days": self.limit_days,
            "runbooks": [r.to_dict() for r in self.runbooks],
        }

    def __repr__(self) -> str:
        import pandas as pd

        head = f"Drill history, last {self.days:g} days (stale after {self.limit_days:g} days)"
        return head + "\n" + pd.DataFrame(self.rows()).to_string(index=False)

    def _repr_html_(self) -> str:
        import pandas as pd

        frame = pd.DataFrame(self.rows())
        styled = tables.styled(frame).apply(
            lambda row: ["background-color: #f8d7da" if row["stale"] != "no" else ""] * len(row),
            axis=1,
        )
        return (
            f"<h3>Drill history, last {self.days:g} days</h3>"
            + styled.to_html()
            + f"<p>Stale: last fault drill failed, or none for more than {self.limit_days:g} "
            "days (profile <code>drills.stale_after_days</code>).</p>"
        )

    def trend_chart(self) -> TrendChart:
        return TrendChart({r.runbook: r.diagnosis_times for r in self.runbooks}, self.days)


def load_history(
    outputs: str | os.PathLike[str] | None = None,
    *,
    days: float | None = None,
    profile: Profile | None = None,
    now: datetime | None = None,
) -> History:
    """The history of every registered runbook (and any other found in the archive)."""
    from irlib.profile import DrillSettings

    settings = profile.drills if profile is not None else DrillSettings()
    days = settings.history_days if days is None else days
    now = now or utcnow()
    root = outputs_root(outputs)
    outcomes = read_outcomes(root, days, now)
    names = list(SCENARIOS) + sorted({o.runbook for o in outcomes} - set(SCENARIOS))
    runbooks = []
    for name in names:
        mine = tuple(o for o in outcomes if o.runbook == name)
        runbooks.append(
            RunbookHistory(name, mine, staleness(mine, now, settings.stale_after_days, days))
        )
    return History(root, days, settings.stale_after_days, tuple(runbooks))


# -- the trend chart: drawn as SVG here, so it renders offline in the HTML evidence and the
# headless image needs no plotting library ------------------------------------------------------


@dataclass(frozen=True)
class TrendChart:
    series: dict[str, list[tuple[datetime, float]]]
    days: float
    width: int = 560
    height: int = 220

    def __repr__(self) -> str:
        lines = ["Time to diagnosis per fault drill (s)"]
        for name, points in self.series.items():
            values = ", ".join(f"{_when(at)}: {s:.1f}" for at, s in points) or "no fault drill"
            lines.append(f"  {name}: {values}")
        return "\n".join(lines)

    def _repr_svg_(self) -> str | None:
        points = [p for series in self.series.values() for p in series]
        if not points:
            return None  # the text above says so; an empty chart says nothing
        w, h, left, bottom, top = self.width, self.height, 48, 28, 12
        right = w - 180  # the legend's column, clear of the lines
        t0 = min(at for at, _ in points).timestamp()
        span = max(max(at for at, _ in points).timestamp() - t0, 1.0)
        y_max = max(s for _, s in points) * 1.15

        def xy(at: datetime, s: float) -> tuple[float, float]:
            x = left + (at.timestamp() - t0) / span * (right - left)
            return x, top + (1 - s / y_max) * (h - top - bottom)

        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            'font-family="sans-serif" font-size="11">',
            f'<line x1="{left}" y1="{h - bottom}" x2="{right}" y2="{h - bottom}" stroke="#888"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#888"/>',
            f'<text x="4" y="{top + 8}">{y_max:.0f} s</text>',
            f'<text x="4" y="{h - bottom}">0 s</text>',
            f'<text x="{left}" y="{h - 8}">time to diagnosis per fault drill, '
            f"{min(points)[0]:%Y-%m-%d} to {max(points)[0]:%Y-%m-%d} (UTC)</text>",
        ]
        for i, (name, series) in enumerate(self.series.items()):
            colour = PALETTE[i % len(PALETTE)]
            coords = [xy(at, s) for at, s in series]
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}"/>')
            parts += [
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in coords
            ]
            parts.append(
                f'<text x="{right + 16}" y="{top + 12 + 14 * i}" fill="{colour}">'
                f"{html.escape(name)}</text>"
            )
        return "".join(parts) + "</svg>"
