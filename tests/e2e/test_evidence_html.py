"""The evidence HTML as a reviewer opens it: Debian's headless chromium (Playwright) on the
notebook.html of `irlib run p1_system_unavailable`, healthy and under `bad-deploy`, and of a
run that crashed. The first screen must say what the run concluded (the summary made from
results.json), the tables must read as people read them, and the incident summary draft must
be Markdown, not a preformatted block. Screenshots stay in the test's tmp_path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from irlib.runner import run_runbook as run_in_process
from tests.helpers import LabHandle, run_runbook
from tests.unit.test_profile import MINIMAL

TOYS = Path(__file__).parent / "notebooks"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: `make setup` installs it (apt package chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def first_screen(browser: Any, run_dir: Path, screenshot: Path) -> tuple[Any, str]:
    """Open the run's notebook.html offline; the page and the text of its summary, which must
    lie wholly within the first screen."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto((run_dir / "notebook.html").as_uri())
    page.screenshot(path=screenshot)
    summary = page.locator("#irlib-summary")
    box = summary.bounding_box()
    assert box is not None and box["y"] < 100, box  # the page opens with it
    verdict = summary.locator("b", has_text=re.compile(r"^(Verdict|no verdict|Partial)")).first
    vbox = verdict.bounding_box()
    assert vbox is not None and vbox["y"] + vbox["height"] <= VIEWPORT["height"], vbox
    return page, summary.inner_text()


def test_a_healthy_run_opens_with_its_verdict(lab: LabHandle, browser: Any, tmp_path: Path) -> None:
    code, run_dir, results = run_runbook(lab, "p1_system_unavailable", tmp_path / "out")
    assert code == 0 and run_dir is not None, results
    page, text = first_screen(browser, run_dir, tmp_path / "healthy.png")
    try:
        assert "Verdict: HEALTHY" in text, text
        assert "Probable causes: none named" in text, text
        assert results["operator"] in text and "took" in text
        # each check's duration as people read it: ms or s, never six decimals
        durations = page.locator("th", has_text=re.compile(r"^duration$"))
        assert durations.count() >= 3
        body = page.locator("body").inner_text()
        assert not re.search(r"\b0\.\d{6}\b", body), re.findall(r"\b0\.\d{6}\b", body)[:5]
        assert re.search(r"\b\d+ ms\b", body)
        # the links to the sections below lead to them
        link = page.locator("#irlib-summary a", has_text="Verdict").first
        target = link.get_attribute("href")
        assert target and page.locator(f"[id='{target[1:]}']").count() == 1
    finally:
        page.close()


def test_bad_deploy_opens_with_its_cause_and_the_markdown_draft_renders(
    lab: LabHandle, browser: Any, tmp_path: Path
) -> None:
    lab.irlib("lab", "inject", "bad-deploy", check=True)
    try:
        code, run_dir, results = run_runbook(lab, "p1_system_unavailable", tmp_path / "out")
    finally:
        lab.irlib("lab", "clear", check=True)
    assert code == 1 and run_dir is not None, results
    page, text = first_screen(browser, run_dir, tmp_path / "bad-deploy.png")
    try:
        assert "Verdict: DOWN" in text and "suggested severity P1" in text, text
        assert "bad-deploy" in text and "rollback:api-service" in text, text
        assert "nothing was confirmed" in text, text
        # the status word is coloured in the tables: FAIL on red, OK on green
        fail = page.locator("td", has_text=re.compile(r"^FAIL$")).first
        assert fail.evaluate("e => getComputedStyle(e).color") == "rgb(138, 28, 37)"
        summary_cell = page.locator("td", has_text=re.compile(r"503")).first
        assert summary_cell.evaluate("e => getComputedStyle(e).textAlign") == "left"
        # the Incident Summary draft is Markdown in the HTML: headings and a list, no <pre>
        draft = page.locator("[data-mime-type='text/markdown']", has_text="Incident Summary")
        assert draft.locator("h2", has_text="Incident Summary").count() == 1
        assert draft.locator("li", has_text="Incident ID").count() == 1
        assert draft.locator("pre").count() == 0
    finally:
        page.close()
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["verdict"]["causes"][0]["id"] == "bad-deploy"


def test_a_crashed_run_says_its_evidence_is_partial(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner's toy that raises in its second check cell (tests/e2e/notebooks/)."""
    monkeypatch.delenv("IRLIB_PROFILE", raising=False)
    profile = tmp_path / "toy.yaml"
    profile.write_text(yaml.safe_dump({**MINIMAL, "name": "toy"}))
    result = run_in_process(
        "toy_raise",
        profile=str(profile),
        incident="INC-1",
        params={},
        confirm=[],
        operator="alice",
        outputs=tmp_path / "outputs",
        notebooks_dir=TOYS,
        log=lambda line: None,
    )
    assert result.exit_code == 3, result
    page, text = first_screen(browser, result.run_dir, tmp_path / "crashed.png")
    try:
        assert "Partial evidence: this run crashed" in text, text
        assert "boom: the API answered 503" in text and "no verdict" in text, text
        link = page.locator("#irlib-summary a", has_text="where the run stopped")
        assert link.count() == 1
    finally:
        page.close()
