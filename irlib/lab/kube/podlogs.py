"""Pod logs as files: `<pods_dir>/<pod>.log` (current container), `<pod>.previous.log`.

The emulator writes a container's start-up lines (and a crashing image's last words); the
lab's api process appends its own lines to its pods' files. Reading applies the kubelet's
options: tailLines, sinceSeconds/sinceTime, timestamps, limitBytes.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from irlib.lab.kube.meta import parse_time, rfc3339_nano

TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))\s")
LEVELS = re.compile(r"^(INFO|WARN|WARNING|ERROR|DEBUG|CRITICAL|FATAL|LOG:|NOTICE)\b")


def path(pods_dir: Path, pod: str, previous: bool = False) -> Path:
    return pods_dir / (f"{pod}.previous.log" if previous else f"{pod}.log")


def stamp(ts: float) -> str:
    """The lab's log line timestamp: RFC 3339 with milliseconds."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def format_lines(lines: list[str], ts: float) -> str:
    """Log records (`INFO ...`) get a timestamp; continuation lines (a traceback) do not."""
    out = []
    for i, line in enumerate(lines):
        t = ts + i * 0.001
        out.append(f"{stamp(t)} {line}" if LEVELS.match(line) or i == 0 else line)
    return "".join(line + "\n" for line in out)


def start_container(pods_dir: Path, pod: str, lines: list[str], ts: float) -> None:
    """A new container: its log starts afresh with `lines`."""
    pods_dir.mkdir(parents=True, exist_ok=True)
    path(pods_dir, pod).write_text(format_lines(lines, ts))


def container_exited(pods_dir: Path, pod: str) -> None:
    """The container died: its log becomes what `--previous` shows."""
    current = path(pods_dir, pod)
    if current.exists():
        shutil.copyfile(current, path(pods_dir, pod, previous=True))


def remove(pods_dir: Path, pod: str) -> None:
    for previous in (False, True):
        path(pods_dir, pod, previous).unlink(missing_ok=True)


def _timed(text: str, fallback: float) -> list[tuple[float, str]]:
    """Each line with its time: its own timestamp, else that of the line before."""
    out = []
    last = fallback
    for line in text.splitlines():
        m = TIMESTAMP.match(line)
        if m:
            last = parse_time(m.group(1)) or last
        out.append((last, line))
    return out


def read(
    file: Path,
    *,
    tail_lines: int | None = None,
    since: float | None = None,
    timestamps: bool = False,
    limit_bytes: int | None = None,
) -> str:
    """The log text after the kubelet's filters; `since` is an epoch time."""
    try:
        text = file.read_text(errors="replace")
        mtime = file.stat().st_mtime
    except FileNotFoundError:
        return ""
    lines = _timed(text, mtime)
    if since is not None:
        lines = [(t, line) for t, line in lines if t >= since]
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    out = _join(lines, timestamps)
    if limit_bytes is not None:
        out = out[:limit_bytes]
    return out


def _join(lines: list[tuple[float, str]], timestamps: bool) -> str:
    return "".join(
        (f"{rfc3339_nano(t)} {line}\n" if timestamps else f"{line}\n") for t, line in lines
    )


def render(text: str, fallback: float, timestamps: bool) -> str:
    """Appended log text as `follow` streams it."""
    return _join(_timed(text, fallback), timestamps) if timestamps else text


def since_from(since_seconds: str | None, since_time: str | None) -> float | None:
    if since_seconds:
        return time.time() - int(since_seconds)
    if since_time:
        return parse_time(since_time)
    return None
