"""The HTTP face of `irlib serve`, on the standard library's threading HTTP server: the work
happens in child processes (triage.py), so requests only decide, record and read files.

`/healthz` is open; every other endpoint (`/metrics` too: it names runbooks and alerts)
wants `Authorization: Bearer <token>` (401 without or with a wrong one, compared in constant
time). A browser opens the page `/` once with `?token=`: that is exchanged for a random session
in an HttpOnly SameSite=Strict cookie and a redirect that drops it from the URL; the cookie
opens the GETs (page, evidence), never the webhook. `POST /v1/alertmanager` answers 400 on a
malformed payload and 503 when every run slot is taken. GET serves the runs, the incidents,
the alert journal and the evidence files, never a path outside the outputs folder.
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from irlib import incident as inc
from irlib import io, run_results
from irlib.errors import UsageError
from irlib.serve import metrics, page
from irlib.serve.payload import MalformedPayload, parse
from irlib.serve.triage import Triage, outcome

MAX_BODY = 1 << 20  # an Alertmanager group of a few hundred alerts fits well within
ARCHIVE_WAIT_S = 30.0  # rendering a run's HTML takes a second or two; under load, more
COOKIE = "irlib_serve_session"
SESSION_S = 12 * 3600  # an on-call shift; then the token again
MAX_SESSIONS = 1000  # the oldest go first: a loop of logins cannot grow the server
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
        self._sessions: dict[str, float] = {}  # session id -> when it expires (monotonic)
        self._sessions_lock = threading.Lock()

    def new_session(self) -> str:
        session = secrets.token_urlsafe(32)
        with self._sessions_lock:
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[session] = time.monotonic() + SESSION_S
        return session

    def valid_session(self, session: str) -> bool:
        with self._sessions_lock:
            expires = self._sessions.get(session)
            if expires is not None and expires < time.monotonic():
                del self._sessions[session]
                expires = None
        return expires is not None


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

    def _authorized(self, cookie: bool = False) -> bool:
        """The bearer token; with `cookie`, a session cookie made from it will do too."""
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and self._is_token(given.strip())
        if not ok and cookie:
            ok = self.server.valid_session(self._session())
        if not ok:
            self._json(401, {"error": "unauthorized"}, WWW_Authenticate="Bearer")
        return ok

    def _is_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def _session(self) -> str:
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return ""
        found = jar.get(COOKIE)
        return found.value if found is not None else ""

    def _login(self, given: str) -> None:
        """`?token=`: a session cookie for it, and the same page again without it in the URL."""
        if not self._is_token(given):
            return self._json(401, {"error": "unauthorized"}, WWW_Authenticate="Bearer")
        cookie = f"{COOKIE}={self.server.new_session()}; HttpOnly; SameSite=Strict; Path=/"
        cookie += f"; Max-Age={SESSION_S}"
        self._send(303, b"", "text/plain", Location=urlsplit(self.path).path, Set_Cookie=cookie)

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
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        if path == "/healthz":
            return self._json(200, {"status": "ok"})
        given = parse_qs(url.query).get("token")
        if given:
            return self._login(given[0])
        if not self._authorized(cookie=True):
            return
        triage = self.server.triage
        parts = path.strip("/").split("/")
        if path == "/":
            runs = self._page_runs()
            body = page.render(runs, self._page_incidents(runs))
            return self._send(200, body.encode(), "text/html; charset=utf-8")
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

    def _page_runs(self) -> list[dict[str, Any]]:
        """The runs with links relative to this server, wherever the browser reached it."""
        runs = self.server.triage.run_list()
        for r in runs:
            if r.get("run_dir"):
                r["evidence"] = _evidence_path(r["incident"], Path(r["run_dir"]).name)
        return runs

    def _page_incidents(self, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each incident in the state of its latest run, linking to that run's HTML: this
        server's run when it made one, else (made before a restart) its newest run folder."""
        latest: dict[str, dict[str, Any]] = {}
        for r in runs:  # recent first
            latest.setdefault(r["incident"], r)
        out = []
        outputs = self.server.triage.outputs
        for incident_id in reversed(inc.list_ids(outputs)):
            found = inc.load(outputs, incident_id)
            folders = found.runs
            run = latest.get(incident_id)
            if run is not None:
                state, evidence = run.get("outcome") or run["state"], run.get("evidence")
            elif folders:
                evidence = _evidence_path(incident_id, folders[-1].name)
                state = _state_of(folders[-1])
            else:
                state, evidence = "no-run", None
            out.append(
                {
                    **found.record.to_dict(),
                    "status": found.status,
                    "state": state,
                    "runs": len(folders),
                    "evidence": evidence,
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
        _await_archive(path)
        if not path.is_file() or path.resolve().parent.parent.parent != root:
            return self._error(HTTPStatus.NOT_FOUND, "no such evidence")
        kind = EVIDENCE_TYPES.get(path.suffix) or (
            "application/json" if path.suffix in (".json", ".ipynb") else None
        )
        kind = kind or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(200, path.read_bytes(), kind)


def _await_archive(path: Path) -> None:
    """The chat message goes out before the run's HTML is rendered: a link followed at once
    waits for it, while the folder is still being archived (no manifest.json yet)."""
    deadline = time.monotonic() + ARCHIVE_WAIT_S
    while (
        not path.is_file()
        and path.parent.is_dir()
        and not (path.parent / "manifest.json").is_file()
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)


def _evidence_path(incident: str, run_dir: str) -> str:
    return f"/v1/evidence/{incident}/{run_dir}/notebook.html"


def _state_of(run_dir: Path) -> str:
    try:
        results = run_results.read(run_dir)
    except (OSError, ValueError):
        return "could-not-look"
    verdict = results.verdict or {}
    causes = verdict.get("causes") or [{}]
    return outcome(
        verdict.get("state"), causes[0].get("id"), len(verdict.get("could_not_check") or [])
    )


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
