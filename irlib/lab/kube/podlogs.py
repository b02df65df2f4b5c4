"""Pod logs as files, `<pods_dir>/<pod>.log` and `<pod>.previous.log`: the emulator writes
start-up lines and crash output, the lab's api process appends its own. `serve` answers the
pods/log subresource with the kubelet's options (tailLines, sinceSeconds, timestamps,
previous, follow...) as text/plain.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from irlib.lab.kube.meta import Obj, parse_time, rfc3339_nano
from irlib.lab.kube.wire import bad_request, flag

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


def _container(pod: Obj, wanted: str | None) -> str:
    name = pod["metadata"]["name"]
    containers = [c["name"] for c in pod["spec"].get("containers") or []]
    if wanted is None:
        if len(containers) != 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(containers)}]"
            )
        return containers[0]
    if wanted not in containers:
        raise bad_request(f"container {wanted} is not valid for pod {name}")
    return wanted


def serve(request: Request, pod: Obj, pods_dir: Path, alive: Callable[[], bool]) -> Response:
    """The answer to `GET .../pods/<name>/log`; `alive` tells a follow when the pod is gone."""
    params = request.query_params
    name = pod["metadata"]["name"]
    container = _container(pod, params.get("container"))
    previous = flag(request, "previous")
    file = path(pods_dir, name, previous)
    if not file.exists():
        if previous:
            raise bad_request(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        statuses = pod.get("status", {}).get("containerStatuses") or []
        waiting = next(
            ((s.get("state") or {}).get("waiting") for s in statuses if s["name"] == container),
            None,
        )
        reason = (waiting or {}).get("reason", "ContainerCreating")
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    timestamps = flag(request, "timestamps")
    text = read(
        file,
        tail_lines=int(params["tailLines"]) if params.get("tailLines") else None,
        since=since_from(params.get("sinceSeconds"), params.get("sinceTime")),
        timestamps=timestamps,
        limit_bytes=int(params["limitBytes"]) if params.get("limitBytes") else None,
    )
    if not flag(request, "follow"):
        return PlainTextResponse(text)
    return StreamingResponse(_follow(file, text, timestamps, alive), media_type="text/plain")


async def _follow(
    file: Path, first: str, timestamps: bool, alive: Callable[[], bool]
) -> AsyncIterator[bytes]:
    yield first.encode()
    offset = file.stat().st_size if file.exists() else 0
    while alive():
        await asyncio.sleep(0.5)
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            continue
        if size < offset:
            offset = 0  # the container restarted: a new log
        if size > offset:
            with open(file, "rb") as f:
                f.seek(offset)
                chunk = f.read(size - offset)
            offset = size
            yield render(chunk.decode(errors="replace"), time.time(), timestamps).encode()
