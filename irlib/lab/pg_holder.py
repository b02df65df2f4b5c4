"""`python -m irlib.lab.pg_holder STATE_DIR`: the lab's forgetful batch job for lock-contention.

Opens a transaction, takes the lock that control.json's `lock_contention` names, then sits idle
in that transaction until the fault is cleared (it rolls back) or its backend is terminated
(it notices the closed socket and exits). Never reconnects: a terminated holder stays gone.
"""

from __future__ import annotations

import select
import sys
import time

import psycopg
from psycopg import sql

from irlib.lab.config import LabConfig, read_control

APPLICATION_NAME = "nightly-report"
POLL_S = 0.5


def hold(config: LabConfig) -> int:
    spec = read_control(config).get("lock_contention") or {}
    table = spec.get("table", "orders")
    conn = psycopg.connect(config.postgres_dsn, application_name=APPLICATION_NAME)
    # the table name is the lab's own constant, still quoted as an identifier
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
    print(f"holding ACCESS EXCLUSIVE on {table} as backend {conn.info.backend_pid}", flush=True)
    sock = conn.pgconn.socket
    while "lock_contention" in read_control(config):
        readable, _, _ = select.select([sock], [], [], POLL_S)
        if readable:  # the server said something unasked: our backend was terminated
            print("backend terminated; exiting without reconnecting", flush=True)
            return 0
    conn.rollback()
    conn.close()
    print("fault cleared; lock released", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m irlib.lab.pg_holder STATE_DIR", file=sys.stderr)
        return 2
    config = LabConfig.load(args[0])
    for _ in range(40):  # the database may be restarting: a few seconds of patience
        try:
            return hold(config)
        except psycopg.OperationalError as e:
            print(f"cannot hold the lock yet: {e}", flush=True)
            time.sleep(0.25)
    return 1


if __name__ == "__main__":
    sys.exit(main())
