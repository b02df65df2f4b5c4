"""One module per scenario of the seed runbook: its steps, in the seed's order, and its verdict."""
