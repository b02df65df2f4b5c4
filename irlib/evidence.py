"""The recorder side of the evidence: runs inside the notebook's kernel and appends one JSON line
per record (run, check, verdict, mitigation) to `$IRLIB_RUN_DIR/events.jsonl`, or keeps them in
memory in an interactive session. Also the redaction of secret values that every archived file
passes through. Talks to nothing but the environment and that one file; must stay cheap to import
(no pandas, no papermill) and must never write a secret value.
"""

from __future__ import annotations

import dataclasses
import enum
import html
import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from irlib import io
from irlib.io import RUN_DIR_ENV  # set by the runner: where events.jsonl goes

REDACT_ENVS_ENV = "IRLIB_REDACT_ENVS"  # comma-separated env-var names holding secrets
EVENTS_FILE = "events.jsonl"
REDACTED = "[REDACTED]"
SECRET_NAME_HINTS = ("TOKEN", "SECRET", "PASSWORD", "API_KEY")
MIN_SECRET_LEN = 8  # shorter values would blank out ordinary words everywhere

_RECORDS: list[dict[str, Any]] = []


def record(
    kind: str,
    data: Mapping[str, Any],
    *,
    run_dir: str | os.PathLike[str] | None = None,
    secret_envs: Iterable[str] = (),
) -> None:
    """Record one fact of this run: durably in the run folder when run by `irlib run` (or in
    `run_dir`, an interactive session's folder), else in memory. `secret_envs` name env vars
    whose values are redacted, besides those of `$IRLIB_REDACT_ENVS`."""
    entry = {"kind": kind, "at": io.utcnow().isoformat(), "data": _jsonable(data)}
    entry = redact_value(entry, secret_values([*_redact_env_names(), *secret_envs]))
    run_dir = run_dir or os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        _RECORDS.append(entry)
        return
    append_record(Path(run_dir) / EVENTS_FILE, entry)


def append_record(path: Path, entry: Mapping[str, Any]) -> None:
    """Append one line and fsync it: a cell that times out or a kernel that dies next loses
    nothing recorded before (irlib.io.append_jsonl)."""
    io.append_jsonl(path, [entry])


def records(kind: str | None = None) -> list[dict[str, Any]]:
    """What this run has recorded so far (from the run folder when there is one)."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    found = read_records(Path(run_dir) / EVENTS_FILE) if run_dir else list(_RECORDS)
    return [r for r in found if kind is None or r["kind"] == kind]


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record in `path`; a line torn by a dying kernel is skipped, not fatal
    (irlib.io.read_jsonl)."""
    return [entry for entry in io.read_jsonl(path) if "kind" in entry]


def clear() -> None:
    """Forget the in-memory records (an interactive session starting over, or a test)."""
    _RECORDS.clear()


def secret_values(env_names: Iterable[str]) -> list[str]:
    """Values of the named env vars and of any env var whose name says it holds a secret,
    longest first so that a secret containing another is replaced whole."""
    names = {n for n in env_names if n}
    names |= {n for n in os.environ if any(h in n.upper() for h in SECRET_NAME_HINTS)}
    values = {os.environ[n] for n in names if n in os.environ}
    return sorted((v for v in values if len(v) >= MIN_SECRET_LEN), key=lambda v: (-len(v), v))


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced, also in its JSON- and HTML-escaped spellings."""
    return _replace(text, _spellings(secrets))


def redact_value(value: Any, secrets: Iterable[str]) -> Any:
    """Redact every string (keys too) inside a JSON-like value, keeping its structure valid."""
    spellings = _spellings(secrets)  # once: a record of a 2,000-pod table has 20,000 strings
    return _redact_walk(value, spellings) if spellings else value


def _redact_walk(value: Any, spellings: list[str]) -> Any:
    if isinstance(value, str):
        return _replace(value, spellings)
    if isinstance(value, Mapping):
        return {_redact_walk(k, spellings): _redact_walk(v, spellings) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_walk(v, spellings) for v in value]
    return value


def _replace(text: str, spellings: list[str]) -> str:
    for spelling in spellings:
        if spelling in text:
            text = text.replace(spelling, REDACTED)
    return text


def redact_file(path: Path, secrets: Iterable[str]) -> bool:
    """Rewrite `path` without the secrets; JSON files stay valid JSON. True when it changed."""
    secrets = list(secrets)
    if not secrets:
        return False
    text = path.read_text(encoding="utf-8")
    if redact(text, secrets) == text:
        return False  # no secret in any spelling: keep the file byte for byte
    if path.suffix in (".json", ".ipynb"):
        try:
            new = json.dumps(redact_value(json.loads(text), secrets), indent=1, ensure_ascii=False)
            new += "\n" if text.endswith("\n") else ""
        except json.JSONDecodeError:
            new = redact(text, secrets)
    elif path.suffix == ".jsonl":
        new = "".join(_redact_json_line(line, secrets) for line in text.splitlines(True))
    else:
        new = redact(text, secrets)
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def _redact_json_line(line: str, secrets: list[str]) -> str:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return redact(line, secrets)
    return json.dumps(redact_value(value, secrets), ensure_ascii=False) + "\n"


def _spellings(secrets: Iterable[str]) -> list[str]:
    out: dict[str, None] = {}
    for s in secrets:
        if not s:
            continue
        json_escaped = json.dumps(s, ensure_ascii=False)[1:-1]
        for variant in (s, json_escaped, html.escape(s), html.escape(s, quote=False)):
            out.setdefault(variant)
    return sorted(out, key=lambda v: (-len(v), v))


def _redact_env_names() -> list[str]:
    return [n.strip() for n in os.environ.get(REDACT_ENVS_ENV, "").split(",") if n.strip()]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return _jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
