"""Redis, the api-service's cache: PING and INFO."""

from irlib.redis.checks import check_memory, check_ping

__all__ = ["check_memory", "check_ping"]
