"""Child processes of the lab: free ports, spawning detached servers, stopping them by pid.

A lab outlives the `irlib lab up` that started it, so every server runs in its own session
and is remembered by pid *and* start time in `run/<part>.pid`: a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from irlib.errors import LabError


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """A loopback port nobody listens on, `preferred` when it is still free."""
    if preferred and port_is_free(host, preferred):
        return preferred
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name may hold spaces and parentheses: fields start after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    # Our own children become zombies until waited for; reap them so they read as gone.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int, started: int | None = None) -> bool:
    _reap(pid)
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
) -> int:
    """Start argv detached (own session), output appended to `log`, pid recorded in `pid_file`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            user=user,
        )
    record_pid(pid_file, proc.pid)
    return proc.pid


def record_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid} {start_time(pid) or 0}\n")


def read_pid(pid_file: Path) -> tuple[int, int | None] | None:
    """(pid, start time) from a pid file, None when there is none."""
    try:
        parts = pid_file.read_text().split()
    except FileNotFoundError:
        return None
    if not parts:
        return None
    started = int(parts[1]) if len(parts) > 1 and parts[1] != "0" else None
    return int(parts[0]), started


def running_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that very process still runs."""
    rec = read_pid(pid_file)
    if rec and is_alive(*rec):
        return rec[0]
    return None


def stop_pid(pid_file: Path, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> bool:
    """Stop the process of `pid_file` (signal, wait, then SIGKILL); True if one was running."""
    rec = read_pid(pid_file)
    if rec is None:
        return False
    pid, started = rec
    was_running = is_alive(pid, started)
    if was_running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while is_alive(pid, started) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_alive(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while is_alive(pid, started):
                time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return was_running


def wait_for(what: str, ready: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    """Poll `ready` until it is true; on timeout raise LabError with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    tail = ""
    if log is not None and log.exists():
        tail = "\n  " + "\n  ".join(log.read_text(errors="replace").splitlines()[-10:])
    raise LabError(f"{what} was not ready after {timeout:.0f} s{tail}")
