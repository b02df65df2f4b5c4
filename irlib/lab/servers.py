"""The lab's off-the-shelf servers: PostgreSQL, Redis and Prometheus from Debian's packages.

Each runs as a detached child on its own loopback port, recorded in `run/<part>.pid`.
PostgreSQL refuses to run as root, so as root it runs as the `postgres` user with its data
directory under /tmp (a root home directory is mode 700 and that user could not reach it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from irlib.errors import LabError
from irlib.lab import procs
from irlib.lab.config import LabConfig

APT_HINT = "install it with `make setup` (apt-get install {package})"


def find_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LabError(f"`{name}` not found: " + APT_HINT.format(package=package))
    return path


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary (initdb, pg_ctl): Debian keeps them off PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    return find_binary(name, "postgresql")


def pg_data_dir(state_dir: Path) -> str:
    """Where the cluster lives: under the state dir, or under /tmp when we must switch user."""
    if os.geteuid() != 0:
        return str(state_dir / "pgdata")
    return tempfile.mkdtemp(prefix="irlib-lab-pg-")


def _pg_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise LabError(
            "running as root needs the `postgres` user: " + APT_HINT.format(package="postgresql")
        ) from e
    return "postgres"


def _chown_pg(path: Path) -> None:
    user = _pg_user()
    if user:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def start_postgres(config: LabConfig) -> int:
    root = Path(config.pg_data_dir)
    data = root / "data"
    user = _pg_user()
    root.mkdir(parents=True, exist_ok=True)
    _chown_pg(root)
    if not (data / "PG_VERSION").exists():
        _run_pg(
            [
                pg_bin("initdb"),
                "-D",
                str(data),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            user,
        )
    options = " ".join(
        [
            f"-p {config.ports['postgres']}",
            f"-c listen_addresses={config.host}",
            f"-c unix_socket_directories={root}",
            "-c shared_preload_libraries=pg_stat_statements",
            "-c pg_stat_statements.track=all",
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            # the seed fills tables created in its own transaction: minimal WAL skips logging them
            "-c wal_level=minimal -c max_wal_senders=0",
            "-c max_connections=100",
        ]
    )
    _run_pg(
        [
            pg_bin("pg_ctl"),
            "start",
            "-D",
            str(data),
            "-w",
            "-t",
            "30",
            "-o",
            options,
            "-l",
            str(root / "postgres.log"),
        ],
        user,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    procs.record_pid(config.run_dir / "postgres.pid", pid)
    _ensure_database(config)
    return pid


def _ensure_database(config: LabConfig) -> None:
    import psycopg
    from psycopg import sql

    admin_dsn = config.postgres_dsn.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (config.database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config.database)))


def _run_pg(argv: list[str], user: str | None) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, user=user, cwd="/")
    if result.returncode != 0:
        raise LabError(f"{Path(argv[0]).name} failed: {result.stderr.strip() or result.stdout}")


def postgres_ready(config: LabConfig) -> bool:
    return procs.port_open(config.host, config.ports["postgres"])


def stop_postgres(config: LabConfig) -> bool:
    # SIGINT is PostgreSQL's "fast" shutdown: sessions are cut, nothing is left half-written.
    return procs.stop_pid(config.run_dir / "postgres.pid", sig=signal.SIGINT, timeout=20)


def start_redis(config: LabConfig) -> int:
    exe = find_binary("redis-server", "redis-server")
    return procs.spawn(
        [
            exe,
            "--bind",
            config.host,
            "--port",
            str(config.ports["redis"]),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            config.state_dir,
            "--maxmemory",
            "256mb",
            "--maxmemory-policy",
            "allkeys-lru",
        ],
        log=config.logs_dir / "redis.log",
        pid_file=config.run_dir / "redis.pid",
    )


def redis_ready(config: LabConfig) -> bool:
    try:
        with socket.create_connection((config.host, config.ports["redis"]), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{host}:{alertmanager_port}"]
scrape_configs:
  - job_name: api-service
    metrics_path: /metrics
    static_configs:
      - targets: ["{host}:{api_port}"]
        labels: {{namespace: {namespace}, app: api-service}}
  - job_name: execution-service
    metrics_path: /metrics
    static_configs:
      - targets: ["{host}:{execution_port}"]
        labels: {{namespace: {namespace}, app: execution-service}}
  - job_name: calibration-service
    metrics_path: /metrics
    static_configs:
      - targets: ["{host}:{calibration_port}"]
        labels: {{namespace: {namespace}, app: calibration-service}}
"""


def alert_rules_file(config: LabConfig) -> Path:
    """The rule file the lab's Prometheus loads (written by the lab from its profile)."""
    return Path(config.state_dir) / "alert_rules.yml"


def start_prometheus(config: LabConfig) -> int:
    exe = find_binary("prometheus", "prometheus")
    state = Path(config.state_dir)
    conf = state / "prometheus.yml"
    conf.write_text(
        PROMETHEUS_CONFIG.format(
            host=config.host,
            api_port=config.ports["api"],
            execution_port=config.ports["execution"],
            calibration_port=config.ports["calibration_service"],
            alertmanager_port=config.ports["alertmanager"],
            rules=alert_rules_file(config),
            namespace=config.namespace,
        )
    )
    return procs.spawn(
        [
            exe,
            f"--config.file={conf}",
            f"--storage.tsdb.path={state / 'prometheus'}",
            f"--web.listen-address={config.host}:{config.ports['prometheus']}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ],
        log=config.logs_dir / "prometheus.log",
        pid_file=config.run_dir / "prometheus.pid",
    )


def prometheus_ready(config: LabConfig) -> bool:
    return answers_ready(config, "prometheus")


def answers_ready(config: LabConfig, part: str) -> bool:
    """The Prometheus family's readiness endpoint (`/-/ready`: Prometheus, Alertmanager)."""
    import httpx

    try:
        return httpx.get(config.url(part) + "/-/ready", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False
