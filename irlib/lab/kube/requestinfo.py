"""What a request asks, in the terms RBAC decides on: verb, API group, resource, subresource,
namespace, name, or a non-resource path; and the user who asks.

Parsed from the URL as the apiserver's RequestInfoFactory does: GET of a collection is
`list` (`watch` with ?watch=true), DELETE of one is `deletecollection`, a namespace's own URL
carries that namespace, a list or watch narrowed by `metadata.name=` names its object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs

VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch"}
VERBS["DELETE"] = "delete"
TRUE = ("true", "1", "True")
# /api/v1/namespaces/NS/status and /finalize are the namespace's own subresources
NAMESPACE_SUBRESOURCES = ("status", "finalize")

SA_PREFIX = "system:serviceaccount:"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
MASTERS = "system:masters"


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)


def serviceaccount_user(namespace: str, name: str, uid: str = "") -> User:
    """The user a ServiceAccount's token authenticates as (its groups as the apiserver adds)."""
    return User(
        f"{SA_PREFIX}{namespace}:{name}",
        uid,
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


def split_serviceaccount(username: str) -> tuple[str, str] | None:
    """(namespace, name) of `system:serviceaccount:NS:NAME`, None for any other user."""
    if not username.startswith(SA_PREFIX):
        return None
    namespace, _, name = username[len(SA_PREFIX) :].partition(":")
    return (namespace, name) if namespace and name and ":" not in name else None


@dataclass(frozen=True)
class Attributes:
    """One authorization question: may `user` do `verb` to this resource (or path)?"""

    user: User
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def describe_resource(self) -> str:
        """`pods`, `pods/log`, `deployments/scale`: how RBAC rules and messages name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def parse(user: User, method: str, path: str, query: str) -> Attributes:
    """The attributes of a request, as the apiserver's RequestInfoFactory makes them."""
    parts = [p for p in path.split("/") if p]
    non_resource = Attributes(user, method.lower(), False, path=path or "/")
    if not parts or parts[0] not in ("api", "apis"):
        return non_resource
    if parts[0] == "api":
        group, rest = "", parts[1:]
    else:
        if len(parts) < 3:
            return non_resource  # /apis, /apis/GROUP: discovery
        group, rest = parts[1], parts[2:]
    if len(rest) < 2:
        return non_resource  # /api/v1, /apis/GROUP/VERSION: discovery
    version, rest = rest[0], rest[1:]
    verb = VERBS.get(method.upper(), method.lower())
    params = parse_qs(query)
    if rest[0] == "watch":  # the deprecated /api/v1/watch/... form
        verb, rest = "watch", rest[1:]
        if not rest:
            return non_resource
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not name and verb in ("get", "watch"):
        verb = "watch" if verb == "watch" or params.get("watch", [""])[0] in TRUE else "list"
    if not name and verb == "delete":
        verb = "deletecollection"
    if verb in ("list", "watch"):
        for selector in params.get("fieldSelector", []):
            for term in selector.split(","):
                key, sep, value = term.partition("=")
                if sep and key.strip() == "metadata.name":
                    name = value.lstrip("=").strip()
    return Attributes(
        user,
        verb,
        True,
        path=path,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )
