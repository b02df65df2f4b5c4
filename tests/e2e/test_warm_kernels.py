"""Warm kernels (irlib.kernels) with real kernels and the runner's toy notebooks: a run in a
warm kernel leaves the evidence a cold `irlib run` leaves (files, cells and their counts,
outputs, results, manifest, redaction), from a clean namespace; each kernel serves one run
and is shut down; a dead one is never handed out; two runs go on at once in two threads. A
client is ready with IOPub connected; a cold run's own kernel is stopped whatever happens, and
one that cannot start is a crashed run that says so."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from jupyter_client.channels import HBChannel

from irlib.archive import RunResult
from irlib.kernel_ready import ReadyClient
from irlib.kernels import (
    WARM_MODULES,
    KernelPool,
    WarmKernel,
    start_in_background,
    start_kernel,
    stop_when_started,
)
from irlib.runner import run_runbook
from tests.e2e.test_runner import ARCHIVE, TOYS, _assert_manifest_verifies
from tests.helpers import wait_until
from tests.unit.test_profile import MINIMAL

SECRET = "warm-kernel-secret-0123456789"
PROBE = (
    'print("names:", sorted(n for n in globals() if not n[0] == "_" and n not in '
    '("In", "Out", "get_ipython", "exit", "quit", "open")))\n'
    'print("warm:", "irlib.runbooks.p1_system_unavailable" in __import__("sys").modules)'
)


@pytest.fixture
def toys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The toys, toy_check with a last cell that prints its namespace, and their profile."""
    monkeypatch.setenv("IRLIB_ADMIN_TOKEN", SECRET)
    folder = tmp_path / "notebooks"
    shutil.copytree(TOYS, folder)
    nb = nbformat.read(folder / "toy_check.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    nbformat.write(nb, folder / "toy_check.ipynb")
    data = {**MINIMAL, "name": "toy", "api": {**MINIMAL["api"], "token_env": "IRLIB_ADMIN_TOKEN"}}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(data))
    return folder


@pytest.fixture
def pool(toys: Path) -> Iterator[KernelPool]:
    kernels = KernelPool(toys, dict(os.environ), size=2)
    kernels.start()
    try:
        yield kernels
    finally:
        kernels.close()


def _run(toys: Path, label: str, kernel: WarmKernel | None = None) -> RunResult:
    seen: list[str] = []
    result = run_runbook(
        "toy_check",
        profile=str(toys.parent / "toy.yaml"),
        incident="INC-1",
        params={},
        confirm=[],
        operator="alice",
        outputs=toys.parent / label,
        notebooks_dir=toys,
        log=lambda message: None,
        kernel=kernel,
        on_results=lambda run_dir, results: seen.append(run_dir.name),
    )
    assert seen == [result.run_dir.name]  # the results came before the HTML and manifest
    return result


def _cells(result: RunResult) -> list[tuple[Any, str]]:
    nb = json.loads((result.run_dir / "notebook.ipynb").read_text())
    return [
        (c.get("execution_count"), "".join("".join(o.get("text", "")) for o in c["outputs"]))
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]


def _results(result: RunResult) -> dict[str, Any]:
    data = json.loads((result.run_dir / "results.json").read_text())
    for key in ("started_at", "finished_at", "duration_s"):
        data.pop(key)
    for check in data["checks"]:
        check.pop("duration_s", None)
        check.pop("started_at", None)
    return data  # type: ignore[no-any-return]


def test_a_warm_run_leaves_the_evidence_of_a_cold_one(toys: Path, pool: KernelPool) -> None:
    cold = _run(toys, "cold")
    kernel = pool.take()
    try:
        warm = _run(toys, "warm", kernel)
    finally:
        pool.done(kernel)
    for result in (cold, warm):
        assert (result.status, result.exit_code) == ("completed", 0)
        assert {p.name for p in result.run_dir.iterdir()} == ARCHIVE
        _assert_manifest_verifies(result.run_dir)
        for path in result.run_dir.iterdir():
            assert SECRET not in path.read_text(errors="replace"), path
    cold_cells, warm_cells = _cells(cold), _cells(warm)
    # the probe: the same names bound, from In[1] on; only the warm kernel had irlib loaded
    assert cold_cells[:-1] == warm_cells[:-1]
    assert [n for n, _ in warm_cells] == list(range(1, len(warm_cells) + 1))
    cold_names, warm_names = (c[-1][1].splitlines()[0] for c in (cold_cells, warm_cells))
    assert cold_names == warm_names
    assert cold_cells[-1][1].splitlines()[1] == "warm: False"
    assert warm_cells[-1][1].splitlines()[1] == "warm: True"
    assert _results(cold) == _results(warm)
    assert (warm.run_dir / "events.jsonl").read_text().count('"kind"') == (
        cold.run_dir / "events.jsonl"
    ).read_text().count('"kind"')


def test_a_kernel_serves_one_run_and_is_replaced(toys: Path, pool: KernelPool) -> None:
    wait_until("two warm kernels", lambda: pool.ready() == 2, 120)
    first = pool.take()
    assert first.alive()
    pool.done(first)
    wait_until("the used kernel shut down", lambda: not first.alive(), 60)
    wait_until("its replacement warm", lambda: pool.ready() == 2, 120)
    second = pool.take()
    try:
        assert second.km.kernel_id != first.km.kernel_id
        assert pool.started == 3
    finally:
        pool.done(second)


def test_a_dead_kernel_is_replaced_never_used(toys: Path) -> None:
    pool = KernelPool(toys, dict(os.environ), size=1, modules=())
    pool.start()
    try:
        wait_until("a warm kernel", lambda: pool.ready() == 1, 120)
        (dead,) = pool._ready
        os.kill(dead.km.provisioner.pid, signal.SIGKILL)
        wait_until("the kernel dead", lambda: not dead.alive(), 30)
        kernel = pool.take()
        try:
            assert kernel is not dead and kernel.alive()
            assert pool.discarded == 1
            assert _run(toys, "after", kernel).exit_code == 0
        finally:
            pool.done(kernel)
    finally:
        pool.close()


def test_two_warm_runs_at_once_keep_to_their_own_folders(toys: Path, pool: KernelPool) -> None:
    results: dict[str, RunResult] = {}
    cwd = os.getcwd()

    def one(label: str) -> None:
        kernel = pool.take()
        try:
            results[label] = _run(toys, label, kernel)
        finally:
            pool.done(kernel)

    threads = [threading.Thread(target=one, args=(label,)) for label in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert set(results) == {"a", "b"}
    for label, result in results.items():
        assert result.exit_code == 0
        assert result.run_dir.parent.parent.name == label
        events = (result.run_dir / "events.jsonl").read_text()
        assert "api_health" in events  # each kernel recorded into its own run's folder
    assert os.getcwd() == cwd  # nothing changed this process's directory


def test_warm_modules_import() -> None:
    import importlib

    for module in WARM_MODULES:
        importlib.import_module(module)


def test_a_kernel_that_dies_mid_run_is_a_crashed_run(toys: Path, pool: KernelPool) -> None:
    """The warm kernel is an AsyncKernelManager, as nbclient's own: with a blocking one, the
    wait for output blocked nbclient's loop and a dead kernel hung the run for ever."""
    kernel = pool.take()
    try:
        result = run_runbook(
            "toy_die",
            profile=str(toys.parent / "toy.yaml"),
            incident="INC-1",
            params={},
            confirm=[],
            operator="alice",
            outputs=toys.parent / "died",
            notebooks_dir=toys,
            log=lambda message: None,
            kernel=kernel,
        )
    finally:
        pool.done(kernel)
    assert (result.status, result.exit_code) == ("crashed", 3)
    assert "the kernel died" in str(result.reason)
    assert {p.name for p in result.run_dir.iterdir()} == ARCHIVE


# --- a kernel's readiness, and a cold run's own kernel -------------------------------------------


def test_a_ready_client_hears_the_output_of_its_first_request(toys: Path) -> None:
    """irlib.kernel_ready drops jupyter_client's 0.2 s drain of IOPub, not its proof that IOPub
    is connected: each new client's very first request has its output heard, none lost."""
    kernel = start_kernel(toys, dict(os.environ), modules=())
    try:
        for i in range(5):
            heard = asyncio.run(_first_output(kernel, f"print('ready {i}')"))
            assert heard == [f"ready {i}\n"]
    finally:
        kernel.shutdown()


async def _first_output(kernel: WarmKernel, code: str) -> list[str]:
    client = kernel.km.client()
    assert isinstance(client, ReadyClient)
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        heard: list[str] = []
        await client.execute_interactive(
            code,
            timeout=30,
            output_hook=lambda msg: (
                heard.append(msg["content"].get("text", ""))
                if msg["msg_type"] == "stream"
                else None
            ),
        )
        return heard
    finally:
        client.stop_channels()


def test_runs_leave_no_client_of_their_kernel_behind(toys: Path, pool: KernelPool) -> None:
    """Each run's kernel client (three sockets, a heartbeat thread, a ZeroMQ context) is
    stopped with its kernel: a process that runs many (`irlib serve`, the fault drill) does
    not run out of file descriptors."""

    def heartbeats() -> int:  # a client's channels running: its heartbeat thread alive
        return sum(1 for t in threading.enumerate() if isinstance(t, HBChannel))

    before = heartbeats()  # the pool's ready kernels have no client running
    for n in range(2):
        assert _run(toys, f"cold-{n}").status == "completed"
        kernel = pool.take()
        try:
            assert _run(toys, f"warm-{n}", kernel).status == "completed"
        finally:
            pool.done(kernel)
    # a kernel is shut down in the background, after its run
    wait_until("the runs' clients stopped", lambda: heartbeats() <= before, 60)


def test_a_kernel_started_in_the_background_is_stopped_even_if_never_used(toys: Path) -> None:
    """A cold run whose operator pressed Ctrl-C while its kernel started leaves no kernel."""
    starting = start_in_background(toys, dict(os.environ))
    pids: list[int] = []
    starting.add_done_callback(lambda done: pids.append(done.result().km.provisioner.pid))
    stop_when_started(starting)  # before it has started: the stop waits for the start
    starting.result(timeout=120)
    (pid,) = pids
    wait_until("the kernel stopped", lambda: not _exists(pid), 30)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    "kernel_json",
    [json.dumps({"argv": [sys.executable, "-c", "raise SystemExit(1)"], "language": "python"}),
     "{not json"],
    ids=["exits-at-once", "unreadable-spec"],
)  # fmt: skip
def test_a_kernel_that_cannot_start_is_a_crashed_run_with_its_reason(
    toys: Path, monkeypatch: pytest.MonkeyPatch, kernel_json: str
) -> None:
    """A python3 kernelspec first on JUPYTER_PATH whose kernel exits at once, or that cannot be
    read: the cold run says its kernel did not start, and keeps the notebook it could not
    run."""
    spec = toys.parent / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(kernel_json)
    monkeypatch.setenv("JUPYTER_PATH", str(spec.parent.parent))
    result = _run(toys, "no-kernel")
    assert (result.status, result.exit_code) == ("crashed", 3)
    assert str(result.reason).startswith("the kernel did not start: ")
    assert {p.name for p in result.run_dir.iterdir()} == ARCHIVE
    nb = json.loads((result.run_dir / "notebook.ipynb").read_text())
    assert nb["metadata"]["irlib"]["run"]["status"] == "crashed"
