"""Warm kernels: a few IPython kernels started ahead, with the runbooks' imports done, so that a
run costs its checks' time rather than a kernel's start (irlib serve; later irlib replay).

Each kernel serves exactly one run and is then shut down; a replacement starts in the
background as soon as one is taken. A kernel is started with the environment it is given (the
caller leaves out what its runs must not see), in the notebooks' folder, and warmed by
expressions run `silent` (no execution count, no history, no names bound), so the notebook it
then runs starts from In[1] with an empty namespace, as a fresh kernel's. A kernel that died
is discarded, never handed out. Talks to jupyter_client only.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SIZE = 2
START_TIMEOUT_S = 60.0
# The runbooks' modules and the drivers behind them: what a run's import cell would load.
WARM_MODULES = (
    "irlib.runbooks.p1_system_unavailable",
    "irlib.runbooks.p1_execution_failures",
    "irlib.runbooks.p2_high_latency",
    "irlib.runbooks.p2_calibration_failures",
    "irlib.k8s._client",
    "irlib.postgres._client",
    "irlib.redis._client",
    "pandas",
    # what those import only when first used: a run would import them in its own time
    "redis",  # by irlib.redis._client, at the first command (a replay sends none)
    "httpcore",  # by httpx, at the first client
    "pandas.io.formats.style",  # jinja2, by the first table (irlib.tables' Styler)
)
# The kernel's own log (a plain-TCP warning, socket errors while it is shut down after a
# timeout) is noise on the operator's terminal, not evidence.
KERNEL_ARGS = ("--IPKernelApp.log_level=CRITICAL",)


class KernelError(RuntimeError):
    """A kernel could not be started or warmed."""


@dataclass(eq=False)  # each kernel is itself: hashable by identity, kept in sets
class WarmKernel:
    """A started, warmed kernel: `km` is what papermill's execute_notebook(km=...) takes.

    An AsyncKernelManager, as nbclient makes for itself: with a blocking one, nbclient's
    wait for output blocked its event loop, and a kernel that died hung the run forever
    instead of raising DeadKernelError. Each call here runs on this thread's own loop."""

    km: Any  # irlib.kernel_ready.ReadyKernelManager, a jupyter_client.AsyncKernelManager
    started_at: float = field(default_factory=time.monotonic)
    warm_s: float = 0.0  # how long its start and warm-up took

    def alive(self) -> bool:
        try:
            return bool(run_sync(self.km.is_alive)())
        except Exception:
            return False

    def run_silent(self, code: str, timeout: float = START_TIMEOUT_S) -> None:
        """Run `code` without a trace in the notebook's history; KernelError if it fails."""
        run_sync(self._run_silent)(code, timeout)

    async def _run_silent(self, code: str, timeout: float) -> None:
        kc = self.km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=timeout)
            reply = await kc.execute_interactive(
                code, silent=True, store_history=False, timeout=timeout, output_hook=_ignore
            )
            if reply["content"].get("status") != "ok":
                content = reply["content"]
                raise KernelError(f"{content.get('ename')}: {content.get('evalue')}")
        except TimeoutError as e:
            raise KernelError(f"the kernel did not answer within {timeout:g} s") from e
        finally:
            kc.stop_channels()

    def set_environment(self, values: Mapping[str, str]) -> None:
        """Give the kernel the run's settings (run folder, redaction, capture), which a cold
        kernel would inherit: as an expression, binding no name in its namespace."""
        self.run_silent(f"__import__('os').environ.update({json.dumps(dict(values))})")

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):  # already gone: nothing to stop
            run_sync(self.km.shutdown_kernel)(now=True)
        with contextlib.suppress(Exception):
            run_sync(self.km.cleanup_resources)()
        self.km.stop_clients()  # the run's client too, which nbclient leaves running


def run_sync(coro: Callable[..., Any]) -> Callable[..., Any]:
    from jupyter_core.utils import run_sync as run

    return run(coro)  # type: ignore[no-any-return]


def _ignore(msg: Any) -> None:
    pass


# Finding the python3 kernel's spec imports ipykernel and IPython (jupyter_client checks whether
# it is the native kernel). Two threads importing IPython at once can fail on a partially
# initialised module, so the first kernel's spec is resolved with this lock held, and before any
# thread of this module starts one (start_in_background, KernelPool.start).
_SPEC_LOCK = threading.Lock()


def _manager(kernel_name: str) -> Any:
    """A kernel manager whose kernel spec is resolved (and its imports done) under the lock;
    KernelError when there is none to resolve (no such kernel, an unreadable kernel.json)."""
    from irlib.kernel_ready import ReadyKernelManager

    km = ReadyKernelManager(kernel_name=kernel_name)
    with _SPEC_LOCK:
        try:
            km.kernel_spec  # noqa: B018  a property: resolves and keeps the spec
        except Exception as e:
            raise KernelError(f"kernel spec {kernel_name!r}: {type(e).__name__}: {e}") from e
    return km


def start_kernel(
    cwd: Path,
    env: Mapping[str, str],
    modules: Sequence[str] = WARM_MODULES,
    kernel_name: str = "python3",
) -> WarmKernel:
    """One kernel, started in `cwd` with exactly `env`, its `modules` imported."""
    return _launch(_manager(kernel_name), cwd, env, modules)


def _launch(km: Any, cwd: Path, env: Mapping[str, str], modules: Sequence[str]) -> WarmKernel:
    """The kernel of `km` started and warmed; KernelError, with nothing left running, if not."""
    t0 = time.monotonic()
    kernel = WarmKernel(km)
    try:
        run_sync(km.start_kernel)(extra_arguments=list(KERNEL_ARGS), cwd=str(cwd), env=dict(env))
        imports = ", ".join(f"__import__('importlib').import_module({m!r})" for m in modules)
        kernel.run_silent(f"({imports},) and None" if modules else "None")
    except Exception as e:  # no kernelspec, a kernel that exits at once, a failed import
        kernel.shutdown()
        if isinstance(e, KernelError):
            raise
        raise KernelError(f"{type(e).__name__}: {e}") from e
    kernel.warm_s = time.monotonic() - t0
    return kernel


def start_in_background(
    cwd: Path, env: Mapping[str, str], modules: Sequence[str] = ()
) -> Future[WarmKernel]:
    """start_kernel(cwd, env, modules) in a thread of its own, from now: a cold run's kernel
    starts while its process goes on with its own work. Its result is the kernel, or what
    stopped it starting; stop_when_started() shuts it down either way."""
    started: Future[WarmKernel] = Future()
    try:
        km = _manager("python3")  # in this thread: what the thread would import is imported
    except KernelError as e:  # the caller hears it where it waits for the kernel
        started.set_exception(e)
        return started

    def start() -> None:
        try:
            started.set_result(_launch(km, cwd, env, modules))
        except BaseException as e:  # the waiting caller raises it
            started.set_exception(e)

    threading.Thread(target=start, name="kernel-start", daemon=True).start()
    return started


def stop_when_started(started: Future[WarmKernel]) -> None:
    """Shut down the kernel of start_in_background(), now if it has started, else as soon as
    it has (a run interrupted while its kernel starts leaves none behind). Not a daemon
    thread: the process exits once the kernel is down, and does its own work meanwhile."""

    def stop(done: Future[WarmKernel]) -> None:
        if done.exception() is None:
            threading.Thread(target=done.result().shutdown, name="kernel-shutdown").start()

    started.add_done_callback(stop)


class KernelPool:
    """Up to `size` warm kernels kept ready; `take()` hands one out (or starts one when none is
    ready), `done()` shuts a used one down; both in the background of the caller's run."""

    def __init__(
        self,
        cwd: Path,
        env: Mapping[str, str],
        size: int = DEFAULT_SIZE,
        modules: Sequence[str] = WARM_MODULES,
        log: Callable[[str], None] = lambda msg: None,
        starter: Callable[[Path, Mapping[str, str], Sequence[str]], WarmKernel] = start_kernel,
    ) -> None:
        if size < 0:
            raise ValueError("a pool of at least 0 kernels")
        self.cwd, self.env, self.size, self.modules = Path(cwd), dict(env), size, modules
        self.log = log
        self._start = starter
        self._ready: list[WarmKernel] = []
        self._starting = 0
        self._closed = False
        self._cond = threading.Condition()
        self.started = 0  # kernels started, for a test and /metrics
        self.discarded = 0  # found dead before use

    def start(self) -> None:
        _manager("python3")  # its imports done in this thread, before the starting threads'
        self._refill()

    def ready(self) -> int:
        with self._cond:
            return len(self._ready)

    def take(self, timeout: float = START_TIMEOUT_S) -> WarmKernel:
        """A live warm kernel for one run: a ready one, else the next one to be ready (one is
        starting), else one started now, in the caller's time."""
        deadline = time.monotonic() + timeout
        kernel = None
        with self._cond:
            while kernel is None:
                if self._closed:
                    raise KernelError("the kernel pool is closed")
                if self._ready:
                    kernel = self._ready.pop(0)
                    if not kernel.alive():
                        self.discarded += 1
                        self.log("warm kernel found dead: discarded, replaced")
                        threading.Thread(target=kernel.shutdown, daemon=True).start()
                        kernel = None
                    continue
                left = deadline - time.monotonic()
                if self._starting == 0 or left <= 0:
                    break
                self._cond.wait(left)
            if kernel is None:
                self.started += 1
        self._refill()  # the replacement starts now, while this kernel runs
        if kernel is not None:
            return kernel
        return self._start(self.cwd, self.env, self.modules)

    def done(self, kernel: WarmKernel) -> None:
        """A used kernel: shut down (never reused), in the background."""
        threading.Thread(target=kernel.shutdown, name="kernel-shutdown", daemon=True).start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            kernels, self._ready = self._ready, []
            self._cond.notify_all()
        for kernel in kernels:
            kernel.shutdown()

    def _refill(self) -> None:
        with self._cond:
            wanted = self.size - len(self._ready) - self._starting
            if self._closed or wanted <= 0:
                return
            self._starting += wanted
        for _ in range(wanted):
            threading.Thread(target=self._start_one, name="kernel-start", daemon=True).start()

    def _start_one(self) -> None:
        try:
            kernel = self._start(self.cwd, self.env, self.modules)
        except Exception as e:  # logged; the next take() starts one itself
            self.log(f"warm kernel failed to start: {type(e).__name__}: {e}")
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()
            return
        with self._cond:
            self._starting -= 1
            self.started += 1
            closed = self._closed
            if not closed:
                self._ready.append(kernel)
            self._cond.notify_all()
        if closed:
            kernel.shutdown()


__all__ = [
    "KernelError",
    "KernelPool",
    "WarmKernel",
    "start_in_background",
    "start_kernel",
    "stop_when_started",
]
