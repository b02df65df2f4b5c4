"""Alerts: the Prometheus rules for the seed's symptoms (rules.py), and what a platform's
services must export for them (the metric names in rules.py). Nothing here talks to a server."""
