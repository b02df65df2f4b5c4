"""`irlib serve`'s `/metrics` over real HTTP: the token is required, the text parses as
Prometheus exposition format (prometheus_client's own parser, from the lab extra), and the
counters, gauges and histograms say what happened. The runs are the test's (a Triage whose
run returns a verdict at once): what is tested is the accounting, not a runbook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from irlib.notebooks_dir import notebooks_dir
from irlib.profile import profile_from_dict
from irlib.serve.metrics import Metrics
from irlib.serve.triage import Run, Triage
from tests.helpers import wait_until
from tests.unit.serve_server import TOKEN, firing_group, serving
from tests.unit.test_profile import MINIMAL


class QuickTriage(Triage):
    """Each run ends at once with the verdict its alert's `verdict` label names."""

    hold = threading.Event()

    def _execute(self, run: Run) -> None:
        self.hold.wait(30)
        state = run.group_key.split("-")[0]
        if state == "crash":
            raise RuntimeError("irlib run exited 3")
        run.verdict = {"state": state, "cause": None, "could_not_check": 0}
        run.to_verdict_s = 1.5
        run.to_message_s = 2.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, QuickTriage]]:
    profile = profile_from_dict({**MINIMAL, "serve": {"workers": 1, "queue": 1, "warm_kernels": 0}})
    triage = QuickTriage(
        profile, tmp_path / "p.yaml", tmp_path / "out", notebooks_dir(), "http://x"
    )
    triage.hold = threading.Event()
    with serving(triage, triage.hold) as url:
        yield url, triage


def post(url: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.post(
        url + "/v1/alertmanager", content=json.dumps(firing_group(key)), headers=headers
    ).status_code


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_metrics_need_the_token(server: tuple[str, QuickTriage]) -> None:
    url, _ = server
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/metrics", headers={"Authorization": "Bearer no"}).status_code == 401


def test_runs_queue_refusals_and_times_are_counted(server: tuple[str, QuickTriage]) -> None:
    url, triage = server
    assert post(url, "down-1") == 202  # runs, held
    wait_until("the first run to start", lambda: triage.status()["running"] == 1, 60)
    assert post(url, "healthy-1") == 202  # waits
    assert post(url, "crash-1") == 503  # no slot left
    held = scrape(url)
    assert held[("irlib_serve_running", ())] == 1
    assert held[("irlib_serve_queue_length", ())] == 1
    assert held[("irlib_serve_refused_total", ())] == 1
    assert held[("irlib_serve_webhooks_total", (("action", "queued"),))] == 2
    assert held[("irlib_serve_webhooks_total", (("action", "full"),))] == 1

    triage.hold.set()
    wait_until("both runs to end", lambda: triage.status()["runs"] == 2 and not any(
        r["state"] in ("queued", "running") for r in triage.run_list()), 60)  # fmt: skip
    assert post(url, "crash-1") == 202  # Alertmanager's retry
    wait_until("the retried run to end", lambda: triage.run_list()[0]["state"] == "failed", 60)
    wait_until("its count", lambda: scrape(url).get(_runs("could-not-look")) == 1, 60)
    after = scrape(url)
    assert after[_runs("down")] == 1
    assert after[_runs("healthy")] == 1
    assert after[("irlib_serve_running", ())] == 0
    assert after[("irlib_serve_queue_length", ())] == 0
    runbook = (("runbook", "p2_high_latency"),)
    # the failed run reached no verdict: two observations, not three
    assert after[("irlib_serve_webhook_to_message_seconds_count", runbook)] == 2
    assert after[("irlib_serve_webhook_to_message_seconds_sum", runbook)] == 5.0
    assert after[("irlib_serve_webhook_to_verdict_seconds_bucket", (("le", "1.0"), *runbook))] == 0
    assert after[("irlib_serve_webhook_to_verdict_seconds_bucket", (("le", "2.0"), *runbook))] == 2
    assert after[("irlib_serve_webhook_to_verdict_seconds_bucket", (("le", "+Inf"), *runbook))] == 2
    outcomes = {r["group_key"]: r["outcome"] for r in triage.run_list()}
    assert outcomes == {"down-1": "down", "healthy-1": "healthy", "crash-1": "could-not-look"}


def _runs(outcome: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("irlib_serve_runs_total", (("outcome", outcome), ("runbook", "p2_high_latency")))


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.run_finished('odd"runbook\\\n', "down")
    text = m.exposition({})
    (sample,) = [
        s for f in text_string_to_metric_families(text) for s in f.samples
        if s.name == "irlib_serve_runs_total"
    ]  # fmt: skip
    assert sample.labels["runbook"] == 'odd"runbook\\\n'
