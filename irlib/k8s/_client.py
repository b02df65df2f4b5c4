"""The only module of irlib.k8s that imports the official `kubernetes` client.

Objects come back as plain dicts in the API's own camelCase (what `kubectl get -o json`
shows), so checks read like the runbook's kubectl commands. The connection is the official
client's (its kubeconfig loader, TLS, tokens and exec plugins); the requests are its raw
ones, as kubectl makes them: the generated typed API classes cost a second of imports per
run (their pydantic models) and a round trip through those models per answer, for objects
we read as dicts anyway. Every call carries a timeout, and what the client raises leaves as
irlib's target errors: an API status (403, 404 ...) is Refused with that status, no answer
in time TimedOut, no connection Unreachable.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import config
from kubernetes.client.exceptions import ApiException

from irlib import capture
from irlib.errors import Refused, TimedOut, Unreachable

# kubectl's content types for `kubectl patch` (its default) and `--type merge`
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


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
        # a replay reads no kubeconfig and connects nowhere: its answers are the captures
        self.api = (
            None
            if capture.replaying()
            else config.new_client_from_config(config_file=kubeconfig, context=context)
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        """One API call under the timeout: its JSON answer as plain dicts (a text answer, a
        pod's log, as text); the client's errors as irlib's target errors."""
        call = {"method": method, "path": path, "query": query or {}, "body": body}
        return capture.call(
            "kubernetes", call, lambda: self._request(method, path, query, body, content_type)
        )

    def _request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        content_type: str | None,
    ) -> Any:
        """The request itself (what a replay never makes)."""
        if self.api is None:
            raise Unreachable("no API connection in a replay")
        headers = {"Accept": "application/json, */*"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            request = self.api.param_serialize(
                method,
                path,
                query_params=[(k, v) for k, v in (query or {}).items() if v != ""],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(*request, _request_timeout=self.timeout_s)
            data = response.read()
        except ApiException as e:
            raise Refused(f"API answered {e.status}: {e.reason}", e.status) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if _timed_out(e):
                raise TimedOut(f"API server: no answer within {self.timeout_s:g} s") from e
            raise Unreachable(f"API server unreachable: {e}") from e
        if not 200 <= response.status <= 299:
            raise Refused(f"API answered {response.status}: {response.reason}", response.status)
        text = data.decode("utf-8", errors="replace")
        if "json" not in (response.getheader("content-type") or ""):
            return text
        return json.loads(text)

    def _ns(self, resource: str, name: str = "", group: str = "") -> str:
        """The path of a namespaced resource (or one object of it) in the core or a named group."""
        prefix = f"/apis/{group}" if group else "/api/v1"
        path = f"{prefix}/namespaces/{quote(self.namespace, safe='')}/{resource}"
        return f"{path}/{quote(name, safe='')}" if name else path

    def pods(self, selector: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", self._ns("pods"), query={"labelSelector": selector or ""})[
            "items"
        ]

    def pod(self, name: str) -> dict[str, Any]:
        return self.request("GET", self._ns("pods", name))  # type: ignore[no-any-return]

    def nodes(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/nodes")["items"]

    def events(self, field_selector: str | None = None) -> list[dict[str, Any]]:
        return self.request(
            "GET", self._ns("events"), query={"fieldSelector": field_selector or ""}
        )["items"]

    def ingresses(self) -> list[dict[str, Any]]:
        return self.request("GET", self._ns("ingresses", group="networking.k8s.io/v1"))["items"]

    def deployment(self, name: str) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "GET", self._ns("deployments", name, group="apps/v1")
        )

    def replicasets(self, selector: str) -> list[dict[str, Any]]:
        return self.request(
            "GET", self._ns("replicasets", group="apps/v1"), query={"labelSelector": selector}
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
        query = {"previous": "true" if previous else "false", "container": container or ""}
        if tail_lines is not None:
            query["tailLines"] = str(tail_lines)
        if since_seconds is not None:
            query["sinceSeconds"] = str(since_seconds)
        answer = self.request("GET", self._ns("pods", pod) + "/log", query=query)
        return answer if isinstance(answer, str) else json.dumps(answer)

    def pod_metrics(self) -> list[dict[str, Any]]:
        return self.request("GET", self._ns("pods", group="metrics.k8s.io/v1beta1"))["items"]

    def node_metrics(self) -> list[dict[str, Any]]:
        return self.request("GET", "/apis/metrics.k8s.io/v1beta1/nodes")["items"]

    # -- writes: only mitigations.py calls these, through the guard ----------------------

    def patch_deployment(
        self, name: str, body: Any, *, content_type: str = STRATEGIC_MERGE
    ) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "PATCH",
            self._ns("deployments", name, group="apps/v1"),
            body=body,
            content_type=content_type,
        )

    def scale_deployment(self, name: str, replicas: int) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "PATCH",
            self._ns("deployments", name, group="apps/v1") + "/scale",
            body={"spec": {"replicas": replicas}},
            content_type=MERGE,
        )

    def delete_pod(self, name: str) -> None:
        self.request("DELETE", self._ns("pods", name))


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def age(value: str | None, now: datetime | None = None) -> str:
    """kubectl's short age: 45s, 12m, 3h, 2d."""
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    seconds = int(((now or capture.now()) - when) / timedelta(seconds=1))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
