"""Positions reconciliation: the broker's book beside the platform's, per account and symbol,
the difference and its value at the latest price, mismatches first; and the broker's fills
that have no execution report. Pure functions over rows already read: nothing here talks to a
system, so nothing here corrects a book. The corrections it shows are for a person to verify
(the seed: MANUALLY VERIFY before taking action).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

MISMATCH = "MISMATCH"
IN_FLIGHT = "in flight"  # differed in one snapshot only: an order between broker and report
OK = "ok"


@dataclass(frozen=True)
class PositionLine:
    account: str
    symbol: str
    broker_qty: int
    internal_qty: int
    price: float | None
    explained_qty: int = 0  # what unreported fills account for (broker side, signed)
    status: str = OK

    @property
    def key(self) -> tuple[str, str]:
        return self.account, self.symbol

    @property
    def difference(self) -> int:
        """Broker minus platform: what the platform would have to book to agree."""
        return self.broker_qty - self.internal_qty

    @property
    def unexplained(self) -> int:
        return self.difference - self.explained_qty

    @property
    def value(self) -> float | None:
        return None if self.price is None else round(self.difference * self.price, 2)

    def row(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "account": self.account,
            "symbol": self.symbol,
            "broker_qty": self.broker_qty,
            "internal_qty": self.internal_qty,
            "difference": self.difference,
            "price": self.price,
            "value": self.value,
            "explained_by_unreported_fills": self.explained_qty,
        }


@dataclass(frozen=True)
class UnreportedFill:
    """A fill at the broker without an execution report at the platform."""

    fill_id: str
    broker_order_id: str
    client_order_id: str | None
    account: str
    symbol: str
    side: str
    qty: int
    price: float
    executed_at: str

    @property
    def signed_qty(self) -> int:
        return self.qty if self.side == "buy" else -self.qty

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Reconciliation:
    lines: tuple[PositionLine, ...]  # mismatches first, largest value first; then the rest
    unreported: tuple[UnreportedFill, ...] = ()

    @property
    def mismatches(self) -> list[PositionLine]:
        return [ln for ln in self.lines if ln.status == MISMATCH]

    @property
    def unexplained(self) -> list[PositionLine]:
        """Mismatches that the unreported fills do not account for."""
        return [ln for ln in self.mismatches if ln.unexplained != 0]

    @property
    def in_flight(self) -> list[PositionLine]:
        return [ln for ln in self.lines if ln.status == IN_FLIGHT]

    def rows(self) -> list[dict[str, Any]]:
        return [ln.row() for ln in self.lines]

    def corrections(self) -> list[dict[str, Any]]:
        """What a person would book after checking the broker's statement: never done here."""
        out = []
        for f in self.unreported:
            out.append(
                {
                    "correction": "book the missing execution report",
                    "account": f.account,
                    "symbol": f.symbol,
                    "detail": f"fill {f.fill_id} of broker order {f.broker_order_id} "
                    f"({f.client_order_id or 'no client id'}): {f.side.upper()} {f.qty} "
                    f"{f.symbol} @ {f.price}",
                    "qty_change": f.signed_qty,
                }
            )
        for ln in self.unexplained:
            out.append(
                {
                    "correction": "adjust the platform's position",
                    "account": ln.account,
                    "symbol": ln.symbol,
                    "detail": f"{ln.internal_qty + ln.explained_qty} -> {ln.broker_qty} "
                    f"(value {ln.value if ln.value is not None else 'unknown'})",
                    "qty_change": ln.unexplained,
                }
            )
        return out

    def facts(self) -> dict[str, Any]:
        return {
            "positions": len(self.lines),
            "mismatches": [ln.row() for ln in self.mismatches],
            "unexplained": [ln.row() for ln in self.unexplained],
            "in_flight": [ln.row() for ln in self.in_flight],
            "unreported": [f.row() for f in self.unreported],
            "mismatch_value": round(sum(abs(ln.value or 0.0) for ln in self.mismatches), 2),
        }


def _qty(row: Mapping[str, Any]) -> int:
    return int(row["qty"])


def _sort_key(ln: PositionLine) -> tuple[int, float, str, str]:
    rank = {MISMATCH: 0, IN_FLIGHT: 1, OK: 2}[ln.status]
    size = abs(ln.value) if ln.value is not None else float(abs(ln.difference))
    return rank, -size, ln.account, ln.symbol


def unreported_fills(
    broker_fills: Iterable[Mapping[str, Any]], recorded_fill_ids: Iterable[str]
) -> list[UnreportedFill]:
    recorded = set(recorded_fill_ids)
    return [
        UnreportedFill(
            fill_id=str(f["fill_id"]),
            broker_order_id=str(f["order_id"]),
            client_order_id=f.get("client_order_id"),
            account=str(f["account_id"]),
            symbol=str(f["symbol"]),
            side=str(f["side"]),
            qty=int(f["qty"]),
            price=float(f["price"]),
            executed_at=str(f.get("executed_at", "")),
        )
        for f in broker_fills
        if f["fill_id"] not in recorded
    ]


def reconcile(
    broker_positions: Iterable[Mapping[str, Any]],
    internal_positions: Iterable[Mapping[str, Any]],
    prices: Mapping[str, float],
    unreported: Iterable[UnreportedFill] = (),
) -> Reconciliation:
    """Broker rows carry `account`, `symbol`, `qty`; so do the platform's. A position held on
    one side only counts as zero on the other; flat on both sides, it is left out."""
    broker: dict[tuple[str, str], int] = {}
    for r in broker_positions:
        key = (str(r["account"]), str(r["symbol"]))
        broker[key] = broker.get(key, 0) + _qty(r)
    internal: dict[tuple[str, str], int] = {}
    for r in internal_positions:
        key = (str(r["account"]), str(r["symbol"]))
        internal[key] = internal.get(key, 0) + _qty(r)
    unreported = tuple(unreported)
    explained: dict[tuple[str, str], int] = {}
    for f in unreported:
        explained[(f.account, f.symbol)] = explained.get((f.account, f.symbol), 0) + f.signed_qty
    lines = []
    for key in broker.keys() | internal.keys():
        b, i = broker.get(key, 0), internal.get(key, 0)
        if b == 0 and i == 0:
            continue
        lines.append(
            PositionLine(
                key[0],
                key[1],
                b,
                i,
                prices.get(key[1]),
                explained.get(key, 0),
                MISMATCH if b != i else OK,
            )
        )
    return Reconciliation(tuple(sorted(lines, key=_sort_key)), unreported)


def confirm(first: Reconciliation, second: Reconciliation) -> Reconciliation:
    """The second snapshot, keeping as mismatches only those the first one saw with the same
    difference (the others are orders in flight) and as unreported only fills both saw."""
    seen = {ln.key: ln.difference for ln in first.mismatches}
    lines = [
        replace(ln, status=IN_FLIGHT)
        if ln.status == MISMATCH and seen.get(ln.key) != ln.difference
        else ln
        for ln in second.lines
    ]
    both = {f.fill_id for f in first.unreported}
    unreported = tuple(f for f in second.unreported if f.fill_id in both)
    if len(unreported) != len(second.unreported):  # explain with confirmed fills only
        explained: dict[tuple[str, str], int] = {}
        for f in unreported:
            explained[(f.account, f.symbol)] = (
                explained.get((f.account, f.symbol), 0) + f.signed_qty
            )
        lines = [replace(ln, explained_qty=explained.get(ln.key, 0)) for ln in lines]
    return Reconciliation(tuple(sorted(lines, key=_sort_key)), unreported)
