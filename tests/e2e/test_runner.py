"""`irlib run`: parameters checked before anything runs, real kernels executing toy notebooks
(tests/e2e/notebooks/), exit codes, crash marking, redaction, and the archived evidence."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from irlib import evidence
from irlib.archive import RunResult, make_run_dir
from irlib.cli import main
from irlib.errors import ProfileError, UsageError
from irlib.params import Parameter, convert, looks_like_secret, read_parameters, validate
from irlib.runner import run_runbook
from tests.unit.test_profile import MINIMAL

TOYS = Path(__file__).parent / "notebooks"
ARCHIVE = {
    "notebook.ipynb", "notebook.html", "results.json", "manifest.json", "events.jsonl",
    "profile.yaml",  # the profile the run used, for a replay (it holds no secret)
}  # fmt: skip


@pytest.fixture
def profile_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("IRLIB_PROFILE", raising=False)
    monkeypatch.delenv("IRLIB_ADMIN_TOKEN", raising=False)
    data = {**MINIMAL, "name": "toy", "api": {**MINIMAL["api"], "token_env": "IRLIB_ADMIN_TOKEN"}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(tmp_path: Path, runbook: str = "toy_check", **kw: Any) -> tuple[RunResult, list[str]]:
    logged: list[str] = []
    options: dict[str, Any] = {
        "profile": str(tmp_path / "toy.yaml"),
        "incident": "INC-1",
        "params": {},
        "confirm": [],
        "operator": "alice",
        "outputs": tmp_path / "outputs",
        "notebooks_dir": TOYS,
        "log": logged.append,
        **kw,
    }
    return run_runbook(runbook, **options), logged


def _results(result: RunResult) -> dict[str, Any]:
    return json.loads((result.run_dir / "results.json").read_text())


def _notebook(result: RunResult) -> dict[str, Any]:
    return json.loads((result.run_dir / "notebook.ipynb").read_text())


def _assert_manifest_verifies(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    on_disk = {p.name for p in run_dir.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        data = (run_dir / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["size"]


# --- a run that completes ---------------------------------------------------------------


def test_healthy_run_exits_0_and_archives_verifiable_evidence(
    tmp_path: Path, profile_path: Path
) -> None:
    result, logged = _run(
        tmp_path,
        params={"timeout_s": "7", "ratio": "0.25", "verbose": "true"},
        confirm=["rollback:api-service"],
    )
    assert (result.exit_code, result.status) == (0, "completed")
    assert result.run_dir.parent == tmp_path / "outputs" / "INC-1"
    assert result.run_dir.name.endswith("Z-toy_check")
    assert {p.name for p in result.run_dir.iterdir()} == ARCHIVE
    _assert_manifest_verifies(result.run_dir)

    results = _results(result)
    assert results["status"] == "completed" and results["exit_code"] == 0
    assert (results["runbook"], results["incident"], results["operator"]) == (
        "toy_check",
        "INC-1",
        "alice",
    )
    assert results["parameters"] == {
        "timeout_s": 7,
        "ratio": 0.25,
        "verbose": True,
        "profile_path": str(profile_path),
        "incident": "INC-1",
        "operator": "alice",
        "confirm": ["rollback:api-service"],
    }
    assert [c["check"] for c in results["checks"]] == ["api_health", "token_seen"]
    assert results["verdict"]["state"] == "healthy" == result.verdict["state"]  # type: ignore[index]
    assert results["mitigations"][0]["detail"] == "rollback:api-service"
    assert datetime.fromisoformat(results["started_at"]).tzinfo is not None

    nb = _notebook(result)
    assert nb["metadata"]["irlib"]["run"]["status"] == "completed"
    outputs = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c["outputs"])
    assert "types: int float bool ['rollback:api-service']" in outputs  # typed in the kernel
    assert "<title>toy_check INC-1</title>" in (result.run_dir / "notebook.html").read_text()
    assert any("against profile toy" in line for line in logged)
    assert any("verdict: HEALTHY" in line for line in logged)


@pytest.mark.parametrize("state", ["degraded", "down"], ids=["degraded", "down"])
def test_a_problem_found_exits_1(tmp_path: Path, profile_path: Path, state: str) -> None:
    result, logged = _run(tmp_path, params={"state": state})
    assert (result.exit_code, result.status) == (1, "completed")
    assert _results(result)["verdict"]["state"] == state
    assert any(f"verdict: {state.upper()}" in line for line in logged)


def test_completed_without_verdict_exits_1_and_injects_only_declared_names(
    tmp_path: Path, profile_path: Path
) -> None:
    result, logged = _run(tmp_path, "toy_silent", confirm=["rollback:x"])
    assert (result.exit_code, result.status, result.verdict) == (1, "completed", None)
    assert _notebook(result)["metadata"]["papermill"]["parameters"] == {}
    assert any("--confirm is ignored" in line for line in logged)


# --- refused before anything runs -------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"namespce": "trading"}, "unknown parameter 'namespce' for toy_check; did you mean"),
        ({"timeout_s": "abc"}, "parameter timeout_s expects int, got 'abc'"),
        ({"verbose": "maybe"}, "parameter verbose expects bool, got 'maybe'"),
        ({"admin_token": "hunter2hunter2"}, "secrets are never parameters"),
        ({"state": "Bearer example-not-a-real-token"}, "secrets are never parameters"),
        ({"incident": "INC-9"}, "parameter incident is set by --incident"),
    ],
    ids=["misspelled", "mistyped", "not-a-bool", "secret-name", "bearer-value", "reserved"],
)
def test_refused_parameters_raise_before_a_run_folder_exists(
    tmp_path: Path, profile_path: Path, given: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        _run(tmp_path, params=given)
    assert caught.value.exit_code == 2
    assert not (tmp_path / "outputs").exists()


def test_misspelled_parameter_names_the_close_match_and_the_known_names(
    tmp_path: Path, profile_path: Path
) -> None:
    with pytest.raises(UsageError) as caught:
        _run(tmp_path, params={"namespce": "trading"})
    assert "did you mean namespace?" in str(caught.value)
    assert "timeout_s" in str(caught.value) and "incident" not in str(caught.value)


def test_a_secret_env_value_is_refused_as_a_parameter(
    tmp_path: Path, profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRLIB_ADMIN_TOKEN", "plainlookingvalue")
    with pytest.raises(UsageError, match="secrets are never parameters"):
        _run(tmp_path, params={"state": "plainlookingvalue"})


def test_an_unknown_mitigation_to_confirm_is_refused(tmp_path: Path, profile_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown mitigation 'reboot:everything'"):
        _run(tmp_path, confirm=["rollback:api-service", "reboot:everything"])
    assert not (tmp_path / "outputs").exists()


def test_unknown_runbook_lists_the_available_ones(tmp_path: Path, profile_path: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown runbook 'toy_chek'; available: toy_check, "):
        _run(tmp_path, "toy_chek")
    with pytest.raises(UsageError, match="unknown runbook"):
        _run(tmp_path, "../notebooks/toy_check")
    assert not (tmp_path / "outputs").exists()


def test_profile_errors_exit_2_before_anything_runs(
    tmp_path: Path, profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ProfileError, match="IRLIB_PROFILE"):
        _run(tmp_path, profile=None)
    with pytest.raises(ProfileError, match="does not exist"):
        _run(tmp_path, profile=str(tmp_path / "nope.yaml"))
    monkeypatch.setenv("IRLIB_PROFILE", str(profile_path))  # the environment's profile is used
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**MINIMAL, "kubernetes": {"namespce": "x"}}))
    with pytest.raises(ProfileError, match="namespce"):
        _run(tmp_path, profile=str(bad))
    assert not (tmp_path / "outputs").exists()


def test_an_unsafe_incident_id_is_refused(tmp_path: Path, profile_path: Path) -> None:
    with pytest.raises(UsageError, match=r"incident '\.\./x'"):
        _run(tmp_path, incident="../x")


# --- a run that crashes -----------------------------------------------------------------


def _assert_crashed(result: RunResult, reason: str) -> dict[str, Any]:
    assert (result.exit_code, result.status) == (3, "crashed")
    assert reason in (result.reason or "")
    assert {p.name for p in result.run_dir.iterdir()} == ARCHIVE
    _assert_manifest_verifies(result.run_dir)
    results = _results(result)
    assert (results["status"], results["exit_code"]) == ("crashed", 3)
    assert reason in results["reason"]
    assert [c["check"] for c in results["checks"]] == ["api_health"]  # recorded before it
    assert results["verdict"] is None  # the verdict cell never ran
    nb = _notebook(result)
    assert nb["metadata"]["irlib"]["run"]["status"] == "crashed"
    assert "irlib-crash-banner" in nb["cells"][0]["metadata"]["tags"]
    assert "this run crashed" in (result.run_dir / "notebook.html").read_text()
    return nb


def test_a_cell_that_raises_exits_3_with_the_partial_notebook(
    tmp_path: Path, profile_path: Path
) -> None:
    result, logged = _run(tmp_path, "toy_raise")
    nb = _assert_crashed(result, "raised RuntimeError: boom: the API answered 503")
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors and errors[0]["evalue"] == "boom: the API answered 503"
    assert any(line.startswith("crashed: cell In[") for line in logged)


def test_a_cell_past_the_timeout_exits_3_and_says_it_timed_out(
    tmp_path: Path, profile_path: Path
) -> None:
    t0 = time.monotonic()
    result, _ = _run(tmp_path, "toy_sleep", execution_timeout_s=1.5)  # nbclient: whole s
    assert time.monotonic() - t0 < 20  # the 60 s sleep was cut off, its kernel stopped
    nb = _assert_crashed(result, "timed out: a cell ran longer than 2 s")
    statuses = {
        "".join(c["source"]): c["metadata"].get("papermill", {}).get("status") for c in nb["cells"]
    }
    assert statuses["time.sleep(sleep_s)"] == "failed"  # papermill said "completed"
    assert [s for src, s in statuses.items() if src.startswith('record("verdict"')] == ["not run"]
    assert any("irlib-crash-marker" in c["metadata"].get("tags", []) for c in nb["cells"])


def test_a_kernel_that_dies_exits_3(tmp_path: Path, profile_path: Path) -> None:
    result, _ = _run(tmp_path, "toy_die")
    _assert_crashed(result, "the kernel died")


# --- secrets and run folders ------------------------------------------------------------


def test_no_secret_value_survives_in_any_file_of_the_run_folder(
    tmp_path: Path, profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "tok-" + secrets.token_hex(12)
    monkeypatch.setenv("IRLIB_ADMIN_TOKEN", token)  # named by the profile's api.token_env
    result, _ = _run(tmp_path)
    assert result.exit_code == 0
    for path in result.run_dir.iterdir():
        assert token.encode() not in path.read_bytes(), path.name
    nb_text = (result.run_dir / "notebook.ipynb").read_text()
    assert "token: [REDACTED]" in nb_text
    assert _results(result)["checks"][1]["summary"] == "token [REDACTED]"
    _assert_manifest_verifies(result.run_dir)


def test_a_secret_named_by_a_notebook_env_parameter_is_redacted_too(
    tmp_path: Path, profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = "cred-" + secrets.token_hex(10)
    monkeypatch.setenv("IRLIB_BROKER_CRED", credential)  # no TOKEN/SECRET in its name
    result, _ = _run(tmp_path, params={"admin_token_env": "IRLIB_BROKER_CRED"})
    for path in result.run_dir.iterdir():
        assert credential.encode() not in path.read_bytes(), path.name


def test_runs_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    made: list[Path] = []
    threads = [
        threading.Thread(target=lambda: made.append(make_run_dir(tmp_path, at, "rb")))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = sorted(p.name for p in made)
    assert len(set(names)) == 8
    assert "20260102T030405Z-rb" in names and "20260102T030405Z-rb-8" in names


def test_two_real_runs_never_overwrite_each_other(tmp_path: Path, profile_path: Path) -> None:
    first, _ = _run(tmp_path)
    second, _ = _run(tmp_path)
    assert first.run_dir != second.run_dir
    assert (first.run_dir / "results.json").exists() and (second.run_dir / "results.json").exists()


# --- the command line -------------------------------------------------------------------


def test_cli_run_prints_the_run_folder_last_and_exits_with_the_run_code(
    tmp_path: Path, profile_path: Path
) -> None:
    args = ["run", "toy_check", "--notebooks", str(TOYS), "--profile", str(profile_path)]
    args += ["--outputs", str(tmp_path / "out"), "-p", "state", "down", "--incident", "INC-7"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "out" / "INC-7" and (run_dir / "manifest.json").exists()
    assert "running toy_check against profile toy" in result.stderr
    assert "verdict: DOWN" in result.stderr


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["-p", "namespce", "trading"], "did you mean namespace?"),
        (["-p", "timeout_s", "abc"], "parameter timeout_s expects int, got 'abc'"),
    ],
    ids=["misspelled", "mistyped"],
)
def test_cli_refuses_bad_parameters_with_exit_2(
    tmp_path: Path, profile_path: Path, params: list[str], message: str
) -> None:
    args = ["run", "toy_check", "--notebooks", str(TOYS), "--profile", str(profile_path)]
    result = CliRunner().invoke(main, [*args, "--outputs", str(tmp_path / "out"), *params])
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""
    assert not (tmp_path / "out").exists()


def test_cli_in_a_real_process(tmp_path: Path, profile_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IRLIB_PROFILE"}
    cmd = [sys.executable, "-m", "irlib.cli", "run", "toy_check", "--notebooks", str(TOYS)]
    cmd += ["--profile", str(profile_path), "--outputs", str(tmp_path / "out")]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert run_dir.is_dir() and run_dir.parent == tmp_path / "out" / "adhoc"
    _assert_manifest_verifies(run_dir)
    assert "verdict: HEALTHY" in proc.stderr
    print(f"toy run through the CLI: {elapsed:.2f} s wall")  # shown with -s


# --- parameters (no kernel) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "text", "expected"),
    [
        (Parameter("n", 5, int), "007", 7),
        (Parameter("n", 5, int), "-3", -3),
        (Parameter("x", 0.5, float), "2", 2.0),
        (Parameter("b", False, bool), "TRUE", True),
        (Parameter("b", True, bool), "no", False),
        (Parameter("l", [], list), "a, b,,c", ["a", "b", "c"]),
        (Parameter("l", [], list), '["a", 1]', ["a", 1]),
        (Parameter("l", [1], list, item_type=int), "1,2", [1, 2]),
        (Parameter("l", [], list), "", []),
        (Parameter("s", None, str, optional=True), "none", None),
        (Parameter("s", "x", str), "none", "none"),
        (Parameter("a", None, None, optional=True), "[1,2]", "[1,2]"),
    ],
    ids=[
        "int-leading-zeros",
        "negative-int",
        "int-for-float",
        "bool-true",
        "bool-no",
        "comma-list",
        "json-list",
        "int-list",
        "empty-list",
        "none-able",
        "plain-str-keeps-none",
        "untyped-stays-str",
    ],
)
def test_cli_strings_convert_to_the_default_type(
    param: Parameter, text: str, expected: Any
) -> None:
    assert convert(param, text) == expected
    assert type(convert(param, text)) is type(expected)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        (Parameter("n", 5, int), "1.5"),
        (Parameter("n", 5, int), True),
        (Parameter("x", 0.5, float), "fast"),
        (Parameter("l", [1], list, item_type=int), "1,x"),
        (Parameter("l", [], list), "[1,"),
        (Parameter("s", "x", str), 5),
    ],
    ids=["float-for-int", "bool-for-int", "word-for-float", "bad-item", "broken-json", "int-str"],
)
def test_values_of_the_wrong_type_are_refused(param: Parameter, value: Any) -> None:
    with pytest.raises(UsageError, match=f"parameter {param.name} expects"):
        convert(param, value)


def test_parameters_cell_types_come_from_defaults_and_annotations() -> None:
    declared = read_parameters(TOYS / "toy_check.ipynb")
    assert declared["timeout_s"].kind is int and declared["ratio"].kind is float
    assert declared["verbose"].kind is bool
    assert (declared["confirm"].kind, declared["confirm"].item_type) == (list, str)
    assert (declared["note"].kind, declared["note"].optional) == (str, True)
    assert validate(TOYS / "toy_check.ipynb", {"note": "null", "timeout_s": 9}) == {
        "note": None,
        "timeout_s": 9,
    }


def _notebook_with_parameters(path: Path, source: str) -> Path:
    cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": source}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4}))
    return path


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = compute()", "x is not set to a literal"),
        ("import os", "only `name = literal`"),
        ("a = b = 1", "only `name = literal`"),
        ("x = (", "not Python"),
    ],
    ids=["call", "import", "chained", "syntax-error"],
)
def test_a_parameters_cell_holding_more_than_literals_is_refused(
    tmp_path: Path, source: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        read_parameters(_notebook_with_parameters(tmp_path / "nb.ipynb", source))


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Bearer example-not-a-real-token", True),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", True),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123", True),
        ("q8Xv2LmN4pR7sT1uW3yZ5aB6cD9eF0gH", True),
        ("api-service-7d9f8b6c5-x2k4p", False),
        ("3f786850e387550fdab836ed7e6dc881de23001b", False),
        ("/work/main/profiles/Lab2026.yaml", False),
        ("rollback:api-service", False),
    ],
    ids=["bearer", "jwt", "github", "random", "pod-name", "git-sha", "path", "mitigation-id"],
)
def test_secret_looking_values(text: str, secret: bool) -> None:
    assert looks_like_secret(text) is secret


# --- the recorder (no kernel) -----------------------------------------------------------


def test_record_keeps_records_in_memory_without_a_run_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(evidence.RUN_DIR_ENV, raising=False)
    evidence.clear()
    evidence.record("verdict", {"state": "healthy", "at": datetime(2026, 1, 1, tzinfo=UTC)})
    [entry] = evidence.records()
    assert entry["kind"] == "verdict" and entry["data"]["at"] == "2026-01-01T00:00:00+00:00"
    assert datetime.fromisoformat(entry["at"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    evidence.clear()


def test_record_appends_lines_to_the_run_dir_and_redacts_named_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(evidence.RUN_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(evidence.REDACT_ENVS_ENV, "MY_CRED")
    monkeypatch.setenv("MY_CRED", "very-private-value")
    evidence.record("check", {"summary": "saw very-private-value"})
    evidence.record("mitigation", {"id": "m", "outcome": "planned"})
    (tmp_path / "events.jsonl").open("a").write('{"kind": "verdict", "da')  # a torn last line
    found = evidence.records()
    assert [r["kind"] for r in found] == ["check", "mitigation"]
    assert found[0]["data"]["summary"] == "saw [REDACTED]"
    assert evidence.records("mitigation")[0]["data"]["id"] == "m"


def test_secret_values_and_redact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMED", "named-secret-1")
    monkeypatch.setenv("SOME_API_KEY", "key-abcdefgh")
    monkeypatch.setenv("SHORT_TOKEN", "1234567")  # too short to redact safely
    monkeypatch.setenv("PLAIN", "not-a-secret-value")
    found = evidence.secret_values(["NAMED", "UNSET_VAR"])
    assert {"named-secret-1", "key-abcdefgh"} <= set(found)
    assert "1234567" not in found and "not-a-secret-value" not in found
    text = 'a named-secret-1 b "key-abcdefgh" &lt;x'
    assert evidence.redact(text, ["named-secret-1", "key-abcdefgh"]) == (
        'a [REDACTED] b "[REDACTED]" &lt;x'
    )
    # as nbconvert's HTML and the notebook's JSON spell it
    assert evidence.redact("x p&amp;ss&lt;w&gt; y", ["p&ss<w>"]) == "x [REDACTED] y"
    assert evidence.redact('"a\\"quoted-secret"', ['a"quoted-secret']) == '"[REDACTED]"'


def test_the_manifest_names_the_runbooks_git_revision(tmp_path: Path) -> None:
    from irlib.archive import _git_revision

    repo = tmp_path / "repo"
    repo.mkdir()
    book = repo / "rb.ipynb"
    book.write_text("{}")
    assert _git_revision(book) == "unknown"  # not in a repository
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "rb.ipynb"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "rb"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert _git_revision(book) == head.stdout.strip()
