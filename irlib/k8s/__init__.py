"""Kubernetes: pods, deployments and their rollouts, nodes, events, ingress, logs, metrics."""

from irlib.k8s import checks, mitigations, permissions, quantity
from irlib.k8s._client import Kube, age, parse_time

__all__ = ["Kube", "age", "checks", "mitigations", "parse_time", "permissions", "quantity"]
