"""Redis, the api-service's cache: PING and INFO."""
