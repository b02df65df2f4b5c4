"""Scheduling the health drill: a crontab line, or a Kubernetes CronJob manifest.

Pure text: it reads the profile's `drills` settings and writes nothing; `kubectl apply -f -`
is the operator's step. The CronJob names its Secret, ConfigMap and volume, never a secret
value; the container exits 1 when the drill finds a problem, so the Job shows as failed.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from irlib import __version__
from irlib.archive import secret_env_names
from irlib.errors import UsageError
from irlib.profile import DrillSettings, Profile

DEFAULT_IMAGE = f"registry.example.com/trading/irlib:{__version__}"
PROFILE_DIR = "/etc/irlib"
EVIDENCE_DIR = "/evidence"
SCRATCH_DIR = "/tmp"
# What every irlib container mounts: the profile, the evidence, and a scratch folder for the
# kernel's connection files and IPython's folder (the image points HOME, JUPYTER_RUNTIME_DIR
# and IPYTHONDIR there), so that the root filesystem stays read-only
MOUNTS = (
    {"name": "profile", "mountPath": PROFILE_DIR, "readOnly": True},
    {"name": "evidence", "mountPath": EVIDENCE_DIR},
    {"name": "scratch", "mountPath": SCRATCH_DIR},
)


def container_security() -> dict[str, Any]:
    """Each its own copy: YAML would write a dict shared by two places as an anchor and alias."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


RUN_AS = 10001  # the image's irlib user (Dockerfile)
_EVERY = re.compile(r"^(\d+)([mhd])$")


def cron_expression(every: str) -> str:
    """`30m` -> `*/30 * * * *`; only periods that divide an hour or a day evenly, because a
    cron step restarts at every hour (or day) boundary."""
    match = _EVERY.match(every.strip())
    if not match:
        raise UsageError(f"--every {every!r}: expected minutes, hours or days, e.g. 30m, 2h, 1d")
    n, unit = int(match[1]), match[2]
    if unit == "m" and 0 < n < 60 and 60 % n == 0:
        return "* * * * *" if n == 1 else f"*/{n} * * * *"
    if unit == "m" and n % 60 == 0 and n > 0:
        return cron_expression(f"{n // 60}h")
    if unit == "h" and 0 < n < 24 and 24 % n == 0:
        return "0 * * * *" if n == 1 else f"0 */{n} * * *"
    if (unit == "h" and n == 24) or (unit == "d" and n == 1):
        return "0 0 * * *"
    raise UsageError(
        f"--every {every!r}: cron cannot repeat that evenly; use a divisor of 60 minutes "
        "(1m ... 30m) or of 24 hours (1h ... 12h), or 1d"
    )


def crontab_line(every: str, *, profile_path: str, outputs: Path, irlib: str | None = None) -> str:
    """A line for `crontab -e`: cron has no environment, so every path is absolute."""
    program = irlib or str(Path(sys.executable).with_name("irlib"))
    outputs = Path(outputs).resolve()
    command = " ".join(
        shlex.quote(a)
        for a in [
            program,
            "drill",
            "health",
            "--profile",
            str(Path(profile_path).resolve()),
            "--outputs",
            str(outputs),
        ]
    )
    log = shlex.quote(str(outputs / "drills" / "cron.log"))
    return f"{cron_expression(every)} {command} >> {log} 2>&1"


@dataclass(frozen=True)
class CronJobSpec:
    schedule: str
    namespace: str
    settings: DrillSettings
    image: str
    secret_envs: tuple[str, ...]  # env var names, each a key of the settings' Secret


def cronjob_spec(every: str, profile: Profile | None, image: str | None = None) -> CronJobSpec:
    settings = profile.drills if profile else DrillSettings()
    return CronJobSpec(
        schedule=cron_expression(every),
        namespace=profile.kubernetes.namespace if profile else "trading",
        settings=settings,
        image=image or settings.image or DEFAULT_IMAGE,
        secret_envs=tuple(dict.fromkeys(secret_env_names(profile.to_dict()))) if profile else (),
    )


def cronjob_manifest(spec: CronJobSpec) -> dict[str, Any]:
    s = spec.settings
    labels = {"app.kubernetes.io/name": "irlib", "app.kubernetes.io/component": "health-drill"}
    container: dict[str, Any] = {
        "name": "health-drill",
        "image": spec.image,
        "command": [
            "irlib",
            "drill",
            "health",
            "--profile",
            f"{PROFILE_DIR}/profile.yaml",
            "--outputs",
            EVIDENCE_DIR,
        ],
        "volumeMounts": [dict(m) for m in MOUNTS],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": container_security(),
    }
    if spec.secret_envs:
        # optional: a key the Secret lacks leaves its env var unset, which the checks report,
        # instead of keeping the pod from starting with no evidence at all
        container["env"] = [
            {
                "name": n,
                "valueFrom": {"secretKeyRef": {"name": s.secret, "key": n, "optional": True}},
            }
            for n in spec.secret_envs
        ]
    else:  # no profile to name them: every key of the Secret becomes an env var
        container["envFrom"] = [{"secretRef": {"name": s.secret}}]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": s.cronjob, "namespace": spec.namespace, "labels": dict(labels)},
        "spec": {
            "schedule": spec.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",  # a slow drill is never run twice at once
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,  # a failed drill is a finding, not a flake to retry
                    "activeDeadlineSeconds": 1800,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "restartPolicy": "Never",
                            # its read-only Role, from `irlib deploy manifests`
                            "serviceAccountName": s.service_account,
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": RUN_AS,
                                "runAsGroup": RUN_AS,
                                "fsGroup": RUN_AS,  # the evidence volume is writable by it
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [container],
                            "volumes": [
                                {"name": "profile", "configMap": {"name": s.profile_configmap}},
                                {
                                    "name": "evidence",
                                    "persistentVolumeClaim": {"claimName": s.evidence_pvc},
                                },
                                {"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}},
                            ],
                        },
                    },
                }
            },
        },
    }


def cronjob_yaml(spec: CronJobSpec) -> str:
    s = spec.settings
    keys = ", ".join(spec.secret_envs) or "the env vars the profile names"
    head = [
        f"# The irlib health drill every {spec.schedule!r} (UTC). It expects in namespace "
        f"{spec.namespace}:",
        f"#   ConfigMap {s.profile_configmap} with key profile.yaml (the target profile),",
        f"#   Secret {s.secret} with keys {keys},",
        f"#   PersistentVolumeClaim {s.evidence_pvc} for the evidence archive,",
        f"#   ServiceAccount {s.service_account} with its read-only Role "
        "(all of it: `irlib deploy manifests`).",
        f"# kubectl create configmap {s.profile_configmap} -n {spec.namespace} "
        "--from-file=profile.yaml=PROFILE",
    ]
    body = yaml.safe_dump(cronjob_manifest(spec), sort_keys=False)
    return "\n".join(head) + "\n" + body
