"""A runbook that could not look never says healthy, end to end against the lab: every check
given too little time, and a dependency that accepts connections but never answers, for each
kind of target the runbooks read (Kubernetes API, PostgreSQL, Redis, Prometheus, HTTP).
The pure rule is tested in test_diagnosis.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from irlib.runbooks import SCENARIOS
from tests.helpers import LabHandle, irlib, run_runbook


def run(
    lab: LabHandle, outputs: Path, runbook: str, *args: str, profile: str | None = None
) -> tuple[int, dict[str, Any]]:
    code, run_dir, results = run_runbook(lab, runbook, outputs, *args, profile=profile)
    assert run_dir is not None, f"{runbook} left no evidence folder"
    return code, results


@pytest.mark.parametrize("runbook", list(SCENARIOS))
def test_every_check_given_too_little_time_is_not_healthy(
    lab: LabHandle, tmp_path: Path, runbook: str
) -> None:
    code, results = run(lab, tmp_path, runbook, "-p", "timeout_s", "0.001")
    assert results["status"] == "completed", results.get("reason")
    verdict = results["verdict"]
    assert code == 1 and verdict["state"] != "healthy", verdict["summary"]
    errored = [c["check"] for c in results["checks"] if c["status"] == "error"]
    assert errored, "with a 1 ms timeout some checks must fail to answer"
    listed = {u["check"] for u in verdict["could_not_check"]}
    assert set(errored) <= listed, (errored, listed)
    assert "could not check" in verdict["summary"]
    assert f"{len(listed)} could not answer" in verdict["summary"]
    assert any(u["reason"] == "timed out" for u in verdict["could_not_check"])
    assert all(
        "timeout_s" in u["advice"] for u in verdict["could_not_check"] if u["reason"] == "timed out"
    )


# -- one hung dependency at a time ------------------------------------------------------------


def _profile(lab: LabHandle, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    data = yaml.safe_load(Path(lab.exports["IRLIB_PROFILE"]).read_text())
    change(data)
    path = tmp_path / "hung.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _hung_kubernetes(lab: LabHandle, tmp_path: Path, port: int) -> Callable[[dict], None]:
    config = yaml.safe_load(Path(lab.exports["KUBECONFIG"]).read_text())
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{port}"
    kubeconfig = tmp_path / "hung-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return lambda d: d["kubernetes"].update(kubeconfig=str(kubeconfig))


def _hung_postgres(lab: LabHandle, tmp_path: Path, port: int) -> Callable[[dict], None]:
    return lambda d: d["postgres"].update(dsn=f"postgresql://postgres@127.0.0.1:{port}/trading")


def _hung_redis(lab: LabHandle, tmp_path: Path, port: int) -> Callable[[dict], None]:
    return lambda d: d["redis"].update(url=f"redis://127.0.0.1:{port}/0")


def _hung_prometheus(lab: LabHandle, tmp_path: Path, port: int) -> Callable[[dict], None]:
    return lambda d: d["prometheus"].update(url=f"http://127.0.0.1:{port}")


def _hung_broker(lab: LabHandle, tmp_path: Path, port: int) -> Callable[[dict], None]:
    return lambda d: d["broker"].update(url=f"http://127.0.0.1:{port}")


def _hung_api(lab: LabHandle, tmp_path: Path, port: int) -> Callable[[dict], None]:
    return lambda d: d["api"].update(url=f"http://127.0.0.1:{port}")


# (the target as the checks name it, the runbook that reads it, how to hang it, its own
# longer timeouts cut short); the calibration checks read the API's /v1/calibration routes,
# so a hung API silences them.
HUNG = [
    ("kubernetes", "p1_system_unavailable", _hung_kubernetes, ()),
    ("postgres", "p2_high_latency", _hung_postgres, ()),
    ("redis", "p1_system_unavailable", _hung_redis, ()),
    ("prometheus", "p2_high_latency", _hung_prometheus, ()),
    ("broker", "p1_execution_failures", _hung_broker, ()),
    ("calibration", "p2_calibration_failures", _hung_api, ("-p", "test_timeout_s", "3")),
]


@pytest.mark.parametrize(
    ("target", "runbook", "hang", "args"),
    HUNG,
    ids=["kubernetes", "postgres", "redis", "prometheus", "http-broker", "http-api"],
)
def test_a_hung_dependency_is_named_and_the_run_is_not_healthy(
    lab: LabHandle,
    tmp_path: Path,
    silent_port: int,
    target: str,
    runbook: str,
    hang: Callable[[LabHandle, Path, int], Callable[[dict], None]],
    args: tuple[str, ...],
) -> None:
    def change(d: dict[str, Any]) -> None:
        hang(lab, tmp_path, silent_port)(d)
        d["timeouts"].update(check_s=2.0, http_s=1.0)

    profile = _profile(lab, tmp_path, change)
    t0 = time.monotonic()
    code, results = run(lab, tmp_path, runbook, "-p", "timeout_s", "2", *args, profile=profile)
    elapsed = time.monotonic() - t0
    assert results["status"] == "completed", results.get("reason")
    verdict = results["verdict"]
    assert code == 1 and verdict["state"] != "healthy", verdict["summary"]
    silent = [u for u in verdict["could_not_check"] if u["target"] == target]
    assert silent, verdict["could_not_check"]
    assert target in verdict["summary"] or any(
        target in c["title"] for c in verdict["causes"][:3]
    ), verdict
    # no check waited past its timeout (plus the statements' 2 s sample and some slack)
    assert all(c["duration_s"] <= 5.0 for c in results["checks"]), results["checks"]
    assert elapsed < 150


def test_the_health_drill_shows_a_runbook_that_could_not_look_as_failing(
    lab: LabHandle, tmp_path: Path
) -> None:
    result = irlib(
        "drill", "health", "--outputs", str(tmp_path), "--check-timeout", "0.001",
        env=lab.env, timeout=400,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    verdict = json.loads((run_dir / "results.json").read_text())["verdict"]
    assert verdict["state"] != "healthy"
    assert verdict["could_not_check"]
    for name, r in verdict["runbooks"].items():
        assert not r["healthy"], (name, r)
        assert f"FAIL {name}:" in result.stdout
