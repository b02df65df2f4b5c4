"""What irlib asks of the Kubernetes API, declared where it is asked: each check says what it
reads (`@reads`), each mitigation what it changes (`@writes`), as RBAC would name it (verb,
API group, resource, subresource). irlib.deploy builds the least-privilege Roles from these
declarations, and a 403 names the rule that was missing. Pure data: no client, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, order=True)
class Permission:
    """One thing a request needs: `list` `pods`, `get` `pods/log`, `patch` `deployments/scale`
    in group `apps`. `cluster`: the resource is cluster-scoped (nodes), so only a ClusterRole
    can grant it."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    cluster: bool = False

    @property
    def rbac_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def describe(self, namespace: str | None = None) -> str:
        """`list pods/log in namespace trading`, `list nodes (cluster-wide)`; with the group
        when it is not the core one, as `kubectl auth can-i` takes it."""
        what = self.rbac_resource + (f".{self.group}" if self.group else "")
        where = " (cluster-wide)" if self.cluster or not namespace else f" in namespace {namespace}"
        return f"{self.verb} {what}{where}"

    def rule_line(self) -> str:
        """The line of a generated Role that grants it, as `irlib deploy manifests` prints it."""
        kind = "ClusterRole" if self.cluster else "Role"
        return (
            f"{kind} rule: apiGroups [{self.group!r}] resources [{self.rbac_resource}] "
            f"verbs [{self.verb}]"
        )


# What each call of irlib.k8s.Kube needs: one request, one permission.
LIST_PODS = Permission("list", "pods")
GET_POD = Permission("get", "pods")
GET_POD_LOG = Permission("get", "pods", subresource="log")
DELETE_POD = Permission("delete", "pods")
LIST_EVENTS = Permission("list", "events")
LIST_NODES = Permission("list", "nodes", cluster=True)
LIST_INGRESSES = Permission("list", "ingresses", "networking.k8s.io")
GET_DEPLOYMENT = Permission("get", "deployments", "apps")
PATCH_DEPLOYMENT = Permission("patch", "deployments", "apps")
PATCH_DEPLOYMENT_SCALE = Permission("patch", "deployments", "apps", "scale")
LIST_REPLICASETS = Permission("list", "replicasets", "apps")
LIST_POD_METRICS = Permission("list", "pods", "metrics.k8s.io")
LIST_NODE_METRICS = Permission("list", "nodes", "metrics.k8s.io", cluster=True)

READS: dict[str, tuple[Permission, ...]] = {}  # check's qualified name -> what it reads
WRITES: dict[str, tuple[Permission, ...]] = {}  # mitigation's qualified name -> what it needs


def _declare(registry: dict[str, tuple[Permission, ...]], perms: tuple[Permission, ...]) -> Any:
    def mark(fn: F) -> F:
        registry[f"{fn.__module__}.{fn.__qualname__}"] = perms
        fn.__permissions__ = perms  # type: ignore[attr-defined]
        return fn

    return mark


def reads(*perms: Permission) -> Callable[[F], F]:
    """Declare what a read-only check asks of the API: the read Role grants exactly these."""
    return _declare(READS, perms)  # type: ignore[no-any-return]


def writes(*perms: Permission) -> Callable[[F], F]:
    """Declare what a mitigation asks (its reads too): only the opt-in mitigation Role grants
    the writes among them."""
    return _declare(WRITES, perms)  # type: ignore[no-any-return]


def declared(registry: dict[str, tuple[Permission, ...]]) -> list[Permission]:
    """Every permission of a registry once, in a stable order. Importing the checks and
    mitigations modules fills the registries."""
    return sorted({p for perms in registry.values() for p in perms})


def rules(perms: Iterable[Permission]) -> list[dict[str, Any]]:
    """RBAC PolicyRules: one per API group and resource, its verbs sorted."""
    by_resource: dict[tuple[str, str], set[str]] = {}
    for p in perms:
        by_resource.setdefault((p.group, p.rbac_resource), set()).add(p.verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(by_resource.items())
    ]
