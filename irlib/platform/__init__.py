"""The trading platform's own records (PostgreSQL: strategies, orders, execution reports,
positions) and its admin API (pause-all): reads in checks.py, guarded writes in mitigations.py."""

from irlib.platform import checks, mitigations

__all__ = ["checks", "mitigations"]
