"""results.json through its one module: what the archive writes is what every reader reads,
with a schema_version; a file of a newer schema is refused, one written before it is read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from irlib import run_results
from irlib.run_results import RunResults

STARTED = datetime(2026, 12, 2, 9, 15, tzinfo=UTC)


def sample(**changes: object) -> RunResults:
    fields: dict[str, object] = {
        "runbook": "p1_system_unavailable",
        "incident": "INC-1",
        "operator": "alice",
        "started_at": STARTED,
        "finished_at": STARTED.replace(minute=16),
        "duration_s": 61.23456,
        "status": run_results.COMPLETED,
        "exit_code": 1,
        "verdict": {"state": "down", "causes": [{"id": "redis-down", "score": 0.9}]},
        "mitigations": [{"id": "restart:redis", "outcome": "planned"}],
    }
    return RunResults(**{**fields, **changes})  # type: ignore[arg-type]


def test_what_is_written_is_what_is_read(tmp_path: Path) -> None:
    results = sample(checklist={"done": 1, "total": 5})
    run_results.write(tmp_path, results)
    raw = json.loads((tmp_path / "results.json").read_text())
    assert raw["schema_version"] == run_results.SCHEMA_VERSION
    assert raw["started_at"] == "2026-12-02T09:15:00+00:00" and raw["duration_s"] == 61.235
    assert "mode" not in raw and raw["checklist"] == {"done": 1, "total": 5}
    back = run_results.read(tmp_path)
    assert back == RunResults(**{**results.__dict__, "duration_s": 61.235})
    assert back.top_cause["id"] == "redis-down"


def test_the_writer_redacts_through_the_filter_it_is_given(tmp_path: Path) -> None:
    run_results.write(
        tmp_path,
        sample(operator="s3cret"),
        lambda v: json.loads(json.dumps(v).replace("s3cret", "[REDACTED]")),
    )
    assert run_results.read(tmp_path).operator == "[REDACTED]"


def test_a_file_from_before_schema_version_is_read_and_a_newer_one_refused(
    tmp_path: Path,
) -> None:
    data = sample().to_dict()
    del data["schema_version"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert run_results.read(tmp_path).runbook == "p1_system_unavailable"
    data["schema_version"] = run_results.SCHEMA_VERSION + 1
    (tmp_path / "results.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="newer than this irlib reads"):
        run_results.read(tmp_path)


def test_a_foreign_or_torn_file_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text('{"runbook": "x"}')
    with pytest.raises(ValueError, match="lacks or mistypes"):
        run_results.read(tmp_path)
    (tmp_path / "results.json").write_text('{"runbook": ')
    with pytest.raises(ValueError):
        run_results.read(tmp_path)
    top = sample(verdict=None).top_cause
    assert top == {}
