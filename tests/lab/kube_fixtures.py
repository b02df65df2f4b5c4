"""Helpers for the Kubernetes API emulator's tests: start it as a real process on a free
loopback port with its own state dir, drive it with the real kubectl, fake the processes
its probes look at (the api's /livez, a listening PostgreSQL port), stop it by pid.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from irlib.lab.config import PARTS, LabConfig, read_control, write_control
from irlib.lab.kube import wait_ready, write_kubeconfig
from irlib.lab.procs import free_port


def kubectl_binary() -> str:
    path = shutil.which("kubectl")
    if path is None:  # CI installs it: a missing binary is a failure, not a skip
        pytest.fail("`kubectl` not found: install the kubectl package (Kubernetes CLI)")
    return path


@dataclass
class Livez:
    """The api process's /livez as the api-service readiness probe sees it."""

    port: int
    status: int = 200
    _server: http.server.ThreadingHTTPServer | None = field(default=None, repr=False)

    def start(self) -> Livez:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(owner.status if self.path == "/livez" else 404)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Emulator:
    """One running emulator and how to talk to it."""

    config: LabConfig
    proc: subprocess.Popen[bytes]
    cache_dir: Path
    log: Path
    livez: Livez | None = None

    @property
    def kubeconfig(self) -> str:
        return str(self.config.kubeconfig)

    def command(self, *args: str) -> list[str]:
        """The argv of a kubectl command against this emulator."""
        kubeconfig, cache = ["--kubeconfig", self.kubeconfig], ["--cache-dir", str(self.cache_dir)]
        return [kubectl_binary(), *kubeconfig, *cache, *args]

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.command(*args)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def control(self, **switches: Any) -> None:
        """Set (value) or remove (None) fault switches in the lab's control file."""
        control = read_control(self.config)
        for key, value in switches.items():
            if value is None:
                control.pop(key, None)
            else:
                control[key] = value
        write_control(self.config, control)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)


def start_emulator(state_dir: Path) -> Emulator:
    taken: set[int] = set()
    ports = {}
    for part in PARTS:
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        ports[part] = port
    config = LabConfig(state_dir=str(state_dir), ports=ports, pg_data_dir=str(state_dir / "pg"))
    config.save()
    write_control(config, {})
    write_kubeconfig(config)
    log = state_dir / "kubernetes.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "irlib.lab.kube", str(state_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    emulator = Emulator(config, proc, state_dir / "kubectl-cache", log)
    try:
        wait_ready(config, timeout=20)
    except Exception:
        emulator.stop()
        raise AssertionError(f"the emulator did not start:\n{log.read_text()}") from None
    return emulator


class Listener:
    """Something accepting TCP connections on a port, like a running PostgreSQL."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
