"""Evidence replayed offline: every run kept under tests/e2e/regressions/ (the fault drill's
runs of all 25 faults, kept by scripts/collect_regressions) is replayed in a network namespace
where nothing but listeners of ours holds the ports its profile names: each gives its original
top cause, and nothing connects. A rule removed on purpose is named in the difference. Any
evidence folder copied in there, a real platform's too, becomes one of these tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from irlib import incident as inc
from irlib import run_results
from irlib.profile import IncidentSettings
from tests.helpers import ROOT

KEPT = ROOT / "tests" / "e2e" / "regressions"
FOLDERS = sorted(p for p in KEPT.iterdir() if p.is_dir()) if KEPT.is_dir() else []


def offline(outputs: Path, folders: list[Path], *extra: str) -> dict[str, Any]:
    """`irlib replay` of each folder inside a new network namespace (tests/e2e/offline.py)."""
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "tests.e2e.offline", str(outputs),
         *map(str, folders)],
        capture_output=True, text=True, timeout=1800, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, f"unshare (root, util-linux, iproute2): {done.stderr[-3000:]}"
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")  # not "module": xdist tore it down and ran it twice
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return offline(tmp_path_factory.mktemp("replays"), FOLDERS)


def test_the_fault_drill_of_every_fault_is_kept() -> None:
    from irlib.lab.faults import FAULTS

    kept = {p.name.split("--")[0] for p in FOLDERS}
    assert set(FAULTS) <= kept, sorted(set(FAULTS) - kept)


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_a_kept_run_replays_offline_to_its_top_cause_and_connects_nowhere(
    replayed: dict[str, Any], folder: Path
) -> None:
    run = replayed["runs"][folder.name]
    assert replayed["ports"], "the kept profiles name no loopback port to guard"
    assert run["connections"] == 0, run
    assert run["exit"] == 0, run["text"] + run["log"]  # 0: the same verdict
    new = run_results.read(Path(run["run_dir"]))
    original = run_results.read(folder)
    assert new.mode == "replay" and new.replay_of is not None
    assert new.top_cause.get("id") == original.top_cause.get("id")
    assert not [c for c in new.checks if "replay:" in c.get("summary", "")], "an unanswered call"


def test_a_rule_removed_on_purpose_is_named_in_the_difference(tmp_path: Path) -> None:
    folder = KEPT / "bad-deploy--p1_system_unavailable"
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    path = notebooks / "p1_system_unavailable.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "import SystemUnavailable" in c.source)
    cell.source = (
        "import irlib.runbooks.p1_system_unavailable as p1\n"
        "p1.RULES.remove(p1._bad_deploy)  # the rule, changed on purpose\n" + cell.source
    )
    nbformat.write(nb, path)
    done = subprocess.run(
        [sys.executable, "-m", "irlib.cli", "replay", str(folder), "--outputs", str(tmp_path),
         "--notebooks", str(notebooks)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rule bad-deploy no longer fires (it scored 0.95)" in done.stdout
    assert "top cause bad-deploy -> " in done.stdout


def test_a_folder_without_captures_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "old-run"
    folder.mkdir()
    shutil.copyfile(
        KEPT / "bad-deploy--p1_system_unavailable" / "results.json", folder / "results.json"
    )
    outputs = tmp_path / "o"
    done = subprocess.run(
        [sys.executable, "-m", "irlib.cli", "replay", str(folder), "--outputs", str(outputs)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "cannot be replayed: it has no captures.jsonl" in done.stderr
    assert not outputs.exists()


def test_several_runs_replay_in_one_process_all_checked_before_the_first(
    tmp_path: Path,
) -> None:
    """An incident's folder stands for its runs; one folder that is not replayable stops the
    command before anything runs."""
    incident = tmp_path / "INC-2026-0042"
    kept = ("bad-deploy--p1_system_unavailable", "broker-rejects--p1_execution_failures")
    for minute, name in enumerate(kept):
        shutil.copytree(KEPT / name, incident / f"20261205T09{15 + minute}00Z-{name}")
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    outputs = tmp_path / "o"

    def replay(*folders: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "irlib.cli", "replay", *map(str, folders),
             "--outputs", str(outputs)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    refused = replay(incident, empty)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "nothing-here holds no run that kept captures to replay" in refused.stderr
    assert not outputs.exists()  # nothing ran

    done = replay(incident, KEPT / "stale-calibration--p2_calibration_failures")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("the same verdict") == 3
    assert "[3/3]" in done.stderr
    made = [Path(line) for line in done.stdout.splitlines() if line.startswith(str(outputs))]
    assert len(made) == 3
    assert [run_results.read(p).mode for p in made] == ["replay"] * 3


def test_the_post_mortem_replays_each_run_off_the_incidents_timeline(tmp_path: Path) -> None:
    opened = inc.open_incident(
        tmp_path, severity="P1", title="API unavailable", settings=IncidentSettings()
    )
    run = opened.folder / "20261205T091500Z-p1_system_unavailable"
    shutil.copytree(KEPT / "bad-deploy--p1_system_unavailable", run)
    entries = len(inc.load(tmp_path, opened.id).entries)
    done = subprocess.run(
        [sys.executable, "-m", "irlib.cli", "incident", "postmortem", opened.id, "--replay",
         "--outputs", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    md = (opened.folder / "postmortem.md").read_text()
    assert "## Replays (today's rules)" in md
    assert "with the installed irlib's rules: 0 verdict(s) differ" in md
    section = md.split("## Replays (today's rules)")[1]
    row = next(line for line in section.splitlines() if line.startswith(f"| [{run.name}]"))
    assert "DOWN: bad-deploy (0.95)" in row and row.rstrip(" |").endswith("the same")
    assert list((opened.folder / "replays").glob("*/*-p1_system_unavailable-replay"))
    assert len(inc.load(tmp_path, opened.id).entries) == entries  # the timeline is the incident's


def _outputs(run_dir: Path) -> list[Any]:
    """Every cell's source and outputs (not papermill's cell ids and timings)."""
    nb = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    return [(c.source, c.get("outputs")) for c in nb.cells]


def test_two_replays_in_one_process_give_the_same_notebook(tmp_path: Path) -> None:
    """A replay's kernel lives in the replaying process (irlib.inprocess): a second replay
    there starts from a fresh shell and replays the captures afresh, with their durations."""
    folder = KEPT / "bad-deploy--p1_system_unavailable"
    script = (
        "import sys; from pathlib import Path\n"
        "from irlib.notebooks_dir import notebooks_dir\n"
        "from irlib.replay import replay\n"
        "for n in (1, 2):\n"
        "    done = replay(Path(sys.argv[1]), notebooks_dir=notebooks_dir(),\n"
        "                  outputs=Path(sys.argv[2]) / str(n), log=lambda m: None)\n"
        "    print(done.exit_code, done.result.run_dir)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (code1, first), (code2, second) = (line.split(" ", 1) for line in done.stdout.splitlines())
    assert code1 == code2 == "0"
    assert _outputs(Path(first)) == _outputs(Path(second))
    nb = nbformat.read(Path(second) / "notebook.ipynb", as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))  # not counting on from the first replay
    assert "Task was destroyed" not in done.stderr


def test_a_replay_that_crashes_keeps_its_partial_notebook_and_exits_3(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    path = notebooks / "p1_system_unavailable.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.source.strip() == "rb.obvious_causes()")
    cell.source = "1 / 0\n" + cell.source
    nbformat.write(nb, path)
    done = subprocess.run(
        [sys.executable, "-m", "irlib.cli", "replay",
         str(KEPT / "bad-deploy--p1_system_unavailable"), "--outputs", str(tmp_path / "o"),
         "--notebooks", str(notebooks)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "the replay crashed: cell In[5] raised ZeroDivisionError" in done.stdout
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    assert run_results.read(run_dir).status == run_results.CRASHED
    assert {"notebook.ipynb", "notebook.html", "results.json", "manifest.json"} <= {
        p.name for p in run_dir.iterdir()
    }
    saved = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    assert saved.metadata["irlib"]["run"]["status"] == "crashed"


def test_the_post_mortem_notebook_replays_in_its_kernel_without_losing_its_shell(
    tmp_path: Path,
) -> None:
    """Inside a notebook's kernel (an IPython shell runs the process) a replay starts a kernel
    of its own: an in-process one would replace the notebook's shell and lose its outputs."""
    import papermill

    opened = inc.open_incident(
        tmp_path, severity="P1", title="API unavailable", settings=IncidentSettings()
    )
    run = opened.folder / "20261205T091500Z-p1_system_unavailable"
    shutil.copytree(KEPT / "bad-deploy--p1_system_unavailable", run)
    out = tmp_path / "postmortem.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "postmortem.ipynb"), str(out),
        parameters={"incident": opened.id, "outputs_dir": str(tmp_path)},
        kernel_name="python3", cwd=str(ROOT / "notebooks"), progress_bar=False,
    )  # fmt: skip
    shown = [
        o.get("data", {}).get("text/markdown", "")
        for c in nbformat.read(out, as_version=4).cells
        for o in c.get("outputs", [])
    ]
    replays = next(t for t in shown if "## Replays (today's rules)" in t)
    assert "0 verdict(s) differ" in replays and "| the same |" in replays
