"""A kernel client that is ready as soon as its kernel answers on both channels.

jupyter_client's `wait_for_ready` ends by draining IOPub until 0.2 s pass without a message: a
fixed 0.2 s of idle wait each time a client connects, paid once by every run (nbclient waits so
before the first cell) and once more by a warm kernel's run (its settings are sent first): 0.4 s
of a warm run's 1.1 s. Nothing here needs the drain: nbclient and `execute_interactive` read only
the IOPub messages whose parent is their own request. What the wait must prove is kept: the
kernel answered `kernel_info` on the shell channel and an IOPub message arrived after it, so the
IOPub subscription is connected (a ZeroMQ subscriber that is still connecting loses messages).

Used by irlib.kernels (warm kernels, and a cold run's kernel) through `ReadyKernelManager`,
whose clients are `ReadyClient`s, each stopped when the kernel is (`stop_clients`). Talks to
jupyter_client only.
"""

from __future__ import annotations

import contextlib
import time
from queue import Empty
from typing import Any

from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous import AsyncKernelClient
from traitlets import DottedObjectName, Type

IOPUB_PROOF_S = 0.2  # as jupyter_client's: how long an IOPub message may take to follow


class ReadyClient(AsyncKernelClient):
    async def wait_for_ready(self, timeout: float | None = None) -> None:  # type: ignore[override]
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply: dict[str, Any] = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                pass
            else:
                if reply["msg_type"] == "kernel_info_reply":
                    try:  # the kernel_info's own busy/idle status, or any message: connected
                        await self.iopub_channel.get_msg(timeout=IOPUB_PROOF_S)
                    except Empty:
                        pass  # not subscribed yet: ask again
                    else:
                        self._handle_kernel_info_reply(reply)
                        return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} s")


class ReadyKernelManager(AsyncKernelManager):
    # both, as AsyncKernelManager sets both: `client()` makes a `client_factory`
    client_class = DottedObjectName("irlib.kernel_ready.ReadyClient")
    client_factory = Type(klass=ReadyClient)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clients: list[ReadyClient] = []

    def client(self, **kwargs: Any) -> ReadyClient:  # type: ignore[override]
        """A client of this kernel, kept until stop_clients(). nbclient leaves running the
        channels of a client it made for a kernel it was given (as every run gives it one):
        three sockets, a heartbeat thread and a ZeroMQ context, 15 file descriptors, each
        run of a process that runs many (`irlib serve`, the fault drill) left behind."""
        kc: ReadyClient = super().client(**kwargs)  # type: ignore[assignment]
        self._clients.append(kc)
        return kc

    def stop_clients(self) -> None:
        """Stop the channels of every client made, as the kernel is shut down."""
        for kc in self._clients:
            with contextlib.suppress(Exception):  # stopped already, or half started
                kc.stop_channels()
        self._clients.clear()


__all__ = ["ReadyClient", "ReadyKernelManager"]
