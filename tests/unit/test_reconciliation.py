"""The reconciliation as pure functions: rows in, a table out, nothing read or written."""

from __future__ import annotations

from irlib.reconciliation import (
    IN_FLIGHT,
    MISMATCH,
    OK,
    confirm,
    reconcile,
    unreported_fills,
)

PRICES = {"AAPL": 200.0, "MSFT": 400.0, "SPY": 500.0}


def pos(account: str, symbol: str, qty: int) -> dict:
    return {"account": account, "symbol": symbol, "qty": qty, "avg_price": 1.0}


def fill(fill_id: str, account: str, symbol: str, side: str, qty: int) -> dict:
    return {
        "fill_id": fill_id,
        "order_id": "BRK-" + fill_id[5:],
        "client_order_id": "ORD-" + fill_id[5:],
        "account_id": account,
        "symbol": symbol,
        "side": side,
        "qty": qty,
        "price": PRICES[symbol],
        "executed_at": "2026-11-27T05:00:00Z",
    }


def test_agreeing_books_have_no_mismatch() -> None:
    book = [pos("A", "AAPL", 10), pos("A", "MSFT", -5), pos("B", "SPY", 3)]
    result = reconcile(book, book, PRICES)
    assert result.mismatches == [] and result.unreported == ()
    assert {ln.status for ln in result.lines} == {OK}
    assert len(result.lines) == 3


def test_mismatches_come_first_largest_value_first_with_difference_and_value() -> None:
    broker = [pos("A", "AAPL", 10), pos("A", "MSFT", 5), pos("B", "SPY", 3)]
    internal = [pos("A", "AAPL", 10), pos("A", "MSFT", 7), pos("B", "SPY", 4)]
    result = reconcile(broker, internal, PRICES)
    rows = result.rows()
    assert [(r["symbol"], r["status"]) for r in rows] == [
        ("MSFT", MISMATCH),  # -2 x 400 = -800
        ("SPY", MISMATCH),  # -1 x 500 = -500
        ("AAPL", OK),
    ]
    assert rows[0]["difference"] == -2 and rows[0]["value"] == -800.0
    assert result.facts()["mismatch_value"] == 1300.0


def test_a_position_on_one_side_only_counts_as_zero_on_the_other() -> None:
    result = reconcile([pos("A", "AAPL", 10)], [pos("B", "SPY", 2), pos("C", "MSFT", 0)], PRICES)
    by_key = {(ln.account, ln.symbol): ln for ln in result.lines}
    assert by_key[("A", "AAPL")].internal_qty == 0 and by_key[("A", "AAPL")].difference == 10
    assert by_key[("B", "SPY")].broker_qty == 0 and by_key[("B", "SPY")].difference == -2
    assert ("C", "MSFT") not in by_key  # flat on both sides: nothing to reconcile


def test_unknown_price_leaves_the_value_unknown() -> None:
    result = reconcile([pos("A", "XYZ", 1)], [], PRICES)
    assert result.lines[0].value is None and result.mismatches


def test_unreported_fills_explain_their_mismatch_and_propose_their_booking() -> None:
    fills = [fill("FILL-1", "A", "MSFT", "buy", 40), fill("FILL-2", "A", "AAPL", "sell", 5)]
    unreported = unreported_fills([*fills, fill("FILL-3", "A", "SPY", "buy", 1)], {"FILL-3"})
    assert [f.fill_id for f in unreported] == ["FILL-1", "FILL-2"]
    broker = [pos("A", "MSFT", 140), pos("A", "AAPL", 5), pos("A", "SPY", 9)]
    internal = [pos("A", "MSFT", 100), pos("A", "AAPL", 10), pos("A", "SPY", 1)]
    result = reconcile(broker, internal, PRICES, unreported)
    assert {ln.symbol for ln in result.mismatches} == {"MSFT", "AAPL", "SPY"}
    assert [ln.symbol for ln in result.unexplained] == ["SPY"]  # 8 more than any fill says
    corrections = result.corrections()
    assert [c["correction"] for c in corrections] == [
        "book the missing execution report",
        "book the missing execution report",
        "adjust the platform's position",
    ]
    assert "BRK-1" in corrections[0]["detail"] and corrections[0]["qty_change"] == 40
    assert corrections[2]["qty_change"] == 8


def test_a_difference_seen_in_one_snapshot_only_is_in_flight_not_a_mismatch() -> None:
    book = [pos("A", "AAPL", 10), pos("A", "MSFT", 5)]
    moving = reconcile([pos("A", "AAPL", 20), pos("A", "MSFT", 5)], book, PRICES)
    settled = reconcile(
        [pos("A", "AAPL", 20), pos("A", "MSFT", 6)],
        [pos("A", "AAPL", 20), pos("A", "MSFT", 5)],
        PRICES,
    )
    result = confirm(moving, settled)
    status = {ln.symbol: ln.status for ln in result.lines}
    assert status == {"AAPL": OK, "MSFT": IN_FLIGHT}
    assert result.mismatches == []
    persistent = confirm(settled, settled)
    assert [ln.symbol for ln in persistent.mismatches] == ["MSFT"]


def test_a_fill_reported_between_snapshots_is_not_unreported() -> None:
    f = fill("FILL-9", "A", "SPY", "buy", 1)
    first = reconcile([], [], PRICES, unreported_fills([f], set()))
    second = reconcile([], [], PRICES, unreported_fills([f], {"FILL-9"}))
    assert confirm(first, second).unreported == ()
    assert [u.fill_id for u in confirm(first, first).unreported] == ["FILL-9"]


def test_reconcile_does_not_touch_its_inputs() -> None:
    broker = [pos("A", "AAPL", 10)]
    internal = [pos("A", "AAPL", 3)]
    snapshot = (repr(broker), repr(internal))
    reconcile(broker, internal, PRICES)
    assert (repr(broker), repr(internal)) == snapshot
