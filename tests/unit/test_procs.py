"""Process bookkeeping of the lab: pid files that never kill a stranger."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from irlib.lab import procs


def test_spawn_then_stop_by_pid(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleep.pid"
    pid = procs.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        log=tmp_path / "sleep.log",
        pid_file=pid_file,
    )
    assert procs.running_pid(pid_file) == pid
    assert procs.stop_pid(pid_file, timeout=5)
    assert not procs.is_alive(pid)
    assert not pid_file.exists()
    assert not procs.stop_pid(pid_file)  # stopping twice is harmless


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    # our own pid, but recorded with another start time: a different process
    pid_file.write_text(f"{procs.os.getpid()} 1\n")
    assert procs.running_pid(pid_file) is None
    assert not procs.stop_pid(pid_file)


def test_free_port_keeps_a_preferred_port_only_while_it_is_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert procs.port_open("127.0.0.1", busy)
        assert procs.free_port(preferred=busy) != busy
    free = procs.free_port()
    assert procs.free_port(preferred=free) == free
    assert not procs.port_open("127.0.0.1", free)


def test_wait_for_reports_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("starting\nFATAL: port in use\n")
    try:
        procs.wait_for("server", lambda: False, timeout=0.2, log=log)
    except procs.LabError as e:
        assert "FATAL: port in use" in str(e)
    else:
        raise AssertionError("wait_for did not raise")
