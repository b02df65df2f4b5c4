"""The P1 runbook as a person runs it: JupyterLab (from .venv-lab) driven by Debian's headless
chromium through Playwright, against the session's drill lab under `bad-deploy`.

Run All must change nothing; the rollback's confirm button must roll the deployment back (seen
with the real kubectl), once only, and then say it is done, disabled; saving the notebook must
leave the same evidence folder as `irlib run` (notebook, HTML, results.json, manifest), with the
decision, its operator and time, and an HTML whose first screen says what the run concluded.
Waits are on the page's DOM and on files, never fixed sleeps; the whole test is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ROOT, LabHandle
from tests.lab.test_p1_runbook import deployments_snapshot

JUPYTER = ROOT / ".venv-lab" / "bin" / "jupyter"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NOTEBOOK = "p1_system_unavailable.ipynb"
OPERATOR = "alice"  # the person at the keyboard: the kernel takes it from $USER/$LOGNAME
BUDGET_S = 180
MS = 1000
ROLLBACK = "kubectl rollout undo deployment/api-service -n trading"


@dataclass
class JupyterLab:
    url: str
    token: str
    root: Path  # the server's root_dir: a copy of notebooks/
    outputs: Path  # $IRLIB_OUTPUTS of the server and its kernels
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def jupyterlab(lab: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab on loopback with a random token and the lab's environment, as `make lab`
    starts it (save hook included), in a temporary root; stopped by its pid."""
    if not JUPYTER.is_file():
        pytest.fail(f"{JUPYTER} not found: `make .venv-lab/.installed` (or `make test`) builds it")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: `make setup` installs it (apt package chromium)")
    base = tmp_path_factory.mktemp("jupyterlab")
    root, outputs, log = base / "notebooks", base / "outputs", base / "jupyterlab.log"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "get news?" toast over the screenshots, and no request to the internet
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **lab.env,
        "IRLIB_OUTPUTS": str(outputs),
        "USER": OPERATOR,
        "LOGNAME": OPERATOR,
        "JUPYTER_CONFIG_DIR": str(base / "config"),  # nothing from this machine's ~/.jupyter
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
    }
    command = [
        str(JUPYTER),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ContentsManager.post_save_hook=irlib.interactive.post_save_hook",
        f"--LabApp.user_settings_dir={base / 'settings'}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _ready(url, token, server, log), 60, "JupyterLab to answer /api/status")
        yield JupyterLab(url, token, root, outputs, log)
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)  # its own session: the server and the kernels it started
            server.wait(timeout=10)


def _ready(url: str, token: str, server: subprocess.Popen[bytes], log: Path) -> bool:
    if server.poll() is not None:
        pytest.fail(f"JupyterLab exited {server.returncode}:\n{log.read_text()[-3000:]}")
    try:
        return httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.2)


def _image(lab: LabHandle) -> str:
    return lab.kubectl(
        "get", "deployment", "api-service", "-n", "trading",
        "-o", "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout  # fmt: skip


def _revisions(lab: LabHandle) -> list[int]:
    history = lab.kubectl("rollout", "history", "deployment/api-service", "-n", "trading").stdout
    return [int(line.split()[0]) for line in history.splitlines() if line[:1].isdigit()]


def _archived(run_dir: Path) -> dict[str, Any] | None:
    """The archive as the save hook leaves it, once complete: manifest written last, listing
    the saved notebook with its hash."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        notebook = (run_dir / "notebook.ipynb").read_bytes()
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    entry = manifest["files"].get("notebook.ipynb")
    if not entry or entry["sha256"] != hashlib.sha256(notebook).hexdigest():
        return None
    if f"executed by {OPERATOR}" not in notebook.decode():
        return None  # an autosave from before the click
    return manifest


def _evidence_first_screen(browser: Any, run_dir: Path, screenshot: Path) -> None:
    """The saved session's notebook.html opens with its summary: the verdict, its cause,
    the rollback executed by the operator with the button, on the first screen."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto((run_dir / "notebook.html").as_uri())
        page.screenshot(path=screenshot)
        summary = page.locator("#irlib-summary")
        box = summary.bounding_box()
        assert box is not None and box["y"] < 100, box
        verdict = summary.locator("b", has_text="Verdict: DOWN")
        vbox = verdict.bounding_box()
        assert vbox is not None and vbox["y"] + vbox["height"] <= 1000, vbox
        text = summary.inner_text()
        assert "bad-deploy" in text and f"{OPERATOR} (interactive)" in text, text
        assert "EXECUTED" in text and f"{OPERATOR} (button)" in text, text
        # the Incident Summary draft is Markdown here too, as in JupyterLab
        draft = page.locator("[data-mime-type='text/markdown']", has_text="Incident Summary")
        assert draft.locator("h2", has_text="Incident Summary").count() == 1
        assert draft.locator("pre").count() == 0
    finally:
        page.close()


def test_p1_in_jupyterlab_rolls_back_on_click_only_and_archives_the_decision(
    lab: LabHandle, jupyterlab: JupyterLab, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    good_image = _image(lab)
    lab.irlib("lab", "inject", "bad-deploy", check=True)
    try:
        before = deployments_snapshot(lab)["deployments"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90 * MS)
            try:
                page.goto(f"{jupyterlab.url}/lab/tree/{NOTEBOOK}?token={jupyterlab.token}")
                # The kernel is connected and idle (the toolbar's indicator says "idle" before
                # there is a kernel at all: a Run All then would be lost).
                page.locator(".jp-StatusBar-TextItem", has_text="(ipykernel) | Idle").wait_for()

                def output_of(source: str) -> Any:
                    cell = page.locator(
                        ".jp-CodeCell", has=page.locator(".jp-InputArea", has_text=source)
                    )
                    return cell.locator(".jp-OutputArea-output")

                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                verdict = output_of("rb.verdict()").filter(has_text=re.compile("Verdict: DOWN"))
                verdict.wait_for()
                text = verdict.text_content()
                assert "bad-deploy" in text and "rollback:api-service" in text, text
                output_of("rb.incident_summary()").filter(has_text="Incident Summary").wait_for()

                # Run All is over and nothing was clicked: nothing changed.
                assert deployments_snapshot(lab)["deployments"] == before
                assert _image(lab) != good_image
                verdict.scroll_into_view_if_needed()
                page.screenshot(path=tmp_path / "verdict.png")

                shown = output_of("rb = SystemUnavailable(").filter(has_text="Evidence of this")
                found = re.search(r"Evidence of this session: (\S+?),", shown.text_content())
                assert found, shown.text_content()
                run_dir = Path(found[1])
                assert run_dir.parent == jupyterlab.outputs / "adhoc", run_dir
                assert run_dir.name.endswith("-p1_system_unavailable-interactive")

                # the button by its tooltip (the command): its label changes once it has run
                button = page.locator(f"button[title='{ROLLBACK}']")
                expect(button).to_have_text("Confirm rollback:api-service")
                panel = page.locator(".widget-vbox", has=button).last
                expect(panel).to_contain_text("1 of 1 mitigation(s) await confirmation")
                offer = panel.text_content()
                assert "kubectl rollout undo deployment/api-service -n trading" in offer
                assert "awaiting confirmation" in offer and "1.8.2" in offer, offer
                button.scroll_into_view_if_needed()
                page.screenshot(path=tmp_path / "confirmation.png")

                clicked_after = datetime.now(UTC)
                button.click()
                outcome = panel.locator(".widget-html", has_text=f"executed by {OPERATOR}")
                outcome.wait_for()
                # the panel follows what happened: done, who confirmed it and when, the
                # button disabled and saying so, the count line with what ran
                expect(button).to_be_disabled()
                expect(button).to_have_text(re.compile(r"Done: rollback:api-service"))
                expect(panel).to_contain_text("0 of 1 mitigation(s) await confirmation; 1 executed")
                expect(outcome).to_contain_text("DONE")
                expect(outcome).to_contain_text("confirmed with the button")
                expect(panel).to_contain_text("Re-check after mitigation")
                outcome.scroll_into_view_if_needed()
                page.screenshot(path=tmp_path / "confirmed.png")

                assert _image(lab) == good_image
                status = lab.kubectl(
                    "rollout", "status", "deployment/api-service", "-n", "trading",
                    "--timeout=30s",
                )  # fmt: skip
                assert "successfully rolled out" in status.stdout
                revisions = _revisions(lab)

                # Save as a person would (Ctrl+S); the server's hook archives the saved file.
                page.keyboard.press("Control+s")
                _until(lambda: _archived(run_dir), 30, "the archive of the saved notebook")
                _evidence_first_screen(browser, run_dir, tmp_path / "evidence.png")

                # A click that slips past the disabled button (a second tab, a double click)
                # reaches the kernel: the guard refuses it, and says so.
                button.evaluate("b => { b.disabled = false; b.click(); }")
                panel.locator(".widget-html", has_text="not run twice").wait_for()
                assert _revisions(lab) == revisions and _image(lab) == good_image
                expect(button).to_be_disabled()
                expect(button).to_have_text(re.compile(r"Done: rollback:api-service"))
            except BaseException:
                page.screenshot(path=tmp_path / "failure.png")
                raise
            finally:
                browser.close()
    finally:
        lab.irlib("lab", "clear", check=True)

    results = json.loads((run_dir / "results.json").read_text())
    assert results["mode"] == "interactive" and results["status"] == "completed"
    assert results["runbook"] == "p1_system_unavailable" and results["operator"] == OPERATOR
    assert results["verdict"]["state"] == "down"
    assert results["verdict"]["causes"][0]["id"] == "bad-deploy"
    assert results["parameters"]["incident"] == "adhoc"
    decisions = [(m["id"], m["outcome"], m["operator"]) for m in results["mitigations"]]
    assert decisions[:2] == [
        ("rollback:api-service", "planned", OPERATOR),
        ("rollback:api-service", "executed", OPERATOR),
    ], decisions
    executed = results["mitigations"][1]
    assert executed["confirmed_by"] == "button" and executed["result"]["rollout"]["rolled_out"]
    assert clicked_after <= datetime.fromisoformat(executed["at"]) <= datetime.now(UTC)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    outcomes = [e["data"]["outcome"] for e in events if e["kind"] == "mitigation"]
    assert outcomes == ["planned", "executed", "refused"], outcomes

    # the refused click re-archived results.json and the manifest from the kernel
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((run_dir / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert {"notebook.ipynb", "notebook.html", "results.json", "events.jsonl"} <= set(
        manifest["files"]
    )
    notebook = json.loads((run_dir / "notebook.ipynb").read_text())
    decisions_cell = "".join(notebook["cells"][-1]["source"])
    assert "irlib-decisions" in notebook["cells"][-1]["metadata"]["tags"]
    assert f"| executed | {OPERATOR} | button |" in decisions_cell
    page_html = (run_dir / "notebook.html").read_text()
    assert "Verdict: DOWN" in page_html and f"executed by {OPERATOR}" in page_html
    token = lab.exports["IRLIB_ADMIN_TOKEN"]
    for path in run_dir.iterdir():
        assert token not in path.read_text(errors="replace"), path.name

    assert time.monotonic() - started < BUDGET_S
