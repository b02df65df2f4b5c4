"""RBAC as the apiserver decides it: Roles, ClusterRoles and their bindings in the store say
who may do what; `system:masters` may do anything (the privileged-group authorizer).

A rule allows a request when its verbs, API groups, resources (`pods/log`, `*/scale`, `*`)
and resourceNames all match; ClusterRoleBindings apply everywhere, RoleBindings (of a Role or
a ClusterRole) in their namespace only. Refusals carry the apiserver's own message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from irlib.lab.kube import resources
from irlib.lab.kube.meta import Obj
from irlib.lab.kube.requestinfo import MASTERS, Attributes, User
from irlib.lab.kube.store import Store, StoreError

GROUP = "rbac.authorization.k8s.io"
ROLES = resources.resource("roles.rbac.authorization.k8s.io")
ROLEBINDINGS = resources.resource("rolebindings.rbac.authorization.k8s.io")
CLUSTERROLES = resources.resource("clusterroles.rbac.authorization.k8s.io")
CLUSTERROLEBINDINGS = resources.resource("clusterrolebindings.rbac.authorization.k8s.io")
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


# -- one rule ------------------------------------------------------------------------------


def _has(values: list[str] | None, wanted: str) -> bool:
    return "*" in (values or []) or wanted in (values or [])


def _resource_matches(rule_resources: list[str] | None, attrs: Attributes) -> bool:
    combined = attrs.describe_resource()
    for r in rule_resources or []:
        if r in ("*", combined):
            return True
        if attrs.subresource and r == f"*/{attrs.subresource}":
            return True
    return False


def _url_matches(urls: list[str] | None, path: str) -> bool:
    for url in urls or []:
        if url in ("*", path) or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule.get("nonResourceURLs"), attrs.path)
    names = rule.get("resourceNames") or []
    return (
        _has(rule.get("apiGroups"), attrs.api_group)
        and _resource_matches(rule.get("resources"), attrs)
        and (not names or attrs.name in names)
    )


# -- who a binding names -------------------------------------------------------------------


def applies_to(subject: dict[str, Any], user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


def _describe_subject(subject: dict[str, Any], binding_namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return f'ServiceAccount "{subject.get("name")}/{namespace}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


@dataclass(frozen=True)
class Grant:
    """A rule that applies to a user, and the binding through which it does (for reasons)."""

    rule: dict[str, Any]
    source: str


class Authorizer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _role_rules(self, ref: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        if ref.get("kind") == "ClusterRole":
            role = self.store.get(CLUSTERROLES, None, ref.get("name", ""))
            missing = f'clusterrole.{GROUP} "{ref.get("name")}" not found'
        else:
            role = self.store.get(ROLES, namespace, ref.get("name", ""))
            missing = f'role.{GROUP} "{ref.get("name")}" not found'
        if role is None:
            raise LookupError(missing)
        return list(role.get("rules") or [])

    def grants(self, user: User, namespace: str) -> Iterator[Grant | LookupError]:
        """Every rule that applies to `user` for a request in `namespace` ("": cluster scope),
        cluster-wide bindings first; a binding of a missing role yields its LookupError."""
        for binding in self.store.list(CLUSTERROLEBINDINGS):
            for subject in binding.get("subjects") or []:
                if applies_to(subject, user, ""):
                    ref = binding.get("roleRef") or {}
                    source = (
                        f'ClusterRoleBinding "{binding["metadata"]["name"]}" of '
                        f'{ref.get("kind")} "{ref.get("name")}" to {_describe_subject(subject, "")}'
                    )
                    yield from self._grants_of(ref, "", source)
                    break
        if not namespace:
            return
        for binding in self.store.all(ROLEBINDINGS, namespace):
            for subject in binding.get("subjects") or []:
                if applies_to(subject, user, namespace):
                    ref = binding.get("roleRef") or {}
                    source = (
                        f'RoleBinding "{binding["metadata"]["name"]}/{namespace}" of '
                        f'{ref.get("kind")} "{ref.get("name")}" to '
                        f"{_describe_subject(subject, namespace)}"
                    )
                    yield from self._grants_of(ref, namespace, source)
                    break

    def _grants_of(self, ref: dict[str, Any], namespace: str, source: str) -> Iterator[Any]:
        try:
            rules = self._role_rules(ref, namespace)
        except LookupError as exc:
            yield exc
            return
        for rule in rules:
            yield Grant(rule, source)

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason) as the apiserver's authorizers answer: masters first, then RBAC.
        A refusal's reason names the bindings whose role is missing, as RBAC's does."""
        if MASTERS in attrs.user.groups:
            return True, ""
        errors: list[str] = []
        for grant in self.grants(attrs.user, attrs.namespace):
            if isinstance(grant, LookupError):
                errors.append(str(grant.args[0]))
            elif rule_allows(grant.rule, attrs):
                return True, f"RBAC: allowed by {grant.source}"
        if not errors:
            return False, ""
        listed = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
        return False, f"RBAC: {listed}"

    def rules(self, user: User, namespace: str) -> tuple[list[Obj], list[Obj], list[str]]:
        """(resource rules, non-resource rules, errors) that apply to `user` in `namespace`:
        the answer of a SelfSubjectRulesReview."""
        resource_rules: list[Obj] = []
        non_resource: list[Obj] = []
        errors: list[str] = []
        for grant in self.grants(user, namespace):
            if isinstance(grant, LookupError):
                errors.append(str(grant.args[0]))
                continue
            rule = grant.rule
            if rule.get("nonResourceURLs"):
                non_resource.append(
                    {"verbs": rule.get("verbs") or [], "nonResourceURLs": rule["nonResourceURLs"]}
                )
            else:
                entry: Obj = {
                    "verbs": rule.get("verbs") or [],
                    "apiGroups": rule.get("apiGroups") or [],
                    "resources": rule.get("resources") or [],
                }
                if rule.get("resourceNames"):
                    entry["resourceNames"] = rule["resourceNames"]
                resource_rules.append(entry)
        return resource_rules, non_resource, errors


def forbidden(attrs: Attributes, reason: str = "") -> StoreError:
    """The 403 the apiserver writes (responsewriters.Forbidden and apierrors.NewForbidden)."""
    who = f'User "{attrs.user.name}"'
    if not attrs.resource_request:
        message = f'{who} cannot {attrs.verb} path "{attrs.path}"'
    elif attrs.namespace:
        message = (
            f'{who} cannot {attrs.verb} resource "{attrs.describe_resource()}" in API group '
            f'"{attrs.api_group}" in the namespace "{attrs.namespace}"'
        )
    else:
        message = (
            f'{who} cannot {attrs.verb} resource "{attrs.describe_resource()}" in API group '
            f'"{attrs.api_group}" at the cluster scope'
        )
    if reason:
        message = f"{message}: {reason}"
    details: dict[str, Any] = {}
    if attrs.resource_request:
        qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
        if attrs.name:
            message = f'{qualified} "{attrs.name}" is forbidden: {message}'
            details["name"] = attrs.name
        else:
            message = f"{qualified} is forbidden: {message}"
        if attrs.api_group:
            details["group"] = attrs.api_group
        details["kind"] = attrs.resource
    else:
        message = f"forbidden: {message}"
    return StoreError(403, "Forbidden", message, details)


# -- validation of the RBAC objects --------------------------------------------------------


def _invalid(kind: str, name: str, problems: list[str]) -> StoreError:
    listed = problems[0] if len(problems) == 1 else f"[{', '.join(problems)}]"
    return StoreError(422, "Invalid", f'{kind}.{GROUP} "{name}" is invalid: {listed}')


def validate(kind: str, obj: Obj, old: Obj | None) -> None:
    """Refuse (422) what the apiserver's RBAC validation refuses; fill the subjects' apiGroup."""
    if kind not in RBAC_KINDS:
        return
    name = (obj.get("metadata") or {}).get("name", "")
    problems: list[str] = []
    if kind in ("Role", "ClusterRole"):
        for i, rule in enumerate(obj.get("rules") or []):
            where = f"rules[{i}]"
            if not rule.get("verbs"):
                problems.append(
                    f"{where}.verbs: Required value: verbs must contain at least one value"
                )
            if rule.get("nonResourceURLs"):
                if kind == "Role":
                    problems.append(
                        f"{where}.nonResourceURLs: Invalid value: {rule['nonResourceURLs']}: "
                        "namespaced rules cannot apply to non-resource URLs"
                    )
                if rule.get("resources") or rule.get("apiGroups"):
                    problems.append(
                        f"{where}.nonResourceURLs: Invalid value: {rule['nonResourceURLs']}: "
                        "rules cannot apply to both regular resources and non-resource URLs"
                    )
            elif not rule.get("resources"):
                problems.append(
                    f"{where}.resources: Required value: resource rules must supply at least one "
                    "resource"
                )
            elif "apiGroups" not in rule:
                problems.append(
                    f"{where}.apiGroups: Required value: resource rules must supply at least one "
                    "api group"
                )
    else:
        ref = obj.get("roleRef") or {}
        allowed = ("ClusterRole",) if kind == "ClusterRoleBinding" else ("Role", "ClusterRole")
        if ref.get("apiGroup") != GROUP:
            problems.append(
                f'roleRef.apiGroup: Unsupported value: "{ref.get("apiGroup", "")}": '
                f'supported values: "{GROUP}"'
            )
        if ref.get("kind") not in allowed:
            values = ", ".join(f'"{k}"' for k in allowed)
            problems.append(
                f'roleRef.kind: Unsupported value: "{ref.get("kind", "")}": '
                f"supported values: {values}"
            )
        if not ref.get("name"):
            problems.append("roleRef.name: Required value")
        for i, subject in enumerate(obj.get("subjects") or []):
            where = f"subjects[{i}]"
            sk = subject.get("kind")
            if sk not in ("ServiceAccount", "User", "Group"):
                problems.append(
                    f'{where}.kind: Unsupported value: "{sk}": supported values: '
                    '"ServiceAccount", "User", "Group"'
                )
                continue
            subject.setdefault("apiGroup", "" if sk == "ServiceAccount" else GROUP)
            if not subject.get("name"):
                problems.append(f"{where}.name: Required value")
            if (
                sk == "ServiceAccount"
                and kind == "ClusterRoleBinding"
                and not subject.get("namespace")
            ):
                problems.append(f"{where}.namespace: Required value")
            if sk == "ServiceAccount" and subject.get("apiGroup") != "":
                problems.append(
                    f'{where}.apiGroup: Unsupported value: "{subject["apiGroup"]}": '
                    'supported values: ""'
                )
        if old is not None and (old.get("roleRef") or {}) != ref:
            problems.append(f"roleRef: Invalid value: {_go_ref(ref)}: cannot change roleRef")
    if problems:
        raise _invalid(kind, name, problems)


def _go_ref(ref: dict[str, Any]) -> str:
    return (
        f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", '
        f'Name:"{ref.get("name", "")}"}}'
    )


# -- escalation: nobody grants what they do not hold ---------------------------------------


def _atoms(rule: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A rule broken down into one verb, group, resource and name each (BreakdownRule)."""
    for verb in rule.get("verbs") or []:
        for url in rule.get("nonResourceURLs") or []:
            yield {"verbs": [verb], "nonResourceURLs": [url]}
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for name in rule.get("resourceNames") or [None]:
                    atom: dict[str, Any] = {
                        "verbs": [verb],
                        "apiGroups": [group],
                        "resources": [resource],
                    }
                    if name is not None:
                        atom["resourceNames"] = [name]
                    yield atom


def _covers(owner: dict[str, Any], atom: dict[str, Any]) -> bool:
    if not _has(owner.get("verbs"), atom["verbs"][0]):
        return False
    if "nonResourceURLs" in atom:
        return _url_matches(owner.get("nonResourceURLs"), atom["nonResourceURLs"][0])
    resource = atom["resources"][0]
    _, _, sub = resource.partition("/")
    resources = owner.get("resources") or []
    names = owner.get("resourceNames") or []
    return (
        _has(owner.get("apiGroups"), atom["apiGroups"][0])
        and ("*" in resources or resource in resources or (sub and f"*/{sub}" in resources))
        and (not names or atom.get("resourceNames", [None])[0] in names)
    )


def _go_rule(atom: dict[str, Any]) -> str:
    def quoted(key: str) -> str:
        return "[" + " ".join(f'"{v}"' for v in atom.get(key) or []) + "]"

    if "nonResourceURLs" in atom:
        return f"{{NonResourceURLs:{quoted('nonResourceURLs')}, Verbs:{quoted('verbs')}}}"
    names = f", ResourceNames:{quoted('resourceNames')}" if atom.get("resourceNames") else ""
    return (
        f"{{APIGroups:{quoted('apiGroups')}, Resources:{quoted('resources')}{names}, "
        f"Verbs:{quoted('verbs')}}}"
    )


class EscalationCheck:
    """The RBAC REST storage's rule: a Role, ClusterRole or binding is written only by a user
    who holds every permission it grants, or may `escalate` (roles) or `bind` (bindings)."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def __call__(self, user: User, kind: str, obj: Obj) -> None:
        if kind not in RBAC_KINDS or MASTERS in user.groups:
            return
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace", "") if kind in ("Role", "RoleBinding") else ""
        if kind in ("Role", "ClusterRole"):
            plural = "roles" if kind == "Role" else "clusterroles"
            if self._may(user, "escalate", plural, namespace, meta.get("name", "")):
                return
            rules = obj.get("rules") or []
        else:
            ref = obj.get("roleRef") or {}
            plural = "roles" if ref.get("kind") == "Role" else "clusterroles"
            if self._may(user, "bind", plural, namespace, ref.get("name", "")):
                return
            try:
                rules = self.authorizer._role_rules(ref, namespace)
            except LookupError:
                rules = []
        held = [g.rule for g in self.authorizer.grants(user, namespace) if isinstance(g, Grant)]
        missing = [a for r in rules for a in _atoms(r) if not any(_covers(h, a) for h in held)]
        if missing:
            groups = ", ".join(f'"{g}"' for g in user.groups)
            resource = f"{kind.lower()}s.{GROUP}"
            raise StoreError(
                403,
                "Forbidden",
                f'{resource} "{meta.get("name", "")}" is forbidden: user "{user.name}" '
                f"(groups=[{groups}]) is attempting to grant RBAC permissions not currently "
                f"held:\n" + "\n".join(_go_rule(a) for a in missing),
                {"name": meta.get("name", ""), "group": GROUP, "kind": f"{kind.lower()}s"},
            )

    def _may(self, user: User, verb: str, plural: str, namespace: str, name: str) -> bool:
        attrs = Attributes(
            user, verb, True, api_group=GROUP, resource=plural, namespace=namespace, name=name
        )
        return self.authorizer.authorize(attrs)[0]
