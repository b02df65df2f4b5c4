"""A kernel inside this process, for papermill/nbclient: what a replay (irlib.replay) runs its
notebook in. A replay reaches no live system and runs only our own notebook, so the separate
kernel process (its start, its own imports of irlib and pandas) is pure cost there.

ipykernel ships the in-process kernel; these subclasses only fill in the calls nbclient makes
that it lacks (`wait_for_ready(timeout=)`, `shutdown_kernel(now=)`, `cleanup_resources`), and
give every kernel a fresh IPython shell: IPython keeps one shell per process, so without that
a second replay in the same process would see the first one's variables and execution counts.
Not for live runs: a cell cannot be interrupted, so `--timeout` cannot stop it; and not
inside an IPython shell (a notebook's kernel), which the new shell would replace.
"""

from __future__ import annotations

import sys
from typing import Any

# ipykernel offers a debugger when debugpy imports; nobody attaches one to a replay, and its
# import costs a tenth of a second and prints a warning about frozen modules on stderr.
sys.modules.setdefault("debugpy", None)  # type: ignore[arg-type]

from ipykernel.inprocess.blocking import BlockingInProcessKernelClient  # noqa: E402
from ipykernel.inprocess.ipkernel import InProcessInteractiveShell, InProcessKernel  # noqa: E402
from ipykernel.inprocess.manager import InProcessKernelManager  # noqa: E402


class KernelClient(BlockingInProcessKernelClient):  # type: ignore[misc]
    def wait_for_ready(self, timeout: float | None = None) -> None:
        """Ready once it exists: it is an object of this process (nbclient then asks for its
        kernel_info itself)."""


class KernelManager(InProcessKernelManager):  # type: ignore[misc]
    """One fresh in-process kernel per notebook (nbclient's `km`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # no IPython history database: a thread and a sqlite file per kernel, read by nobody
        self.config.HistoryManager.enabled = False

    def start_kernel(self, **kwargs: Any) -> None:
        InProcessInteractiveShell.clear_instance()  # a new shell: no earlier run's names
        self.kernel = InProcessKernel(parent=self, session=self.session)

    def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        if self.kernel is not None:
            thread = self.kernel.iopub_thread
            thread.stop()
            # ipykernel cancels its IOPub thread's timer task after that thread's loop has
            # stopped, so asyncio would report it "destroyed but pending" on stderr
            task = getattr(thread, "_event_pipe_gc_task", None)
            if task is not None:
                task._log_destroy_pending = False
        self.kernel = None
        InProcessInteractiveShell.clear_instance()

    def cleanup_resources(self, restart: bool = False) -> None:
        """Nothing to clean: no connection file, no ports, no process."""

    def client(self, **kwargs: Any) -> KernelClient:  # type: ignore[override]
        return KernelClient(parent=self, session=self.session, kernel=self.kernel, **kwargs)
