"""irlib.tables: durations and numbers as people read them, text left-aligned and wrapped, a
status as a coloured word; the data under the Styler stays as it was."""

from __future__ import annotations

import pandas as pd
import pytest

from irlib import tables
from irlib.results import Check, Status, checks_frame


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.084, "84 ms"),
        (0.0841234, "84 ms"),
        (0.0002, "<1 ms"),
        (0, "0 ms"),
        (1.2345, "1.23 s"),
        (12.345, "12.3 s"),
        (300, "5.0 min"),
        (108000, "30.0 h"),
        (None, ""),
        (float("nan"), ""),
    ],
)
def test_durations_in_ms_below_a_second_and_never_six_decimals(seconds: float, shown: str) -> None:
    assert tables.format_duration(seconds) == shown


@pytest.mark.parametrize(
    ("value", "shown"), [(0.951, "0.951"), (12.3456, "12.35"), (1234.567, "1234.6"), (3.0, "3")]
)
def test_numbers_without_six_decimals(value: float, shown: str) -> None:
    assert tables.format_number(value) == shown


def test_a_table_for_people() -> None:
    frame = pd.DataFrame(
        [
            {
                "check": "api <health>",
                "status": "fail",
                "summary": "503 " * 40,
                "duration_s": 0.084,
            },
            {"check": "pods", "status": "ok", "summary": "10/10", "duration_s": 2.5},
            {"check": "pg", "status": "warn", "summary": "slow", "mean_ms": 14.25},
        ]
    )
    styler = tables.styled(frame)
    page = styler.to_html()
    assert "84 ms" in page and "2.50 s" in page and "14 ms" in page
    assert "0.084000" not in page
    assert ">duration<" in page and ">mean<" in page  # headed without the unit suffix
    assert "api &lt;health&gt;" in page  # escaped, as to_html did
    assert ">FAIL<" in page and ">OK<" in page  # the status word, in capitals ...
    fg, bg = tables.WORD_COLOURS["fail"]
    assert f"color: {fg}" in page and f"background-color: {bg}" in page  # ... coloured
    assert "text-align: left" in page and "white-space: pre-wrap" in page  # text left, wrapped
    assert list(styler.data["duration_s"])[:2] == [0.084, 2.5]  # the numbers stay numbers


def test_the_checks_table_is_worst_first_with_durations_in_ms() -> None:
    checks = [
        Check("a", "t", Status.OK, "fine", duration_s=0.0123),
        Check("b", "t", Status.FAIL, "broken", duration_s=1.5),
    ]
    page = checks_frame(checks).to_html()
    assert page.index(">b<") < page.index(">a<")
    assert "12 ms" in page and "1.50 s" in page and "0.012000" not in page


def test_the_same_table_renders_the_same_html() -> None:
    rows = [{"check": "a", "status": "ok", "duration_s": 0.5}]
    assert tables.html_table(rows) == tables.html_table(rows)
    assert tables.html_table(rows) != tables.html_table([{**rows[0], "status": "fail"}])


def test_a_yes_or_no_column_reads_as_words() -> None:
    page = tables.html_table([{"mitigation": "rollback:api-service", "recommended": True}])
    assert ">yes<" in page and "True" not in page


def test_an_empty_table_says_so_when_asked() -> None:
    assert tables.html_table([], empty="<p>(none)</p>") == "<p>(none)</p>"
    assert "<table" in tables.html_table([{"a": 1}])


def test_times_to_the_second_in_utc() -> None:
    assert tables.format_time("2026-12-05T06:48:31.674013+00:00") == "2026-12-05 06:48:31 UTC"
    assert tables.format_time("2026-12-05T07:48:31+01:00") == "2026-12-05 06:48:31 UTC"
    assert tables.format_time("") == "" and tables.format_time("soon") == "soon"
