"""Every request passes here before it reaches a resource, in the apiserver's order:
authentication (a bearer token, else 401), impersonation (`Impersonate-User`,
`Impersonate-Group`... each authorized as the verb `impersonate`), then authorization of the
request itself (RBAC, else 403). The health endpoints stay open, as a cluster's are.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.datastructures import Headers

from irlib.lab.config import LabConfig
from irlib.lab.kube import requestinfo
from irlib.lab.kube.authn import Authenticator
from irlib.lab.kube.rbac import Authorizer, forbidden
from irlib.lab.kube.requestinfo import (
    AUTHENTICATED,
    UNAUTHENTICATED,
    Attributes,
    User,
    split_serviceaccount,
)
from irlib.lab.kube.store import Store, StoreError

OPEN_PATHS = ("healthz", "livez", "readyz")
ANONYMOUS = User("system:anonymous", "", (UNAUTHENTICATED,))
EXTRA_PREFIX = "impersonate-extra-"


def unauthorized() -> StoreError:
    return StoreError(401, "Unauthorized", "Unauthorized")


class Gate:
    def __init__(self, store: Store, config: LabConfig) -> None:
        self.authenticator = Authenticator(store, config)
        self.authorizer = Authorizer(store)

    def admit(self, method: str, path: str, query: str, headers: Headers) -> User:
        """The user a request acts as; StoreError 401, 403 (or 400) when it may not."""
        first = path.strip("/").split("/", 1)[0]
        if first in OPEN_PATHS:
            return ANONYMOUS
        user = self.authenticator.authenticate(headers.get("authorization"))
        if user is None:
            raise unauthorized()
        user = self._impersonate(user, headers)
        attrs = requestinfo.parse(user, method, path, query)
        allowed, reason = self.authorizer.authorize(attrs)
        if not allowed:
            raise forbidden(attrs, reason)
        return user

    def _impersonate(self, actor: User, headers: Headers) -> User:
        name = headers.get("impersonate-user", "")
        groups = [g for g in headers.getlist("impersonate-group") if g]
        uid = headers.get("impersonate-uid", "")
        extra: dict[str, list[str]] = {}
        for key, value in headers.items():
            if key.lower().startswith(EXTRA_PREFIX) and value:
                extra.setdefault(unquote(key[len(EXTRA_PREFIX) :]).lower(), []).append(value)
        if not name:
            if groups or extra or uid:
                raise StoreError(
                    400,
                    "BadRequest",
                    "impersonation headers name groups, extra or a uid without a user "
                    "(Impersonate-User)",
                )
            return actor
        account = split_serviceaccount(name)
        if account is not None:
            self._allow(actor, "serviceaccounts", account[1], namespace=account[0])
            if not groups:
                groups = list(requestinfo.serviceaccount_user(*account).groups[:2])
        else:
            self._allow(actor, "users", name)
        for group in groups:
            self._allow(actor, "groups", group)
        for key, values in extra.items():
            for value in values:
                self._allow(
                    actor, "userextras", value, subresource=key, group="authentication.k8s.io"
                )
        if uid:
            self._allow(actor, "uids", uid, group="authentication.k8s.io")
        if name != ANONYMOUS.name and not {AUTHENTICATED, UNAUTHENTICATED} & set(groups):
            groups.append(AUTHENTICATED)
        return User(name, uid, tuple(groups), extra)

    def _allow(
        self,
        actor: User,
        resource: str,
        name: str,
        *,
        namespace: str = "",
        subresource: str = "",
        group: str = "",
    ) -> None:
        attrs = Attributes(
            actor,
            "impersonate",
            True,
            api_group=group,
            resource=resource,
            subresource=subresource,
            namespace=namespace,
            name=name,
        )
        allowed, reason = self.authorizer.authorize(attrs)
        if not allowed:
            raise forbidden(attrs, reason)
