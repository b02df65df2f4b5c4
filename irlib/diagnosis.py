"""The rule every runbook's verdict and the health drill share: a run that could not look is
never healthy. `conclude` turns a scenario's ranked causes and its checks into a Verdict; each
check that could not answer (ERROR) is listed with why (timed out, forbidden, unauthorized,
refused, unreachable) and what to do, and a target that answered nothing at all is itself a
cause. Pure: it reads Check objects, never a system.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

from irlib.results import Cause, Check, Health, Status, Unanswered, Verdict

# Below every scenario rule's own score (the lowest is 0.5): a silent dependency is a finding,
# but a cause the evidence names comes first.
SILENT_TARGET_SCORE = 0.45
PARTLY_SILENT_SCORE = 0.35

# (reason, pattern over the check's summary); the first that matches wins, so "401: credentials
# refused" is unauthorized, not refused.
_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("timed out", re.compile(r"timed? ?out|timeout|no answer within|deadline", re.I)),
    ("forbidden", re.compile(r"\b403\b|forbidden", re.I)),
    (
        "unauthorized",
        re.compile(r"\b401\b|unauthori[sz]ed|credentials refused|token|not set", re.I),
    ),
    ("refused", re.compile(r"connection refused|refused", re.I)),
    (
        "unreachable",
        re.compile(
            r"unreachable|cannot connect|could not connect|name or service|no route|"
            r"connection (?:reset|aborted|closed)|server closed",
            re.I,
        ),
    ),
)


def reason_of(check: Check) -> str:
    """Why a check could not answer, from its facts when its target package set them, else
    from its summary (the wording of irlib's own checks)."""
    facts = check.facts
    if facts.get("timed_out"):
        return "timed out"
    status = facts.get("http_status")
    if status == 403:
        return "forbidden"
    if status == 401 or facts.get("missing_token"):
        return "unauthorized"
    for reason, pattern in _REASONS:
        if pattern.search(check.summary):
            return reason
    return "failed"


def _advice(target: str, reason: str, waited_s: float) -> str:
    if reason == "timed out":
        longer = max(10.0, round(4 * waited_s, 1))
        return (
            f"{target} gave no answer within {waited_s:.3g} s: if it is merely slow, run again "
            f"with a longer timeout (-p timeout_s {longer:g}); if it stays silent, treat "
            f"{target} itself as down"
        )
    if reason == "forbidden":
        return (
            f"{target} refused irlib's account (403): grant it read access to this (RBAC), "
            "or run with an account that has it"
        )
    if reason == "unauthorized":
        return (
            f"{target} did not accept irlib's credentials (401 or no token): check the token "
            "the profile names by its environment variable"
        )
    if reason in ("refused", "unreachable"):
        return (
            f"{target} cannot be reached from here ({reason}): check its address in the "
            "profile and the network path, then whether it runs"
        )
    return f"read the check's error above and re-run it once {target} answers"


def unanswered(checks: Iterable[Check]) -> tuple[Unanswered, ...]:
    """Every check that could not find out, in the order the runbook ran them."""
    out = []
    for c in checks:
        if c.status is not Status.ERROR:
            continue
        reason = reason_of(c)
        out.append(
            Unanswered(
                c.name,
                c.target,
                reason,
                c.summary,
                c.duration_s,
                _advice(c.target, reason, c.duration_s),
            )
        )
    return tuple(out)


def silent_target_causes(checks: Iterable[Check], known: Iterable[Cause] = ()) -> list[Cause]:
    """One cause per target whose checks could not answer, unless that target is already
    accounted for: one of its checks FAILed (the failure is the finding) or a cause the
    scenario found rests on its checks."""
    checks = list(checks)
    by_target: dict[str, list[Check]] = {}
    for c in checks:
        by_target.setdefault(c.target, []).append(c)
    supported = {name for cause in known for name in cause.supported_by}
    causes = []
    for target, own in by_target.items():
        silent = [c for c in own if c.status is Status.ERROR]
        if not silent or any(c.status is Status.FAIL or c.name in supported for c in own):
            continue
        reasons = Counter(reason_of(c) for c in silent)
        reason, _ = reasons.most_common(1)[0]
        waited = max(c.duration_s for c in silent)
        whole = len(silent) == len(own)
        what = "did not answer" if reason == "timed out" else f"could not be read ({reason})"
        causes.append(
            Cause(
                f"unanswered-{target}",
                f"{target} {what}: {len(silent)} of its {len(own)} check(s) could not answer",
                SILENT_TARGET_SCORE if whole else PARTLY_SILENT_SCORE,
                tuple(c.name for c in silent),
                "; ".join(f"{c.name}: {c.summary}" for c in silent[:4]),
                advice=_advice(target, reason, waited),
            )
        )
    return causes


def counts_of(checks: Iterable[Check]) -> dict[str, int]:
    counted = Counter(c.status.value for c in checks)
    return {s.value: counted.get(s.value, 0) for s in Status}


def tally(counts: Mapping[str, int]) -> str:
    """'16 checks: 12 passed, 1 warned, 2 failed, 1 could not answer' (zeros left out)."""
    total = sum(counts.values())
    parts = [
        f"{counts.get(status, 0)} {word}"
        for status, word in (
            ("ok", "passed"),
            ("warn", "warned"),
            ("fail", "failed"),
            ("error", "could not answer"),
        )
        if counts.get(status, 0)
    ]
    return f"{total} checks: " + ", ".join(parts) if parts else "no checks ran"


def _could_not_check(silent: Iterable[Unanswered]) -> str:
    """'could not check pods, nodes (timed out); broker (forbidden)'."""
    by_reason: dict[str, list[str]] = {}
    for u in silent:
        by_reason.setdefault(u.reason, []).append(u.check)
    if not by_reason:
        return ""
    return "could not check " + "; ".join(
        f"{', '.join(names)} ({reason})" for reason, names in by_reason.items()
    )


def conclude(
    checks: Mapping[str, Check],
    causes: Iterable[Cause],
    *,
    down: bool = False,
    severity: str = "P2",
    healthy_detail: str = "",
) -> Verdict:
    """The verdict from a scenario's causes and its checks.

    DOWN when the scenario says so; DEGRADED when any cause, a failing check or a check that
    could not answer remains; HEALTHY only when every check answered and nothing was found.
    `severity` is what the scenario suggests when not healthy.
    """
    found = list(causes)
    ranked = sorted(found + silent_target_causes(checks.values(), found), key=lambda c: -c.score)
    failing = [c.name for c in checks.values() if c.status is Status.FAIL]
    silent = unanswered(checks.values())
    counts = counts_of(checks.values())
    if down:
        state = Health.DOWN
    elif ranked or failing or silent:
        state = Health.DEGRADED
    else:
        state = Health.HEALTHY
    if ranked:
        head = f"probable cause {ranked[0].id} ({ranked[0].title})"
    elif failing:
        head = f"failing checks {', '.join(failing)}"
    else:
        head = ""
    if state is Health.HEALTHY:
        passed = counts["ok"] == len(checks)
        summary = (
            f"healthy: {len(checks)} checks passed" if passed else f"healthy: {tally(counts)}"
        ) + healthy_detail
    else:
        summary = f"{state.value}: " + "; ".join(
            p for p in (head, _could_not_check(silent), tally(counts)) if p
        )
    return Verdict(
        state,
        summary,
        tuple(ranked),
        None if state is Health.HEALTHY else severity,
        silent,
        counts,
    )
