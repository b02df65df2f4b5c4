"""Kubernetes: pods, deployments and their rollouts, nodes, events, ingress, logs, metrics."""
