"""The API's questions about access: SelfSubjectAccessReview (`kubectl auth can-i`),
SelfSubjectRulesReview (`kubectl auth can-i --list`), SubjectAccessReview and its local form,
SelfSubjectReview (`kubectl auth whoami`), TokenReview, and the TokenRequest subresource
that mints a ServiceAccount's token (`kubectl create token`). Answered, never stored.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from irlib.lab.kube.authn import (
    AUDIENCES,
    DEFAULT_EXPIRATION_S,
    MIN_EXPIRATION_S,
    SERVICEACCOUNTS,
    Authenticator,
)
from irlib.lab.kube.meta import Obj, rfc3339
from irlib.lab.kube.rbac import Authorizer
from irlib.lab.kube.requestinfo import Attributes, User
from irlib.lab.kube.resources import Resource
from irlib.lab.kube.store import Store, StoreError


def _bad(message: str) -> StoreError:
    return StoreError(400, "BadRequest", message)


def _user_info(user: User) -> Obj:
    info: Obj = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = user.extra
    return info


class Reviews:
    def __init__(self, store: Store, authorizer: Authorizer, authenticator: Authenticator):
        self.store = store
        self.authorizer = authorizer
        self.authenticator = authenticator

    def answer(self, res: Resource, namespace: str | None, body: Any, user: User) -> Obj:
        """The review `body` (a JSON object) answered for `user`, the requester."""
        if not isinstance(body, dict):
            raise _bad("the review must be a JSON object")
        review = copy.deepcopy(body)
        review["apiVersion"], review["kind"] = res.group_version, res.kind
        review.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        spec = review.setdefault("spec", {})
        if res.kind == "SelfSubjectAccessReview":
            review["status"] = self._access(spec, user)
        elif res.kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
            if res.kind == "LocalSubjectAccessReview":
                asked = (spec.get("resourceAttributes") or {}).get("namespace", "")
                if asked != namespace:
                    raise _bad(
                        f"spec.resourceAttributes.namespace must match namespace: {namespace}"
                    )
            subject = User(
                spec.get("user", ""),
                spec.get("uid", ""),
                tuple(spec.get("groups") or ()),
                spec.get("extra") or {},
            )
            if not subject.name and not subject.groups:
                raise StoreError(
                    422,
                    "Invalid",
                    f'{res.kind}.authorization.k8s.io "" is invalid: spec.user: Invalid value: '
                    '"": at least one of user or group must be specified',
                )
            review["status"] = self._access(spec, subject)
        elif res.kind == "SelfSubjectRulesReview":
            review["status"] = self._rules(spec, user)
        elif res.kind == "SelfSubjectReview":
            review.pop("spec", None)
            review["status"] = {"userInfo": _user_info(user)}
        elif res.kind == "TokenReview":
            found = self.authenticator.authenticate(f"Bearer {spec.get('token', '')}")
            status: Obj = {"authenticated": found is not None}
            if found is not None:
                status["user"] = _user_info(found)
                status["audiences"] = list(AUDIENCES)
            review["status"] = status
            spec.pop("token", None)  # a review's answer does not repeat the secret
        return review

    def _access(self, spec: Obj, user: User) -> Obj:
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if ra:
            attrs = Attributes(
                user,
                ra.get("verb", ""),
                True,
                api_group=ra.get("group", ""),
                api_version=ra.get("version", ""),
                resource=ra.get("resource", ""),
                subresource=ra.get("subresource", ""),
                namespace=ra.get("namespace", ""),
                name=ra.get("name", ""),
            )
        elif nra:
            attrs = Attributes(user, nra.get("verb", ""), False, path=nra.get("path", ""))
        else:
            raise StoreError(
                422,
                "Invalid",
                'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: '
                'spec.resourceAttributes: Invalid value: "null": exactly one of '
                "nonResourceAttributes or resourceAttributes must be specified",
            )
        allowed, reason = self.authorizer.authorize(attrs)
        status: Obj = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        return status

    def _rules(self, spec: Obj, user: User) -> Obj:
        namespace = spec.get("namespace", "")
        if not namespace:
            raise _bad("no namespace on request")
        resource_rules, non_resource, errors = self.authorizer.rules(user, namespace)
        status: Obj = {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource,
            "incomplete": bool(errors),
        }
        if errors:
            status["evaluationError"] = "; ".join(errors)
        return status

    # -- TokenRequest ------------------------------------------------------------------------

    def token(self, namespace: str, name: str, body: Any) -> Obj:
        """`POST .../serviceaccounts/NAME/token`: a TokenRequest with its status filled in."""
        account = self.store.require(SERVICEACCOUNTS, namespace, name)
        request = copy.deepcopy(body) if isinstance(body, dict) else {}
        spec = request.setdefault("spec", {})
        expiration = spec.get("expirationSeconds") or DEFAULT_EXPIRATION_S
        if not isinstance(expiration, int) or expiration < MIN_EXPIRATION_S:
            raise StoreError(
                422,
                "Invalid",
                f'TokenRequest.authentication.k8s.io "{name}" is invalid: spec.expirationSeconds: '
                f"Invalid value: {expiration}: may not specify a duration less than 10 minutes",
            )
        audiences = spec.get("audiences") or list(AUDIENCES)
        spec.update(audiences=audiences, expirationSeconds=expiration)
        spec.setdefault("boundObjectRef", None)
        now = time.time()
        token, exp = self.authenticator.issue(account, audiences, expiration, now)
        request.update(kind="TokenRequest", apiVersion="authentication.k8s.io/v1")
        request["metadata"] = {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": rfc3339(now),
        }
        request["status"] = {"token": token, "expirationTimestamp": rfc3339(exp)}
        return request
