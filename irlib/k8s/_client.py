"""The only module of irlib.k8s that imports the official `kubernetes` client.

Objects come back as plain dicts in the API's own camelCase (what `kubectl get -o json`
shows), so checks read like the runbook's kubectl commands. The connection is the official
client's, found as kubectl finds it: the profile's kubeconfig (context, CA, tokens, exec
plugins), else $KUBECONFIG or ~/.kube/config, else the in-cluster configuration (the pod's
service-account token and CA, $KUBERNETES_SERVICE_HOST and _PORT). The requests are its raw
ones, as kubectl makes them: the generated typed API classes cost a second of imports per
run (their pydantic models) and a round trip through those models per answer, for objects
we read as dicts anyway. Every call carries a timeout, and what the client raises leaves as
irlib's target errors: an API status (403, 404 ...) is Refused with that status (a 403 names
the permission that is missing), no answer in time TimedOut, no connection Unreachable.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader

from irlib import capture
from irlib.errors import Refused, TimedOut, Unreachable
from irlib.k8s.permissions import Permission
from irlib.k8s.selectors import label_matcher

PAGE = 500  # items per list request: kubectl's --chunk-size
LIST_FRESH_S = 30.0  # a list read this recently is shared (a run's steps see one snapshot)
# kubectl's content types for `kubectl patch` (its default) and `--type merge`
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


# where the kubelet mounts a pod's service-account token and CA; overridable for tests and
# unusual mounts by the profile (token_file, ca_file) or these environment variables
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_FILE_ENV = "IRLIB_K8S_TOKEN_FILE"
CA_FILE_ENV = "IRLIB_K8S_CA_FILE"


def _connect(
    kubeconfig: str | None,
    context: str | None,
    token_file: str | None,
    ca_file: str | None,
    environ: Mapping[str, str],
) -> tuple[client.ApiClient, str]:
    """The official client's connection and how it was found ("kubeconfig PATH" or
    "in-cluster"); ConfigException when there is none."""
    default = environ.get("KUBECONFIG") or str(Path(environ.get("HOME", "~"), ".kube", "config"))
    found = any(p and Path(p).expanduser().exists() for p in default.split(os.pathsep))
    path = kubeconfig or (default if found else None)
    if path:
        try:
            return config.new_client_from_config(config_file=path, context=context), (
                f"kubeconfig {path}"
            )
        except (ConfigException, yaml.YAMLError, OSError, ValueError, TypeError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigException(f"kubeconfig {path}: {reason}") from e
    token = token_file or environ.get(TOKEN_FILE_ENV) or f"{SERVICE_ACCOUNT_DIR}/token"
    ca = ca_file or environ.get(CA_FILE_ENV) or f"{SERVICE_ACCOUNT_DIR}/ca.crt"
    configuration = client.Configuration()
    try:
        InClusterConfigLoader(token, ca, environ=dict(environ)).load_and_set(configuration)
    except ConfigException as e:
        raise ConfigException(
            f"no kubeconfig (the profile names none; {default} does not exist) and no "
            f"in-cluster configuration ({e}; token {token}, CA {ca})"
        ) from e
    return client.ApiClient(configuration), "in-cluster"


def required_permission(method: str, path: str, query: Mapping[str, str]) -> dict[str, str]:
    """What RBAC must grant for a request to `path`, as the apiserver reads the URL: verb,
    API group, resource (with its subresource) and namespace."""
    parts = [p for p in path.split("/") if p]
    core = parts[:1] == ["api"]
    group = "" if core else (parts[1] if len(parts) > 1 else "")
    rest = parts[2:] if core else parts[3:]
    namespace = ""
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = "/".join(p for i, p in enumerate(rest) if i != 1)  # pods/log, not pods/x/log
    named = len(rest) > 1
    verb = {
        "GET": "get" if named else ("watch" if query.get("watch") in ("true", "1") else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }.get(method.upper(), method.lower())
    return {"verb": verb, "group": group, "resource": resource, "namespace": namespace}


def _forbidden(method: str, path: str, query: Mapping[str, str], body: str | None) -> Refused:
    """A 403 as the error a check records: the permission that is missing, in RBAC's terms."""
    need = required_permission(method, path, query)
    resource = need["resource"]
    if need["group"]:
        head, _, sub = resource.partition("/")
        resource = f"{head}.{need['group']}" + (f"/{sub}" if sub else "")
    where = f"in namespace {need['namespace']}" if need["namespace"] else "at cluster scope"
    try:
        api_message = str(json.loads(body or "{}").get("message", ""))
    except ValueError:
        api_message = ""
    grant = Permission(
        need["verb"],
        need["resource"].partition("/")[0],
        need["group"],
        need["resource"].partition("/")[2],
        cluster=not need["namespace"],
    )
    return Refused(
        f"forbidden: cannot {need['verb']} {resource} {where} "
        f"(`irlib deploy manifests` grants it: {grant.rule_line()})",
        403,
        permission=need,
        api_message=api_message,
    )


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
            token_file=getattr(target, "token_file", None),
            ca_file=getattr(target, "ca_file", None),
        )

    def __init__(
        self,
        *,
        kubeconfig: str | None,
        context: str | None,
        namespace: str,
        timeout_s: float = 5.0,
        token_file: str | None = None,
        ca_file: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Connect as kubectl would (see the module's docstring); `environ` (default
        os.environ) gives $KUBECONFIG, the in-cluster variables and the file overrides. With
        no configuration at all every request is Unreachable, naming what was looked for."""
        self.namespace = namespace
        self.timeout_s = timeout_s
        self._lists: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._lists_lock = threading.Lock()
        self._list_locks: dict[str, threading.Lock] = {}
        self.api: client.ApiClient | None = None
        self.no_config = ""
        self.source = "replay"
        if capture.replaying():  # a replay reads no configuration and connects nowhere
            return
        try:
            self.api, self.source = _connect(
                kubeconfig, context, token_file, ca_file, os.environ if environ is None else environ
            )
        except ConfigException as e:
            self.source, self.no_config = "none", str(e)

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
        if method != "GET":
            self._lists.clear()  # a write: what was listed may have changed
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
        """The request itself (what a replay never makes); a JSON answer comes as a
        capture.JsonText, which capture.call() unwraps."""
        if self.api is None:
            raise Unreachable(f"no Kubernetes connection: {self.no_config or 'a replay'}")
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
            if e.status == 403:
                raise _forbidden(method, path, query or {}, e.body) from e
            if not e.status:  # v37 wraps an SSLError (an untrusted certificate) with status 0
                raise Unreachable(f"API server: {str(e.reason).splitlines()[-1]}") from e
            raise Refused(f"API answered {e.status}: {e.reason}", e.status) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if _timed_out(e):
                raise TimedOut(f"API server: no answer within {self.timeout_s:g} s") from e
            raise Unreachable(f"API server unreachable: {e}") from e
        text = data.decode("utf-8", errors="replace")
        if response.status == 403:
            raise _forbidden(method, path, query or {}, text)
        if not 200 <= response.status <= 299:
            raise Refused(f"API answered {response.status}: {response.reason}", response.status)
        if "json" not in (response.getheader("content-type") or ""):
            return text
        return capture.JsonText(json.loads(text), text)  # a recording keeps the text as it came

    def _ns(self, resource: str, name: str = "", group: str = "") -> str:
        """The path of a namespaced resource (or one object of it) in the core or a named group."""
        prefix = f"/apis/{group}" if group else "/api/v1"
        path = f"{prefix}/namespaces/{quote(self.namespace, safe='')}/{resource}"
        return f"{path}/{quote(name, safe='')}" if name else path

    def list_all(self, path: str, query: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every item of a list, in pages of PAGE (`limit` + `continue`, as kubectl lists):
        no one answer holds 20,000 events. The same list asked again within LIST_FRESH_S
        (the checks of a run, several wanting the namespace's 2,000 pods) is read once and
        shared, so a run's steps see one snapshot; any write through this connection (a
        mitigation) forgets what was read. Callers must not change the items."""
        wanted = {k: v for k, v in (query or {}).items() if v}
        key = json.dumps([path, wanted], sort_keys=True)
        with self._lists_lock:
            lock = self._list_locks.setdefault(key, threading.Lock())
        with lock:  # a second asker waits for the first one's answer
            kept = self._lists.get(key)
            if kept is not None and time.monotonic() - kept[0] < LIST_FRESH_S:
                return kept[1]
            whole = self._whole_list(path, wanted)
            if whole is not None and time.monotonic() - whole[0] < LIST_FRESH_S:
                return whole[1]  # the fresh unfiltered list, selected here: one snapshot
            try:
                items = self._pages(path, wanted)
            except capture.NoCapture:
                # a replay whose timing did not share a list where the run did: the run's
                # answer to the same list is the one it used
                held = kept or whole
                if held is None:
                    raise
                return held[1]
            self._lists[key] = (time.monotonic(), items)
            return items

    def _whole_list(
        self, path: str, wanted: dict[str, str]
    ) -> tuple[float, list[dict[str, Any]]] | None:
        """For a list by label selector only: the same path's kept unfiltered list (its time)
        with the selector applied here, as an informer's cache answers; None when there is
        none, or the selector is malformed (the server's 400 then says why). The check that
        wants the app's 2,000 pods after another read the namespace's then decodes no second
        copy of them."""
        if set(wanted) != {"labelSelector"}:
            return None
        whole = self._lists.get(json.dumps([path, {}]))
        if whole is None:
            return None
        try:
            match = label_matcher(wanted["labelSelector"])
        except ValueError:
            return None
        items = [o for o in whole[1] if match((o.get("metadata") or {}).get("labels") or {})]
        return whole[0], items

    def _pages(self, path: str, wanted: dict[str, str]) -> list[dict[str, Any]]:
        """The pages of one list; a list that expired between two pages (410 Gone) is
        started over once, as client-go's pager does."""
        for attempt in (1, 2):
            items: list[dict[str, Any]] = []
            token = ""
            try:
                while True:
                    page_query = {**wanted, "limit": str(PAGE)}
                    if token:
                        page_query["continue"] = token
                    answer = self.request("GET", path, query=page_query)
                    items += answer.get("items") or []
                    token = (answer.get("metadata") or {}).get("continue") or ""
                    if not token:
                        return items
            except Refused as e:
                if e.status_code != 410 or attempt == 2:
                    raise
        return []  # (unreachable: the second attempt returns or raises)

    def pods(
        self, selector: str | None = None, *, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        return self.list_all(
            self._ns("pods"),
            {"labelSelector": selector or "", "fieldSelector": field_selector or ""},
        )

    def pod(self, name: str) -> dict[str, Any]:
        return self.request("GET", self._ns("pods", name))  # type: ignore[no-any-return]

    def nodes(self) -> list[dict[str, Any]]:
        return self.list_all("/api/v1/nodes")

    def events(self, field_selector: str | None = None) -> list[dict[str, Any]]:
        return self.list_all(self._ns("events"), {"fieldSelector": field_selector or ""})

    def ingresses(self) -> list[dict[str, Any]]:
        return self.list_all(self._ns("ingresses", group="networking.k8s.io/v1"))

    def deployment(self, name: str) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "GET", self._ns("deployments", name, group="apps/v1")
        )

    def replicasets(self, selector: str) -> list[dict[str, Any]]:
        return self.list_all(self._ns("replicasets", group="apps/v1"), {"labelSelector": selector})

    def log(
        self,
        pod: str,
        *,
        container: str | None = None,
        previous: bool = False,
        tail_lines: int | None = None,
        since_seconds: int | None = None,
        limit_bytes: int | None = None,
    ) -> str:
        query = {"previous": "true" if previous else "false", "container": container or ""}
        if tail_lines is not None:
            query["tailLines"] = str(tail_lines)
        if since_seconds is not None:
            query["sinceSeconds"] = str(since_seconds)
        if limit_bytes is not None:
            query["limitBytes"] = str(limit_bytes)
        answer = self.request("GET", self._ns("pods", pod) + "/log", query=query)
        return answer if isinstance(answer, str) else json.dumps(answer)

    def pod_metrics(self) -> list[dict[str, Any]]:
        return self.list_all(self._ns("pods", group="metrics.k8s.io/v1beta1"))

    def node_metrics(self) -> list[dict[str, Any]]:
        return self.list_all("/apis/metrics.k8s.io/v1beta1/nodes")

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
