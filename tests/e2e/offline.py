"""Replays with no network: run inside a new network namespace (`unshare --net`), where only a
fresh loopback exists. Every port the kept runs' profiles name is held by a listener of ours
that counts what connects to it; each folder is replayed in turn (irlib.replay, as
`irlib replay` calls it). Prints one JSON object: per folder, the exit code, the new run
folder, the comparison, and how many connections reached the listeners (any at all: the
replay tried to connect).

    unshare --net python -m tests.e2e.offline OUTPUTS FOLDER...
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

from irlib.notebooks_dir import notebooks_dir
from irlib.replay import replay

PORT = re.compile(r"(?:127\.0\.0\.1|localhost):(\d+)")


def listen(ports: set[int]) -> list[int]:
    """One listener per port, counting connections into the returned list's one cell."""
    count = [0]
    for port in sorted(ports):
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(64)

        def accept(s: socket.socket = server) -> None:
            while True:
                conn, _ = s.accept()
                count[0] += 1
                conn.close()

        threading.Thread(target=accept, daemon=True).start()
    return count


def main() -> None:
    outputs, folders = Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    ports = {int(p) for f in folders for p in PORT.findall((f / "profile.yaml").read_text())}
    counted = listen(ports)
    report = {}
    for folder in folders:  # in this process, one after another: a runner runs one at a time
        before, said = counted[0], []
        done = replay(folder, notebooks_dir=notebooks_dir(), outputs=outputs, log=said.append)
        report[folder.name] = {
            "exit": done.exit_code,
            "run_dir": str(done.result.run_dir),
            "text": done.text(),
            "log": "\n".join(said),
            "connections": counted[0] - before,
        }
    print(json.dumps({"ports": sorted(ports), "runs": report}))


if __name__ == "__main__":
    main()
