"""The plumbing that every part of irlib shares: writing a file so that no reader sees half of
it, the exclusive lock, JSON-lines logs that survive a process killed mid-line, the rule for
names that become folder names, where `outputs/` is, the UTC clock and who the operator is.

One place, because each of these had two to five copies that had started to drift: one
operator lookup crashed in a container without a passwd entry where the others said
"unknown", one atomic write used a fixed temporary name, one JSONL appender glued its line onto
a torn one. Here each is done one way, and the callers keep only what is theirs (their file
names, their error messages).

Sits at the bottom of the layers: imports nothing from irlib but irlib.errors, and talks only to
the files it is given and to the environment.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from irlib.capture import now as _clock
from irlib.errors import UsageError

OUTPUTS_ENV = "IRLIB_OUTPUTS"  # where incidents and runs are archived, when not given
RUN_DIR_ENV = "IRLIB_RUN_DIR"  # set by the runner in a run's kernel: OUTPUTS/<incident>/<run>
DRILLS_DIR = "drills"  # OUTPUTS/drills/<UTC date>/<drill>/: where drills archive their runs
# A name that becomes a folder name (an incident, a runbook): no '/', no leading '.' or '-',
# nothing after a newline (`\Z`, where `$` would let a trailing newline through).
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")

StrPath = str | os.PathLike[str]


# -- time and people -----------------------------------------------------------------------------


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC: irlib's times are UTC. In a replay, the captures' time
    (irlib.capture), so that ages and windows are what the original run saw."""
    return _clock()


def operator_name(explicit: str | None = None) -> str:
    """Who does it, for the audit trail: `explicit`; else $USER; else the login name (getpass:
    $LOGNAME, then the passwd entry); "unknown" when this uid has no passwd entry, as in some
    containers, rather than an error."""
    if explicit:
        return explicit
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):  # KeyError up to Python 3.12, OSError from 3.13
        return "unknown"


# -- names and places ----------------------------------------------------------------------------


def check_safe_name(value: str, what: str) -> str:
    """`value`, if it can be a folder name (SAFE_NAME); else UsageError naming it as `what`."""
    if not SAFE_NAME.match(value):
        raise UsageError(f"{what} {value!r}: use letters, digits, '.', '_' and '-' only")
    return value


def outputs_root(explicit: StrPath | None = None) -> Path:
    """Where incidents and runs are archived: `explicit`; in a run's kernel, the outputs that
    run is archived under ($IRLIB_RUN_DIR: OUTPUTS/<incident>/<run>, or a drill's run under
    OUTPUTS/drills/); else $IRLIB_OUTPUTS;
    else `outputs/` at the repository root when irlib runs from a checkout (notebooks run in
    notebooks/); else ./outputs. Relative paths are returned as given."""
    if explicit:
        return Path(explicit)
    run_dir = os.environ.get(RUN_DIR_ENV)
    if run_dir:
        parents = Path(run_dir).resolve().parents
        for p in parents:  # a drill's run: OUTPUTS/drills/<date>/<drill>/<run>
            if p.name == DRILLS_DIR:
                return p.parent
        return parents[1]  # `irlib run`: OUTPUTS/<incident>/<run>
    if os.environ.get(OUTPUTS_ENV):
        return Path(os.environ[OUTPUTS_ENV])
    root = Path(__file__).resolve().parent.parent
    return root / "outputs" if (root / "pyproject.toml").is_file() else Path("outputs")


# -- files ---------------------------------------------------------------------------------------


def write_atomic(path: StrPath, text: str, *, fsync: bool = False, overwrite: bool = True) -> None:
    """Write `text` (UTF-8) so that a reader sees the old file or the new one, never half: a
    temporary file of its own in the same folder, then `os.replace`. `fsync` flushes it to disk
    first, for what must survive a crash and not only a concurrent reader. `overwrite=False`
    writes a file once: FileExistsError if it exists (`os.link`, which never replaces). The
    temporary file is gone afterwards, also when writing fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(
    path: StrPath,
    data: Any,
    *,
    sort_keys: bool = False,
    fsync: bool = False,
    overwrite: bool = True,
) -> None:
    """`data` as indented JSON (UTF-8, not escaped to ASCII, a final newline), by write_atomic."""
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n"
    write_atomic(path, text, fsync=fsync, overwrite=overwrite)


@contextmanager
def locked(path: StrPath) -> Iterator[IO[str]]:
    """An exclusive flock on `path` (created if missing) for the block, released when the file
    closes; yields the file, open for reading and appending. Advisory: it keeps out only those
    who take it too. Undecodable bytes (a line torn inside a character) read as U+FFFD."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    with os.fdopen(fd, "r+", encoding="utf-8", errors="replace") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield f


def parse_jsonl(text: str | bytes) -> list[dict[str, Any]]:
    """The JSON objects of JSON-lines `text`, in order. A line that is not one (torn by a process
    killed mid-write, blank, or not an object) is skipped, not fatal. Lines end at "\\n" only:
    a record may hold U+2028 or U+0085, which JSON does not escape."""
    lines = text.split(b"\n") if isinstance(text, bytes) else text.split("\n")
    found = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:  # JSONDecodeError, and UnicodeDecodeError for torn bytes
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def read_jsonl(path: StrPath) -> list[dict[str, Any]]:
    """Every complete record of the JSON-lines file at `path` (parse_jsonl); [] if it is missing."""
    try:
        return parse_jsonl(Path(path).read_bytes())
    except FileNotFoundError:
        return []


def append_jsonl(path: StrPath, records: Iterable[Mapping[str, Any]]) -> None:
    """Append one JSON line per record in one write and fsync it, so that a process dying next
    loses nothing appended before. After a torn last line the first record starts a new line:
    the torn one stays skipped and the new ones are read."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if not text:
        return
    with open(path, "ab+") as f:
        end = f.seek(0, os.SEEK_END)
        if end:
            f.seek(end - 1)
            if f.read(1) != b"\n":
                text = "\n" + text
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
