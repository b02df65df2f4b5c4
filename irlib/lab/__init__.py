"""The drill lab: a small trading platform on loopback that runbooks cannot tell from production.

Only `irlib.cli` and the tests import it; runbook code never does.
"""
