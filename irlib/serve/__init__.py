"""`irlib serve`: Alertmanager's webhook in, a read-only runbook run per firing alert group,
its verdict in the incident record and the chat. payload.py reads the webhook, routing.py
picks the runbook, triage.py runs and records, server.py is the HTTP face."""
