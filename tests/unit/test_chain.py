"""The evidence chain: runs archived by irlib.archive (the step every run ends with) into an
incident folder, each manifest linked to the one before and signed; then damaged as an attacker
or an accident would, and `irlib evidence verify` naming exactly what is wrong."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from irlib import archive, chain
from irlib import incident as inc
from irlib.cli import main
from irlib.profile import IncidentSettings
from tests.helpers import ROOT

KEY_ENV = "IRLIB_TEST_EVIDENCE_KEY"
KEY = "k3y-that-signs-the-evidence-0123456789"
T0 = datetime(2026, 1, 15, 9, 15, tzinfo=UTC)
SOURCE = ROOT / "notebooks" / "p1_system_unavailable.ipynb"


def archived_run(folder: Path, n: int, key_env: str | None = None) -> Path:
    """A run folder closed by the real archive step: notebook, events, results, manifest."""
    run_dir = archive.make_run_dir(folder, T0, f"p1_system_unavailable-{n}")
    shutil.copy(SOURCE, run_dir / archive.NOTEBOOK)
    (run_dir / "events.jsonl").write_text("")
    archive.archive(
        run_dir,
        runbook="p1_system_unavailable",
        incident=folder.name,
        operator="dana",
        profile={"name": "lab"},
        parameters={},
        source=SOURCE,
        secret_envs=[KEY_ENV],
        reason=None,
        started=T0,
        finished=T0,
        duration_s=1.0,
        html=False,
        signing_key_env=key_env,
    )
    return run_dir


@pytest.fixture
def incident(tmp_path: Path) -> Path:
    """An incident record and three runs archived into it, in order."""
    opened = inc.open_incident(
        tmp_path, severity="P1", title="API unavailable", settings=IncidentSettings(), now=T0
    )
    for n in range(3):
        archived_run(opened.folder, n)
    return opened.folder


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(KEY_ENV, KEY)
    folder = tmp_path / "INC-2026-0099"
    folder.mkdir()
    for n in range(3):
        archived_run(folder, n, key_env=KEY_ENV)
    return folder


def runs(folder: Path) -> list[Path]:
    return chain.run_folders(folder)


def test_each_manifest_links_to_the_one_before_and_the_first_to_the_record(
    incident: Path,
) -> None:
    first, second, third = runs(incident)
    links = [json.loads((r / "manifest.json").read_text())["chain"] for r in runs(incident)]
    assert links[0] == {
        "folder": incident.name,
        "previous": {"record": "incident.json", "sha256": chain.sha256_file(incident / inc.RECORD)},
    }
    assert links[1]["previous"] == {
        "run": first.name,
        "sha256": chain.sha256_file(first / "manifest.json"),
    }
    assert links[2]["previous"]["run"] == second.name
    report = chain.verify(incident)
    assert report.ok, report.text()
    assert [r.run for r in report.runs] == [first.name, second.name, third.name]
    assert report.summary() == "verified: 3 run(s), every file and chain link, unsigned"


def damage_notebook_byte(folder: Path) -> str:
    run = runs(folder)[1]
    data = bytearray((run / "notebook.ipynb").read_bytes())
    data[100] ^= 1
    (run / "notebook.ipynb").write_bytes(bytes(data))
    return f"{run.name}: notebook.ipynb does not match its sha256 in the manifest"


def damage_file_and_manifest(folder: Path) -> str:
    """A file replaced and its manifest line rewritten to match: the manifest's own sha256
    is what the chain (and the next run's manifest) recorded."""
    run = runs(folder)[1]
    (run / "results.json").write_text('{"verdict": "healthy, honestly"}')
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["files"]["results.json"]["sha256"] = chain.sha256_file(run / "results.json")
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return f"{run.name}: manifest.json is not the one the chain recorded: it changed after the run"


def damage_remove_run(folder: Path) -> str:
    run = runs(folder)[1]
    shutil.rmtree(run)
    return f"run {run.name} is in the chain but its folder is missing (removed)"


def damage_copy_from_another_incident(folder: Path) -> str:
    other = folder.parent / "INC-2026-0777"
    other.mkdir()
    foreign = archived_run(other, 9)
    shutil.copytree(foreign, folder / foreign.name)
    return (
        f"{foreign.name}: not in this folder's chain.jsonl (archived in 'INC-2026-0777'): "
        "copied or inserted"
    )


def damage_record(folder: Path) -> str:
    (folder / inc.RECORD).write_text((folder / inc.RECORD).read_text().replace("P1", "P3"))
    return "incident.json changed after the first run of this folder was archived"


def damage_added_file(folder: Path) -> str:
    run = runs(folder)[0]
    (run / "notes.txt").write_text("written later")
    return f"{run.name}: notes.txt is not in the manifest (added after the run)"


DAMAGE = {
    "changed-byte": damage_notebook_byte,
    "file-and-manifest-line": damage_file_and_manifest,
    "run-removed": damage_remove_run,
    "run-copied-in": damage_copy_from_another_incident,
    "record-changed": damage_record,
    "file-added": damage_added_file,
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_verify_names_what_was_damaged(incident: Path, damage: str) -> None:
    assert chain.verify(incident).ok
    problem = DAMAGE[damage](incident)
    report = chain.verify(incident)
    assert not report.ok
    assert problem in report.all_problems(), report.text()


def test_the_next_link_breaks_when_a_manifest_and_its_chain_line_are_both_rewritten(
    incident: Path,
) -> None:
    """Rewriting chain.jsonl too does not hide a changed run that is not the last one: the
    next manifest names the old manifest's sha256."""
    damage_file_and_manifest(incident)
    run = runs(incident)[1]
    lines = [json.loads(line) for line in (incident / chain.CHAIN).read_text().splitlines()]
    lines[1]["manifest_sha256"] = chain.sha256_file(run / "manifest.json")
    lines[2]["previous_sha256"] = lines[1]["manifest_sha256"]
    (incident / chain.CHAIN).write_text("".join(json.dumps(e) + "\n" for e in lines))
    report = chain.verify(incident)
    broken = f"{runs(incident)[2].name}: its manifest links to another predecessor than the chain's"
    assert broken in report.all_problems(), report.text()


def test_signed_manifests_verify_with_the_key_and_never_hold_it(signed: Path) -> None:
    report = chain.verify(signed)
    assert report.ok and all(r.signed for r in report.runs), report.text()
    assert report.summary().endswith("3 signature(s) checked")
    for path in signed.rglob("*"):
        assert not path.is_file() or KEY not in path.read_text(errors="replace"), path
    signature = json.loads((runs(signed)[0] / "manifest.json").read_text())["signature"]
    assert signature["alg"] == "hmac-sha256" and signature["key_env"] == KEY_ENV


def test_a_wrong_key_or_none_is_named_and_never_verifies(
    signed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "another-key")
    wrong = chain.verify(signed)
    first = runs(signed)[0].name
    assert f"{first}: signature does not verify: signed with another key than ${KEY_ENV}'s" in (
        wrong.all_problems()
    )
    monkeypatch.delenv(KEY_ENV)
    unset = chain.verify(signed)
    assert f"{first}: signature not checked: ${KEY_ENV} is not set" in unset.all_problems()


def test_a_resigned_change_needs_the_key(signed: Path) -> None:
    """A manifest changed and its chain line fixed, by someone without the key: the signature
    (made with the right key, over the old manifest) no longer holds."""
    run = runs(signed)[2]
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["irlib_version"] = "9.9.9"
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    lines = [json.loads(line) for line in (signed / chain.CHAIN).read_text().splitlines()]
    lines[-1]["manifest_sha256"] = chain.sha256_file(run / "manifest.json")
    (signed / chain.CHAIN).write_text("".join(json.dumps(e) + "\n" for e in lines))
    problems = chain.verify(signed).all_problems()
    assert problems == [
        f"{run.name}: signature does not verify: the manifest changed after it was signed"
    ]


def test_runs_archived_at_once_stay_in_one_chain(tmp_path: Path) -> None:
    folder = tmp_path / "INC-2026-0100"
    folder.mkdir()
    threads = [threading.Thread(target=archived_run, args=(folder, n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = chain.verify(folder)
    assert report.ok and len(report.runs) == 8, report.text()


def test_an_interactive_session_archived_again_keeps_the_chain(incident: Path) -> None:
    """JupyterLab's save hook archives a session each time it is saved."""
    run = runs(incident)[0]
    archive.archive(
        run,
        runbook="p1_system_unavailable",
        incident=incident.name,
        operator="dana",
        profile={"name": "lab"},
        parameters={},
        source=SOURCE,
        secret_envs=[],
        reason=None,
        started=T0,
        finished=T0,
        duration_s=2.0,
        html=False,
    )
    assert chain.verify(incident).ok, chain.verify(incident).text()


def test_the_command_exits_0_1_or_2(incident: Path, tmp_path: Path) -> None:
    cli = CliRunner()
    ok = cli.invoke(main, ["evidence", "verify", str(incident)])
    assert ok.exit_code == 0, ok.output
    assert "verified: 3 run(s)" in ok.output
    damage_remove_run(incident)
    failed = cli.invoke(main, ["evidence", "verify", str(incident), "--json"])
    assert failed.exit_code == 1
    assert json.loads(failed.output)["ok"] is False
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        usage = cli.invoke(main, ["evidence", "verify", str(folder)])
        assert usage.exit_code == 2 and "irlib: error:" in usage.output


def test_a_run_is_refused_when_the_profile_names_a_key_that_is_not_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "name: t\n"
        "kubernetes: {namespace: trading}\n"
        "api: {url: 'http://127.0.0.1:9'}\n"
        "broker: {url: 'http://127.0.0.1:9'}\n"
        "market_data: {url: 'http://127.0.0.1:9'}\n"
        "postgres: {dsn: 'postgresql://x@127.0.0.1:9/x'}\n"
        "redis: {url: 'redis://127.0.0.1:9'}\n"
        "prometheus: {url: 'http://127.0.0.1:9'}\n"
        f"evidence: {{signing_key_env: {KEY_ENV}}}\n"
    )
    outputs = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["run", "p1_system_unavailable", "--profile", str(profile), "--outputs", str(outputs)],
    )
    assert result.exit_code == 2, result.output
    assert f"${KEY_ENV} (evidence.signing_key_env), but it is not set" in result.output
    assert not outputs.exists()
