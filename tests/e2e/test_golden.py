"""nbval in CI: every notebook runs against the lab, and the P1 runbook's output under a fixed
fault matches its golden executed copy (tests/e2e/golden/), sanitised for what varies between runs.
A changed verdict, cause, mitigation or check summary fails here: re-make the copy with
scripts/regenerate_golden when the change is deliberate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, LabHandle

GOLDEN = Path(__file__).parent / "golden"


def nbval(lab: LabHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--nbval-current-env",
            "--rootdir",
            str(ROOT),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=lab.env,
        cwd=ROOT,
    )


def test_every_notebook_runs_under_nbval(lab: LabHandle) -> None:
    result = nbval(lab, "--nbval-lax", "notebooks/")
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout


def test_p1_output_under_bad_deploy_matches_the_golden_copy(lab: LabHandle) -> None:
    lab.irlib("lab", "inject", "bad-deploy", check=True)
    try:
        result = nbval(
            lab,
            "--nbval",
            "--nbval-sanitize-with",
            str(GOLDEN / "sanitize.cfg"),
            str(GOLDEN / "p1_system_unavailable.bad-deploy.ipynb"),
        )
    finally:
        lab.irlib("lab", "clear", check=True)
    assert result.returncode == 0, result.stdout[-6000:]
