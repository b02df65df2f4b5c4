"""Request bodies in Kubernetes' protobuf encoding, read into the JSON form the API stores.

client-go's typed clients (kubectl create serviceaccount, create token, create role, auth
can-i) send protobuf: the `k8s\\0` magic, a runtime.Unknown envelope (typeMeta, raw), and the
object as its generated.proto describes it. Only the kinds those commands send are known
here; field numbers are those of k8s.io/api's generated.proto files.
"""

from __future__ import annotations

from typing import Any

MAGIC = b"k8s\x00"

# message -> field number -> (JSON name, type, repeated). Types: str, int, bool, bytes,
# map (map<string,string>), extra (map<string,ExtraValue>), or the name of a message.
Field = tuple[str, str, bool]
SCHEMAS: dict[str, dict[int, Field]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False)},
    "TypeMeta": {1: ("apiVersion", "str", False), 2: ("kind", "str", False)},
    "ObjectMeta": {
        1: ("name", "str", False),
        2: ("generateName", "str", False),
        3: ("namespace", "str", False),
        5: ("uid", "str", False),
        6: ("resourceVersion", "str", False),
        11: ("labels", "map", False),
        12: ("annotations", "map", False),
        13: ("ownerReferences", "OwnerReference", True),
        14: ("finalizers", "str", True),
    },
    "OwnerReference": {
        1: ("kind", "str", False),
        3: ("name", "str", False),
        4: ("uid", "str", False),
        5: ("apiVersion", "str", False),
        6: ("controller", "bool", False),
        7: ("blockOwnerDeletion", "bool", False),
    },
    "ObjectReference": {
        1: ("kind", "str", False),
        2: ("namespace", "str", False),
        3: ("name", "str", False),
        4: ("uid", "str", False),
        5: ("apiVersion", "str", False),
    },
    "LocalObjectReference": {1: ("name", "str", False)},
    "LabelSelector": {
        1: ("matchLabels", "map", False),
        2: ("matchExpressions", "LabelSelectorRequirement", True),
    },
    "LabelSelectorRequirement": {
        1: ("key", "str", False),
        2: ("operator", "str", False),
        3: ("values", "str", True),
    },
    # core/v1
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta", False),
        2: ("secrets", "ObjectReference", True),
        3: ("imagePullSecrets", "LocalObjectReference", True),
        4: ("automountServiceAccountToken", "bool", False),
    },
    # rbac.authorization.k8s.io/v1
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {
        1: ("metadata", "ObjectMeta", False),
        2: ("rules", "PolicyRule", True),
        3: ("aggregationRule", "AggregationRule", False),
    },
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", True)},
    "PolicyRule": {
        1: ("verbs", "str", True),
        2: ("apiGroups", "str", True),
        3: ("resources", "str", True),
        4: ("resourceNames", "str", True),
        5: ("nonResourceURLs", "str", True),
    },
    "RoleBinding": {
        1: ("metadata", "ObjectMeta", False),
        2: ("subjects", "Subject", True),
        3: ("roleRef", "RoleRef", False),
    },
    "ClusterRoleBinding": {
        1: ("metadata", "ObjectMeta", False),
        2: ("subjects", "Subject", True),
        3: ("roleRef", "RoleRef", False),
    },
    "Subject": {
        1: ("kind", "str", False),
        2: ("apiGroup", "str", False),
        3: ("name", "str", False),
        4: ("namespace", "str", False),
    },
    "RoleRef": {
        1: ("apiGroup", "str", False),
        2: ("kind", "str", False),
        3: ("name", "str", False),
    },
    # authentication.k8s.io/v1
    "TokenRequest": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "TokenRequestSpec", False)},
    "TokenRequestSpec": {
        1: ("audiences", "str", True),
        3: ("boundObjectRef", "BoundObjectReference", False),
        4: ("expirationSeconds", "int", False),
    },
    "BoundObjectReference": {
        1: ("kind", "str", False),
        2: ("apiVersion", "str", False),
        3: ("name", "str", False),
        4: ("uid", "str", False),
    },
    "TokenReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "TokenReviewSpec", False)},
    "TokenReviewSpec": {1: ("token", "str", False), 2: ("audiences", "str", True)},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta", False)},
    # authorization.k8s.io/v1
    "SelfSubjectAccessReview": {
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "SelfSubjectAccessReviewSpec", False),
    },
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes", False),
        2: ("nonResourceAttributes", "NonResourceAttributes", False),
    },
    "SubjectAccessReview": {
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "SubjectAccessReviewSpec", False),
    },
    "LocalSubjectAccessReview": {
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "SubjectAccessReviewSpec", False),
    },
    "SubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes", False),
        2: ("nonResourceAttributes", "NonResourceAttributes", False),
        3: ("user", "str", False),
        4: ("groups", "str", True),
        5: ("extra", "extra", False),
        6: ("uid", "str", False),
    },
    "ResourceAttributes": {
        1: ("namespace", "str", False),
        2: ("verb", "str", False),
        3: ("group", "str", False),
        4: ("version", "str", False),
        5: ("resource", "str", False),
        6: ("subresource", "str", False),
        7: ("name", "str", False),
    },
    "NonResourceAttributes": {1: ("path", "str", False), 2: ("verb", "str", False)},
    "SelfSubjectRulesReview": {
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "SelfSubjectRulesReviewSpec", False),
    },
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "str", False)},
    "ExtraValue": {1: ("items", "str", True)},
}
KINDS = sorted(k for k, s in SCHEMAS.items() if 1 in s and s[1][1] == "ObjectMeta")


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: an int for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("truncated field")
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire in (1, 5):  # fixed 64/32: no field of the known kinds uses them
            pos += 8 if wire == 1 else 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _map_entry(data: bytes, value_type: str) -> tuple[str, Any]:
    key, value = "", None
    for number, raw in _fields(data):
        if number == 1 and isinstance(raw, bytes):
            key = raw.decode()
        elif number == 2 and isinstance(raw, bytes):
            value = raw.decode() if value_type == "str" else message(raw, value_type)["items"]
    return key, value if value is not None else ("" if value_type == "str" else [])


def message(data: bytes, name: str) -> dict[str, Any]:
    """Decode `data` as the message `name` into its JSON form (unknown fields skipped)."""
    schema = SCHEMAS[name]
    out: dict[str, Any] = {}
    for number, raw in _fields(data):
        if number not in schema:
            continue
        json_name, kind, repeated = schema[number]
        value: Any
        if kind in ("map", "extra"):
            assert isinstance(raw, bytes)
            key, item = _map_entry(raw, "str" if kind == "map" else "ExtraValue")
            out.setdefault(json_name, {})[key] = item
            continue
        if kind == "str":
            value = raw.decode() if isinstance(raw, bytes) else str(raw)
        elif kind == "bytes":
            value = raw
        elif kind == "int":
            value = raw if isinstance(raw, int) else 0
            if value >= 1 << 63:
                value -= 1 << 64
        elif kind == "bool":
            value = bool(raw)
        else:
            if not isinstance(raw, bytes):
                raise ProtobufError(f"{name}.{json_name}: expected a message")
            value = message(raw, kind)
        if repeated:
            out.setdefault(json_name, []).append(value)
        elif value != "":  # Go writes empty strings, its JSON leaves them out (omitempty)
            out[json_name] = value
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object a client would have sent."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic")
    envelope = message(body[len(MAGIC) :], "Unknown")
    type_meta = envelope.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    if kind not in KINDS:
        raise ProtobufError(
            f"the lab's Kubernetes API reads protobuf bodies of {', '.join(KINDS)} only, "
            f"not {kind or 'this one'}: send JSON"
        )
    obj = message(envelope.get("raw", b""), kind)
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **obj}
