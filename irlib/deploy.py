"""`irlib deploy manifests`: everything the scheduled health drill needs in a cluster, with
rights computed from what the checks declare (irlib.k8s.permissions), never hand-listed.

The ServiceAccount; a Role with exactly the reads of the read-only checks and plans; a
ClusterRole for what only a cluster grants (nodes, node metrics); their bindings; the
ConfigMap holding the profile; the evidence PersistentVolumeClaim; the CronJob running as that
account. The mitigations' Role (patch, delete, scale) only with `with_mitigations`; `irlib
serve` (its own account bound to the same read roles, its evidence claim, a Deployment and a
Service) only with `with_serve`. Pure text: applying it is the operator's `kubectl apply -f -`;
no secret value is ever written here: the pods take them from the Secret, by env var.
"""

from __future__ import annotations

from typing import Any

import yaml

from irlib.archive import secret_env_names
from irlib.drills import schedule
from irlib.drills.schedule import DEFAULT_IMAGE, EVIDENCE_DIR, PROFILE_DIR, RUN_AS
from irlib.k8s import checks as _checks  # noqa: F401  (importing them declares their reads)
from irlib.k8s import mitigations as _mitigations  # noqa: F401  (and their writes)
from irlib.k8s.permissions import READS, WRITES, Permission, declared, rules
from irlib.profile import Profile

RBAC = "rbac.authorization.k8s.io/v1"
LABELS = {"app.kubernetes.io/name": "irlib", "app.kubernetes.io/component": "health-drill"}
SERVE = "irlib-serve"  # its account, claim, Deployment and Service
SERVE_LABELS = {"app.kubernetes.io/name": "irlib", "app.kubernetes.io/component": "serve"}
SERVE_PORT = 8900


def read_permissions() -> list[Permission]:
    """What the read-only checks and plans need: the read Role and ClusterRole grant these."""
    return declared(READS)


def mitigation_permissions() -> list[Permission]:
    """What the mitigations need beyond the reads: only the opt-in mitigation Role has it."""
    reads = set(read_permissions())
    return [p for p in declared(WRITES) if p not in reads]


def manifests(
    profile: Profile,
    *,
    profile_text: str,
    every: str = "30m",
    image: str | None = None,
    with_mitigations: bool = False,
    with_serve: bool = False,
) -> list[dict[str, Any]]:
    """The objects, in the order `kubectl apply` should create them."""
    ns = profile.kubernetes.namespace
    s = profile.drills
    account = s.service_account
    reads = read_permissions()
    cluster_wide = f"{account}-{ns}-read"  # ClusterRoles have no namespace: name it for one
    objects: list[dict[str, Any]] = [
        _meta("v1", "ServiceAccount", account, ns),
        {
            **_meta(RBAC, "Role", f"{account}-read", ns),
            "rules": rules(p for p in reads if not p.cluster),
        },
        _binding("RoleBinding", f"{account}-read", "Role", f"{account}-read", account, ns),
        {
            **_meta(RBAC, "ClusterRole", cluster_wide, None),
            "rules": rules(p for p in reads if p.cluster),
        },
        _binding("ClusterRoleBinding", cluster_wide, "ClusterRole", cluster_wide, account, ns),
    ]
    if with_mitigations:
        name = f"{account}-mitigate"
        objects += [
            {**_meta(RBAC, "Role", name, ns), "rules": rules(mitigation_permissions())},
            _binding("RoleBinding", name, "Role", name, account, ns),
        ]
    objects += [
        {
            **_meta("v1", "ConfigMap", s.profile_configmap, ns),
            "data": {"profile.yaml": in_cluster_profile(profile_text)},
        },
        {
            **_meta("v1", "PersistentVolumeClaim", s.evidence_pvc, ns),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": s.evidence_size}},
            },
        },
        schedule.cronjob_manifest(schedule.cronjob_spec(every, profile, image)),
    ]
    if with_serve:
        objects += serve_objects(profile, image=image)
    return objects


def serve_objects(profile: Profile, *, image: str | None = None) -> list[dict[str, Any]]:
    """`irlib serve` in the cluster: its own ServiceAccount, bound to the health drill's read
    Role and ClusterRole and nothing else (its runs are read-only: no mitigation ever runs
    from an alert), its evidence claim, one replica (its groups' state and cooldowns live in
    its memory) and a ClusterIP Service for Alertmanager's webhook."""
    ns = profile.kubernetes.namespace
    s = profile.drills
    cluster_wide = f"{s.service_account}-{ns}-read"
    evidence = f"{SERVE}-evidence"
    objects = [
        _meta("v1", "ServiceAccount", SERVE, ns, SERVE_LABELS),
        _binding("RoleBinding", f"{SERVE}-read", "Role", f"{s.service_account}-read", SERVE, ns),
        _binding(
            "ClusterRoleBinding", f"{SERVE}-{ns}-read", "ClusterRole", cluster_wide, SERVE, ns
        ),
        {
            **_meta("v1", "PersistentVolumeClaim", evidence, ns, SERVE_LABELS),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": s.evidence_size}},
            },
        },
        {
            **_meta("apps/v1", "Deployment", SERVE, ns, SERVE_LABELS),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # never two servers on one claim
                "selector": {"matchLabels": dict(SERVE_LABELS)},
                "template": {
                    "metadata": {"labels": dict(SERVE_LABELS)},
                    "spec": _serve_pod(profile, image, evidence),
                },
            },
        },
        {
            **_meta("v1", "Service", SERVE, ns, SERVE_LABELS),
            "spec": {
                "type": "ClusterIP",
                "selector": dict(SERVE_LABELS),
                "ports": [{"name": "http", "port": SERVE_PORT, "targetPort": "http"}],
            },
        },
    ]
    return objects


def _serve_pod(profile: Profile, image: str | None, evidence: str) -> dict[str, Any]:
    s = profile.drills
    required = profile.serve.token_env  # it will not start without it: fail visibly
    names = list(dict.fromkeys([required, *secret_env_names(profile.to_dict())]))
    env = [
        {
            "name": n,
            "valueFrom": {"secretKeyRef": {"name": s.secret, "key": n, "optional": n != required}},
        }
        for n in names
    ]

    def probe(**more: int) -> dict[str, Any]:  # fresh each: YAML writes a shared dict as an alias
        return {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, **more}

    container = {
        "name": "serve",
        "image": image or s.image or DEFAULT_IMAGE,
        "command": [
            "irlib",
            "serve",
            "--profile",
            f"{PROFILE_DIR}/profile.yaml",
            "--outputs",
            EVIDENCE_DIR,
            "--host",
            "0.0.0.0",
            "--port",
            str(SERVE_PORT),
        ],
        "ports": [{"name": "http", "containerPort": SERVE_PORT}],
        "env": env,  # never args: a secret in argv shows in `ps` and in the pod's spec
        "readinessProbe": probe(),
        "livenessProbe": probe(failureThreshold=6),
        "volumeMounts": [dict(m) for m in schedule.MOUNTS],
        # runs at once (serve.workers), each a kernel of about 250 MB
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "securityContext": schedule.container_security(),
    }
    return {
        "serviceAccountName": SERVE,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "profile", "configMap": {"name": s.profile_configmap}},
            {"name": "evidence", "persistentVolumeClaim": {"claimName": evidence}},
            {"name": "scratch", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }


def in_cluster_profile(profile_text: str) -> str:
    """The profile as the pod reads it: a kubeconfig path (and its context) from a laptop
    means nothing there, so they are dropped and the pod uses its own service account."""
    data = yaml.safe_load(profile_text)
    kube = data.get("kubernetes") or {}
    for key in ("kubeconfig", "context"):
        kube.pop(key, None)
    return yaml.safe_dump(data, sort_keys=False)


def manifests_yaml(profile: Profile, **kw: Any) -> str:
    objects = manifests(profile, **kw)
    secrets = list(dict.fromkeys(secret_env_names(profile.to_dict())))
    ns, s = profile.kubernetes.namespace, profile.drills
    literal = " ".join(f"--from-literal={n}=..." for n in secrets) or "--from-literal=NAME=..."
    head = [
        "# irlib's scheduled health drill, least privilege: its Role grants exactly what the",
        "# read-only checks declare (irlib/k8s/permissions.py). Not included: the Secret, create",
        f"#   kubectl create secret generic {s.secret} -n {ns} {literal}",
        "# then: irlib deploy manifests ... | kubectl apply -f -",
    ]
    if kw.get("with_serve"):
        head.append(
            f"# irlib serve: Alertmanager's webhook receiver is http://{SERVE}.{ns}.svc:"
            f"{SERVE_PORT}/v1/alertmanager with the bearer token of ${profile.serve.token_env}"
        )
    docs = [yaml.safe_dump(o, sort_keys=False) for o in objects]
    return "\n".join(head) + "\n---\n" + "---\n".join(docs)


def _meta(
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None,
    labels: dict[str, str] = LABELS,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(labels)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def _binding(
    kind: str, name: str, role_kind: str, role: str, account: str, namespace: str
) -> dict[str, Any]:
    return {
        **_meta(RBAC, kind, name, namespace if kind == "RoleBinding" else None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
