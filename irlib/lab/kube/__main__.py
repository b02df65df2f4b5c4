"""`python -m irlib.lab.kube STATE_DIR`: serve the lab's Kubernetes API until SIGTERM.

Reads `lab.json` in STATE_DIR for the host and port; TLS with the server certificate the lab
made (pki.py), uvicorn at log level warning.
Exits 0 after a SIGTERM or SIGINT, open watches and log streams cut after one second.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn

from irlib.lab.config import LabConfig
from irlib.lab.kube import pki
from irlib.lab.kube.server import create_app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal once shut down (exit status -15); the lab stops its
        # parts with SIGTERM and a clean stop should exit 0.
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m irlib.lab.kube STATE_DIR", file=sys.stderr)
        return 2
    config = LabConfig.load(argv[0])
    # the controller's loop failures (loop_health) land in logs/kubernetes.log with a time
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    config.pods_dir.mkdir(parents=True, exist_ok=True)
    missing = [name for name in pki.FILES if not pki.path(config, name).exists()]
    if missing:  # the lab makes them (write_kubeconfig) before it starts this process
        print(f"missing in {config.pki_dir}: {', '.join(missing)}", file=sys.stderr)
        return 2
    server = _Server(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.ports["kubernetes"],
            log_level="warning",
            timeout_graceful_shutdown=1,  # open watches must not hold up a stop
            lifespan="on",
            ssl_certfile=str(pki.path(config, pki.SERVER_CERT)),
            ssl_keyfile=str(pki.path(config, pki.SERVER_KEY)),
        )
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
