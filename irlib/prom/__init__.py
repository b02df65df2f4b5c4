"""Prometheus: the API's latency quantiles from the request-duration histogram."""
