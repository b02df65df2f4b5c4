"""What the serve unit tests share: a real `irlib serve` HTTP server on a loopback port around
a Triage of the test's, and the webhook body of one firing alert group."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from irlib.serve.server import Server
from irlib.serve.triage import Triage

TOKEN = "test-token-not-a-secret"


@contextlib.contextmanager
def serving(triage: Triage, release: threading.Event) -> Iterator[str]:
    """The server's URL while it serves; after, the held runs are released and it stops."""
    srv = Server(("127.0.0.1", 0), triage, TOKEN)
    triage.start()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()


def firing_group(key: str) -> dict[str, Any]:
    """Alertmanager's version-4 body for one firing group `key` routed to the P2 runbook."""
    now = datetime.now(UTC).isoformat()
    alert = {"status": "firing", "labels": {"alertname": "ApiLatencyHigh",
             "runbook": "p2_high_latency", "severity": "P2", "key": key},
             "annotations": {"summary": "slow"}, "startsAt": now, "fingerprint": key}  # fmt: skip
    return {"version": "4", "groupKey": key, "status": "firing", "alerts": [alert]}
