"""Prometheus: the API's latency quantiles, over its HTTP API."""

from irlib.prom.checks import check_latency, quantile_query
from irlib.prom.query import query

__all__ = ["check_latency", "quantile_query", "query"]
