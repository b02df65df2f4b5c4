"""`results.json`, what one run found: the one record that the archive step writes (irlib.archive)
and that the incident timeline, the post-mortem and the drill history read.

    schema_version  1; a file without it was written before it existed, in the same shape
    runbook, incident, operator          who ran what, for which incident
    profile, parameters                  the target profile (no secret: only env-var names)
    started_at, finished_at, duration_s  UTC ISO times, seconds
    status, reason                       "completed", or "crashed" with why
    checks, verdict, mitigations         each as results.Check / Verdict / guard.Attempt write it
    exit_code                            0 healthy, 1 a problem (or no verdict), 3 crashed
    checklist                            the resolution checklist's last state, when it has one
    mode, notebook                       an interactive run: "interactive" and its notebook's path;
                                         a replay: "replay"
    captures                             what the run read (irlib.capture): file, calls, bytes
    replay_of                            a replay's original run folder, and its verdict

A reader of a newer schema than its own refuses it with ValueError rather than misread it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from irlib import io

FILE = "results.json"
SCHEMA_VERSION = 1
COMPLETED, CRASHED = "completed", "crashed"


@dataclass(frozen=True)
class RunResults:
    runbook: str
    incident: str
    operator: str
    started_at: datetime
    finished_at: datetime
    duration_s: float
    status: str  # COMPLETED or CRASHED
    exit_code: int
    reason: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    mitigations: list[dict[str, Any]] = field(default_factory=list)
    checklist: dict[str, Any] | None = None
    mode: str | None = None
    notebook: str | None = None
    captures: dict[str, Any] | None = None
    replay_of: dict[str, Any] | None = None

    @property
    def top_cause(self) -> dict[str, Any]:
        """The verdict's first cause, or {} when it named none (or there is no verdict)."""
        causes = (self.verdict or {}).get("causes") or []
        return causes[0] if causes else {}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["started_at"] = self.started_at.isoformat()
        out["finished_at"] = self.finished_at.isoformat()
        out["duration_s"] = round(self.duration_s, 3)
        for optional in ("checklist", "mode", "notebook", "captures", "replay_of"):
            if out[optional] is None:
                del out[optional]
        return {"schema_version": SCHEMA_VERSION, **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResults:
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(
                f"results.json schema_version {version!r} is newer than this irlib reads "
                f"({SCHEMA_VERSION}): upgrade irlib"
            )
        try:
            return cls(
                runbook=str(data["runbook"]),
                incident=str(data["incident"]),
                operator=str(data.get("operator", "")),
                started_at=datetime.fromisoformat(data["started_at"]),
                finished_at=datetime.fromisoformat(data["finished_at"]),
                duration_s=float(data.get("duration_s", 0.0)),
                status=str(data["status"]),
                exit_code=int(data["exit_code"]),
                reason=data.get("reason"),
                profile=dict(data.get("profile") or {}),
                parameters=dict(data.get("parameters") or {}),
                checks=list(data.get("checks") or []),
                verdict=data.get("verdict"),
                mitigations=list(data.get("mitigations") or []),
                checklist=data.get("checklist"),
                mode=data.get("mode"),
                notebook=data.get("notebook"),
                captures=data.get("captures"),
                replay_of=data.get("replay_of"),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"results.json lacks or mistypes {e}") from e


def path(run_dir: Path) -> Path:
    return Path(run_dir) / FILE


def write(
    run_dir: Path, results: RunResults, redact: Callable[[Any], Any] = lambda value: value
) -> Path:
    """Write results.json atomically, through `redact` (the archive step's secret filter)."""
    target = path(run_dir)
    io.write_json_atomic(target, redact(results.to_dict()))
    return target


def read(run_dir: Path) -> RunResults:
    """The run's results; OSError when there are none, ValueError when they are not ours."""
    data = json.loads(path(run_dir).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("results.json is not an object")
    return RunResults.from_dict(data)
