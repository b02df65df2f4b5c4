"""The evidence folder of a run, headless (`irlib run`, irlib.runner) or interactive
(JupyterLab, irlib.interactive): its name, and the archive step that closes it.

Archiving redacts every file, writes results.json from the run's events.jsonl, renders the
notebook to HTML (nbconvert, no kernel) opened by a summary of those results
(irlib.run_summary), and writes manifest.json (sha256 of each file) last, linked into the
folder's evidence chain and signed when a key is named (irlib.chain). It sits below the
runbooks and the runner: it imports neither, so both archive the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from irlib import __version__, capture, chain, evidence, io, run_results
from irlib.errors import UsageError

NOTEBOOK = "notebook.ipynb"
HTML = "notebook.html"
MANIFEST = chain.MANIFEST
HEALTHY = "healthy"
EXIT_HEALTHY, EXIT_PROBLEM, EXIT_CRASHED = 0, 1, 3


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    exit_code: int
    status: str  # "completed" or "crashed"
    verdict: dict[str, Any] | None
    reason: str | None = None  # why it crashed


def make_run_dir(parent: Path, started: datetime, runbook: str) -> Path:
    """A new folder `<UTC time>-<runbook>[-N]`: `mkdir` fails if it exists, so two runs in the
    same second (even in two processes) get two folders."""
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{runbook}"
    for n in range(1, 1000):
        candidate = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise UsageError(f"{parent}: too many runs of {runbook} in one second")


def secret_env_names(value: Any, key: str = "") -> list[str]:
    """The values of every `*_env` setting in a profile: the names of its secrets' env vars."""
    if isinstance(value, Mapping):
        return [n for k, v in value.items() for n in secret_env_names(v, str(k))]
    if key.endswith("_env") and isinstance(value, str) and value:
        return [value]
    return []


def archive(
    run_dir: Path,
    *,
    runbook: str,
    incident: str,
    operator: str,
    profile: Mapping[str, Any],
    parameters: Mapping[str, Any],
    source: Path,
    secret_envs: Sequence[str],
    reason: str | None,
    started: datetime,
    finished: datetime,
    duration_s: float,
    html: bool = True,
    mode: str | None = None,
    notebook: str | None = None,
    signing_key_env: str | None = None,
    replay_of: Mapping[str, Any] | None = None,
    on_results: Callable[[run_results.RunResults], None] | None = None,
) -> RunResult:
    """The archive step of every run, headless or interactive (irlib.interactive): redact every
    file in `run_dir`, render its notebook.ipynb to HTML, write results.json from events.jsonl
    and manifest.json last. `source` is the notebook that was run; an interactive session
    gives its `mode` and `notebook` path; `signing_key_env` names the env var of the key that
    signs the manifest (the profile's evidence.signing_key_env). `on_results` is called with
    the results as written, before the HTML is rendered (what a chat message or a replay's
    verdict needs comes first: rendering is the slowest step left; the evidence is complete
    when this returns)."""
    secrets = evidence.secret_values(secret_envs)
    notebook_path = run_dir / NOTEBOOK
    for path in _files(run_dir):
        evidence.redact_file(path, secrets)
    events = evidence.read_records(run_dir / evidence.EVENTS_FILE)
    verdicts = [e["data"] for e in events if e["kind"] == "verdict"]
    verdict = verdicts[-1] if verdicts else None
    # a resolution checklist (irlib.checklist) records each change; its last state counts
    checklists = [e["data"] for e in events if e["kind"] == "checklist"]
    exit_code = _exit_code(reason, verdict)
    status = run_results.CRASHED if reason else run_results.COMPLETED
    results = run_results.RunResults(
        runbook=runbook,
        incident=incident,
        operator=operator,
        profile=dict(profile),
        started_at=started,
        finished_at=finished,
        duration_s=duration_s,
        parameters=dict(parameters),
        status=status,
        reason=reason,
        checks=[e["data"] for e in events if e["kind"] == "check"],
        verdict=verdict,
        mitigations=[e["data"] for e in events if e["kind"] == "mitigation"],
        exit_code=exit_code,
        checklist=checklists[-1] if checklists else None,
        mode=mode,
        notebook=notebook,
        captures=capture.summary(run_dir),
        replay_of=dict(replay_of) if replay_of else None,
    )
    written = run_results.write(
        run_dir, results, lambda value: evidence.redact_value(value, secrets)
    )
    as_written = run_results.read(written.parent)  # redacted
    if on_results is not None:
        on_results(as_written)
    if html and notebook_path.is_file():  # its summary from results.json, as written
        _render_html(notebook_path, run_dir / HTML, f"{runbook} {incident}", as_written)
    for path in _files(run_dir):  # belt and braces: nothing written above may carry a secret
        evidence.redact_file(path, secrets)
    chain.seal(run_dir, _manifest(source, run_dir), key_env=signing_key_env)
    return RunResult(run_dir, exit_code, status, verdict, reason)


def _exit_code(reason: str | None, verdict: Mapping[str, Any] | None) -> int:
    if reason is not None:
        return EXIT_CRASHED
    if verdict is not None and verdict.get("state") == HEALTHY:
        return EXIT_HEALTHY
    return EXIT_PROBLEM  # a problem found, or a runbook that completed without a verdict


def mark_completed(path: Path) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.setdefault("irlib", {})["run"] = {"status": "completed", "reason": None}
    nbformat.write(nb, path)


_HTML_LOCK = threading.Lock()  # one render at a time through the one exporter
_html_exporter: Any = None


def _render(nb: Any, resources: dict[str, Any] | None = None) -> str:
    """`nb` as HTML by this process's one HTMLExporter, made on first use and kept: a new
    exporter compiles nbconvert's templates again, which was a fifth of a replay's time in a
    process replaying many runs (and is what nbconvert's own command does for many files)."""
    global _html_exporter
    with _HTML_LOCK:
        if _html_exporter is None:
            from nbconvert import HTMLExporter

            _html_exporter = HTMLExporter()
        body, _ = _html_exporter.from_notebook_node(nb, resources=resources)
        return str(body)


def warm_html() -> None:
    """Pay nbconvert's first-render costs ahead (its templates, the compiled patterns of the
    IPython lexer and of the HTML parser: about 0.5 s, where each render after costs 0.1 s),
    on a notebook of one cell of each kind. `irlib run` calls it in a thread while its kernel
    runs the runbook, so that the evidence HTML costs only its own rendering after it."""
    import nbformat

    v4 = nbformat.v4
    table = {"text/html": "<table><tr><td>ok</td></tr></table>", "text/plain": "ok"}
    nb = v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# A step\n\n`code` and *text*"),
            v4.new_code_cell("rb.verdict()", outputs=[v4.new_output("display_data", data=table)]),
        ],
        metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}},
    )
    with contextlib.suppress(Exception):  # a head start only: the real rendering reports
        _render(nb)


def _render_html(notebook_path: Path, html_path: Path, title: str, results: Any) -> None:
    """The notebook as HTML (nbconvert, no kernel), opened by the run's summary
    (irlib.run_summary). The summary goes into the page only: notebook.ipynb stays what the
    kernel ran, in the seed's order, and nbconvert would strip a raw cell's HTML to bare tags."""
    import nbformat

    from irlib.run_summary import summary_html, with_summary

    try:
        nb = nbformat.read(notebook_path, as_version=4)
        body = _render(nb, resources={"metadata": {"name": title}})
        body = with_summary(body, summary_html(results, nb))
    except Exception as e:  # a rendering bug must not cost the rest of the evidence
        body = f"<html><body><p>irlib: nbconvert could not render this notebook: {e}</p>"
    html_path.write_text(body, encoding="utf-8")


def _files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def _manifest(source: Path, run_dir: Path) -> dict[str, Any]:
    import nbclient
    import nbconvert
    import papermill

    files = {}
    for path in _files(run_dir):
        data = path.read_bytes()
        files[path.relative_to(run_dir).as_posix()] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
    return {
        "files": files,
        "runbook": {
            "path": str(source),
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "git_revision": _git_revision(source),
        },
        "irlib_version": __version__,
        "python_version": platform.python_version(),
        "papermill_version": papermill.__version__,
        "nbclient_version": nbclient.__version__,
        "nbconvert_version": nbconvert.__version__,
        "created_at": io.utcnow().isoformat(),
    }


def _git_revision(path: Path) -> str:
    """The last commit that touched the runbook; "unknown" outside git or before a commit."""
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    revision = out.stdout.strip()
    return revision if out.returncode == 0 and revision else "unknown"
