"""irlib.run_summary: the summary that opens every evidence HTML, made from results.json's data
(RunResults), for a run with a verdict and mitigations, a healthy one, one that crashed and a
JupyterLab session; and its place in nbconvert's page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from irlib import run_results
from irlib.run_summary import sections, summary_html, with_summary

STARTED = datetime(2026, 12, 5, 6, 19, 51, tzinfo=UTC)
CAUSE = {
    "id": "bad-deploy",
    "title": "recent deployment of api-service crash-loops",
    "score": 0.95,
    "supported_by": ["pods", "rollout history"],
    "evidence": "revision 3 (api-service:1.9.0): 3 pod(s) crash-looping",
    "mitigations": ["rollback:api-service"],
}


def results(**kw: Any) -> run_results.RunResults:
    base: dict[str, Any] = {
        "runbook": "p1_system_unavailable",
        "incident": "INC-42",
        "operator": "alice",
        "started_at": STARTED,
        "finished_at": STARTED + timedelta(seconds=4.5),
        "duration_s": 4.512345,
        "status": "completed",
        "exit_code": 1,
        "profile": {"name": "lab"},
        "verdict": {
            "state": "down",
            "summary": "down: probable cause bad-deploy",
            "severity": "P1",
            "causes": [CAUSE, {**CAUSE, "id": "oom-killed", "score": 0.4}],
            "mitigations": ["rollback:api-service"],
            "could_not_check": [],
            "counts": {"ok": 9, "warn": 3, "error": 0, "fail": 4},
        },
    }
    # through results.json, as the archive step reads it back
    return run_results.RunResults.from_dict(run_results.RunResults(**{**base, **kw}).to_dict())


def attempt(outcome: str, at: str, detail: str = "", by: str = "button") -> dict[str, Any]:
    return {
        "id": "rollback:api-service",
        "outcome": outcome,
        "operator": "alice",
        "at": at,
        "detail": detail,
        "confirmed_by": by if outcome != "planned" else "",
    }


def test_the_summary_says_verdict_causes_mitigations_who_when_and_how_long() -> None:
    page = summary_html(results())
    assert 'id="irlib-summary"' in page
    assert "Verdict: DOWN" in page and "suggested severity P1" in page
    assert page.index("bad-deploy") < page.index("oom-killed")  # ranked
    assert CAUSE["evidence"].replace("(", "(") in page and "pods, rollout history" in page
    assert "<code>rollback:api-service</code>" in page
    assert "nothing was confirmed" in page
    for fact in ("INC-42", "p1_system_unavailable", "alice (headless)", "2026-12-05 06:19:51"):
        assert fact in page, fact
    assert "4.51 s" in page and "4.512345" not in page
    assert "9 ok, 3 warn, 4 fail" in page
    assert "#f8d7da" in page  # the state's colour (down: red)


def test_an_executed_mitigation_stays_executed_after_a_refused_click() -> None:
    done = results(
        mitigations=[
            attempt("planned", "2026-12-05T06:19:53+00:00", "shown"),
            attempt("executed", "2026-12-05T06:20:10+00:00", "done"),
            attempt("refused", "2026-12-05T06:20:30+00:00", "not run twice"),
        ],
        mode="interactive",
    )
    page = summary_html(done)
    assert ">EXECUTED<" in page and "alice (button)" in page and "2026-12-05 06:20:10" in page
    assert "not run twice" not in page and "alice (interactive)" in page


def test_a_failed_mitigation_says_why() -> None:
    page = summary_html(
        results(mitigations=[attempt("failed", "2026-12-05T06:20:10+00:00", "ApiException: 409")])
    )
    assert ">FAILED<" in page and "ApiException: 409" in page


def test_a_healthy_run() -> None:
    page = summary_html(
        results(
            exit_code=0,
            verdict={"state": "healthy", "summary": "healthy: 16 checks passed", "causes": []},
        )
    )
    assert "Verdict: HEALTHY" in page and "none named" in page and "#d4edda" in page


def test_a_crashed_run_says_its_evidence_is_partial_at_the_top() -> None:
    crashed = results(
        status="crashed",
        exit_code=3,
        reason="cell In[5] raised RuntimeError: boom <b>",
        verdict=None,
        checks=[{"check": "api health", "status": "ok"}, {"check": "pods", "status": "fail"}],
    )
    page = summary_html(crashed)
    assert page.index("Partial evidence: this run crashed") < page.index("no verdict")
    assert "boom &lt;b&gt;" in page  # escaped
    assert "1 ok, 1 fail" in page


def test_sections_link_to_nbconverts_cell_anchors() -> None:
    nb = new_notebook(
        cells=[
            new_markdown_cell("# P1: System Unavailable\n\ntext"),
            new_code_cell("rb.confirm_scope()"),
            new_markdown_cell("#### 1. Confirm Scope"),
            new_markdown_cell("no heading here"),
            new_markdown_cell("**stopped**", metadata={"tags": ["irlib-crash-marker"]}),
        ]
    )
    found = sections(nb)
    assert [(level, text) for level, text, _ in found] == [
        (1, "P1: System Unavailable"),
        (4, "1. Confirm Scope"),
        (1, "where the run stopped"),
    ]
    assert found[0][2] == f"cell-id={nb.cells[0].id}"
    assert f'href="#cell-id={nb.cells[2].id}"' in summary_html(results(), nb)


def test_the_summary_opens_the_page() -> None:
    page = '<html><head><style>main {}</style></head><body class="jp-Notebook"><main><div>cells'
    out = with_summary(page, "<div id='s'>S</div>")
    assert out.index("<div id='s'>") > out.index("<main>") > out.index("<body")
    assert out.endswith("<div>cells")
    assert with_summary("<p>x</p>", "S").index("S") < with_summary("<p>x</p>", "S").index("<p>")


def test_a_health_drill_says_each_runbooks_state_and_a_cause_without_mitigation_its_advice() -> (
    None
):
    drill = results(
        runbook="health_drill",
        verdict={
            "state": "down",
            "summary": "down: redis-down",
            "causes": [{**CAUSE, "id": "redis-down", "mitigations": [], "advice": "restart it"}],
            "drill": "health",
            "runbooks": {
                "p1_system_unavailable": {"state": "down", "summary": "down: redis-down"},
                "p2_high_latency": {"state": "healthy", "summary": "healthy: 8 checks passed"},
            },
        },
    )
    page = summary_html(drill)
    assert "p2_high_latency" in page and ">HEALTHY<" in page and ">DOWN<" in page
    assert "what to do: restart it" in page


def test_a_session_saved_before_its_verdict_says_there_is_none_yet() -> None:
    page = summary_html(results(verdict=None, mode="interactive"))
    assert "no verdict yet" in page and "alice (interactive)" in page
