"""The only module of irlib.k8s that imports the official `kubernetes` client.

Objects come back as plain dicts in the API's own camelCase (what `kubectl get -o json`
shows), so checks read like the runbook's kubectl commands. Every call carries a timeout.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

ApiError = ApiException


class Kube:
    """A connection to one cluster and namespace, from a kubeconfig (and context)."""

    @classmethod
    def for_target(cls, target: Any, *, timeout_s: float) -> Kube:
        """The connection that a profile's `kubernetes` section names (a KubernetesTarget)."""
        return cls(
            kubeconfig=target.kubeconfig,
            context=target.context,
            namespace=target.namespace,
            timeout_s=timeout_s,
        )

    def __init__(
        self, *, kubeconfig: str | None, context: str | None, namespace: str, timeout_s: float = 5.0
    ) -> None:
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.api = config.new_client_from_config(config_file=kubeconfig, context=context)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.networking = client.NetworkingV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def _plain(self, obj: Any) -> Any:
        return self.api.sanitize_for_serialization(obj)

    def _t(self) -> dict[str, Any]:
        return {"_request_timeout": self.timeout_s}

    def pods(self, selector: str | None = None) -> list[dict[str, Any]]:
        return self._plain(
            self.core.list_namespaced_pod(
                self.namespace, label_selector=selector or "", **self._t()
            )
        )["items"]

    def pod(self, name: str) -> dict[str, Any]:
        return self._plain(self.core.read_namespaced_pod(name, self.namespace, **self._t()))

    def nodes(self) -> list[dict[str, Any]]:
        return self._plain(self.core.list_node(**self._t()))["items"]

    def events(self, field_selector: str | None = None) -> list[dict[str, Any]]:
        return self._plain(
            self.core.list_namespaced_event(
                self.namespace, field_selector=field_selector or "", **self._t()
            )
        )["items"]

    def ingresses(self) -> list[dict[str, Any]]:
        return self._plain(self.networking.list_namespaced_ingress(self.namespace, **self._t()))[
            "items"
        ]

    def deployment(self, name: str) -> dict[str, Any]:
        return self._plain(self.apps.read_namespaced_deployment(name, self.namespace, **self._t()))

    def replicasets(self, selector: str) -> list[dict[str, Any]]:
        return self._plain(
            self.apps.list_namespaced_replica_set(
                self.namespace, label_selector=selector, **self._t()
            )
        )["items"]

    def log(
        self,
        pod: str,
        *,
        container: str | None = None,
        previous: bool = False,
        tail_lines: int | None = None,
        since_seconds: int | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {"previous": previous}
        if container:
            kwargs["container"] = container
        if tail_lines is not None:
            kwargs["tail_lines"] = tail_lines
        if since_seconds is not None:
            kwargs["since_seconds"] = since_seconds
        return str(self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs, **self._t()))

    def pod_metrics(self) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(  # type: ignore[no-any-return,index]
            "metrics.k8s.io", "v1beta1", self.namespace, "pods", **self._t()
        )["items"]

    def node_metrics(self) -> list[dict[str, Any]]:
        return self.custom.list_cluster_custom_object(  # type: ignore[no-any-return,index]
            "metrics.k8s.io", "v1beta1", "nodes", **self._t()
        )["items"]

    # -- writes: only mitigations.py calls these, through the guard ----------------------

    def patch_deployment(self, name: str, body: Any) -> dict[str, Any]:
        return self._plain(
            self.apps.patch_namespaced_deployment(name, self.namespace, body, **self._t())
        )

    def scale_deployment(self, name: str, replicas: int) -> dict[str, Any]:
        return self._plain(
            self.apps.patch_namespaced_deployment_scale(
                name, self.namespace, {"spec": {"replicas": replicas}}, **self._t()
            )
        )

    def delete_pod(self, name: str) -> None:
        self.core.delete_namespaced_pod(name, self.namespace, **self._t())


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def age(value: str | None, now: datetime | None = None) -> str:
    """kubectl's short age: 45s, 12m, 3h, 2d."""
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - when) / timedelta(seconds=1))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
