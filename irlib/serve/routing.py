"""Which runbook an alert group goes to: its alerts' `runbook` label, else the first of the
profile's routes whose matchers (Alertmanager's `=`, `!=`, `=~`, `!~`, regexes anchored as
Alertmanager anchors them) all hold for an alert's labels. Talks to nothing."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from irlib.profile import MATCHER, AlertRoute
from irlib.serve.payload import AlertGroup


def matches(matcher: str, labels: Mapping[str, str]) -> bool:
    found = MATCHER.match(matcher)
    if found is None:  # the profile refuses these; never match by accident
        return False
    name, op, value = found.groups()
    value = value.strip('"')
    have = labels.get(name, "")  # a missing label is the empty string, as in Alertmanager
    if op == "=":
        return have == value
    if op == "!=":
        return have != value
    hit = re.fullmatch(value, have) is not None
    return hit if op == "=~" else not hit


def route(
    group: AlertGroup, routes: Iterable[AlertRoute], known: Iterable[str]
) -> tuple[str | None, str]:
    """(runbook, why) for the group's firing alerts; (None, why not) when nothing routes it."""
    known = set(known)
    alerts = group.firing or list(group.alerts)
    labelled = sorted({a.labels["runbook"] for a in alerts if a.labels.get("runbook")})
    if labelled:
        usable = [r for r in labelled if r in known]
        if usable:
            return usable[0], f"label runbook={usable[0]}"
        return None, f"label runbook={labelled[0]} names no runbook irlib has"
    for r in routes:
        if any(all(matches(m, a.labels) for m in r.matchers) for a in alerts):
            if r.runbook in known:
                return r.runbook, "route " + ", ".join(r.matchers or ("(any)",))
            return None, f"the route to {r.runbook} names no runbook irlib has"
    return None, "no runbook label and no route of the profile matches"
