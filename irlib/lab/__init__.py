"""The drill lab: a small trading platform on loopback that runbooks cannot tell from production.

Only `irlib.cli` and the tests import it; runbook code never does.
"""

from importlib.util import find_spec

# What only the lab needs (the `lab` extra): its servers and the calibration service's maths.
# Import names, as pip's distribution names differ (prometheus-client).
REQUIRES = ("starlette", "uvicorn", "prometheus_client", "numpy", "scipy", "cryptography")
EXTRA_HINT = "pip install 'irlib[lab]'"


def missing_requirements() -> list[str]:
    """The lab's modules this Python cannot import: without them `irlib lab` cannot start."""
    return [name for name in REQUIRES if find_spec(name) is None]


def require_extra() -> None:
    """UsageError (exit 2, nothing started) naming the extra, when the lab cannot run here."""
    from irlib.errors import UsageError

    missing = missing_requirements()
    if missing:
        raise UsageError(
            f"the drill lab needs the `lab` extra ({', '.join(missing)} not installed): "
            f"{EXTRA_HINT}"
        )
