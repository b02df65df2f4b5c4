"""Kubernetes resource quantities: `250m` CPU, `512Mi` memory, to numbers and back.

Pure functions for the scheduler (requests against allocatable) and metrics.k8s.io.
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
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)$")


def parse(value: str | int | float | None) -> float:
    """A quantity as a plain number (cores, bytes); 0 for None or an empty string."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    m = _QUANTITY.match(value.strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def millicores(value: str | int | float | None) -> int:
    return round(parse(value) * 1000)


def nanocores(millis: float) -> str:
    return f"{int(millis * 1_000_000)}n"


def kibibytes(num_bytes: float) -> str:
    return f"{int(num_bytes // 1024)}Ki"


MI = 2**20
