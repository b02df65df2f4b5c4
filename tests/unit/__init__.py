"""Tests that need nothing but Python: no server, no notebook kernel (seconds)."""
