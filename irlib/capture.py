"""Captures: every answer a run reads from a target (Kubernetes, PostgreSQL, Redis, HTTP), kept
in its evidence folder as `captures.jsonl`, with the time it was read and the call that read it;
and the replay of a run from them, with no live system: no connection is attempted, the clock
is the captures' and waits are skipped.

The runner chooses the mode for the kernel by one env var (record into a run folder, or replay
from a captures file); without it nothing is kept. Each target client routes its reads through
`call()`, which runs the read (recording it) or answers from the captures (replaying). The
evidence's redaction covers the file like every other; answers are bounded by the checks'
own limits (log tails, row limits) and each at most ANSWER_CHARS when written.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import gzip
import importlib
import ipaddress
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from irlib.errors import MissingToken, Refused, TargetError, TimedOut, Unreachable

ENV = "IRLIB_CAPTURE"  # "record:RUN_DIR" or "replay:CAPTURES_FILE"
FILE = "captures.jsonl"
STORED = FILE + ".gz"  # as a regression folder keeps it (tests/e2e/regressions/)
ANSWER_CHARS = 5_000_000  # a larger answer is kept cut, and marked so (a day of fills: 1.4M)
DRIVERS = ("psycopg", "redis")  # whose own errors a client catches inside its block
T = TypeVar("T")

# The target errors an answer can be, by name: replayed as they were raised.
_ERRORS: dict[str, type[TargetError]] = {
    e.__name__: e for e in (Unreachable, TimedOut, MissingToken, Refused)
}


class JsonText:
    """An answer read as JSON text and parsed (a Kubernetes list): `call()` returns `value`,
    and a recording keeps `text` as it came instead of encoding `value` again (at 20,000
    events, 16 MB: 0.3 s of a run)."""

    __slots__ = ("text", "value")

    def __init__(self, value: Any, text: str) -> None:
        self.value, self.text = value, text


def _value(answer: Any) -> Any:
    return answer.value if isinstance(answer, JsonText) else answer


class NoCapture(Unreachable):
    """A replay asked for a call the run never made: the check cannot answer (ERROR)."""


# -- values as JSON, and back ------------------------------------------------------------------


def encode(value: Any) -> Any:
    """JSON for what the drivers return: rows with times, decimals, addresses; Redis bytes."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [encode(v) for v in value]
    for kind, types, text in _CODECS:
        if isinstance(value, types):
            return {"$t": kind, "v": text(value)}
    return {"$t": "str", "v": str(value)}


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        kind = value.get("$t")
        if kind is not None and set(value) == {"$t", "v"}:
            return _DECODERS[kind](value["v"])
        return {k: decode(v) for k, v in value.items()}
    return value


_CODECS: list[tuple[str, Any, Callable[[Any], Any]]] = [
    ("datetime", dt.datetime, lambda v: v.isoformat()),
    ("date", dt.date, lambda v: v.isoformat()),
    ("time", dt.time, lambda v: v.isoformat()),
    ("timedelta", dt.timedelta, lambda v: v.total_seconds()),
    ("decimal", decimal.Decimal, str),
    ("uuid", uuid.UUID, str),
    ("ip", (ipaddress.IPv4Address, ipaddress.IPv6Address), str),
    ("net", (ipaddress.IPv4Network, ipaddress.IPv6Network), str),
    ("bytes", (bytes, bytearray, memoryview), lambda v: base64.b64encode(bytes(v)).decode()),
]
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(seconds=v),
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
    "ip": ipaddress.ip_address,
    "net": ipaddress.ip_network,
    "bytes": base64.b64decode,
    "str": str,
}


# -- the tape -------------------------------------------------------------------------------------


def _key(target: str, call: Mapping[str, Any], loose: bool = False) -> str:
    """A call as a lookup key. Loose: without its arguments that change with the moment (a
    `since` computed from the clock, a query's evaluation time), for the fallback match."""
    kept = {k: v for k, v in call.items() if not (loose and k in ("params", "args"))}
    return json.dumps([target, encode(kept)], sort_keys=True, default=str)


class Recorder:
    """Appends each call and its answer to RUN_DIR/captures.jsonl, one line each, as it ends."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / FILE
        self._lock = threading.Lock()
        self._seq = 0

    def call(self, target: str, call: Mapping[str, Any], read: Callable[[], T]) -> T:
        at, t0 = dt.datetime.now(dt.UTC), time.monotonic()
        record: dict[str, Any] = {"at": at.isoformat(), "target": target, "call": encode(call)}
        try:
            answer = read()
        except TargetError as e:
            record["error"] = {"type": type(e).__name__, "message": str(e), **_status(e)}
            self._write(record, t0)
            raise
        except Exception as e:  # a driver's own error a check handles (psycopg's, say)
            record["error"] = {"type": "raw", "class": _qualname(e), "message": str(e)}
            self._write(record, t0)
            raise
        record["answer"] = answer  # encoded as it is written
        self._write(record, t0)
        return _value(answer)  # type: ignore[no-any-return]

    def _write(self, record: dict[str, Any], t0: float) -> None:
        record["elapsed_s"] = round(time.monotonic() - t0, 4)
        answer = record.get("answer")
        if isinstance(answer, JsonText):
            # valid JSON holds a line break only between tokens (json.loads refuses one in a
            # string): as a space, the text stays the same JSON on one line
            kept = answer.text.replace("\r", " ").replace("\n", " ").strip()
            record.pop("answer")
            head = json.dumps(record, ensure_ascii=False)
            text = head[:-1] + ', "answer": ' + kept + "}"
        else:
            text = self._dumps(record)
        if len(text) > ANSWER_CHARS:  # kept as a marker: a replay cannot use it
            record.pop("answer", None)
            record["cut"] = len(text)
            text = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            self._seq += 1
            with self.path.open("a", encoding="utf-8") as f:
                f.write(text[:1] + f'"seq": {self._seq}, ' + text[1:] + "\n")

    @staticmethod
    def _dumps(record: dict[str, Any]) -> str:
        try:
            # Most answers (Kubernetes, HTTP, Prometheus) are JSON already: C's encoder takes
            # them as they are, where encode()'s walk took 0.25 s of 20,000 events' 0.7 s.
            return json.dumps(record, ensure_ascii=False)
        except TypeError:  # a driver's values (a row's times and decimals, Redis bytes)
            if "answer" in record:
                record["answer"] = encode(record["answer"])
            return json.dumps(record, ensure_ascii=False, default=str)


class Player:
    """Answers each call from the captures: the same call, in the order it was made (and, for
    a call whose arguments held the moment, the next one of its kind). Never connects."""

    def __init__(self, path: Path) -> None:
        self.records = [json.loads(line) for line in read_text(Path(path)).splitlines() if line]
        self._exact: dict[str, list[dict[str, Any]]] = {}
        self._loose: dict[str, list[dict[str, Any]]] = {}
        for r in self.records:
            call = decode(r["call"])
            self._exact.setdefault(_key(r["target"], call), []).append(r)
            self._loose.setdefault(_key(r["target"], call, loose=True), []).append(r)
        self._used: set[int] = set()
        self._lock = threading.Lock()
        first = self.records[0]["at"] if self.records else None
        self.clock = dt.datetime.fromisoformat(first) if first else None
        self.replayed = 0
        # each thread's stopwatch: the time its replayed calls took in the original run
        self._spent = threading.local()

    def call(self, target: str, call: Mapping[str, Any], read: Callable[[], T]) -> T:
        with self._lock:
            record = self._take(self._exact.get(_key(target, call), [])) or self._take(
                self._loose.get(_key(target, call, loose=True), [])
            )
            if record is None:
                raise NoCapture(f"replay: the original run made no such call ({target})")
            self.clock = max(self.clock or dt.datetime.min.replace(tzinfo=dt.UTC), _at(record))
            self.replayed += 1
        self._spent.s = self.spent() + float(record.get("elapsed_s") or 0.0)
        if "error" in record:
            raise _error(record["error"])
        if "answer" not in record:
            raise NoCapture(f"replay: the answer was too large to keep ({record.get('cut')} chars)")
        return decode(record["answer"])  # type: ignore[no-any-return]

    def spent(self) -> float:
        """Seconds this thread's replayed calls took when the original run made them."""
        return float(getattr(self._spent, "s", 0.0))

    def _take(self, candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
        for r in candidates:
            if r["seq"] not in self._used:
                self._used.add(r["seq"])
                return r
        return None


def read_text(path: Path) -> str:
    """A captures file, plain or gzipped."""
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode("utf-8")
    return path.read_text(encoding="utf-8")


def find(folder: Path) -> Path | None:
    """A run folder's captures file: as the run wrote it, or gzipped."""
    return next((p for p in (folder / FILE, folder / STORED) if p.is_file()), None)


def _at(record: Mapping[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(record["at"])


def _status(e: TargetError) -> dict[str, Any]:
    """What rebuilds the error: a Refused's status, a MissingToken's variable name."""
    if isinstance(e, Refused):
        return {"status": e.status_code, "permission": e.permission, "api_message": e.api_message}
    if isinstance(e, MissingToken):
        return {"env_name": e.env_name}
    return {}


def _qualname(e: BaseException) -> str:
    return f"{type(e).__module__}.{type(e).__qualname__}"


def _error(data: Mapping[str, Any]) -> BaseException:
    if data["type"] == "raw":
        return _raw_error(str(data["class"]), str(data["message"]))
    cls = _ERRORS.get(str(data["type"]), Unreachable)
    if cls is Refused:
        return Refused(
            data["message"],
            data.get("status"),
            permission=data.get("permission"),
            api_message=str(data.get("api_message") or ""),
        )
    if cls is MissingToken:
        return MissingToken(str(data.get("env_name")))
    return cls(data["message"])


def _raw_error(qualname: str, message: str) -> BaseException:
    """A driver's error class again (psycopg's by its SQLSTATE class, redis's), so the same
    except clause in the client catches it; anything else as Unreachable."""
    module, _, name = qualname.rpartition(".")
    if module.split(".")[0] in DRIVERS:
        with contextlib.suppress(ImportError):
            cls = getattr(importlib.import_module(module), name, None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                return cls(message)
    return Unreachable(f"{qualname}: {message}")


# -- the mode of this process ---------------------------------------------------------------------

_tape: Recorder | Player | None = None
_mode: str | None = None
_mode_lock = threading.Lock()


def _current() -> Recorder | Player | None:
    """The tape the env var names, made once per process (the kernel inherits the var)."""
    global _tape, _mode
    value = os.environ.get(ENV, "")
    if value == _mode:
        return _tape
    with _mode_lock:
        kind, _, where = value.partition(":")
        if kind == "record" and where:
            _tape = Recorder(Path(where))
        elif kind == "replay" and where:
            _tape = Player(Path(where))
        else:
            _tape = None
        _mode = value
    return _tape


def reset() -> None:
    """Forget this process's tape: the next call reads the env var again. A kernel inside
    the runner's process (irlib.inprocess) replays the same captures afresh each time."""
    global _tape, _mode
    with _mode_lock:
        _tape, _mode = None, None


def call(target: str, call_: Mapping[str, Any], read: Callable[[], T]) -> T:
    """Run `read` (one call to `target`, described by `call_`) as this process's mode says:
    plainly, recorded, or answered from the captures without running it."""
    tape = _current()
    if tape is None:
        return _value(read())  # type: ignore[no-any-return]
    return tape.call(target, call_, read)


def active() -> bool:
    """True while recording or replaying: clients route their reads through `call`."""
    return _current() is not None


def replaying() -> bool:
    """True in a replay: clients must not load credentials or connect at all."""
    return isinstance(_current(), Player)


def now() -> dt.datetime:
    """The time: the captures' in a replay (when the last replayed answer was read)."""
    tape = _current()
    if isinstance(tape, Player) and tape.clock is not None:
        return tape.clock
    return dt.datetime.now(dt.UTC)


def monotonic() -> float:
    """A stopwatch for durations a run shows (a check's, a PING's): time.monotonic(); in a
    replay, the time the calls replayed in this thread took in the original run, so that a
    replay shows the original's durations and two replays show the same."""
    tape = _current()
    if isinstance(tape, Player):
        return tape.spent()
    return time.monotonic()


def sleep(seconds: float) -> None:
    """A wait between two reads (a sample): skipped in a replay, whose answers are all there."""
    if not replaying():
        time.sleep(seconds)


def summary(run_dir: Path) -> dict[str, Any] | None:
    """What results.json says of a run's captures: how many calls, how many bytes."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    lines = path.read_bytes().count(b"\n")
    return {"file": FILE, "calls": lines, "bytes": path.stat().st_size}
