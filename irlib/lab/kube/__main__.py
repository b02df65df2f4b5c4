"""`python -m irlib.lab.kube STATE_DIR`: serve the lab's Kubernetes API until SIGTERM.

Reads `lab.json` in STATE_DIR for the host and port; plain HTTP, uvicorn at log level warning.
"""

from __future__ import annotations

import sys

import uvicorn

from irlib.lab.config import LabConfig
from irlib.lab.kube.server import create_app


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m irlib.lab.kube STATE_DIR", file=sys.stderr)
        return 2
    config = LabConfig.load(argv[0])
    config.pods_dir.mkdir(parents=True, exist_ok=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.ports["kubernetes"],
            log_level="warning",
            # open watches and log streams must not hold up a SIGTERM
            timeout_graceful_shutdown=1,
            lifespan="on",
        )
    )
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
