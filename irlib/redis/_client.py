"""The only module of irlib that imports the redis driver; short socket timeouts so a dead
server costs a check its timeout and nothing more. What the driver raises leaves `session`
as irlib's target errors: no connection is Unreachable, no answer in time TimedOut, an
error reply (NOAUTH, LOADING ...) Refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from irlib import capture
from irlib.errors import Refused, TimedOut, Unreachable
from irlib.transport import secret

if TYPE_CHECKING:
    import redis


@contextmanager
def session(
    url: str, *, timeout_s: float, password_env: str | None = None
) -> Iterator[redis.Redis]:
    """A client for the `with` block, closed on leaving it. A replay makes none: the driver
    (a third of a second of imports) is imported only when a command may be sent, or when a
    replayed answer is one of its errors."""
    if capture.replaying():
        try:
            yield _Captured(None, url)  # type: ignore[misc]
        except Exception as e:
            if type(e).__module__.split(".")[0] != "redis":
                raise
            raise _target_error(e, timeout_s) from e
        return
    import redis

    client = redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        password=secret(password_env),
    )
    try:
        with client:
            yield _Captured(client, url) if capture.active() else client  # type: ignore[misc]
    except redis.RedisError as e:
        raise _target_error(e, timeout_s) from e


def _target_error(e: Exception, timeout_s: float) -> Exception:
    import redis

    if isinstance(e, redis.TimeoutError):
        return TimedOut(f"no answer within {timeout_s:g} s: {e}")
    if isinstance(e, redis.ConnectionError):  # refused, reset, and also a refused password
        return Unreachable(f"unreachable: {e}")
    return Refused(str(e))


class _Captured:
    """The client with each command captured (irlib.capture); a replay sends none."""

    def __init__(self, client: redis.Redis | None, url: str) -> None:
        self._client = client
        self._url = url

    def __getattr__(self, command: str) -> Callable[..., Any]:
        def send(*args: Any, **kwargs: Any) -> Any:
            call = {"url": self._url, "command": command, "args": [list(args), kwargs]}
            return capture.call(
                "redis", call, lambda: getattr(self._client, command)(*args, **kwargs)
            )

        return send
