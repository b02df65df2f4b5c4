"""What the tests share that is not a fixture: the real `irlib` command line in a subprocess,
the session lab's handle, waiting for a condition, a required binary. Fixtures live in
conftest.py; a test imports these from here, never from conftest.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

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
