"""PostgreSQL (TimescaleDB in production): connectivity, sessions, statements, locks."""

from irlib.postgres import checks, mitigations
from irlib.postgres._client import APPLICATION_NAME, connect, query, write

__all__ = ["APPLICATION_NAME", "checks", "connect", "mitigations", "query", "write"]
