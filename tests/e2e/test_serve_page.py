"""`irlib serve`'s page in Debian's headless chromium (through Playwright, no browser
download): the token is exchanged for an HttpOnly SameSite=Strict cookie and dropped from the
URL; the runs and incidents are listed recent first, coloured by state, each linking to its
evidence HTML, which the cookie opens; no secret is on the page.

The server is real (HTTP, incidents, files); its runs are staged by the test from kept
results.json files of real runs (tests/e2e/regressions), one per state, so that every colour
is shown without breaking a lab four ways."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from irlib import io
from irlib.notebooks_dir import notebooks_dir
from irlib.profile import profile_from_dict
from irlib.serve.page import COLOURS
from irlib.serve.server import COOKIE, Server
from irlib.serve.triage import Run, Triage
from tests.e2e.test_jupyterlab import CHROMIUM, CHROMIUM_ARGS
from tests.helpers import ROOT, wait_until
from tests.unit.test_profile import MINIMAL

TOKEN = "page-test-token-0123456789abcdef"
KEPT = ROOT / "tests" / "e2e" / "regressions"
# group key -> the kept run it stages (None: the run fails) and the state the page must show
STAGED = {
    "bad-deploy": ("bad-deploy--p1_system_unavailable", "down"),
    "broker-latency": ("broker-latency--p1_execution_failures", "degraded"),
    "healthy": ("broker-latency--p1_execution_failures", "healthy"),
    "crashed": (None, "could-not-look"),
}


class StagedTriage(Triage):
    """A run is a kept run's results.json (its verdict made healthy for "healthy") and a
    notebook.html naming it, in a real run folder of the incident triage opened."""

    def _execute(self, run: Run) -> None:
        kept, _ = STAGED[run.group_key]
        if kept is None:
            raise RuntimeError("irlib run exited 3: the kernel died")
        run_dir = self.outputs / run.incident / f"{io.utcnow():%Y%m%dT%H%M%S%fZ}-{run.runbook}"
        run_dir.mkdir(parents=True)
        results = json.loads((KEPT / kept / "results.json").read_text())
        if run.group_key == "healthy":
            results["verdict"].update(
                state="healthy", summary="healthy: 11 checks passed", causes=[], mitigations=[]
            )
        (run_dir / "results.json").write_text(json.dumps(results))
        (run_dir / "notebook.html").write_text(
            f"<html><body><h1 id='evidence'>evidence of {run.group_key}</h1></body></html>"
        )
        verdict = results["verdict"]
        causes = verdict.get("causes") or [{}]
        run.run_dir, run.evidence = str(run_dir), f"http://elsewhere/{run_dir.name}"
        run.verdict = {
            "state": verdict["state"],
            "summary": verdict["summary"],
            "cause": causes[0].get("id"),
            "mitigations": verdict.get("mitigations") or [],
            "could_not_check": len(verdict.get("could_not_check") or []),
        }
        run.to_message_s = 1.25


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, StagedTriage]]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: `make setup` installs it (apt package chromium)")
    base = tmp_path_factory.mktemp("serve-page")
    triage = StagedTriage(
        profile_from_dict({**MINIMAL, "serve": {"workers": 1, "warm_kernels": 0}}),
        base / "p.yaml",
        base / "outputs",
        notebooks_dir(),
        "http://elsewhere",
    )
    server = Server(("127.0.0.1", 0), triage, TOKEN)
    triage.start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for key in STAGED:  # one worker: they run in this order
            answer = httpx.post(
                url + "/v1/alertmanager",
                content=json.dumps(_group(key)),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert answer.status_code == 202, answer.text
        wait_until(
            "the staged runs to end",
            lambda: all(r["state"] in ("done", "failed") for r in triage.run_list()),
            60,
        )
        yield url, triage
    finally:
        server.shutdown()
        server.server_close()


def _group(key: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    alert = {"status": "firing", "labels": {"alertname": f"Alert-{key}", "severity": "P2",
             "runbook": "p1_system_unavailable"}, "annotations": {"summary": f"{key} seen"},
             "startsAt": now, "fingerprint": key}  # fmt: skip
    return {"version": "4", "groupKey": key, "status": "firing", "alerts": [alert]}


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_the_page_in_chromium(served: tuple[str, StagedTriage], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, triage = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            # no token, or a wrong one: nothing shown
            assert page.goto(url + "/").status == 401
            assert page.goto(url + "/?token=wrong").status == 401
            assert not context.cookies()
            # the token once: a cookie, and the URL without it
            assert page.goto(url + "/?token=" + TOKEN).status == 200
            assert page.url == url + "/"
            (cookie,) = context.cookies()
            assert cookie["name"] == COOKIE
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"
            assert TOKEN not in cookie["value"]
            assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
            page.screenshot(path=str(tmp_path / "serve-page.png"), full_page=True)
            content = page.content()
            assert TOKEN not in content

            rows = page.locator("#runs tr.run")
            assert rows.count() == len(STAGED)
            # recent first: the runs ran in STAGED's order
            order = [r["group_key"] for r in triage.run_list()]
            assert order == list(reversed(STAGED))
            for i, key in enumerate(order):
                row = rows.nth(i)
                want = STAGED[key][1]
                assert row.get_attribute("data-state") == want, key
                badge = row.locator(".state")
                assert badge.inner_text() == want.upper()
                fg, bg = COLOURS[want]
                assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == _rgb(bg)
                assert badge.evaluate("e => getComputedStyle(e).color") == _rgb(fg)
                links = row.locator("a.evidence")
                assert links.count() == (0 if want == "could-not-look" else 1), key

            incidents = page.locator("#incidents tr.incident")
            assert incidents.count() == len(STAGED)
            states = [incidents.nth(i).get_attribute("data-state") for i in range(len(STAGED))]
            assert states == [STAGED[k][1] for k in reversed(STAGED)]

            # the down run's evidence, opened by the cookie alone
            rows.filter(has_text="bad-deploy").locator("a.evidence").click()
            page.wait_for_selector("#evidence")
            assert page.locator("#evidence").inner_text() == "evidence of bad-deploy"
            assert "/v1/evidence/" in page.url and TOKEN not in page.url
            # the incident's link goes to the same HTML
            page.go_back()
            down = page.locator("#incidents tr.incident[data-state=down] a.evidence")
            down.click()
            page.wait_for_selector("#evidence")
            assert page.locator("#evidence").inner_text() == "evidence of bad-deploy"
        finally:
            browser.close()
    # the cookie opens the GETs only, never the webhook
    session = httpx.Client(base_url=url)
    assert session.get("/", params={"token": TOKEN}).status_code == 303
    assert session.get("/v1/runs").status_code == 200
    posted = session.post("/v1/alertmanager", content=json.dumps(_group("via-cookie")))
    assert posted.status_code == 401
