"""How the lab's own processes reach its Kubernetes API: over TLS verified against the lab's
CA, with the admin user's bearer token (the faults, `irlib lab` commands, the platform apps
that poll pods and endpoints as an ingress controller would).

Runbooks never use this: they connect through the kubeconfig or the in-cluster files.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from irlib.lab.config import LabConfig
from irlib.lab.kube import pki


def ssl_context(config: LabConfig) -> ssl.SSLContext:
    """A client context that trusts the lab's CA only."""
    return ssl.create_default_context(cafile=str(pki.path(config, pki.CA_CERT)))


def admin_headers(config: LabConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {pki.read(config, pki.ADMIN_TOKEN)}"}


def admin_client(config: LabConfig, **kw: Any) -> httpx.Client:
    """A client for `config.url("kubernetes")` as the lab's admin; close it after use."""
    return httpx.Client(
        base_url=config.url("kubernetes"),
        verify=ssl_context(config),
        headers=admin_headers(config),
        **kw,
    )


def async_admin_client(config: LabConfig, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=config.url("kubernetes"),
        verify=ssl_context(config),
        headers=admin_headers(config),
        **kw,
    )


def admin_request(config: LabConfig, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request as the lab's admin (`path` from the API's root, e.g. /api/v1/nodes)."""
    with admin_client(config) as client:
        return client.request(method, path, **kw)
