"""Fixtures shared by the suite: one drill lab per test session, started through the CLI.

The lab's servers are real processes on loopback ports; the session's lab is stopped by pid
and its files deleted when the session ends. Tests that break it clear what they broke.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ROOT, LabHandle, outside, running_lab, sh

# `make test` runs the suite in two processes (pytest-xdist, `-n 2 --dist loadgroup`), each
# with its own lab: every test that needs a lab is in one of these two groups, balanced by
# their measured times, and runs in collection order within it. The one test that needs the
# P2 runbook's 5-minute window calm, the healthy-lab health drill, runs in "drills" before any
# fault of its lab (test_could_not_look, before it, injects none: it only gives the runbooks
# too little time or a silent port); "faults" holds most of the others (its P2 runs read a
# 10 s window, or must not be healthy anyway). The tests that need no lab (tests/unit) go to
# whichever process is free.
LAB_GROUPS = {
    "drills": (
        "tests/e2e/test_cluster.py",  # first: its health drills need the 5-minute window calm
        "tests/e2e/test_could_not_look.py", "tests/e2e/test_drill.py",
        "tests/e2e/test_under_load.py", "tests/e2e/test_golden.py",
        "tests/e2e/test_jupyterlab.py", "tests/e2e/test_runner.py",
        "tests/e2e/test_incident_in_the_lab.py", "tests/e2e/test_interactive.py",
        "tests/e2e/test_evidence_html.py", "tests/e2e/test_install.py",
        "tests/e2e/test_replay.py",  # no lab: the kept runs, replayed offline
        "tests/e2e/test_warm_kernels.py",  # no lab: the toy notebooks
        # last (tests/lab/ is collected after tests/e2e/): they inject no runbook fault
        "tests/lab/test_lab_scale.py", "tests/lab/test_kube_auth.py",
        "tests/lab/test_kube_incluster.py",
    ),
    "faults": (
        "tests/e2e/test_fault_pairs.py", "tests/lab/",
        "tests/e2e/test_alerts.py", "tests/e2e/test_serve.py", "tests/e2e/test_serve_page.py",
    ),
}  # fmt: skip


# tryfirst: the marks must be on before xdist's worker reads them, in this same hook
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::")[0]
        group = next((g for g, paths in LAB_GROUPS.items() if path.startswith(paths)), None)
        # (a notebook nbval collects inside a test, tests/e2e/golden/, is not the suite's)
        if group is None and path.endswith(".py") and not path.startswith("tests/unit/"):
            raise pytest.UsageError(f"{path} is in no group of tests/conftest.py's LAB_GROUPS")
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """On an xdist worker with --dist loadgroup, a grouped test's id must end in its group:
    that suffix is all xdist schedules by. When pytest 9.2 stopped xdist 3.8 from setting it,
    each worker silently brought up its own lab for a mix of both groups."""
    grouped = getattr(item.config.option, "loadgroup", False) and item.get_closest_marker(
        "xdist_group"
    )
    if grouped and "@" not in item.nodeid.rsplit("::", 1)[-1]:
        pytest.fail(f"xdist did not group {item.nodeid}: see pyproject.toml's pytest pin")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir = tmp_path_factory.mktemp("lab")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("IRLIB_ADMIN_TOKEN", "IRLIB_BROKER_TOKEN", "IRLIB_SERVE_TOKEN")
    }
    with running_lab(state_dir, env=env, up_s=180, down_s=120) as handle:
        yield handle


# What a checkout holds beside its source: venvs, build leftovers, evidence, caches.
NOT_SOURCE = (".git", ".venv*", "build", "*.egg-info", "outputs", "__pycache__", ".*_cache")


@pytest.fixture(scope="session")  # not "module": xdist may tear a module's fixtures down early
def installed() -> Iterator[Path]:
    """A venv with only the wheel built from this checkout and its runtime dependencies: its
    bin/ folder. Installed without byte-compiling (a third of pip's time here). Outside the
    test's root-only temporary folders, readable by all: the image's non-root user runs it too
    (tests/e2e/test_cluster.py)."""
    where = Path(tempfile.mkdtemp(prefix="irlib-installed-"))
    where.chmod(0o755)
    try:
        # Built from a copy: setuptools builds in the source tree's build/, and one left there by
        # an interrupted build ("File exists: build/bdist.linux-x86_64/wheel/...") fails every
        # later one; the copy also keeps the build's egg-info out of the checkout.
        source = where / "source"
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
        dist = where / "dist"
        built = sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, source)
        assert built.returncode == 0, built.stderr
        (wheel,) = dist.glob("irlib-*.whl")
        made = sh(_base_python(), "-m", "venv", where / "venv")
        assert made.returncode == 0, made.stderr
        bin_dir = where / "venv" / "bin"
        done = sh(bin_dir / "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                  wheel, env=outside(bin_dir), timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield bin_dir
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _base_python() -> str:
    """Debian's python3 for the venv when there is one: the image's user must be able to run
    the venv's interpreter, and this one (pyenv's, under /root) it cannot reach."""
    system = Path("/usr/bin/python3")
    return str(system) if system.is_file() and os.access(system, os.X_OK) else sys.executable


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A real TCP server that accepts connections and never says a word: a hung dependency."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for s in held:
        s.close()
    server.close()


@pytest.fixture
def cpu_hog(lab: LabHandle) -> Iterator[list[int]]:
    """A busy machine for this test: its lab, its runbooks and a spinning process at the same
    priority share one core (one per core on a 1-core machine), started here and stopped by
    pid. A verdict that holds only on an idle machine fails under it.

    Pinned to one core, the hog costs the suite's other xdist process nothing: unpinned, one
    spinner per core took about a third of the whole machine for the 10 minutes of the fault
    drill and slowed that process 2-3x. The test's share of its core is what it was beside a
    spinner on every core and the other process's load (about half)."""
    cpus = sorted(os.sched_getaffinity(0))
    core = {cpus[0]}
    pinned = len(cpus) > 1
    if pinned:
        _set_affinity(_tree(lab), core)
    spin = "while True: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in (core if pinned else cpus)]
    try:
        for hog in hogs:
            os.sched_setaffinity(hog.pid, core if pinned else cpus)
        yield [p.pid for p in hogs]
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        if pinned:  # what the lab started meanwhile (a pod restarted, a server back) too
            _set_affinity(_tree(lab), set(cpus))


def _tree(lab: LabHandle) -> set[int]:
    """This process and the lab's servers (their pid files), with every descendant of each."""
    roots = {os.getpid()}
    for pid_file in (lab.lab.state_dir / "run").glob("*.pid"):
        with contextlib.suppress(ValueError, OSError, IndexError):
            roots.add(int(pid_file.read_text().split()[0]))
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def _set_affinity(pids: set[int], cpus: set[int]) -> None:
    """Every thread of each process (a thread's mask is its own; new ones inherit it)."""
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):  # gone meanwhile
                os.sched_setaffinity(int(task.name), cpus)
