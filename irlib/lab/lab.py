"""The drill lab as one object: start, inspect, break, heal and stop its parts.

A `Lab` is named by its state directory; `up` writes `lab.json` there, starts every part as
a detached child process, waits until each answers, and writes the kubeconfig and the target
profile a runbook uses. Faults (faults.py) act through the methods here.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from irlib.alerts.rules import render as render_rules
from irlib.errors import LabError, LabNotRunning, UsageError
from irlib.lab import alertmanager, procs, servers
from irlib.lab.config import BROKER_TOKEN_ENV, PARTS, LabConfig, read_control, write_control
from irlib.lab.kube import controller_problems, wait_ready, write_kubeconfig
from irlib.lab.kube.access import ssl_context
from irlib.lab.size import LabSize
from irlib.notebooks_dir import notebooks_dir
from irlib.profile import (
    AlertSettings,
    HttpTarget,
    KubernetesTarget,
    PostgresTarget,
    Profile,
    PrometheusTarget,
    RedisTarget,
    dump_profile,
)

TOKEN_ENVS = ("IRLIB_ADMIN_TOKEN", BROKER_TOKEN_ENV, alertmanager.SERVE_TOKEN_ENV)


def default_state_dir() -> Path:
    if os.environ.get("IRLIB_LAB_DIR"):
        return Path(os.environ["IRLIB_LAB_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "irlib" / "lab"


def _http_answers(url: str, want_ok: bool) -> bool:
    try:
        code = httpx.get(url, timeout=1.0).status_code
    except httpx.HTTPError:
        return False
    return code == 200 if want_ok else True


@dataclass(frozen=True)
class Part:
    """One server of the lab: how to start it, tell that it answers, and where it is."""

    name: str
    start: Callable[[Lab], int]
    answers: Callable[[LabConfig], bool]  # the process serves (even if it reports trouble)
    healthy: Callable[[LabConfig], bool]  # ... and says it is well
    address: Callable[[LabConfig], tuple[str, str]]  # (key, value) shown by status
    stop_signal: int = 15
    # what fails inside a process that answers well (the Kubernetes API's controller loops):
    # any makes the part "degraded", not ready
    problems: Callable[[LabConfig, int], list[dict[str, Any]]] = lambda c, pid: []
    start_timeout: float = 30.0


def _app(name: str, health: str, answer_path: str | None = None) -> Part:
    return Part(
        name=name,
        start=lambda lab: lab.spawn_python(name, "irlib.lab.apps", name),
        answers=lambda c: _http_answers(c.url(name) + (answer_path or health), want_ok=False),
        healthy=lambda c: _http_answers(c.url(name) + health, want_ok=True),
        address=lambda c: ("url", c.url(name)),
    )


def _kube_ready(c: LabConfig) -> bool:
    """The API answers /readyz over TLS verified with the lab's CA (no token needed there)."""
    try:
        verify = ssl_context(c)
    except OSError:  # no CA yet: nothing can be serving
        return False
    try:
        return httpx.get(c.url("kubernetes") + "/readyz", timeout=1.0, verify=verify).is_success
    except httpx.HTTPError:
        return False


# Start order matters: PostgreSQL first (the seed and every app need it); the Kubernetes API
# after the apps, so that its first probes find them; the load generator last.
PART_LIST: list[Part] = [
    Part(
        "postgres",
        lambda lab: servers.start_postgres(lab.config),
        servers.postgres_ready,
        servers.postgres_ready,
        lambda c: ("dsn", c.postgres_dsn),
        stop_signal=2,
    ),
    Part(
        "redis",
        lambda lab: servers.start_redis(lab.config),
        servers.redis_ready,
        servers.redis_ready,
        lambda c: ("url", c.redis_url),
    ),
    Part(
        "prometheus",
        lambda lab: lab.start_prometheus(),
        servers.prometheus_ready,
        servers.prometheus_ready,
        lambda c: ("url", c.url("prometheus")),
    ),
    Part(
        "alertmanager",
        lambda lab: alertmanager.start_alertmanager(
            lab.config, lab.tokens()["tokens"][alertmanager.SERVE_TOKEN_ENV]
        ),
        alertmanager.alertmanager_ready,
        alertmanager.alertmanager_ready,
        lambda c: ("url", c.url("alertmanager")),
    ),
    _app("api", "/health", "/livez"),
    _app("broker", "/health"),
    _app("market_data", "/status"),
    _app("execution", "/livez"),  # the execution-service's real process (apps/execution.py)
    _app("calibration_service", "/livez"),
    Part(
        "kubernetes",
        lambda lab: lab.spawn_python("kubernetes", "irlib.lab.kube"),
        _kube_ready,
        _kube_ready,
        lambda c: ("kubeconfig", str(c.kubeconfig)),
        problems=controller_problems,
    ),
    Part(
        "loadgen",
        lambda lab: lab.spawn_python("loadgen", "irlib.lab.apps", "loadgen"),
        lambda c: True,
        lambda c: True,
        lambda c: ("target", c.url("api")),
    ),
    # `irlib serve` on the port Alertmanager posts to: alert-triggered triage, read-only
    Part(
        "serve",
        lambda lab: lab.start_serve(),
        lambda c: _http_answers(c.url("serve") + "/healthz", want_ok=False),
        lambda c: _http_answers(c.url("serve") + "/healthz", want_ok=True),
        lambda c: ("url", c.url("serve")),
    ),
]
PARTS_BY_NAME = {p.name: p for p in PART_LIST}
assert set(PARTS) <= set(PARTS_BY_NAME)


class Lab:
    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir or default_state_dir()).absolute()
        self.log = log or (lambda msg: None)
        self._config: LabConfig | None = None

    # -- configuration and secrets ------------------------------------------------------

    @property
    def config(self) -> LabConfig:
        if self._config is None:
            if not (self.state_dir / "lab.json").exists():
                raise LabNotRunning(f"no lab in {self.state_dir}: start one with `irlib lab up`")
            self._config = LabConfig.load(self.state_dir)
        return self._config

    def _configure(self, size: LabSize) -> LabConfig:
        """Load lab.json, or make one: fresh ports, kept from last time when still free."""
        old = LabConfig.load(self.state_dir) if (self.state_dir / "lab.json").exists() else None
        taken: set[int] = set()
        ports = {}
        for part in PARTS:
            port = procs.free_port(preferred=old.ports.get(part) if old else None)
            while port in taken:
                port = procs.free_port()
            taken.add(port)
            ports[part] = port
        pg_dir = (
            old.pg_data_dir
            if old and Path(old.pg_data_dir).exists()
            else servers.pg_data_dir(self.state_dir)
        )
        config = LabConfig(
            state_dir=str(self.state_dir),
            ports=ports,
            pg_data_dir=pg_dir,
            nodes=size.nodes,
            api_replicas=size.api_replicas,
            events=size.events,
        )
        for d in (config.logs_dir, config.run_dir, config.pods_dir):
            d.mkdir(parents=True, exist_ok=True)
        config.save()
        self._config = config
        return config

    @property
    def _secrets_file(self) -> Path:
        return self.state_dir / "secrets.json"

    def tokens(self) -> dict[str, Any]:
        """The bearer tokens the lab's apps were started with (file mode 600, never printed
        unless the lab generated them)."""
        old: dict[str, Any] = {"tokens": {}, "generated": []}
        if self._secrets_file.exists():
            old = json.loads(self._secrets_file.read_text())
            if set(TOKEN_ENVS) <= set(old["tokens"]):
                return old
        # a new lab, or one made before a token was added (IRLIB_SERVE_TOKEN): add the missing
        found = dict(old["tokens"])
        found.update({k: os.environ[k] for k in TOKEN_ENVS if k not in found and os.environ.get(k)})
        generated = list(old["generated"]) + [k for k in TOKEN_ENVS if k not in found]
        found.update({k: secrets.token_urlsafe(24) for k in TOKEN_ENVS if k not in found})
        data = {"tokens": found, "generated": generated}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.chmod(self._secrets_file, 0o600)  # O_CREAT leaves an existing file's mode alone
        return data

    def spawn_python(self, part: str, module: str, *args: str) -> int:
        env = dict(os.environ)
        env.update(self.tokens()["tokens"])
        env["PYTHONUNBUFFERED"] = "1"
        return procs.spawn(
            [sys.executable, "-m", module, *args, str(self.state_dir)],
            log=self.config.logs_dir / f"{part}.log",
            pid_file=self.config.run_dir / f"{part}.pid",
            env=env,
        )

    # -- parts ----------------------------------------------------------------------------

    def pid_file(self, part: str) -> Path:
        return self.config.run_dir / f"{part}.pid"

    def running(self, part: str) -> bool:
        return procs.running_pid(self.pid_file(part)) is not None

    def _start_timeout(self, part: Part) -> float:
        """A big cluster takes the Kubernetes API longer to build (about 1 s per 100 pods
        and per 5,000 events on this machine): its wait grows with the lab's size."""
        if part.name != "kubernetes":
            return part.start_timeout
        size = self.config.size
        return part.start_timeout + size.pods() / 25 + size.events / 1000

    def start_part(self, name: str) -> None:
        part = PARTS_BY_NAME[name]
        if self.running(name):
            self.wait_answers(name, self._start_timeout(part))
            return
        t0 = time.monotonic()
        self.config.progress_file.unlink(missing_ok=True)
        part.start(self)
        self.wait_answers(name, self._start_timeout(part))
        self.log(f"{name:<12} ready in {time.monotonic() - t0:.1f} s")

    def wait_answers(self, name: str, timeout: float) -> None:
        part = PARTS_BY_NAME[name]
        shown = [""]

        def answers() -> bool:
            self._show_progress(shown)
            return self._alive_and_answers(part)

        procs.wait_for(name, answers, timeout, self.config.logs_dir / f"{name}.log")

    def _show_progress(self, shown: list[str]) -> None:
        """Log the Kubernetes API's start-up progress line when it changes."""
        try:
            line = self.config.progress_file.read_text().strip()
        except OSError:
            return
        if line and line != shown[0]:
            shown[0] = line
            self.log(f"{'kubernetes':<12} {line}")

    def _alive_and_answers(self, part: Part) -> bool:
        if not self.running(part.name):
            raise LabError(
                f"{part.name} exited during start-up; see "
                f"{self.config.logs_dir / (part.name + '.log')}"
            )
        return part.answers(self.config)

    def stop_part(self, name: str) -> bool:
        if name == "postgres":
            return servers.stop_postgres(self.config)
        return procs.stop_pid(self.pid_file(name), sig=PARTS_BY_NAME[name].stop_signal)

    # -- the lab ----------------------------------------------------------------------------

    def is_up(self) -> bool:
        return (self.state_dir / "lab.json").exists() and self.running("kubernetes")

    def up(self, size: LabSize | None = None) -> dict[str, str]:
        """Start whatever is not running (a fault's stopped part stays stopped); the exports.
        `size` builds the cluster at that size (default: today's lab, or the running lab's);
        a running lab of another size is refused (UsageError), as is a size that cannot fit."""
        t0 = time.monotonic()
        if size is not None:
            size.shape()  # refuse before anything starts
        if self.is_up():
            if size is not None and size != self.config.size:
                raise UsageError(
                    f"the lab in {self.state_dir} is up with {self.config.size.describe()}; "
                    "stop it (`irlib lab down`) to start one of another size"
                )
            held = set(read_control(self.config).get("stopped_parts", []))
            for part in PART_LIST:
                if part.name not in held:
                    self.start_part(part.name)
            self.log(f"lab already up in {self.state_dir}")
            return self.exports()
        if (self.state_dir / "lab.json").exists():
            size = size or self.config.size  # half a lab restarts whole, at its size
            self.down(quiet=True)  # half a lab (a crash, a reboot): restart it whole
        config = self._configure(size or LabSize())
        write_control(config, {})
        self.tokens()
        # the Kubernetes API's CA, certificate and admin token, before any part needs them
        write_kubeconfig(config)
        self.log(f"starting the drill lab in {self.state_dir}: {config.size.describe()}")
        # Redis and Prometheus start in the background while PostgreSQL starts and is seeded:
        # Prometheus spends its first seconds discovering targets anyway.
        servers.start_redis(config)
        self.start_prometheus()
        self.start_part("postgres")
        t1 = time.monotonic()
        # imported here: its option surfaces need numpy and scipy, a third of a second that
        # every other `irlib lab` command would pay
        from irlib.lab import seed

        seed.create_schema_and_seed(config.postgres_dsn)
        self.log(f"{'seed':<12} ready in {time.monotonic() - t1:.1f} s")
        for part in PART_LIST[1:]:
            self.start_part(part.name)
        wait_ready(config, timeout=30)
        self._wait_pods_ready()
        self.write_profile()
        self.log(f"lab ready in {time.monotonic() - t0:.1f} s")
        return self.exports()

    def _wait_pods_ready(self, timeout: float = 30) -> None:
        """Wait until the api-service's pods are ready, so the API serves when `up` returns."""
        procs.wait_for(
            "api-service /health",
            lambda: PARTS_BY_NAME["api"].healthy(self.config),
            timeout,
            self.config.logs_dir / "api.log",
        )

    def start_prometheus(self) -> int:
        """Prometheus with the alert rules of the lab's profile (short `for:`, short ranges)."""
        servers.alert_rules_file(self.config).write_text(render_rules(self.profile(), "prometheus"))
        return servers.start_prometheus(self.config)

    def start_serve(self) -> int:
        """`irlib serve` with the lab's profile, its evidence in STATE/outputs; it posts to
        the chat webhook in $IRLIB_INCIDENT_WEBHOOK_URL as set when `irlib lab up` runs."""
        c = self.config
        self.write_profile()
        env = dict(os.environ)
        env.update(self.tokens()["tokens"])
        env["PYTHONUNBUFFERED"] = "1"
        return procs.spawn(
            [
                sys.executable,
                "-m",
                "irlib.cli",
                "serve",
                "--profile",
                str(self.state_dir / "profile.yaml"),
                "--outputs",
                str(self.state_dir / "outputs"),
                "--host",
                c.host,
                "--port",
                str(c.ports["serve"]),
            ],
            log=c.logs_dir / "serve.log",
            pid_file=self.pid_file("serve"),
            env=env,
        )

    def profile(self) -> Profile:
        c = self.config
        return Profile(
            name="lab",
            kubernetes=KubernetesTarget(
                kubeconfig=str(c.kubeconfig), context="irlib-lab", namespace=c.namespace
            ),
            api=HttpTarget(
                url=c.url("api"),
                health_path="/health",
                status_path="/health",
                token_env="IRLIB_ADMIN_TOKEN",
            ),
            broker=HttpTarget(
                url=c.url("broker"),
                health_path="/health",
                status_path="/v1/status",
                token_env=BROKER_TOKEN_ENV,
            ),
            market_data=HttpTarget(
                url=c.url("market_data"), health_path="/status", status_path="/status"
            ),
            postgres=PostgresTarget(dsn=c.postgres_dsn),
            redis=RedisTarget(url=c.redis_url),
            prometheus=PrometheusTarget(url=c.url("prometheus")),
            # A drill is quick: symptoms fire after seconds, rates over half a minute.
            alerts=AlertSettings(
                pending="3s",
                window="30s",
                runbook_url=f"file://{notebooks_dir()}/{{runbook}}.ipynb",
                no_trading_s=30.0,
                order_unsent_max_s=20.0,
            ),
        )

    def write_profile(self) -> Path:
        path = self.state_dir / "profile.yaml"
        dump_profile(self.profile(), path)
        return path

    def exports(self) -> dict[str, str]:
        c = self.config
        out = {
            "KUBECONFIG": str(c.kubeconfig),
            "IRLIB_PROFILE": str(self.state_dir / "profile.yaml"),
            "IRLIB_LAB_DIR": str(self.state_dir),
        }
        tokens = self.tokens()
        out.update({k: tokens["tokens"][k] for k in tokens["generated"]})
        return out

    @staticmethod
    def format_exports(exports: dict[str, str]) -> str:
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items())

    def status(self) -> dict[str, Any]:
        """Each part with its state (ready / degraded / unhealthy / not answering / stopped),
        its address, and for a degraded part what fails in it (`problems`)."""
        c = self.config
        out: dict[str, Any] = {}
        for part in PART_LIST:
            pid = procs.running_pid(self.pid_file(part.name))
            problems: list[dict[str, Any]] = []
            if pid is None:
                state = "stopped"
            elif part.healthy(c):
                problems = part.problems(c, pid)
                state = "degraded" if problems else "ready"
            elif part.answers(c):
                state = "unhealthy"
            else:
                state = "not answering"
            key, value = part.address(c)
            out[part.name] = {"state": state, key: value, "pid": pid}
            if problems:
                out[part.name]["problems"] = problems
        out["kubernetes"]["url"] = c.url("kubernetes")
        out["faults"] = read_control(c).get("faults", [])
        return out

    def down(self, purge: bool = False, quiet: bool = False) -> list[str]:
        """Stop every part by pid, last started first; `purge` also deletes the lab's files."""
        if not (self.state_dir / "lab.json").exists():
            if not quiet:
                self.log(f"no lab in {self.state_dir}: nothing to stop")
            return []
        stopped = [p.name for p in reversed(PART_LIST) if self.stop_part(p.name)]
        write_control(self.config, {})
        if purge:
            shutil.rmtree(self.config.pg_data_dir, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self._config = None
        if not quiet:
            self.log(f"stopped {', '.join(stopped) or 'nothing (already down)'}")
        return stopped
