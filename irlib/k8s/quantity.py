"""Kubernetes resource quantities: `250m` CPU, `512Mi` memory, to numbers and back.

The one parser of them, for the checks (`kubectl top`: usage against limits), the runbooks (an
OOM-killed pod's working set against its limit) and the lab's Kubernetes API (the scheduler's
requests against allocatable, metrics.k8s.io). Pure functions.

`parse` is strict, as the API server is: anything that is not a quantity is a ValueError. The
readers of what a cluster or a log said are lenient in the way their callers need: a memory
quantity that cannot be read is 0 (`memory_bytes`) or None (`parse_or_none`).
"""

from __future__ import annotations

import re

_SUFFIX = {
    "": 1,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
# CPU as metrics-server writes it, in millicores: divided, as `kubectl top` computes it.
_PER_MILLICORE = {"n": 1e6, "u": 1e3, "m": 1}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)$")
MI = 2**20

Quantity = str | int | float | None


def _split(value: str) -> tuple[float, str]:
    m = _QUANTITY.match(value.strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    return float(m.group(1)), m.group(2)


def parse(value: Quantity) -> float:
    """A quantity as a plain number (cores, bytes); 0 for None or an empty string; ValueError
    for anything else that is not a quantity."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    number, suffix = _split(value)
    return number * _SUFFIX[suffix]


def parse_or_none(value: Quantity) -> float | None:
    """`parse`, but None for None, an empty string or anything that is not a quantity (a value
    read from a log line, or a placeholder such as "its limit")."""
    if value is None or value == "":
        return None
    try:
        return parse(value)
    except ValueError:
        return None


def millicores(value: Quantity) -> int:
    """CPU in whole millicores (`250m` is 250, `2` is 2000)."""
    return round(parse(value) * 1000)


def cpu_millicores(value: Quantity) -> float:
    """CPU in millicores, not rounded (`123456n` is 0.123456); 0 for None or an empty string,
    ValueError for what is not a quantity."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float):
        return float(value) * 1000
    number, suffix = _split(value)
    if suffix in _PER_MILLICORE:
        return number / _PER_MILLICORE[suffix]
    return number * _SUFFIX[suffix] * 1000


def memory_bytes(value: Quantity) -> float:
    """Memory in bytes; 0 for None, an empty string or what is not a quantity."""
    return parse_or_none(value) or 0.0


def nanocores(millis: float) -> str:
    return f"{int(millis * 1_000_000)}n"


def kibibytes(num_bytes: float) -> str:
    return f"{int(num_bytes // 1024)}Ki"
