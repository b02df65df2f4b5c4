"""`irlib serve`'s bounds, over real HTTP: fifty alert groups at once, a bounded number of runs
at once and waiting, 503 past that (Alertmanager retries: nothing lost), one run per group.
The run itself is held by the test (a Triage whose run waits for a signal): what is tested is
the scheduling, which no lab part could show as deterministically."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from irlib.notebooks_dir import notebooks_dir
from irlib.profile import profile_from_dict
from irlib.serve.triage import Run, Triage
from tests.helpers import wait_until
from tests.unit.serve_server import TOKEN, firing_group, serving
from tests.unit.test_profile import MINIMAL

WORKERS, QUEUE = 2, 5


class HeldTriage(Triage):
    """Runs that last until the test says so, and count how many run at once."""

    release = threading.Event()
    ran: list[str]

    def _execute(self, run: Run) -> None:
        self.ran.append(run.group_key)
        self.release.wait(30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, HeldTriage]]:
    profile = profile_from_dict(
        {
            **MINIMAL,
            "serve": {"workers": WORKERS, "queue": QUEUE, "cooldown_s": 3600, "warm_kernels": 0},
        }
    )
    triage = HeldTriage(profile, tmp_path / "p.yaml", tmp_path / "out", notebooks_dir(), "http://x")
    triage.ran = []
    triage.release = threading.Event()
    with serving(triage, triage.release) as url:
        yield url, triage


CLIENT = httpx.Client(limits=httpx.Limits(max_connections=60))  # one TLS-free pool, reused


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return CLIENT.post(
        url + "/v1/alertmanager",
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )


def test_fifty_groups_at_once_are_bounded_and_none_is_lost(
    server: tuple[str, HeldTriage],
) -> None:
    url, triage = server
    keys = [f"group-{n:02d}" for n in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = dict(
            zip(keys, pool.map(lambda k: post(url, firing_group(k)).status_code, keys), strict=True)
        )
    accepted = [k for k, code in answers.items() if code == 202]
    refused = [k for k, code in answers.items() if code == 503]
    assert len(accepted) == WORKERS + QUEUE
    assert len(accepted) + len(refused) == 50
    wait_until("the first runs to start", lambda: len(triage.ran) == WORKERS, 60)
    assert triage.status()["running"] == WORKERS
    # Alertmanager retries a 503; so does this test, until every group is in
    triage.release.set()
    pending = refused

    def retried() -> bool:
        nonlocal pending
        pending = [k for k in pending if post(url, firing_group(k)).status_code == 503]
        return not pending

    wait_until("every refused group to be taken on retry", retried, 60)
    wait_until("all fifty runs", lambda: len(triage.ran) == 50, 60)
    assert sorted(triage.ran) == keys  # each group ran exactly once
    assert triage.status()["most_running"] <= WORKERS
    journal = triage.journal()
    assert {e["group_key"] for e in journal if e["http"] == 202} == set(keys)
    assert all(e["action"] == "full" for e in journal if e["http"] == 503)


def test_the_same_group_twice_within_its_cooldown_runs_once(
    server: tuple[str, HeldTriage],
) -> None:
    url, triage = server
    assert post(url, firing_group("twice")).json()["action"] == "queued"
    assert post(url, firing_group("twice")).json()["action"] == "already-running"
    triage.release.set()
    wait_until("the run to end", lambda: triage.run_list()[0]["state"] == "done", 60)
    again = post(url, firing_group("twice")).json()
    assert again["action"] == "cooldown"
    assert triage.ran == ["twice"]
    timeline = (triage.outputs / again["incident"] / "timeline.jsonl").read_text()
    assert "not re-run" in timeline
