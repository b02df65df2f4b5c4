"""The calibration-service as a runbook sees it, over its HTTP API (through the platform's
API URL): last calibrations, the parameters in use, a test calibration, the optimiser config,
market-data freshness, a plot of the fit, and the guarded forced recalibration."""

from irlib.calibration import checks, mitigations, plot

__all__ = ["checks", "mitigations", "plot"]
