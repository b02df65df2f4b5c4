"""Kubernetes: pods, deployments and their rollouts, nodes, events, ingress, logs, metrics."""

from irlib.k8s import capacity, checks, mitigations, permissions, quantity
from irlib.k8s._client import Kube, age, parse_time, required_permission

__all__ = [
    "Kube",
    "age",
    "capacity",
    "checks",
    "mitigations",
    "parse_time",
    "permissions",
    "quantity",
    "required_permission",
]
