"""Kubernetes: pods, deployments and their rollouts, nodes, events, ingress, logs, metrics."""

from irlib.k8s import checks, mitigations, quantity
from irlib.k8s._client import Kube, age, parse_time, required_permission

__all__ = ["Kube", "age", "checks", "mitigations", "parse_time", "quantity", "required_permission"]
