"""Label and field selectors as the apiserver parses them from `?labelSelector=` and
`?fieldSelector=`, and LabelSelector objects (`matchLabels`, `matchExpressions`) of specs.

Pure functions; a malformed selector raises ValueError, which the server answers with 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from irlib.k8s.selectors import Labels, Matcher, label_matcher
from irlib.lab.kube.meta import get_path

__all__ = ["field_matcher", "label_matcher", "selector_matcher", "selector_string"]


def selector_matcher(selector: dict[str, Any] | None) -> Matcher:
    """A spec's LabelSelector; an empty or missing selector matches nothing, as for workloads."""
    if not selector:
        return lambda labels: False
    match_labels = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []

    def matches(labels: Labels) -> bool:
        if any(labels.get(k) != v for k, v in match_labels.items()):
            return False
        for e in exprs:
            key, op, values = e["key"], e["operator"], set(e.get("values") or [])
            present = key in labels
            if (
                (op == "In" and labels.get(key) not in values)
                or (op == "NotIn" and present and labels[key] in values)
                or (op == "Exists" and not present)
                or (op == "DoesNotExist" and present)
            ):
                return False
        return True

    return matches


def selector_string(selector: dict[str, Any] | None) -> str:
    """How kubectl and the Scale subresource print a LabelSelector: `app=api-service`."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        op, key, values = e["operator"], e["key"], ",".join(sorted(e.get("values") or []))
        parts.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }[op]
        )
    return ",".join(parts)


def field_matcher(text: str | None) -> Callable[[dict[str, Any]], bool]:
    """A `?fieldSelector=`: `metadata.name=x,spec.nodeName!=y,involvedObject.uid=z`.

    The apiserver allows a fixed set of fields per kind; any dotted path of the object is
    accepted here, compared as a string (`""` when absent, so `spec.nodeName=` finds
    unscheduled pods).
    """
    if not text:
        return lambda obj: True
    terms = []
    for raw in text.split(","):
        m = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", raw)
        if not m:
            raise ValueError(f"invalid field selector: {raw!r}")
        terms.append(m.groups())

    def value(obj: dict[str, Any], path: str) -> str:
        v = get_path(obj, path)
        if v is None:
            return ""
        return str(v).lower() if isinstance(v, bool) else str(v)

    return lambda obj: all(
        (value(obj, path) != want) if op == "!=" else (value(obj, path) == want)
        for path, op, want in terms
    )
