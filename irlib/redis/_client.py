"""The only module of irlib.redis that imports the redis driver; short socket timeouts so a
dead server costs a check its timeout and nothing more."""

from __future__ import annotations

import os
from typing import Any

import redis

Error = redis.RedisError
ConnectionError = redis.ConnectionError
TimeoutError = redis.TimeoutError


def client(url: str, *, timeout_s: float, password_env: str | None = None) -> redis.Redis:
    kwargs: dict[str, Any] = {}
    if password_env and os.environ.get(password_env):
        kwargs["password"] = os.environ[password_env]
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **kwargs
    )
