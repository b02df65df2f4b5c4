"""The broker's API as the P1 "Execution Failures" runbook reads it: status, authentication,
latency, positions per account, fills and order rejections. Read-only."""
