"""HTTP targets: the trading API, the broker, the market-data provider."""

from irlib.http.checks import check_endpoint, check_pool

__all__ = ["check_endpoint", "check_pool"]
