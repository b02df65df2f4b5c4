"""The drill lab's platform apps: the trading API (with its ingress), the broker, the
market-data provider, a load generator and the execution-service, each its own process
(`python -m irlib.lab.apps`).

They talk to the lab's PostgreSQL and Redis and to each other over loopback HTTP; the API
also reads the lab's Kubernetes API to learn which api-service pods are ready.
"""

APPS = ("api", "broker", "market_data", "loadgen", "execution", "calibration_service")
