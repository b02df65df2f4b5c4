"""How a fill is booked into a positions table: the broker's books and the platform's, one
rule for both so that they agree to the cent. Plain SQL with no server behind it, so that the
lab's faults (position-mismatch writes the platform's books) import it without an app's web
stack.
"""

from __future__ import annotations


def upsert_position_sql(table: str, account_column: str) -> str:
    """Book a fill into a positions table: adding to a position averages its price, reducing
    keeps it, flipping starts afresh. Parameters: account, symbol, signed_qty, price."""
    return f"""
    INSERT INTO {table} AS p ({account_column}, symbol, qty, avg_price)
    VALUES (%(account)s, %(symbol)s, %(signed_qty)s, %(price)s)
    ON CONFLICT ({account_column}, symbol) DO UPDATE SET
        avg_price = CASE
            WHEN p.qty = 0 OR sign(p.qty) = sign(EXCLUDED.qty) THEN
                round((abs(p.qty) * p.avg_price + abs(EXCLUDED.qty) * EXCLUDED.avg_price)
                      / (abs(p.qty) + abs(EXCLUDED.qty)), 4)
            WHEN abs(EXCLUDED.qty) > abs(p.qty) THEN EXCLUDED.avg_price
            ELSE p.avg_price END,
        qty = p.qty + EXCLUDED.qty,
        updated_at = now()
"""


BROKER_BOOKS = upsert_position_sql("broker.positions", "account_id")
PLATFORM_BOOKS = upsert_position_sql("positions", "account")
