"""One transport layer: every target's client raises only irlib's target errors, and
`results.guarded` turns each into a check with its reason and facts. Against real servers on
loopback: a small HTTP server, the lab's PostgreSQL, Redis and Kubernetes API, a port where
nothing listens and one that never answers."""

from __future__ import annotations

import ast
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from irlib import transport
from irlib.errors import MissingToken, Refused, TargetError, TimedOut, Unreachable
from irlib.k8s import Kube
from irlib.lab import procs
from irlib.postgres import query
from irlib.profile import load_profile
from irlib.results import Check, Status, guarded
from tests.helpers import ROOT, LabHandle

TOKEN = "s3cr3t-token-value"


# -- guarded: the one wrapper -----------------------------------------------------------------


def _raising(error: Exception):  # type: ignore[no-untyped-def]
    def body() -> Check:
        raise error

    return body


@pytest.mark.parametrize(
    ("error", "facts"),
    [
        (Unreachable("unreachable: GET x: refused"), {"reachable": False}),
        (TimedOut("no answer within 1 s"), {"reachable": None, "timed_out": True}),
        (MissingToken("IRLIB_X_TOKEN"), {"reachable": None, "missing_token": True}),
        (
            Refused("HTTP 403", 403),
            {"reachable": True, "http_status": 403, "auth_refused": True},
        ),
        (Refused("syntax error"), {"reachable": True}),
    ],
)
def test_guarded_makes_every_target_error_an_error_check_with_its_facts(
    error: TargetError, facts: dict[str, object]
) -> None:
    check = guarded("c", "t", _raising(error), what="cannot read")
    assert check.status is Status.ERROR
    assert check.summary.startswith(f"cannot read: {error}")
    assert dict(check.facts) == facts


def test_guarded_fails_only_the_kinds_that_are_the_checks_finding() -> None:
    down = guarded("c", "t", _raising(Unreachable("refused")), failing=(Unreachable,))
    silent = guarded("c", "t", _raising(TimedOut("slow")), failing=(Unreachable,))
    assert (down.status, silent.status) == (Status.FAIL, Status.ERROR)


def test_guarded_says_when_credentials_were_refused_and_lets_other_errors_through() -> None:
    assert "(credentials refused)" in guarded("c", "t", _raising(Refused("x", 401))).summary
    with pytest.raises(ValueError):
        guarded("c", "t", _raising(ValueError("a bug is not a target error")))


def test_guarded_times_the_body() -> None:
    check = guarded("c", "t", lambda: Check("c", "t", Status.OK, "fine"))
    assert check.status is Status.OK and check.duration_s >= 0


# -- HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[str]:
    """A real HTTP server on loopback: /ok (JSON), /text, /status/<code>, /whoami (the
    Authorization header it got)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            code, body, kind = 200, b"", "application/json"
            if self.path == "/ok":
                body = b'{"status": "ok"}'
            elif self.path == "/text":
                body, kind = b"plain words", "text/plain"
            elif self.path.startswith("/status/"):
                code = int(self.path.rsplit("/", 1)[1])
                body = json.dumps({"error": f"answered {code}"}).encode()
            elif self.path == "/whoami":
                body = json.dumps({"auth": self.headers.get("Authorization")}).encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_answers_carry_json_text_and_status(http_server: str) -> None:
    ok = transport.request("GET", http_server + "/ok", timeout_s=2)
    assert (ok.status_code, ok.body, ok.ok) == (200, {"status": "ok"}, True)
    assert transport.request("GET", http_server + "/text", timeout_s=2).body == "plain words"
    failed = transport.request("GET", http_server + "/status/503", timeout_s=2)
    assert (failed.ok, failed.error) == (False, "answered 503")


def test_get_ok_refuses_any_other_status_with_it(http_server: str) -> None:
    http = transport.Http(http_server, timeout_s=2)
    assert http.get_ok("/ok") == {"status": "ok"}
    with pytest.raises(Refused) as refused:
        http.get_ok("/status/401")
    assert refused.value.status_code == 401 and refused.value.auth_refused


def test_the_token_is_read_from_its_variable_and_never_in_an_error(
    http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRLIB_TEST_TOKEN", TOKEN)
    http = transport.Http(http_server, timeout_s=2, token_env="IRLIB_TEST_TOKEN")
    assert http.get_ok("/whoami") == {"auth": f"Bearer {TOKEN}"}
    assert http.get("/whoami", auth=False).body == {"auth": None}
    with pytest.raises(Refused) as refused:
        http.get_ok("/status/403")
    assert TOKEN not in str(refused.value)
    monkeypatch.delenv("IRLIB_TEST_TOKEN")
    with pytest.raises(MissingToken, match="IRLIB_TEST_TOKEN is not set"):
        http.get("/whoami")


def test_no_listener_is_unreachable_and_silence_times_out(silent_port: int) -> None:
    with pytest.raises(Unreachable, match="unreachable"):
        transport.request("GET", f"http://127.0.0.1:{procs.free_port()}/", timeout_s=2)
    with pytest.raises(TimedOut, match=r"0\.3 s"):
        transport.request("GET", f"http://127.0.0.1:{silent_port}/", timeout_s=0.3)


# -- the drivers: Kubernetes, PostgreSQL (Redis: test_target_checks) -------------------


def _kubeconfig(tmp_path: Path, port: int) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n"
    )
    return str(path)


def test_every_client_verifies_tls_with_one_shared_context(lab: LabHandle) -> None:
    """The lab's Kubernetes API speaks TLS with the lab's own CA, which the system's bundle
    does not hold: refused by two clients, which share one context (built once per process)."""
    url = lab.lab.config.url("kubernetes") + "/version"
    clients = [transport.Http(url, timeout_s=5), transport.Http(url, timeout_s=5)]
    try:
        for client in clients:
            with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
                client.get()
    finally:
        for client in clients:
            client.close()
    assert transport._tls() is transport._tls()


def test_kubernetes_errors_are_target_errors(
    lab: LabHandle, tmp_path: Path, silent_port: int
) -> None:
    target = load_profile(lab.exports["IRLIB_PROFILE"]).kubernetes
    kube = Kube.for_target(target, timeout_s=5)
    with pytest.raises(Refused) as missing:
        kube.pod("no-such-pod")
    assert missing.value.status_code == 404 and "API answered 404" in str(missing.value)
    nowhere = Kube(kubeconfig=_kubeconfig(tmp_path, procs.free_port()), context=None, namespace="x")
    with pytest.raises(Unreachable, match="API server unreachable"):
        nowhere.pods()
    silent = Kube(
        kubeconfig=_kubeconfig(tmp_path, silent_port), context=None, namespace="x", timeout_s=0.5
    )
    with pytest.raises(TimedOut):
        silent.pods()


def test_postgres_errors_are_target_errors(lab: LabHandle, silent_port: int) -> None:
    dsn = load_profile(lab.exports["IRLIB_PROFILE"]).postgres.dsn
    with pytest.raises(Refused, match="no_such_table"):
        query(dsn, "SELECT * FROM no_such_table", timeout_s=5)
    with pytest.raises(Refused, match="read-only"):  # every read is a read-only transaction
        query(dsn, "CREATE TABLE irlib_must_not_exist (x int)", timeout_s=5)
    with pytest.raises(TimedOut, match=r"no answer within 0\.5 s"):
        query(dsn, "SELECT pg_sleep(3)", timeout_s=0.5)
    with pytest.raises(Unreachable, match="cannot connect"):
        query(f"postgresql://postgres@127.0.0.1:{procs.free_port()}/x", "SELECT 1", timeout_s=1)
    with pytest.raises(Unreachable, match="cannot connect"):
        query(f"postgresql://postgres@127.0.0.1:{silent_port}/x", "SELECT 1", timeout_s=1)


# -- nothing outside a target package imports its client -----------------------------------------


def _imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_no_module_outside_a_target_package_imports_its_client() -> None:
    crossing = []
    for path in [*(ROOT / "irlib").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        for module in _imported_modules(path):
            parts = module.split(".")
            if "_client" in parts:
                package = ROOT / Path(*parts[: parts.index("_client")])
                if package not in path.parents:
                    crossing.append(f"{path.relative_to(ROOT)} imports {module}")
    assert crossing == []
