"""The HTTP face of `irlib serve`, on the standard library's threading HTTP server: the work
happens in child processes (triage.py), so requests only decide, record and read files.

`/healthz` is open; every other endpoint (`/metrics` too: it names runbooks and alerts)
wants `Authorization: Bearer <token>` (401 without or with a wrong one, compared in constant
time). `POST /v1/alertmanager` answers 400 on a
malformed payload and 503 when every run slot is taken. GET serves the runs, the incidents,
the alert journal and the evidence files, never a path outside the outputs folder.
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from irlib import incident as inc
from irlib import io
from irlib.errors import UsageError
from irlib.serve import metrics
from irlib.serve.payload import MalformedPayload, parse
from irlib.serve.triage import Triage

MAX_BODY = 1 << 20  # an Alertmanager group of a few hundred alerts fits well within
EVIDENCE_TYPES = {".html": "text/html; charset=utf-8", ".jsonl": "text/plain; charset=utf-8"}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's backlog is 5: a burst of Alertmanager groups (one connection each)
    # overflowed it and the kernel reset the rest. The pool bounds runs, not connections.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, address: tuple[str, int], triage: Triage, token: str) -> None:
        super().__init__(address, Handler)
        self.triage = triage
        self.token = token


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the journal and the runs are the record; no access log full of paths

    # -- answers --------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, **headers: str) -> None:
        body = json.dumps(data, indent=1, default=str).encode()
        self._send(status, body, "application/json", **headers)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def _authorized(self) -> bool:
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.server.token.encode()
        )
        if not ok:
            self._json(401, {"error": "unauthorized"}, WWW_Authenticate="Bearer")
        return ok

    # -- routes ---------------------------------------------------------------------------

    def do_POST(self) -> None:
        arrived = time.monotonic()  # before the body is read: what Alertmanager waits from
        path = urlsplit(self.path).path
        length = self.headers.get("Content-Length")
        body = b""
        if length and length.isdigit() and int(length) <= MAX_BODY:
            body = self.rfile.read(int(length))
        elif length:  # too big or nonsense: read nothing, answer, and close
            self.close_connection = True
        if not self._authorized():
            return
        if path != "/v1/alertmanager":
            return self._error(HTTPStatus.NOT_FOUND, "no such endpoint")
        if not length or not length.isdigit() or int(length) > MAX_BODY:
            return self._error(HTTPStatus.BAD_REQUEST, f"a JSON body of at most {MAX_BODY} bytes")
        try:
            group = parse(json.loads(body))
        except (ValueError, MalformedPayload) as e:
            msg = str(e) if isinstance(e, MalformedPayload) else "the body is not JSON"
            return self._error(HTTPStatus.BAD_REQUEST, msg)
        try:
            answer = self.server.triage.receive(group, arrived)
        except Exception as e:  # answered 500: Alertmanager retries; the reason is logged
            self.server.triage.log(f"webhook failed: {type(e).__name__}: {e}")
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "triage failed; see its log")
        self._json(answer.status, answer.body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path == "/healthz":
            return self._json(200, {"status": "ok"})
        if not self._authorized():
            return
        triage = self.server.triage
        parts = path.strip("/").split("/")
        if path == "/v1/status":
            return self._json(200, triage.status())
        if path == "/metrics":
            text = triage.metrics.exposition(triage.gauges())
            return self._send(200, text.encode(), metrics.CONTENT_TYPE)
        if path == "/v1/runs":
            return self._json(200, {"runs": triage.run_list()})
        if path == "/v1/alerts":
            return self._json(200, {"alerts": list(reversed(triage.journal()))})
        if path == "/v1/incidents":
            return self._json(200, {"incidents": self._incidents()})
        if parts[:2] == ["v1", "incidents"] and len(parts) == 3:
            return self._incident(parts[2])
        if parts[:2] == ["v1", "evidence"] and len(parts) == 5:
            return self._evidence(*parts[2:])
        return self._error(HTTPStatus.NOT_FOUND, "no such endpoint")

    do_HEAD = do_GET

    def _incidents(self) -> list[dict[str, Any]]:
        out = []
        outputs = self.server.triage.outputs
        for incident_id in reversed(inc.list_ids(outputs)):
            found = inc.load(outputs, incident_id)
            out.append(
                {
                    **found.record.to_dict(),
                    "status": found.status,
                    "stage": found.stage,
                    "runs": [p.name for p in found.runs],
                }
            )
        return out

    def _incident(self, incident_id: str) -> None:
        try:
            found = inc.load(self.server.triage.outputs, incident_id)
        except UsageError:
            return self._error(HTTPStatus.NOT_FOUND, "no such incident")
        self._json(
            200,
            {
                "record": found.record.to_dict(),
                "status": found.status,
                "timeline": [e.to_dict() for e in found.entries],
            },
        )

    def _evidence(self, incident_id: str, run: str, name: str) -> None:
        """A file of a run folder: three safe names, each checked, so never `..` or `/`."""
        if not all(io.SAFE_NAME.match(p) for p in (incident_id, run, name)):
            return self._error(HTTPStatus.NOT_FOUND, "no such evidence")
        root = self.server.triage.outputs
        path = root / incident_id / run / name
        if not path.is_file() or path.resolve().parent.parent.parent != root:
            return self._error(HTTPStatus.NOT_FOUND, "no such evidence")
        kind = EVIDENCE_TYPES.get(path.suffix) or (
            "application/json" if path.suffix in (".json", ".ipynb") else None
        )
        kind = kind or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(200, path.read_bytes(), kind)


def serve_forever(
    triage: Triage, token: str, host: str, port: int, ready: threading.Event | None = None
) -> None:
    server = Server((host, port), triage, token)
    triage.start()
    if ready is not None:
        ready.set()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def listen_address(base: str | None, host: str, port: int) -> str:
    return base or f"http://{host}:{port}"


__all__ = ["Server", "listen_address", "serve_forever"]
