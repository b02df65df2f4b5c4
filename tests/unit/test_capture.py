"""Captures without a lab: values the drivers return survive the round trip, a recorded call
is answered in order (exactly, or by its kind when its arguments held the moment), errors come
back as the same class a client catches, and a replay keeps the captures' clock and skips waits."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import uuid
from pathlib import Path
from typing import Any

import psycopg.errors
import pytest
import redis
from psycopg import sql

from irlib import capture, io, postgres
from irlib.errors import MissingToken, Refused, TimedOut, Unreachable


@pytest.fixture
def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(capture.ENV, f"record:{tmp_path}")
    return tmp_path / capture.FILE


def replay(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(capture.ENV, f"replay:{path}")


def never(*_: object) -> object:
    raise AssertionError("a replay ran the call")


def test_driver_values_survive_the_round_trip() -> None:
    row = {
        "at": dt.datetime(2026, 1, 15, 9, 15, tzinfo=dt.UTC),
        "day": dt.date(2026, 1, 15),
        "took": dt.timedelta(seconds=2.5),
        "price": decimal.Decimal("101.25"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "client_addr": ipaddress.ip_address("127.0.0.1"),
        "raw": b"\x00redis",
        "nested": [{"n": 1, "ok": True, "none": None}],
    }
    assert capture.decode(json.loads(json.dumps(capture.encode(row)))) == row


def test_answers_recorded_plain_or_with_driver_values_replay_as_they_were(
    record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain JSON (Kubernetes, HTTP) is written as it is; an answer with a driver's values
    (a row's time and decimal, Redis bytes) through encode(), so that it replays typed."""
    plain = {"items": [{"metadata": {"name": "api-1"}, "n": 1.5, "ok": True}], "more": None}
    row = [(dt.datetime(2026, 1, 15, 9, 15, tzinfo=dt.UTC), decimal.Decimal("1.25"), b"x")]
    assert capture.call("kubernetes", {"path": "/api"}, lambda: plain) == plain
    assert capture.call("postgres", {"sql": "q"}, lambda: row) == row
    replay(record, monkeypatch)
    assert capture.call("kubernetes", {"path": "/api"}, never) == plain
    assert capture.call("postgres", {"sql": "q"}, never) == [list(row[0])]  # a row as a list


def test_an_answer_read_as_json_text_is_kept_as_that_text_and_replays_as_its_value(
    record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = '{"kind": "PodList",\n "items": [{"name": "api-1", "note": "a\\nb"}]}\n'
    value = json.loads(text)
    assert (
        capture.call("kubernetes", {"path": "/p"}, lambda: capture.JsonText(value, text)) == value
    )
    (line,) = record.read_text().splitlines()  # one line, the text's own spelling kept
    assert '"answer": {"kind": "PodList",  "items": [{"name": "api-1", "note": "a\\nb"}]}' in line
    assert json.loads(line)["answer"] == value
    replay(record, monkeypatch)
    assert capture.call("kubernetes", {"path": "/p"}, never) == value


def test_a_replay_answers_each_call_in_order_and_never_runs_it(
    record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in (1, 2):
        assert capture.call("http", {"url": "u", "params": None}, lambda n=n: {"n": n}) == {"n": n}
    capture.call("http", {"url": "other", "params": None}, lambda: "x")
    replay(record, monkeypatch)
    assert capture.replaying()
    assert capture.call("http", {"url": "u", "params": None}, never) == {"n": 1}
    assert capture.call("http", {"url": "u", "params": None}, never) == {"n": 2}
    with pytest.raises(capture.NoCapture):  # a third call was never made
        capture.call("http", {"url": "u", "params": None}, never)
    with pytest.raises(capture.NoCapture):
        capture.call("http", {"url": "never-called", "params": None}, never)


def test_a_call_whose_arguments_held_the_moment_is_answered_by_its_kind(
    record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture.call("http", {"url": "/fills", "params": {"since": "09:15:00"}}, lambda: [1])
    replay(record, monkeypatch)
    assert capture.call("http", {"url": "/fills", "params": {"since": "09:31:07"}}, never) == [1]


@pytest.mark.parametrize(
    "error",
    [
        Unreachable("unreachable: connection refused"),
        TimedOut("no answer within 2 s"),
        Refused("API answered 403: Forbidden", 403),
        MissingToken("IRLIB_ADMIN_TOKEN"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        redis.TimeoutError("Timeout reading from socket"),
    ],
    ids=["unreachable", "timed-out", "refused-403", "missing-token", "psycopg", "redis"],
)
def test_an_error_comes_back_as_the_class_its_client_catches(
    record: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def fail() -> None:
        raise error

    with pytest.raises(type(error)):
        capture.call("t", {"c": 1}, fail)
    replay(record, monkeypatch)
    with pytest.raises(type(error)) as again:
        capture.call("t", {"c": 1}, never)
    assert str(again.value) == str(error)
    if isinstance(error, Refused):
        assert isinstance(again.value, Refused) and again.value.status_code == 403
    if isinstance(error, MissingToken):
        assert isinstance(again.value, MissingToken) and again.value.env_name == error.env_name


def test_a_replay_keeps_the_captures_clock_and_skips_waits(
    record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture.call("t", {"c": 1}, lambda: 1)
    recorded = dt.datetime.fromisoformat(json.loads(record.read_text())["at"])
    replay(record, monkeypatch)
    capture.call("t", {"c": 1}, never)
    assert io.utcnow() == recorded
    capture.sleep(3600)  # returns at once, or this test would not end


@pytest.mark.parametrize(
    "answer",
    [lambda: "x" * 500, lambda: capture.JsonText(["x" * 500], json.dumps(["x" * 500]))],
    ids=["value", "json-text"],
)
def test_an_answer_too_large_to_keep_is_marked_and_never_replayed_as_empty(
    record: Path, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    monkeypatch.setattr(capture, "ANSWER_CHARS", 100)
    capture.call("t", {"c": 1}, answer)
    kept = json.loads(record.read_text())
    assert "answer" not in kept and kept["cut"] > 100
    replay(record, monkeypatch)
    with pytest.raises(capture.NoCapture, match="too large"):
        capture.call("t", {"c": 1}, never)


def test_without_the_variable_nothing_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(capture.ENV, raising=False)
    assert capture.call("t", {"c": 1}, lambda: 7) == 7
    assert not capture.active() and capture.summary(tmp_path) is None


def test_a_captured_connection_composes_statements_as_a_connection_does(
    record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mitigation composes its SQL with the connection (`as_string(conn)`): the captured
    one, and the replay's that has no connection under it, serve as well."""
    dsn = "postgresql://irlib@127.0.0.1:9/x"
    record.write_text(
        json.dumps({"seq": 1, "at": "2026-12-05T08:00:00+00:00", "target": "postgres",
                    "call": {"connect": dsn, "read_only": True}, "answer": True}) + "\n"
    )  # fmt: skip
    replay(record, monkeypatch)
    statement = sql.SQL("ANALYZE {}").format(sql.Identifier("orders"))
    with postgres.connect(dsn, timeout_s=1) as conn:
        assert statement.as_string(conn) == 'ANALYZE "orders"'


def test_a_replays_stopwatch_runs_on_the_originals_durations_per_thread(
    record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    capture.call("redis", {"command": "ping"}, lambda: time.sleep(0.05) or "PONG")
    capture.call("redis", {"command": "info"}, lambda: time.sleep(0.02) or {})
    took = [json.loads(line)["elapsed_s"] for line in record.read_text().splitlines()]
    replay(record, monkeypatch)
    t0 = capture.monotonic()
    capture.call("redis", {"command": "ping"}, never)
    assert capture.monotonic() - t0 == pytest.approx(took[0])
    other: list[float] = []  # another thread's stopwatch does not move with this one's calls
    thread = threading.Thread(target=lambda: other.append(capture.monotonic()))
    thread.start()
    thread.join()
    assert other == [0.0]
    capture.call("redis", {"command": "info"}, never)
    assert capture.monotonic() - t0 == pytest.approx(took[0] + took[1])


def test_reset_replays_the_same_captures_afresh(
    record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture.call("http", {"url": "u", "params": None}, lambda: 1)
    replay(record, monkeypatch)
    assert capture.call("http", {"url": "u", "params": None}, never) == 1
    with pytest.raises(capture.NoCapture):  # each answer once
        capture.call("http", {"url": "u", "params": None}, never)
    capture.reset()  # as a second in-process replay of the same folder does
    assert capture.call("http", {"url": "u", "params": None}, never) == 1


def test_a_redis_session_replays_a_refused_connection_as_unreachable(
    record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay opens no Redis client, yet a replayed driver error leaves the session as the
    target error a live one raises (redis-down's PING is a FAIL, not an unknown)."""
    import socket

    from irlib.redis import check_ping
    from irlib.results import Status

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    live = check_ping(url, timeout_s=1)
    assert live.status is Status.FAIL and "unreachable" in live.summary, live
    replay(record, monkeypatch)
    replayed = check_ping(url, timeout_s=1)
    assert replayed.status is Status.FAIL and replayed.summary == live.summary, replayed
