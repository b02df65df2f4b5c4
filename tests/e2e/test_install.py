"""The installable runtime: the wheel built from this checkout, installed without extras into a
new virtualenv outside the checkout, runs a runbook from another directory with the same verdict
as the checkout, carries the notebooks, and refuses the lab (the `lab` extra) with exit 2.

The venv's packages come from PyPI (or pip's cache), as a user's would (the `installed`
fixture, tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irlib.lab import REQUIRES
from tests.helpers import ROOT, LabHandle, irlib, outside, sh

FAULT = "redis-down"
RUNBOOK = "p1_system_unavailable"


def test_the_runtime_installs_without_the_labs_dependencies(installed: Path) -> None:
    found = sh(installed / "python", "-c", (
        "import importlib.util as u, irlib, json; "
        f"print(irlib.__file__); print(json.dumps([m for m in {REQUIRES!r} if u.find_spec(m)]))"
    ), cwd="/", env=outside(installed))  # fmt: skip
    where, present = found.stdout.splitlines()
    assert str(installed.parent) in where and str(ROOT) not in where
    # numpy is not the lab's to drop: pandas (the runbooks' tables) requires it
    assert json.loads(present) in ([], ["numpy"]), present
    listed = sh(installed / "pip", "list", "--format=json", env=outside(installed))
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert not names & {"starlette", "uvicorn", "prometheus-client", "scipy"}, names


def test_the_wheel_carries_every_notebook(installed: Path) -> None:
    shipped = sh(installed / "python", "-c", (
        "from irlib.notebooks_dir import notebooks_dir; import json; d = notebooks_dir(); "
        "print(d); print(json.dumps(sorted(p.name for p in d.glob('*.ipynb'))))"
    ), cwd="/", env=outside(installed))  # fmt: skip
    where, names = shipped.stdout.splitlines()
    assert "site-packages/irlib/notebooks" in where
    assert json.loads(names) == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def test_an_installed_run_from_another_directory_gives_the_checkouts_verdict(
    installed: Path, lab: LabHandle, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    profile = lab.exports["IRLIB_PROFILE"]
    lab.irlib("lab", "inject", FAULT, check=True)
    try:
        mine = irlib("run", RUNBOOK, "--profile", profile, "--outputs", str(tmp_path / "checkout"),
                     env=lab.env, timeout=300)  # fmt: skip
        theirs = sh(installed / "irlib", "run", RUNBOOK, "--profile", profile,
                    env=outside(installed, lab.env), cwd=elsewhere, timeout=300)  # fmt: skip
    finally:
        lab.irlib("lab", "clear", check=True)
    assert (mine.returncode, theirs.returncode) == (1, 1), theirs.stderr

    def verdict(run_dir: str) -> tuple[str, list[str]]:
        v = json.loads((Path(run_dir) / "results.json").read_text())["verdict"]
        return v["state"], [c["id"] for c in v["causes"]][:1]

    run_dir = Path(theirs.stdout.strip().splitlines()[-1])
    assert run_dir.is_relative_to(elsewhere / "outputs")  # the default archive, under the cwd
    assert verdict(str(run_dir)) == verdict(mine.stdout.strip().splitlines()[-1])
    assert verdict(str(run_dir))[1] == [FAULT]


@pytest.mark.parametrize(
    "command", [["lab", "up"], ["drill", "faults"]], ids=["lab-up", "drill-faults"]
)
def test_the_lab_without_its_extra_exits_2_naming_it_and_starts_nothing(
    installed: Path, tmp_path: Path, command: list[str]
) -> None:
    state = tmp_path / "lab"
    result = sh(installed / "irlib", *command, "--state-dir", state,
                env=outside(installed), cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "irlib[lab]" in result.stderr and "scipy" in result.stderr
    assert result.stdout == "" and not state.exists()
