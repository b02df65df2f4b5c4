"""The lab's platform apps as real processes against real PostgreSQL and Redis.

One module fixture starts both servers on free ports, seeds the database, serves a fake
Kubernetes Endpoints object from a thread over TLS (the ingress reads it) and runs api, broker,
market_data and loadgen with `python -m irlib.lab.apps`; everything is stopped by pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from irlib.errors import LabError
from irlib.lab import procs, servers
from irlib.lab.apps.__main__ import main as apps_main
from irlib.lab.apps.ingress import ready_pods
from irlib.lab.config import PARTS, LabConfig
from irlib.lab.kube import pki
from irlib.lab.seed import SYMBOLS, create_schema_and_seed
from tests.helpers import wait_until

ADMIN_TOKEN = "admin-token-for-the-apps-tests-0123456789"
BROKER_TOKEN = "broker-token-for-the-apps-tests-0123456789"
APPS = ("api", "broker", "market_data", "loadgen", "calibration_service")
ENDPOINTS_PATH = "/api/v1/namespaces/trading/endpoints/api-service"
ACCESS_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO GET \S+ 200 \d+\.\dms$")


def endpoints(ready: list[str], not_ready: list[str] | None = None) -> dict[str, Any]:
    """A Kubernetes Endpoints object for api-service with these pods."""

    def addresses(names: list[str], first_ip: int) -> list[dict[str, Any]]:
        return [
            {"ip": f"10.244.0.{first_ip + i}", "targetRef": {"kind": "Pod", "name": name}}
            for i, name in enumerate(names)
        ]

    subset: dict[str, Any] = {"ports": [{"port": 8080, "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = addresses(ready, 10)
    if not_ready:
        subset["notReadyAddresses"] = addresses(not_ready, 50)
    return {
        "kind": "Endpoints",
        "apiVersion": "v1",
        "metadata": {"name": "api-service", "namespace": "trading"},
        "subsets": [subset] if ready or not_ready else [],
    }


class FakeKubernetes:
    """Serves one Endpoints object (or 503 while `answer` is None) and counts the polls: over
    TLS with the lab's server certificate, 401 to a request without the lab admin's token."""

    def __init__(self, config: LabConfig) -> None:
        self.answer: dict[str, Any] | None = None
        self.polls = 0
        owner = self
        pki.ensure(config)
        bearer = f"Bearer {pki.read(config, pki.ADMIN_TOKEN)}"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.polls += 1
                answer = owner.answer
                body = json.dumps(answer or {"kind": "Status"}).encode()
                code = 200 if answer is not None and self.path == ENDPOINTS_PATH else 503
                if self.headers.get("Authorization") != bearer:
                    code = 401
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((config.host, config.ports["kubernetes"]), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(pki.path(config, pki.SERVER_CERT), pki.path(config, pki.SERVER_KEY))
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, answer: dict[str, Any] | None) -> None:
        """Change the answer and wait until the API has polled it twice."""
        self.answer = answer
        seen = self.polls
        wait_until("the API to poll the Endpoints", lambda: self.polls >= seen + 2, 5)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Platform:
    config: LabConfig
    kube: FakeKubernetes
    pids: dict[str, int]

    def url(self, part: str, path: str) -> str:
        return self.config.url(part) + path

    def get(self, part: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url(part, path), timeout=5, **kw)

    def pod_log(self, pod: str) -> list[str]:
        path = self.config.pods_dir / f"{pod}.log"
        return path.read_text().splitlines() if path.exists() else []


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def _stop_postgres_now(config: LabConfig) -> None:
    data = Path(config.pg_data_dir) / "data"
    user = "postgres" if os.geteuid() == 0 else None
    with_user = ["runuser", "-u", user, "--"] if user else []
    subprocess.run(
        [*with_user, servers.pg_bin("pg_ctl"), "stop", "-D", str(data), "-m", "immediate"],
        capture_output=True,
        cwd="/",
        timeout=30,
    )
    procs.stop_pid(config.run_dir / "postgres.pid")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    for name, package in (("redis-server", "redis-server"), ("initdb", "postgresql")):
        try:
            servers.pg_bin(name) if name == "initdb" else servers.find_binary(name, package)
        except LabError as e:  # CI installs them: missing is a failure, not a skip
            pytest.fail(f"{e} (package {package})")
    state = tmp_path_factory.mktemp("apps")
    ports: dict[str, int] = {}
    for part in PARTS:
        while (port := procs.free_port()) in ports.values():
            pass
        ports[part] = port
    config = LabConfig(state_dir=str(state), ports=ports, pg_data_dir=servers.pg_data_dir(state))
    for d in (config.logs_dir, config.run_dir, config.pods_dir):
        d.mkdir(parents=True, exist_ok=True)
    config.save()
    kube = FakeKubernetes(config)
    env = {
        **os.environ,
        "IRLIB_ADMIN_TOKEN": ADMIN_TOKEN,
        "IRLIB_BROKER_TOKEN": BROKER_TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    pids: dict[str, int] = {}
    try:
        servers.start_redis(config)
        servers.start_postgres(config)
        create_schema_and_seed(config.postgres_dsn)
        for app in APPS:
            pids[app] = procs.spawn(
                [sys.executable, "-m", "irlib.lab.apps", app, str(state)],
                log=config.logs_dir / f"{app}.log",
                pid_file=config.run_dir / f"{app}.pid",
                env=env,
            )
        for part, path in (
            ("api", "/livez"),
            ("broker", "/v1/status"),
            ("market_data", "/status"),
            ("calibration_service", "/livez"),
        ):
            url = config.url(part) + path
            wait_until(f"{part} to answer", lambda url=url: _answers(url), 20)
        yield Platform(config, kube, pids)
    finally:
        for app in reversed(APPS):
            procs.stop_pid(config.run_dir / f"{app}.pid")
        procs.stop_pid(config.run_dir / "redis.pid")
        _stop_postgres_now(config)
        kube.stop()
        shutil.rmtree(config.pg_data_dir, ignore_errors=True)


# -- the database ----------------------------------------------------------------------------


def test_seed_is_idempotent_and_consistent(platform: Platform) -> None:
    dsn = platform.config.postgres_dsn
    with psycopg.connect(dsn) as conn:
        # xmin: the transaction that wrote each row; a re-seed would rewrite them all
        state = "SELECT count(*), max(id), max(xmin::text::bigint) FROM orders"
        before = conn.execute(state).fetchone()
        create_schema_and_seed(dsn)
        assert conn.execute(state).fetchone() == before
        assert before is not None and before[0] >= 100_000
        # positions are the sum of the fills, and the broker agrees with us
        mismatched = conn.execute(
            """SELECT count(*) FROM positions p FULL JOIN (
                   SELECT o.account, o.symbol,
                          sum(CASE o.side WHEN 'buy' THEN e.qty ELSE -e.qty END) AS qty
                   FROM execution_reports e JOIN orders o ON o.id = e.order_id
                   GROUP BY 1, 2) f USING (account, symbol)
               WHERE p.qty IS DISTINCT FROM f.qty"""
        ).fetchone()
        assert mismatched == (0,)
        broker = conn.execute(
            """SELECT count(*) FROM positions p
               JOIN broker.positions b ON (b.account_id, b.symbol) = (p.account, p.symbol)
               WHERE b.qty = p.qty AND b.avg_price = p.avg_price"""
        ).fetchone()
        assert broker == conn.execute("SELECT count(*) FROM positions").fetchone()
        calibrations = conn.execute(
            """SELECT DISTINCT ON (symbol) symbol, converged, rmse,
                      now() - calibrated_at < interval '6 hours'
               FROM calibrations ORDER BY symbol, calibrated_at DESC"""
        ).fetchall()
        assert {c[0] for c in calibrations} == set(SYMBOLS)
        assert all(
            converged and rmse < 0.02 and fresh for _, converged, rmse, fresh in calibrations
        )


def test_seeding_a_restarted_lab_renews_only_stale_calibrations(platform: Platform) -> None:
    dsn = platform.config.postgres_dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        count = "SELECT count(*) FROM calibrations"
        before = conn.execute(count).fetchone()
        conn.execute(
            "UPDATE calibrations SET calibrated_at = calibrated_at - interval '2 days' "
            "WHERE symbol = 'IWM'"
        )
        create_schema_and_seed(dsn)
        after = conn.execute(count).fetchone()
        assert before is not None and after == (before[0] + 1,)
        fresh = conn.execute(
            "SELECT now() - max(calibrated_at) < interval '1 minute' FROM calibrations "
            "WHERE symbol = 'IWM' AND converged"
        ).fetchone()
        assert fresh == (True,)


def test_recent_orders_of_a_symbol_use_the_index(platform: Platform) -> None:
    with psycopg.connect(platform.config.postgres_dsn) as conn:
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT * FROM orders WHERE symbol = 'SPY' "
                "AND created_at > now() - interval '1 hour' ORDER BY created_at DESC LIMIT 20"
            )
        )
    assert "idx_orders_symbol_created_at" in plan


# -- the trading API -------------------------------------------------------------------------


def test_health_is_ok_when_every_dependency_is_up(platform: Platform) -> None:
    resp = platform.get("api", "/health")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "broker", "market_data"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["database"]["connections"] >= 1


def test_health_names_the_database_while_postgres_is_down(platform: Platform) -> None:
    platform.kube.serve(endpoints(["api-service-7d4b9c-x2k4p"]))
    servers.stop_postgres(platform.config)
    try:
        resp = platform.get("api", "/health")
        assert resp.status_code == 503
        database = resp.json()["checks"]["database"]
        assert database["ok"] is False and database["error"]
        orders = platform.get("api", "/v1/orders")
        assert orders.status_code == 503
        assert orders.json()["error"] == "database unavailable"
        assert any(
            " ERROR database unreachable: " in line
            for line in platform.pod_log("api-service-7d4b9c-x2k4p")
        )
    finally:
        servers.start_postgres(platform.config)
    wait_until("/health to recover", lambda: platform.get("api", "/health").status_code == 200)
    assert platform.get("api", "/v1/orders?limit=1").status_code == 200


def test_redis_outage_fails_health_but_quotes_still_come_from_postgres(
    platform: Platform,
) -> None:
    procs.stop_pid(platform.config.run_dir / "redis.pid")
    try:
        health = platform.get("api", "/health")
        assert health.status_code == 503
        assert health.json()["checks"]["redis"]["ok"] is False
        assert health.json()["checks"]["database"]["ok"] is True
        quote = platform.get("api", "/v1/market-data/SPY/latest")
        assert quote.status_code == 200 and quote.json()["source"] == "database"
    finally:
        servers.start_redis(platform.config)
    wait_until("/health to recover", lambda: platform.get("api", "/health").status_code == 200)


def test_latest_market_data_is_fresh_and_cached(platform: Platform) -> None:
    first = platform.get("api", "/v1/market-data/spy/latest").json()
    second = platform.get("api", "/v1/market-data/SPY/latest").json()
    assert first["symbol"] == "SPY" and first["age_s"] < 5
    assert first["ts"].endswith("Z") and first["bid"] < first["ask"]
    assert "cache" in (first["source"], second["source"])
    assert platform.get("api", "/v1/market-data/NOPE/latest").status_code == 404


def test_orders_positions_strategies_and_calibrations(platform: Platform) -> None:
    orders = platform.get("api", "/v1/orders?state=filled&limit=5").json()["orders"]
    assert len(orders) == 5 and {o["state"] for o in orders} == {"filled"}
    recent = platform.get("api", "/v1/orders?symbol=AAPL&limit=3").json()["orders"]
    assert recent and {o["symbol"] for o in recent} == {"AAPL"}
    assert platform.get("api", "/v1/orders?state=lost").status_code == 400
    positions = platform.get("api", "/v1/positions").json()["positions"]
    assert {p["symbol"] for p in positions} == set(SYMBOLS)
    assert len(platform.get("api", "/v1/strategies").json()["strategies"]) >= 5
    status = platform.get("api", "/v1/calibration/status").json()["calibrations"]
    assert {c["symbol"] for c in status} == set(SYMBOLS)
    assert all(c["converged"] and c["age_s"] < 6 * 3600 for c in status)
    heston = platform.get("api", "/v1/calibration/heston", params={"symbol": "SPY"}).json()
    assert set(heston["params"]) == {"kappa", "theta", "sigma", "rho", "v0"}
    assert heston["fallback"] is False


def test_forced_recalibration_needs_the_token(platform: Platform) -> None:
    url = platform.url("api", "/v1/calibration/heston")
    body = {"symbol": "QQQ", "force": True}
    assert httpx.post(url, json=body, timeout=5).status_code == 401
    resp = httpx.post(url, json=body, headers=_bearer(ADMIN_TOKEN), timeout=5)
    assert resp.status_code == 201, resp.text
    assert resp.json()["calibration"]["age_s"] < 5


def test_pause_all_needs_the_admin_token(platform: Platform) -> None:
    url = platform.url("api", "/v1/admin/pause-all")
    assert httpx.post(url, timeout=5).status_code == 401
    assert httpx.post(url, headers=_bearer("not-the-token"), timeout=5).status_code == 401
    try:
        resp = httpx.post(url, headers=_bearer(ADMIN_TOKEN), timeout=5)
        assert resp.status_code == 200
        assert resp.json()["count"] >= 5
        strategies = platform.get("api", "/v1/strategies").json()["strategies"]
        assert all(s["paused"] for s in strategies)
    finally:
        resume = platform.url("api", "/v1/admin/resume-all")
        httpx.post(resume, headers=_bearer(ADMIN_TOKEN), timeout=5)


def test_metrics_histogram_is_labelled_by_route_template(platform: Platform) -> None:
    platform.get("api", "/v1/market-data/MSFT/latest")
    text = platform.get("api", "/metrics").text
    assert re.search(
        r'http_request_duration_seconds_bucket\{le="[^"]+",method="GET",'
        r'route="/v1/market-data/\{symbol\}/latest",status="200"\}',
        text,
    )
    assert 'http_requests_total{method="GET",route="/v1/market-data/{symbol}/latest"' in text
    assert "/v1/market-data/MSFT" not in text  # one series per route, not per URL


def test_loadgen_keeps_traffic_flowing(platform: Platform) -> None:
    def total() -> float:
        text = platform.get("api", "/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("http_requests_total{") and 'route="/v1/calibration/status"' in line
        )

    before = total()
    wait_until("loadgen traffic", lambda: total() > before, 10)


# -- the ingress -----------------------------------------------------------------------------


def test_ingress_spreads_requests_over_ready_pods_and_logs_them(platform: Platform) -> None:
    a, b, sick = "api-service-5f6d8-aaaaa", "api-service-5f6d8-bbbbb", "api-service-5f6d8-ccccc"
    platform.kube.serve(endpoints([a, b], not_ready=[sick]))
    for _ in range(6):
        assert platform.get("api", "/v1/positions").status_code == 200
    for pod in (a, b):
        lines = [line for line in platform.pod_log(pod) if "GET /v1/positions " in line]
        assert lines, f"no access line in {pod}'s log"
        assert all(ACCESS_LINE.match(line) for line in lines), lines
    assert platform.pod_log(sick) == []


def test_ingress_without_ready_pods_answers_503_but_probes_still_work(
    platform: Platform,
) -> None:
    platform.kube.serve(endpoints([], not_ready=["api-service-5f6d8-aaaaa"]))
    try:
        resp = platform.get("api", "/health")
        assert resp.status_code == 503
        assert resp.json() == {"error": "no healthy upstream"}
        assert platform.get("api", "/livez").status_code == 200
        metrics = platform.get("api", "/metrics")
        assert metrics.status_code == 200
        assert 'route="/health",status="503"' in metrics.text
        platform.kube.serve(None)  # the Kubernetes API fails: the last answer stands
        assert platform.get("api", "/v1/positions").status_code == 503
    finally:
        platform.kube.serve(endpoints(["api-service-5f6d8-aaaaa"]))
    assert platform.get("api", "/v1/positions").status_code == 200


def test_ready_pods_reads_only_ready_addresses() -> None:
    obj = endpoints(["p1", "p2"], not_ready=["p3"])
    assert ready_pods(obj) == ["p1", "p2"]
    assert ready_pods(endpoints([], not_ready=["p3"])) == []
    assert ready_pods({"kind": "Endpoints"}) == []


# -- the broker and the market-data provider -------------------------------------------------


def test_broker_auth_test_wants_the_broker_token(platform: Platform) -> None:
    assert platform.get("broker", "/v1/status").json()["status"] == "operational"
    assert platform.get("broker", "/v1/auth/test").status_code == 401
    assert platform.get("broker", "/v1/auth/test", headers=_bearer(ADMIN_TOKEN)).status_code == 401
    resp = platform.get("broker", "/v1/auth/test", headers=_bearer(BROKER_TOKEN))
    assert resp.status_code == 200
    assert resp.json()["accounts"] == ["ACC-001", "ACC-002", "ACC-003"]
    assert platform.get("broker", "/health").json()["status"] == "ok"


def test_broker_fills_an_order_at_the_latest_price(platform: Platform) -> None:
    auth = _bearer(BROKER_TOKEN)

    def position() -> int:
        rows = platform.get("broker", "/v1/accounts/ACC-002/positions", headers=auth).json()
        return next(p["qty"] for p in rows["positions"] if p["symbol"] == "NVDA")

    before = position()
    order = {"account": "ACC-002", "symbol": "NVDA", "side": "sell", "qty": 30}
    resp = httpx.post(platform.url("broker", "/v1/orders"), json=order, headers=auth, timeout=5)
    assert resp.status_code == 201, resp.text
    filled = resp.json()
    assert filled["status"] == "filled" and filled["price"] > 0
    assert position() == before - 30
    listed = platform.get("broker", "/v1/orders?account=ACC-002&limit=1", headers=auth).json()
    assert listed["orders"][0]["order_id"] == filled["order_id"]
    bad = httpx.post(
        platform.url("broker", "/v1/orders"), json={**order, "qty": -1}, headers=auth, timeout=5
    )
    assert bad.status_code == 400


def test_market_data_ticks_stay_fresh(platform: Platform) -> None:
    status = platform.get("market_data", "/status")
    assert status.status_code == 200
    assert status.json()["symbols"] == sorted(SYMBOLS)
    assert status.json()["latest_tick_age_s"] < 3
    first = platform.get("market_data", "/v1/quotes/TSLA").json()["ts"]
    wait_until(
        "a newer TSLA tick",
        lambda: platform.get("market_data", "/v1/quotes/TSLA").json()["ts"] > first,
        5,
    )


# -- processes -------------------------------------------------------------------------------


def test_unknown_app_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert apps_main(["scheduler", "/nowhere"]) == 2
    assert "usage" in capsys.readouterr().err


def test_apps_exit_cleanly_on_sigterm(platform: Platform) -> None:
    """Last: it stops the apps the other tests use."""
    for app, pid in platform.pids.items():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done[0] == pid, f"{app} did not stop within 8 s of SIGTERM"
        assert os.waitstatus_to_exitcode(done[1]) == 0, app
    log = (platform.config.logs_dir / "api.log").read_text()
    assert "Traceback" not in log
    for token in (ADMIN_TOKEN, BROKER_TOKEN):
        for path in platform.config.logs_dir.glob("*.log"):
            assert token not in path.read_text()
