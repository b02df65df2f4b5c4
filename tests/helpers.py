"""What the tests share that is not a fixture: the real `irlib` command line in a subprocess,
the session lab's handle, a runbook's run against it, waiting for a condition, a required
binary. Fixtures live in conftest.py; a test imports these from here, never from conftest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from irlib.lab.lab import Lab

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent  # the checkout


def wait_until(what: str, condition: Callable[[], T], timeout: float = 45.0) -> T:
    """Poll `condition` every 0.1 s until it is truthy and return it; fail naming `what` and
    the last answer after `timeout` s (a bound for a failure, never a speed a test asserts)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


IRLIB = [sys.executable, "-m", "irlib.cli"]


def irlib(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the real `irlib` command line in a subprocess."""
    result = subprocess.run(
        [*IRLIB, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"irlib {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def parse_exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            out[key] = shlex.split(value)[0]
    return out


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:  # CI installs it: a missing binary is a failure, not a skip
        pytest.fail(f"`{name}` not found: `make setup` installs it (package {package})")
    return path


@dataclass
class LabHandle:
    lab: Lab
    exports: dict[str, str]
    up_output: subprocess.CompletedProcess[str]

    @property
    def state_dir(self) -> str:
        return str(self.lab.state_dir)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.exports}

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            require_binary("kubectl", "kubectl"),
            "--kubeconfig",
            self.exports["KUBECONFIG"],
            *args,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr}")
        return result

    def irlib(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return irlib(*args, "--state-dir", self.state_dir, env=self.env, **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def running_lab(
    state_dir: Path, *size: str, env: dict[str, str], up_s: float, down_s: float
) -> Iterator[LabHandle]:
    """`irlib lab up` in `state_dir` (with `size`, e.g. `--nodes 40`), its handle, and
    `irlib lab down --purge` after, even when the tests failed or `up` did."""
    up = irlib("lab", "up", "--state-dir", str(state_dir), *size, env=env, timeout=up_s)
    handle = LabHandle(Lab(state_dir), parse_exports(up.stdout), up)
    try:
        if up.returncode != 0:
            pytest.fail(f"irlib lab up failed ({up.returncode}):\n{up.stderr}")
        yield handle
    finally:
        irlib("lab", "down", "--purge", "--state-dir", str(state_dir), timeout=down_s)


def run_runbook(
    lab: LabHandle,
    runbook: str,
    outputs: Path,
    *args: str,
    profile: str | None = None,
    timeout: float = 300,
) -> tuple[int, Path | None, dict[str, Any]]:
    """`irlib run RUNBOOK --outputs OUTPUTS [--profile P] ARGS...` in a real process with the
    lab's exports, as an operator runs it: its exit code, the run folder it printed last (None
    if it made none: then its output is printed, for the failure) and that folder's
    results.json ({} without one)."""
    profile_args = ["--profile", profile] if profile else []
    result = irlib(
        "run", runbook, "--outputs", str(outputs), *profile_args, *args,
        env=lab.env, timeout=timeout,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    run_dir = Path(lines[-1]) if lines and Path(lines[-1]).is_dir() else None
    if run_dir is None:
        print(result.stdout, result.stderr)
        return result.returncode, None, {}
    return result.returncode, run_dir, json.loads((run_dir / "results.json").read_text())


def sh(*cmd: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    """A command's result, its output as text."""
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def outside(bin_dir: Path, lab_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a user's shell: the venv first on PATH, nothing of the checkout."""
    env = {k: v for k, v in (lab_env or os.environ).items() if k != "PYTHONPATH"}
    return {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}",
        "VIRTUAL_ENV": str(bin_dir.parent),
    }


def mount_service_account(lab: LabHandle, where: Path, token: str, namespace: str) -> Path:
    """/var/run/secrets/kubernetes.io/serviceaccount as the kubelet lays it out in a pod: the
    account's token, the cluster's CA (the lab's) and the pod's namespace, under `where`."""
    from irlib.lab.kube import pki

    mount = where / "serviceaccount"
    mount.mkdir(parents=True)
    (mount / "token").write_text(token)
    shutil.copy(pki.path(lab.lab.config, pki.CA_CERT), mount / "ca.crt")
    (mount / "namespace").write_text(namespace)
    return mount
