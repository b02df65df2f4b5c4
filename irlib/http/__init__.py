"""HTTP targets: the trading API, the broker, the market-data provider."""
