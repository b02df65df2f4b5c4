"""Label selectors (`?labelSelector=`) as the API server reads them: `k=v`, `k==v`, `k!=v`,
`k in (a,b)`, `k notin (a,b)`, `k` and `!k`, all of which must hold. Pure functions; a
malformed selector raises ValueError. The client applies them to a list it already holds
(irlib.k8s._client), the lab's API server to its store (irlib.lab.kube.selectors), so both
read a selector the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Labels = dict[str, str]
Matcher = Callable[[Labels], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_CMP_RE = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside `in (a,b)` parentheses."""
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        terms.append(cur)
    return [t for t in terms if t.strip()]


def _term(text: str) -> Matcher:
    m = _CMP_RE.match(text)
    if m:
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    m = _SET_RE.match(text)
    if m:
        negated, key, op, values = m.groups()
        if op:
            if negated:
                raise ValueError(f"invalid label selector term {text!r}")
            wanted = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                return lambda labels: labels.get(key) in wanted
            return lambda labels: labels.get(key) not in wanted
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise ValueError(f"unable to parse requirement: {text!r}")


def label_matcher(text: str | None) -> Matcher:
    """A `?labelSelector=` string as a predicate on a labels dict; empty matches everything."""
    if not text:
        return lambda labels: True
    terms = [_term(t) for t in _split_terms(text)]
    return lambda labels: all(t(labels) for t in terms)
