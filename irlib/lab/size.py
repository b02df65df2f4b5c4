"""How big a lab is: its nodes, api-service replicas and event history (`irlib lab up
--nodes M --api-replicas N --events E`), the machine shape its nodes get so the platform
fits, and the refusal of a size that cannot be built. Pure: no server, no file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from irlib.errors import UsageError

# (instance type, CPUs, memory GiB): the smallest that holds the platform with headroom
NODE_SHAPES = (
    ("m5.xlarge", 4, 16),
    ("m5.2xlarge", 8, 32),
    ("m5.4xlarge", 16, 64),
    ("m5.8xlarge", 32, 128),
    ("m5.12xlarge", 48, 192),
    ("m5.16xlarge", 64, 256),
    ("m5.24xlarge", 96, 384),
)
PODS_PER_NODE = 110  # the kubelet's default --max-pods
HEADROOM = 1.25  # requests may fill 80% of what the nodes allocate
MAX_NODES, MAX_API_REPLICAS, MAX_EVENTS = 250, 5000, 100_000
# api-service's requests, and what the other apps' pods request together (cluster.WORKLOADS)
API_REQUESTS = (250, 0.5)  # millicores, GiB
OTHER_REQUESTS = (2200, 5.0)
OTHER_PODS = 7


@dataclass(frozen=True)
class LabSize:
    """The default is the lab as it always was: 3 nodes, 3 api-service pods, no history."""

    nodes: int = 3
    api_replicas: int = 3
    events: int = 0

    def pods(self) -> int:
        return self.api_replicas + OTHER_PODS

    def room(self) -> int:
        """The pods the nodes must hold: api-service's twice, because the lab's deployment
        controller starts a whole new revision beside the old one (a bad deploy takes the
        service down only when the new pods run), beside the other apps' pods."""
        return 2 * self.api_replicas + OTHER_PODS

    def shape(self) -> tuple[str, int, int]:
        """The node shape (type, CPUs, GiB) that holds the requests of `room()` pods with
        headroom; UsageError when none does, or when they exceed the nodes' pod count."""
        self.validate()
        pods = self.room()
        if pods > self.nodes * PODS_PER_NODE:
            need = math.ceil(pods / PODS_PER_NODE)
            raise UsageError(
                f"{self.api_replicas} api-service pods (and a rollout's as many again) do not "
                f"fit on {self.nodes} node(s) of {PODS_PER_NODE} pods each: ask for --nodes "
                f"{need} or more"
            )
        cpu = (API_REQUESTS[0] * 2 * self.api_replicas + OTHER_REQUESTS[0]) / 1000
        mem = API_REQUESTS[1] * 2 * self.api_replicas + OTHER_REQUESTS[1]
        for shape in NODE_SHAPES:
            if shape[1] * self.nodes >= cpu * HEADROOM and shape[2] * self.nodes >= mem * HEADROOM:
                return shape
        biggest = NODE_SHAPES[-1]
        need = math.ceil(max(cpu * HEADROOM / biggest[1], mem * HEADROOM / biggest[2]))
        raise UsageError(
            f"{self.api_replicas} api-service pods ({cpu:g} CPUs requested) do not fit on "
            f"{self.nodes} node(s) of {biggest[1]} CPUs: ask for --nodes {need} or more"
        )

    def validate(self) -> None:
        for name, value, top in (
            ("--nodes", self.nodes, MAX_NODES),
            ("--api-replicas", self.api_replicas, MAX_API_REPLICAS),
            ("--events", self.events, MAX_EVENTS),
        ):
            low = 1 if name == "--nodes" else 0
            if not isinstance(value, int) or not low <= value <= top:
                raise UsageError(f"{name} must be a whole number from {low} to {top}, not {value}")

    def describe(self) -> str:
        kind, cpu, mem = self.shape()
        return (
            f"{self.nodes} node(s) ({kind}: {cpu} CPUs, {mem}Gi), {self.api_replicas} "
            f"api-service pod(s), {self.events} event(s) of history"
        )
