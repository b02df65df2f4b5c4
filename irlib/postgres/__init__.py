"""PostgreSQL (TimescaleDB in production): connectivity, sessions, statements, locks."""
