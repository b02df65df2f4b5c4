"""Read-only PostgreSQL checks: the runbook's "database connectivity" and
"SELECT count(*) FROM pg_stat_activity", with the connections broken down by state; for high
latency, pg_stat_statements by mean time, active queries, blocking locks."""

from __future__ import annotations

import re
from typing import Any

from irlib import capture
from irlib.errors import Refused, Unreachable
from irlib.postgres import _client
from irlib.results import Check, Evidence, Status, guarded

sql = _client.sql  # psycopg.sql, for composing identifiers; this module never imports psycopg

TARGET = "postgres"


def check_connectivity(
    dsn: str, *, timeout_s: float = 5.0, password_env: str | None = None
) -> Check:
    def body() -> Check:
        t0 = capture.monotonic()
        rows = _client.query(
            dsn,
            "SELECT version() AS version, now() AS now, pg_postmaster_start_time() AS started",
            timeout_s=timeout_s,
            password_env=password_env,
        )
        row = rows[0]
        return Check(
            "database connectivity",
            TARGET,
            Status.OK,
            f"connected in {(capture.monotonic() - t0) * 1000:.0f} ms",
            (Evidence.table("server", [row]),),
            facts={"reachable": True},
        )

    # a database that takes no connection is down: FAIL, the finding itself
    return guarded("database connectivity", TARGET, body, failing=(Unreachable,))


def check_connection_count(
    dsn: str, *, warn_ratio: float = 0.8, timeout_s: float = 5.0, password_env: str | None = None
) -> Check:
    """Connections against max_connections, by state (active, idle, idle in transaction)."""
    name = "database connections"

    def body() -> Check:
        rows = _client.query(
            dsn,
            "SELECT coalesce(state, 'background') AS state, count(*) AS connections "
            "FROM pg_stat_activity GROUP BY 1 ORDER BY 2 DESC",
            timeout_s=timeout_s,
            password_env=password_env,
        )
        limit = _client.query(
            dsn,
            "SELECT current_setting('max_connections')::int AS m",
            timeout_s=timeout_s,
            password_env=password_env,
        )[0]["m"]
        total = sum(r["connections"] for r in rows)
        ratio = total / limit
        status = Status.WARN if ratio >= warn_ratio else Status.OK
        return Check(
            name,
            TARGET,
            status,
            f"{total} of max_connections {limit} ({ratio:.0%})",
            (Evidence.table("pg_stat_activity by state", rows),),
            facts={
                "reachable": True,
                "connections": total,
                "max_connections": limit,
                "by_state": {r["state"]: r["connections"] for r in rows},
            },
        )

    # the count is unknown, not bad: connectivity is the check that finds the database down
    return guarded(name, TARGET, body, what="cannot count")


# -- the high-latency runbook's database checks --------------------------------------------------

_EQ = re.compile(r"\b([a-z_][a-z0-9_]*)\s*=\s*\$\d+", re.I)
_RANGE = re.compile(r"\b([a-z_][a-z0-9_]*)\s*(?:<=|>=|<|>|\bbetween\b)", re.I)
_FROM = re.compile(r"\bfrom\s+([a-z_][a-z0-9_]*)\b(?!\s*\.)", re.I)
_ORDER = re.compile(r"\border\s+by\s+([a-z_][a-z0-9_]*)", re.I)
_CLAUSE_END = re.compile(r"\b(?:order\s+by|group\s+by|limit|offset|for\s+update)\b", re.I)


def suggest_index(query: str) -> tuple[str, list[str]] | None:
    """The composite index a single-table statement wants: its `col = $n` columns first, then
    its range or ORDER BY column (the usual equality-then-range rule), e.g.
    `... FROM orders WHERE symbol = $1 AND created_at > ... ORDER BY created_at` gives
    ("orders", ["symbol", "created_at"]). None for joins or statements without a filter."""
    if re.search(r"\bjoin\b", query, re.I) or not query.lstrip().lower().startswith("select"):
        return None
    tables = _FROM.findall(query)
    if len(tables) != 1:
        return None
    where = re.split(r"\bwhere\b", query, maxsplit=1, flags=re.I)
    if len(where) != 2:
        return None
    condition = _CLAUSE_END.split(where[1], maxsplit=1)[0]
    columns = [c.lower() for c in _EQ.findall(condition)]
    tail = [c.lower() for c in _RANGE.findall(condition)] + [
        c.lower() for c in _ORDER.findall(query)
    ]
    for c in tail[:1]:
        if c not in columns:
            columns.append(c)
    columns = [c for c in columns if c not in ("true", "false", "now")]
    return (tables[0].lower(), columns[:8]) if columns else None


def _stat_columns(conn: Any) -> tuple[str, str, str]:
    """pg_stat_statements' time columns: PostgreSQL 13+ `*_exec_time`, older `*_time`."""
    names = {
        r["attname"]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('pg_stat_statements') "
            "AND attnum > 0 AND NOT attisdropped"
        ).fetchall()
    }
    if not names:
        raise Refused("pg_stat_statements is not installed in this database")
    if "mean_exec_time" in names:
        return "mean_exec_time", "max_exec_time", "total_exec_time"
    return "mean_time", "max_time", "total_time"


def _statements(conn: Any, cols: tuple[str, str, str], limit: int) -> list[dict[str, Any]]:
    mean, mx, total = (sql.Identifier(c) for c in cols)
    rows: list[dict[str, Any]] = conn.execute(
        sql.SQL(
            "SELECT s.queryid, s.query, s.calls, s.rows, {mean} AS mean_ms, {mx} AS max_ms, "
            "{total} AS total_ms FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid AND d.datname = current_database() "
            "WHERE s.query !~* 'pg_stat_statements|pg_stat_activity|pg_catalog|pg_attribute' "
            "ORDER BY {total} DESC LIMIT %s"
        ).format(mean=mean, mx=mx, total=total),
        (limit,),
    ).fetchall()
    return rows


def _index_columns(conn: Any, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = conn.execute(
        "SELECT ic.relname AS index, i.indisvalid AS valid, "
        "array_agg(a.attname::text ORDER BY k.ord) AS columns "
        "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
        "WHERE t.relname = %s AND n.nspname = ANY(current_schemas(false)) "
        "GROUP BY ic.relname, i.indisvalid ORDER BY 1",
        (table,),
    ).fetchall()
    return rows


# pg_stat_statements writes a typed literal (`interval '1 hour'`) as `interval $4`, which
# PREPARE cannot parse; as a cast (`$4::interval`) it can.
_TYPED_PARAM = re.compile(
    r"\b(interval|timestamptz|timestamp|date|time|numeric|text|uuid|jsonb?)\s+\$(\d+)", re.I
)
_PARAM = re.compile(r"\$(\d+)")
PLAN_STATEMENT = "irlib_plan"


def _plan(conn: Any, query: str) -> dict[str, Any]:
    """The generic plan of a normalised statement (EXPLAIN without ANALYZE: nothing runs), and
    the sequential scans in it with their tables' sizes. Read-only: PREPARE and EXPLAIN write
    nothing, and the session's statement_timeout bounds them."""
    text = _TYPED_PARAM.sub(lambda m: f"${m.group(2)}::{m.group(1)}", query)
    if not text.lstrip().lower().startswith("select"):
        return {"error": "not a SELECT: not planned"}
    params = max((int(n) for n in _PARAM.findall(text)), default=0)
    try:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(
            sql.SQL("PREPARE {} AS {}").format(sql.Identifier(PLAN_STATEMENT), sql.SQL(text))
        )
        try:
            args = sql.SQL(", ").join([sql.NULL] * params)
            explain = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}").format(
                sql.Identifier(PLAN_STATEMENT)
            ) + (sql.SQL("({})").format(args) if params else sql.SQL(""))
            plan = conn.execute(explain).fetchone()
        finally:
            conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(PLAN_STATEMENT)))
            conn.execute("RESET plan_cache_mode")
    except _client.Error as e:
        return {"error": _client.first_line(e)}
    root = next(iter(plan.values()))[0]["Plan"]
    scans = []
    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans") or [])
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name"):
            scans.append({"table": node["Relation Name"], "filter": node.get("Filter") or ""})
    for scan in scans:
        row = conn.execute(
            "SELECT greatest(c.reltuples, 0)::bigint AS rows FROM pg_class c "
            "WHERE c.oid = to_regclass(%s)",
            (scan["table"],),
        ).fetchone()
        scan["rows"] = row["rows"] if row else None
    return {"node": root.get("Node Type"), "seq_scans": scans}


def statements_status(
    hot: list[dict[str, Any]], *, slow_ms: float, min_calls: int
) -> tuple[Status, str, list[dict[str, Any]]]:
    """WARN for the first hot statement that scans a table without the index it wants, else
    for the first slow one: over `slow_ms` mean over at least `min_calls` calls (one call on a
    busy machine can take many times its usual mean). With the slow statements."""
    slow = [
        r for r in hot if (r["recent_mean_ms"] or 0) >= slow_ms and r["recent_calls"] >= min_calls
    ]
    scanning = [
        r
        for r in hot
        if r.get("suggested_index")
        and not r["suggested_index"]["existing"]
        and (r.get("plan") or {}).get("seq_scans")
    ]
    if not (slow or scanning):
        return (
            Status.OK,
            f"no statement's recent mean above {slow_ms:g} ms over {min_calls} calls",
            slow,
        )
    top = (scanning or slow)[0]
    summary = (
        f"hottest statement {top['share']:.0%} of the database's time, "
        f"{top['recent_mean_ms']:.1f} ms mean"
        + (", scans a table without the index it wants" if scanning else "")
        + f": {top['query'][:80]}"
    )
    return Status.WARN, summary, slow


def check_top_statements(
    dsn: str,
    *,
    slow_ms: float = 10.0,
    sample_s: float = 2.0,
    limit: int = 10,
    hot_share: float = 0.1,
    min_calls: int = 3,
    timeout_s: float = 5.0,
    password_env: str | None = None,
) -> Check:
    """The seed's `pg_stat_statements ORDER BY mean_time DESC`: calls, mean, max, total; and,
    because those are cumulative since the last reset, what each statement did over a
    `sample_s` window now: its calls, its mean, its share of the database's time, and its
    growth against its own earlier mean. The hot statements (a share of at least `hot_share`,
    or a recent mean over `slow_ms`) get the index their WHERE/ORDER BY wants, whether the
    table has it, and their plan (EXPLAIN, no ANALYZE) with the sequential scans in it.
    WARN when a hot statement is over `slow_ms` over at least `min_calls` calls in the sample
    (one slow call on a busy machine is no bottleneck), or scans a table whose wanted index
    is missing; the verdict's rules weigh share, growth and plan, which a machine's speed does
    not move."""
    name = "top statements"

    def body() -> Check:
        with _client.connect(dsn, timeout_s=timeout_s, password_env=password_env) as conn:
            cols = _stat_columns(conn)
            before = {r["queryid"]: r for r in _statements(conn, cols, 200)}
            capture.sleep(sample_s)  # skipped in a replay: both samples are captured
            after = _statements(conn, cols, 200)
            rows = []
            for r in after:
                old = before.get(r["queryid"])
                calls = r["calls"] - (old["calls"] if old else 0)
                spent = r["total_ms"] - (old["total_ms"] if old else 0.0)
                earlier = old["mean_ms"] if old and old["calls"] else None
                recent = spent / calls if calls > 0 else None
                rows.append(
                    {
                        "query": " ".join(r["query"].split()),
                        "calls": r["calls"],
                        "mean_ms": round(r["mean_ms"], 3),
                        "max_ms": round(r["max_ms"], 3),
                        "total_ms": round(r["total_ms"], 1),
                        "recent_calls": calls,
                        "recent_mean_ms": round(recent, 3) if recent is not None else None,
                        "recent_total_ms": round(max(spent, 0.0), 3),
                        "earlier_mean_ms": round(earlier, 3) if earlier is not None else None,
                        "growth": round(recent / earlier, 1)
                        if recent is not None and earlier
                        else None,
                    }
                )
            sampled = sum(r["recent_total_ms"] for r in rows)
            for r in rows:
                r["share"] = round(r["recent_total_ms"] / sampled, 3) if sampled > 0 else 0.0
            rows.sort(key=lambda r: (-r["share"], -(r["recent_mean_ms"] or -1)))
            hot = [
                r
                for r in rows
                if r["recent_calls"] > 0
                and (r["share"] >= hot_share or (r["recent_mean_ms"] or 0) >= slow_ms)
            ][:5]
            for r in hot:
                wanted = suggest_index(r["query"])
                if wanted:
                    table, columns = wanted
                    indexes = _index_columns(conn, table)
                    covered = [
                        i["index"]
                        for i in indexes
                        if i["valid"] and list(i["columns"][: len(columns)]) == columns
                    ]
                    r["suggested_index"] = {
                        "table": table,
                        "columns": columns,
                        "existing": covered,
                    }
                r["plan"] = _plan(conn, r["query"])
            rows = rows[:limit]
        shown = [
            {
                k: v
                for k, v in {**r, "query": r["query"][:160]}.items()
                if k not in ("suggested_index", "plan")
            }
            for r in rows
        ]
        title = f"pg_stat_statements, {cols[0]} (ms); recent = the last {sample_s:g} s"
        evidence = [Evidence.table(title, shown)]
        for r in hot:
            s = r.get("suggested_index")
            scans = (r.get("plan") or {}).get("seq_scans") or []
            if s or scans:
                evidence.append(
                    Evidence(
                        f"a hot statement ({r['share']:.0%} of the database's time): plan, index",
                        text="\n".join(
                            [r["query"][:200]]
                            + [
                                f"plan: Seq Scan on {x['table']} ({x['rows']} rows), {x['filter']}"
                                for x in scans
                            ]
                            + (
                                [
                                    f"index {s['table']}({', '.join(s['columns'])}): "
                                    + (
                                        f"exists ({', '.join(s['existing'])})"
                                        if s["existing"]
                                        else "missing"
                                    )
                                ]
                                if s
                                else []
                            )
                        ),
                    )
                )
        status, summary, slow = statements_status(hot, slow_ms=slow_ms, min_calls=min_calls)
        return Check(
            name,
            TARGET,
            status,
            summary,
            tuple(evidence),
            facts={
                "reachable": True,
                "columns": cols,
                "statements": rows,
                "hot": hot,
                "slow": slow,
                "sample_s": sample_s,
            },
        )

    return guarded(name, TARGET, body, what="cannot read pg_stat_statements")


# A healthy service's transaction is idle for milliseconds between its statements: one idle
# this long in a transaction is a finding (check_active_queries)
IDLE_TX_S = 2.0


def _seconds(col: str) -> str:
    return f"round(extract(epoch FROM now() - {col})::numeric, 2)::float"


def check_active_queries(
    dsn: str,
    *,
    long_s: float = 5.0,
    idle_tx_s: float = IDLE_TX_S,
    limit: int = 20,
    timeout_s: float = 5.0,
    password_env: str | None = None,
) -> Check:
    """The seed's `pg_stat_activity WHERE state = 'active' ORDER BY duration DESC`, and the
    sessions idle in a transaction open for `idle_tx_s` or more (they hold locks and snapshots
    while doing nothing). A healthy service's transaction is idle for milliseconds between its
    statements; a sample that lands in such a gap is not a finding."""
    name = "active queries"

    def body() -> Check:
        rows = _client.query(
            dsn,
            f"SELECT pid, application_name, state, {_seconds('query_start')} AS duration_s, "
            f"{_seconds('xact_start')} AS xact_s, wait_event_type, wait_event, "
            "pg_blocking_pids(pid) AS blocked_by, left(query, 160) AS query "
            "FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' "
            "AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)') "
            "ORDER BY query_start NULLS LAST LIMIT %s",
            (limit,),
            timeout_s=timeout_s,
            password_env=password_env,
        )
        idle_tx = [
            r
            for r in rows
            if r["state"].startswith("idle in transaction") and (r["xact_s"] or 0) >= idle_tx_s
        ]
        long = [r for r in rows if r["state"] == "active" and (r["duration_s"] or 0) >= long_s]
        status = Status.WARN if long or idle_tx else Status.OK
        summary = (
            f"{sum(r['state'] == 'active' for r in rows)} active ({len(long)} over {long_s:g} s), "
            f"{len(idle_tx)} idle in transaction"
        )
        return Check(
            name,
            TARGET,
            status,
            summary,
            (Evidence.table("pg_stat_activity (client backends, longest first)", rows),),
            facts={"reachable": True, "long": long, "idle_in_transaction": idle_tx},
        )

    return guarded(name, TARGET, body, what="cannot read pg_stat_activity")


def check_blocking_locks(
    dsn: str, *, timeout_s: float = 5.0, password_env: str | None = None
) -> Check:
    """Sessions waiting on a lock, and who holds it (`pg_blocking_pids`); FAIL when any wait.
    A root blocker (not itself waiting) is what a `terminate:PID` would free."""
    name = "blocking locks"

    def body() -> Check:
        rows = _client.query(
            dsn,
            f"SELECT w.pid AS waiting_pid, w.application_name AS waiting_app, "
            f"{_seconds('w.query_start')} AS waiting_s, left(w.query, 100) AS waiting_query, "
            "b.pid AS blocking_pid, b.application_name AS blocking_app, "
            f"b.state AS blocking_state, {_seconds('b.xact_start')} AS blocking_xact_s, "
            "left(b.query, 160) AS blocking_query, "
            "cardinality(pg_blocking_pids(b.pid)) = 0 AS root "
            "FROM pg_stat_activity w "
            "CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid) "
            "JOIN pg_stat_activity b ON b.pid = bp.pid "
            "ORDER BY waiting_s DESC NULLS LAST",
            timeout_s=timeout_s,
            password_env=password_env,
        )
        blockers: dict[int, dict[str, Any]] = {}
        for r in rows:
            b = blockers.setdefault(
                r["blocking_pid"],
                {
                    "pid": r["blocking_pid"],
                    "application_name": r["blocking_app"],
                    "state": r["blocking_state"],
                    "xact_s": r["blocking_xact_s"],
                    "query": r["blocking_query"],
                    "root": r["root"],
                    "waiters": 0,
                    "longest_wait_s": 0.0,
                },
            )
            b["waiters"] += 1
            b["longest_wait_s"] = max(b["longest_wait_s"], r["waiting_s"] or 0.0)
        ranked = sorted(blockers.values(), key=lambda b: (not b["root"], -b["waiters"]))
        if ranked:
            top = ranked[0]
            status = Status.FAIL
            summary = (
                f"{len({r['waiting_pid'] for r in rows})} session(s) waiting; pid {top['pid']} "
                f"({top['application_name'] or '?'}, {top['state']}) blocks {top['waiters']}"
            )
        else:
            status, summary = Status.OK, "no session waits on a lock"
        evidence = (
            (
                Evidence.table("blockers", ranked),
                Evidence.table("waiting sessions and who blocks them", rows),
            )
            if rows
            else ()
        )
        return Check(
            name,
            TARGET,
            status,
            summary,
            evidence,
            facts={"reachable": True, "blockers": ranked, "waiting": len(rows)},
        )

    return guarded(name, TARGET, body, what="cannot read locks")
