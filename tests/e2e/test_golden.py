"""nbval in CI: every notebook runs against the lab, and the P1 runbook's output under a fixed
fault matches its golden executed copy (tests/e2e/golden/) exactly. The copy is a replay of a
kept bad-deploy run (scripts/regenerate_golden), and nbval runs the notebook against the same
captures: the same answers with the same clock and durations, so nothing varies by machine and
nothing is sanitised. A changed verdict, cause, mitigation, check summary or table fails here:
re-make the copy with scripts/regenerate_golden when the change is deliberate."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.e2e.golden.execute import replay_env
from tests.helpers import ROOT, LabHandle

GOLDEN = Path(__file__).parent / "golden"
COPY = GOLDEN / "p1_system_unavailable.bad-deploy.ipynb"
KEPT = ROOT / "tests" / "e2e" / "regressions" / "bad-deploy--p1_system_unavailable"


def nbval(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
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
        env=dict(env),
        cwd=ROOT,
    )


def test_every_notebook_runs_under_nbval(lab: LabHandle) -> None:
    result = nbval(lab.env, "--nbval-lax", "notebooks/")
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout


def test_p1_output_replayed_matches_the_golden_copy_unsanitised() -> None:
    # no lab: the kernel nbval starts answers every read from the kept run's captures
    result = nbval({**os.environ, **replay_env(KEPT)}, "--nbval", str(COPY))
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout


def test_two_regenerations_of_the_golden_copy_are_byte_identical(tmp_path: Path) -> None:
    made = []
    for n in (1, 2):
        target = tmp_path / f"{n}.ipynb"
        done = subprocess.run(
            [sys.executable, "-m", "tests.e2e.golden.execute",
             str(ROOT / "notebooks" / "p1_system_unavailable.ipynb"), str(target), str(KEPT)],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        made.append(target.read_bytes())
    assert made[0] == made[1]
    assert b"replay: the original run made no such call" not in made[0]  # every read answered


def test_the_golden_comparison_fails_on_a_changed_output(tmp_path: Path) -> None:
    """Unsanitised is not unchecked: one word of the verdict changed in the copy fails nbval."""
    changed = tmp_path / COPY.name
    text = COPY.read_text(encoding="utf-8")
    assert text.count("suggested severity: P1") == 1
    changed.write_text(text.replace("suggested severity: P1", "suggested severity: P2"))
    result = nbval({**os.environ, **replay_env(KEPT)}, "--nbval", str(changed))
    assert result.returncode == 1 and "1 failed, " in result.stdout, result.stdout[-3000:]
