"""Drills prove that every scenario runbook still works: `health` runs their read-only checks
(the health_drill notebook), the lab's fault drill (irlib/lab/gameday.py) breaks the lab on
purpose and checks each diagnosis, `schedule` emits a crontab line or CronJob, `history` reads
what they archived. Drills archive under OUTPUTS/drills/<UTC date>/<UTC time>-<kind>/.
Nothing in this package changes a target system.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from irlib.io import DRILLS_DIR

HEALTH = "health"  # the folder label of a health drill; its notebook is health_drill.ipynb
FAULTS = "faults"
HEALTH_NOTEBOOK = "health_drill"
MATRIX_JSON = "matrix.json"
MATRIX_MD = "matrix.md"


def drills_root(outputs: Path) -> Path:
    return Path(outputs).resolve() / DRILLS_DIR


def day_folder(outputs: Path, at: datetime) -> Path:
    """Where a drill started at `at` (UTC) is archived: OUTPUTS/drills/<UTC date>/."""
    return drills_root(outputs) / at.strftime("%Y-%m-%d")
