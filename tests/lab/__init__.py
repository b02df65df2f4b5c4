"""Tests against the drill lab's real servers: the session lab (conftest.py) or the servers a
test starts itself; the runbooks' steps and mitigations against them."""
