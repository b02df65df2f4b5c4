"""The only module of irlib.k8s that imports the official `kubernetes` client.

Objects come back as plain dicts in the API's own camelCase (what `kubectl get -o json`
shows), so checks read like the runbook's kubectl commands. Every call carries a timeout,
and what the client raises leaves as irlib's target errors: an API status (403, 404 ...) is
Refused with that status, no answer in time TimedOut, no connection Unreachable.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from irlib.errors import Refused, TimedOut, Unreachable


def _timed_out(e: BaseException) -> bool:
    cause = getattr(e, "reason", None) or e  # MaxRetryError carries the last attempt's error
    # urllib3's NewConnectionError (refused) subclasses its ConnectTimeoutError: not a timeout
    return isinstance(cause, urllib3.exceptions.TimeoutError) and not isinstance(
        cause, urllib3.exceptions.NewConnectionError
    )


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

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call under the timeout, its answer as plain dicts; the client's errors as
        irlib's target errors."""
        try:
            answer = method(*args, **kwargs, _request_timeout=self.timeout_s)
        except ApiException as e:
            raise Refused(f"API answered {e.status}: {e.reason}", e.status) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if _timed_out(e):
                raise TimedOut(f"API server: no answer within {self.timeout_s:g} s") from e
            raise Unreachable(f"API server unreachable: {e}") from e
        return self.api.sanitize_for_serialization(answer)

    def pods(self, selector: str | None = None) -> list[dict[str, Any]]:
        return self.call(
            self.core.list_namespaced_pod, self.namespace, label_selector=selector or ""
        )["items"]

    def pod(self, name: str) -> dict[str, Any]:
        return self.call(self.core.read_namespaced_pod, name, self.namespace)

    def nodes(self) -> list[dict[str, Any]]:
        return self.call(self.core.list_node)["items"]

    def events(self, field_selector: str | None = None) -> list[dict[str, Any]]:
        return self.call(
            self.core.list_namespaced_event, self.namespace, field_selector=field_selector or ""
        )["items"]

    def ingresses(self) -> list[dict[str, Any]]:
        return self.call(self.networking.list_namespaced_ingress, self.namespace)["items"]

    def deployment(self, name: str) -> dict[str, Any]:
        return self.call(self.apps.read_namespaced_deployment, name, self.namespace)

    def replicasets(self, selector: str) -> list[dict[str, Any]]:
        return self.call(
            self.apps.list_namespaced_replica_set, self.namespace, label_selector=selector
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
        return str(self.call(self.core.read_namespaced_pod_log, pod, self.namespace, **kwargs))

    def pod_metrics(self) -> list[dict[str, Any]]:
        return self.call(  # type: ignore[no-any-return]
            self.custom.list_namespaced_custom_object,
            "metrics.k8s.io",
            "v1beta1",
            self.namespace,
            "pods",
        )["items"]

    def node_metrics(self) -> list[dict[str, Any]]:
        return self.call(  # type: ignore[no-any-return]
            self.custom.list_cluster_custom_object, "metrics.k8s.io", "v1beta1", "nodes"
        )["items"]

    # -- writes: only mitigations.py calls these, through the guard ----------------------

    def patch_deployment(self, name: str, body: Any) -> dict[str, Any]:
        return self.call(self.apps.patch_namespaced_deployment, name, self.namespace, body)

    def scale_deployment(self, name: str, replicas: int) -> dict[str, Any]:
        return self.call(
            self.apps.patch_namespaced_deployment_scale,
            name,
            self.namespace,
            {"spec": {"replicas": replicas}},
        )

    def delete_pod(self, name: str) -> None:
        self.call(self.core.delete_namespaced_pod, name, self.namespace)


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
