"""What every check returns and what a runbook decides: Status, Evidence, Check, Cause,
Verdict. Frozen dataclasses that show themselves well in a notebook (`_repr_html_`) and
serialise for `results.json` (`to_dict`). Nothing here talks to a system.
"""

from __future__ import annotations

import enum
import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from irlib import capture, tables
from irlib.errors import Refused, TargetError
from irlib.io import utcnow


class Status(enum.Enum):
    """A check's outcome. FAIL: the system is broken; ERROR: we could not find out."""

    OK = "ok"
    WARN = "warn"
    ERROR = "error"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        """Higher is worse: tables are sorted worst first."""
        return _RANK[self]

    @property
    def colour(self) -> str:
        return _COLOUR[self]


_RANK = {Status.OK: 0, Status.WARN: 1, Status.ERROR: 2, Status.FAIL: 3}
_COLOUR = {s: tables.WORD_COLOURS[s.value][1] for s in Status}  # the backgrounds of tables


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass(frozen=True)
class Evidence:
    """Raw facts behind a check: a small table (rows of column -> value) or a text excerpt."""

    title: str
    rows: tuple[Mapping[str, Any], ...] = ()
    text: str = ""

    @classmethod
    def table(cls, title: str, rows: Iterable[Mapping[str, Any]]) -> Evidence:
        return cls(title=title, rows=tuple(dict(r) for r in rows))

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self.rows))

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "rows": _jsonable(list(self.rows)), "text": self.text}

    def _repr_html_(self) -> str:
        body = (
            tables.html_table(self.frame()) if self.rows else f"<pre>{html.escape(self.text)}</pre>"
        )
        return f"<h4>{html.escape(self.title)}</h4>{body}"


@dataclass(frozen=True)
class Check:
    """One question asked of the platform, and its answer."""

    name: str
    target: str
    status: Status
    summary: str
    evidence: tuple[Evidence, ...] = ()
    duration_s: float = 0.0
    started_at: datetime = field(default_factory=utcnow)
    facts: Mapping[str, Any] = field(default_factory=dict)  # for the verdict's rules

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def row(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "target": self.target,
            "status": self.status.value,
            "summary": self.summary,
            "duration_s": round(self.duration_s, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.row(),
            "started_at": self.started_at.isoformat(),
            "facts": _jsonable(self.facts),
            "evidence": [e.to_dict() for e in self.evidence],
        }

    def _repr_html_(self) -> str:
        head = (
            f'<div style="background:{self.status.colour};padding:4px">'
            f"<b>{html.escape(self.name)}</b> [{self.status.value.upper()}] "
            f"{html.escape(self.summary)}</div>"
        )
        return head + "".join(e._repr_html_() for e in self.evidence)


def guarded(
    name: str,
    target: str,
    body: Callable[[], Check],
    *,
    failing: tuple[type[TargetError], ...] = (),
    what: str = "",
) -> Check:
    """Run a check's body and time it; every check of every target package runs this way.
    A target error becomes the check, with the error's reason and facts: ERROR (we could not
    find out), or FAIL for the kinds in `failing`, where the check's own question is whether
    the target answers (a database that refuses connections is the finding, not a gap).
    `what` says what could not be done ("cannot read pg_stat_activity")."""
    t0 = capture.monotonic()  # in a replay, the time the original's calls took
    try:
        check = body()
    except TargetError as e:
        reason = str(e)
        if isinstance(e, Refused) and e.auth_refused and e.permission is None:
            reason += " (credentials refused)"  # (a 403 that names its permission says more)
        return Check(
            name,
            target,
            Status.FAIL if isinstance(e, failing) else Status.ERROR,
            f"{what}: {reason}" if what else reason,
            duration_s=capture.monotonic() - t0,
            facts=e.facts,
        )
    return replace(check, duration_s=capture.monotonic() - t0)


def checks_frame(checks: Sequence[Check]) -> Any:
    """The checks as one table, worst first, each status a coloured word (irlib.tables)."""
    import pandas as pd

    ordered = sorted(checks, key=lambda c: -c.status.rank)
    frame = pd.DataFrame(
        [c.row() for c in ordered], columns=["check", "target", "status", "summary", "duration_s"]
    )
    return tables.styled(frame)


class Health(enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True)
class Cause:
    """A probable cause, named by the same id as the lab fault that reproduces it."""

    id: str
    title: str
    score: float  # 0..1: how strongly the checks point here
    supported_by: tuple[str, ...]  # names of the checks that support it
    evidence: str  # one line a person can verify
    mitigations: tuple[str, ...] = ()  # guarded mitigation ids, e.g. "rollback:api-service"
    advice: str = ""  # what to do when no guarded mitigation fits

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "score": round(self.score, 2),
            "supported_by": list(self.supported_by),
            "evidence": self.evidence,
            "mitigations": list(self.mitigations),
            "advice": self.advice,
        }


@dataclass(frozen=True)
class Unanswered:
    """A check that could not find out (ERROR): which target did not answer, why, after how
    long, and what the on-call engineer can do about it."""

    check: str
    target: str
    reason: str  # timed out | forbidden | unauthorized | refused | unreachable | failed
    detail: str  # the check's own summary
    waited_s: float
    advice: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "target": self.target,
            "reason": self.reason,
            "detail": self.detail,
            "waited_s": round(self.waited_s, 3),
            "advice": self.advice,
        }


@dataclass(frozen=True)
class Verdict:
    """What is broken, its ranked probable causes, and the mitigations to apply; and what it
    could not check, so that a verdict that could not look never reads as healthy."""

    state: Health
    summary: str
    causes: tuple[Cause, ...] = ()
    severity: str | None = None  # the severity this suggests (P1 ... P4), None when healthy
    unanswered: tuple[Unanswered, ...] = ()  # the checks that could not answer (ERROR)
    counts: Mapping[str, int] = field(default_factory=dict)  # checks by status value

    @property
    def top_cause(self) -> Cause | None:
        return self.causes[0] if self.causes else None

    @property
    def mitigations(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for cause in self.causes:
            seen.update(dict.fromkeys(cause.mitigations))
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "summary": self.summary,
            "severity": self.severity,
            "causes": [c.to_dict() for c in self.causes],
            "mitigations": list(self.mitigations),
            "could_not_check": [u.to_dict() for u in self.unanswered],
            "counts": dict(self.counts),
        }

    def unanswered_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [u.to_dict() for u in self.unanswered],
            columns=["check", "target", "reason", "waited_s", "detail", "advice"],
        )

    def causes_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "rank": i + 1,
                    "cause": c.id,
                    "score": round(c.score, 2),
                    "evidence": c.evidence,
                    "supported_by": ", ".join(c.supported_by),
                    "mitigation": ", ".join(c.mitigations) or c.advice,
                }
                for i, c in enumerate(self.causes)
            ]
        )

    def _repr_html_(self) -> str:
        colour = {
            Health.HEALTHY: Status.OK,
            Health.DEGRADED: Status.WARN,
            Health.DOWN: Status.FAIL,
        }[self.state].colour
        head = (
            f'<div style="background:{colour};padding:6px;font-size:1.2em">'
            f"<b>Verdict: {self.state.value.upper()}</b>"
            f"{' (suggested severity ' + self.severity + ')' if self.severity else ''}"
            f" &mdash; {html.escape(self.summary)}</div>"
        )
        parts = [head]
        if self.causes:
            parts.append(tables.html_table(self.causes_frame()))
        if self.unanswered:
            parts.append(
                f"<h4>Could not check ({len(self.unanswered)}): not a pass</h4>"
                + tables.html_table(self.unanswered_frame())
            )
        return "".join(parts)

    def __repr__(self) -> str:
        lines = [f"Verdict: {self.state.value.upper()} - {self.summary}"]
        if self.severity:
            lines.append(f"  suggested severity: {self.severity}")
        for i, c in enumerate(self.causes):
            lines.append(
                f"  {i + 1}. {c.id} (score {c.score:.2f}, from {', '.join(c.supported_by)})"
                f": {c.evidence}"
            )
        if self.mitigations:
            lines.append(f"  recommended mitigations: {', '.join(self.mitigations)}")
        if self.unanswered:
            lines.append(f"  could not check ({len(self.unanswered)}), not a pass:")
            lines += [
                f"    - {u.check} ({u.target}, {u.reason} after {u.waited_s:.3g} s): {u.advice}"
                for u in self.unanswered
            ]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        lines = [f"**Verdict: {self.state.value.upper()}**: {self.summary}"]
        lines += [
            f"{i + 1}. `{c.id}` ({c.score:.2f}): {c.evidence}" for i, c in enumerate(self.causes)
        ]
        lines += [
            f"- could not check `{u.check}` ({u.target}, {u.reason}): {u.advice}"
            for u in self.unanswered
        ]
        return "\n".join(lines)


def facts_of(checks: Mapping[str, Check], name: str) -> Mapping[str, Any]:
    """The facts of the check `name` in a runbook's latest checks; empty when it did not run."""
    check = checks.get(name)
    return check.facts if check else {}
