"""Communications: the seed's three templates filled from a record, UPDATE numbering, and
delivery to real HTTP receivers on loopback (one that answers, one too slow, one that fails, a
closed port): the message is never lost and never blocks the incident."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from irlib import comms
from irlib import incident as inc
from irlib.profile import IncidentSettings
from tests.helpers import IRLIB, irlib

T0 = datetime(2026, 1, 15, 9, 15, tzinfo=UTC)
URL_ENV = "IRLIB_INCIDENT_WEBHOOK_URL"
IMPACT = "Trading API is returning 5xx errors. No new orders being processed."


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def open_p1(outputs: Path, settings: IncidentSettings) -> str:
    return inc.open_incident(
        outputs,
        severity="P1",
        title="API Unavailable",
        settings=settings,
        commander="Dana",
        impact=IMPACT,
        by="dana",
        now=T0,
    ).id


SEED_INITIAL = f"""Subject: [P1] Trading System Incident - API Unavailable

Status: INVESTIGATING
Impact: {IMPACT}
Started: 2026-01-15 09:15 UTC

Incident Commander: Dana
Current Actions: Investigating root cause
ETA for Update: 15 minutes

War Room: #inc-trading"""

SEED_UPDATE = """Subject: [P1] Trading System Incident - UPDATE 1

Status: MITIGATING
Impact: Service restored, monitoring for stability

Progress:
- Root cause identified: Memory exhaustion in calibration pods
- Fix applied: Increased memory limits, restarted pods
- Monitoring: no runbook run yet

ETA for Resolution: 15 minutes
Next Update: 15 minutes or on resolution"""

SEED_RESOLUTION = f"""Subject: [P1] Trading System Incident - RESOLVED

Status: RESOLVED
Duration: 45 minutes (09:15 - 10:00 UTC)
Impact: {IMPACT}

Root Cause: Memory exhaustion in calibration pods

Resolution: Memory limits increased, batch size limits added

Post-Incident Review: Scheduled for 2026-01-16 14:00 UTC"""


def test_the_three_templates_read_like_the_seeds(tmp_path: Path) -> None:
    settings = IncidentSettings(war_room="#inc-trading")
    incident_id = open_p1(tmp_path, settings)
    preview = comms.preview(tmp_path, incident_id, "initial", settings)
    assert preview.text == SEED_INITIAL
    inc.note(
        tmp_path,
        incident_id,
        "Memory exhaustion in calibration pods",
        kind="root-cause",
        now=at(10),
    )
    inc.stamp(
        tmp_path, incident_id, "mitigated", "Increased memory limits, restarted pods", now=at(20)
    )
    assert (
        comms.preview(tmp_path, incident_id, "update", settings, eta="15 minutes").text
        == SEED_UPDATE
    )
    inc.stamp(
        tmp_path,
        incident_id,
        "resolved",
        data={"resolution": "Memory limits increased, batch size limits added"},
        now=at(45),
    )
    resolution = comms.preview(
        tmp_path, incident_id, "resolution", settings, review="Scheduled for 2026-01-16 14:00 UTC"
    )
    assert resolution.text == SEED_RESOLUTION


def test_updates_are_numbered_and_each_sent_message_is_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    settings = IncidentSettings()
    incident_id = open_p1(tmp_path, settings)
    for n in (1, 2):
        sent = comms.send(tmp_path, incident_id, "update", settings)
        assert sent.message.subject.endswith(f"UPDATE {n}") and sent.delivered is None
    assert comms.preview(tmp_path, incident_id, "update", settings).number == 3
    messages = inc.load(tmp_path, incident_id).messages()
    assert [(m.data["number"], m.data["channel"]) for m in messages] == [(1, "paste"), (2, "paste")]
    assert messages[0].data["text"].startswith("Subject: [P1] Trading System Incident - UPDATE 1")


# -- real receivers --------------------------------------------------------------------------


class Receiver:
    def __init__(self, mode: str, delay_s: float = 0.0) -> None:
        self.mode, self.delay_s = mode, delay_s
        self.received: list[tuple[str, str, bytes]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()  # a slow receiver answers when set, or after delay_s
        self.answered = threading.Event()
        self.url = ""


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """A real HTTP server on a free loopback port (`closed` gives a port nothing listens on)."""
    mode, delay = request.param if isinstance(request.param, tuple) else (request.param, 0.0)
    box = Receiver(mode, delay)
    if mode == "closed":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        box.url = f"http://127.0.0.1:{port}/services/T0/B0/closed0secret"
        yield box
        return

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            box.received.append((self.path, self.headers["Content-Type"], body))
            box.arrived.set()
            box.release.wait(box.delay_s)
            status = 500 if box.mode == "error" else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")
            box.answered.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    box.url = f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/s3cretw3bhook"
    yield box
    box.release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("receiver", ["ok"], indirect=True, ids=["ok"])
def test_the_webhook_receives_the_exact_rendered_text(tmp_path: Path, receiver: Receiver) -> None:
    incident_id = open_p1(tmp_path, IncidentSettings())
    env = {**_env(), URL_ENV: receiver.url}
    result = irlib(
        "incident",
        "message",
        incident_id,
        "initial",
        "--send",
        "--outputs",
        str(tmp_path),
        env=env,
        check=True,
    )
    ((path, content_type, body),) = receiver.received
    assert path == "/services/T0/B0/s3cretw3bhook" and content_type == "application/json"
    assert json.loads(body) == {"text": result.stdout.removesuffix("\n")}
    i = inc.load(tmp_path, incident_id)
    (message,) = i.messages()
    assert message.data["text"] == result.stdout.removesuffix("\n")
    delivery = i.delivery(message)
    assert delivery is not None and delivery.data["delivered"] is True
    shown = irlib("incident", "show", incident_id, "--outputs", str(tmp_path), env=env).stdout
    assert "[delivered]" in shown
    _assert_url_written_nowhere(tmp_path, receiver.url)


@pytest.mark.parametrize(
    ("receiver", "error"),
    [
        ("closed", "$IRLIB_INCIDENT_WEBHOOK_URL"),
        (("slow", 120.0), "no answer within 0.5 s"),
        ("error", "HTTP 500"),
    ],
    indirect=["receiver"],
    ids=["closed-port", "slow", "http-500"],
)
def test_a_failing_webhook_keeps_the_message_as_not_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver, error: str
) -> None:
    settings = IncidentSettings(webhook_timeout_s=0.5)
    incident_id = open_p1(tmp_path, settings)
    monkeypatch.setenv(URL_ENV, receiver.url)
    sent = comms.send(tmp_path, incident_id, "initial", settings)
    if receiver.mode == "slow":  # it holds its answer until the test ends: the timeout ended it
        assert not receiver.answered.is_set()
    assert sent.delivered is False and sent.error is not None and error in sent.error
    i = inc.load(tmp_path, incident_id)
    (message,) = i.messages()
    assert message.data["text"] == sent.message.text  # kept, whole, ready to paste
    delivery = i.delivery(message)
    assert delivery is not None
    assert delivery.data == {"message_seq": message.seq, "delivered": False, "error": sent.error}
    _assert_url_written_nowhere(tmp_path, receiver.url)


@pytest.mark.parametrize("receiver", [("slow", 120.0)], indirect=True, ids=["slow"])
def test_a_slow_webhook_blocks_no_one_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    settings = IncidentSettings(webhook_timeout_s=60.0)
    incident_id = open_p1(tmp_path, settings)
    monkeypatch.setenv(URL_ENV, receiver.url)
    sending = threading.Thread(target=comms.send, args=(tmp_path, incident_id, "initial", settings))
    sending.start()
    assert receiver.arrived.wait(5)
    note = subprocess.run(
        [*IRLIB, "incident", "note", incident_id, "meanwhile", "--outputs", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    # written while the post still waits: the receiver answers only when released
    assert note.returncode == 0 and sending.is_alive() and not receiver.answered.is_set()
    receiver.release.set()
    sending.join(60)
    kinds = [e.kind for e in inc.load(tmp_path, incident_id).entries]
    assert kinds == ["opened", "message", "note", "delivery"]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("IRLIB_PROFILE", URL_ENV)}


def _assert_url_written_nowhere(root: Path, url: str) -> None:
    secret = url.rsplit("/", 1)[-1]
    for path in root.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(), path
