"""A runbook run by a person in JupyterLab leaves the same evidence folder as `irlib run`.

A Runbook built in a kernel that JupyterLab started for a notebook ($JPY_SESSION_NAME) and not
by `irlib run` opens `outputs/<incident>/<UTC time>-<runbook>-interactive/`, records there as it
goes (checks, verdict, every mitigation proposed, refused or executed, by whom and when), and
shows a marker output naming that folder. The kernel cannot see the notebook's outputs, so the
Jupyter server archives them: `post_save_hook` (a server option that `make lab` sets) finds the
marker each time the notebook is saved and archives the saved file there with the runner's
archive step. Reads and writes files only; never imports JupyterLab.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from irlib import evidence, io
from irlib.errors import UsageError
from irlib.io import utcnow

SESSION_ENV = "JPY_SESSION_NAME"  # set by jupyter_server in a notebook's kernel: its path
MARKER = "application/vnd.irlib.run+json"  # the output that ties a saved notebook to its folder
MODE = "interactive"
DECISIONS_TAG = "irlib-decisions"
log = logging.getLogger(__name__)


def session_notebook() -> Path | None:
    """The notebook this kernel runs for JupyterLab; None under `irlib run`, papermill, nbval
    or a script, whose kernels JupyterLab did not start."""
    if os.environ.get(evidence.RUN_DIR_ENV):
        return None
    name = os.environ.get(SESSION_ENV, "")
    return Path(name).resolve() if name.endswith(".ipynb") else None


@dataclass(frozen=True)
class Session:
    """An interactive runbook session's evidence folder, shown where the notebook constructs
    its Runbook; the marker mimetype is how the save hook finds the folder again."""

    run_dir: Path
    notebook: Path
    secret_envs: tuple[str, ...]
    profile_path: str | None = None
    signing_key_env: str | None = None  # the profile's evidence.signing_key_env

    def facts(self) -> dict[str, Any]:
        """What the run record of an interactive session adds: what the archive needs later."""
        return {
            "mode": MODE,
            "notebook": str(self.notebook),
            "profile_path": self.profile_path,
            "secret_envs": self.secret_envs,
            "signing_key_env": self.signing_key_env,
        }

    def __repr__(self) -> str:
        return (
            f"Evidence of this session: {self.run_dir}\n"
            "  archived (notebook, HTML, results.json, manifest.json) each time the notebook "
            "is saved"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        import html

        return {
            "text/plain": repr(self),
            "text/html": f"<p>Evidence of this session: <code>{html.escape(str(self.run_dir))}"
            "</code>, archived (notebook, HTML, <code>results.json</code>, manifest) each "
            "time the notebook is saved.</p>",
            MARKER: {"run_dir": str(self.run_dir), "notebook": str(self.notebook)},
        }


def start(
    runbook: str, incident: str, profile: Any, profile_path: str | None = None
) -> Session | None:
    """A new evidence folder when JupyterLab runs this kernel, else None (headless)."""
    notebook = session_notebook()
    if notebook is None:
        return None
    io.check_safe_name(incident, "incident")  # it becomes a folder name
    # the archive step (and the chain, the incident record) only when JupyterLab runs this
    # kernel: a headless kernel imports none of it
    from irlib.archive import make_run_dir, secret_env_names

    # redacted as `irlib run` redacts for this profile
    secret_envs = secret_env_names(profile.to_dict())

    # $IRLIB_OUTPUTS, else `outputs/` at the repository root, as `irlib run` from there
    # ($IRLIB_RUN_DIR is not set: under `irlib run` there is no session)
    outputs = io.outputs_root().resolve()
    run_dir = make_run_dir(outputs / incident, utcnow(), f"{runbook}-{MODE}")
    profile_path = profile_path or os.environ.get("IRLIB_PROFILE")
    return Session(
        run_dir,
        notebook,
        tuple(dict.fromkeys(secret_envs)),
        str(Path(profile_path).resolve()) if profile_path else None,
        profile.evidence.signing_key_env,
    )


# -- the archive: irlib.archive's, fed from the session's run record and the saved notebook --------


def archive(run_dir: Path, saved: Any | None = None) -> Any:
    """Archive an interactive session's folder. With `saved` (the notebook as JupyterLab saved
    it, a NotebookNode), write it as notebook.ipynb, closed by a cell that lists every decision,
    and render it to HTML; always results.json (from events.jsonl) and manifest.json.
    Returns the archive's RunResult, or None when `run_dir` holds no interactive session."""
    from irlib.archive import NOTEBOOK
    from irlib.archive import archive as archive_folder

    run_dir = Path(run_dir)
    if not (run_dir / evidence.EVENTS_FILE).is_file():
        return None
    # one archive at a time per folder: the server's save hook and the kernel both write it;
    # the lock is on events.jsonl (advisory: the kernel's appends go on), not a file of its
    # own that the manifest would list
    with io.locked(run_dir / evidence.EVENTS_FILE):
        events = evidence.read_records(run_dir / evidence.EVENTS_FILE)
        run = _session_record(events)
        if run is None:
            return None
        notebook = run_dir / NOTEBOOK
        if saved is not None:
            _write_notebook(notebook, saved, events)
        reason = _crash_reason(notebook)
        started = datetime.fromisoformat(run["started_at"])
        finished = utcnow()
        return archive_folder(
            run_dir,
            runbook=run["runbook"],
            incident=run["incident"],
            operator=run["operator"],
            profile={"name": run.get("profile"), "path": run.get("profile_path")},
            parameters=_parameters(notebook),
            source=Path(run["notebook"]),
            secret_envs=run.get("secret_envs") or (),
            reason=reason,
            started=started,
            finished=finished,
            duration_s=(finished - started).total_seconds(),
            html=saved is not None,
            mode=MODE,
            notebook=run["notebook"],
            signing_key_env=run.get("signing_key_env"),
        )


def _session_record(events: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    runs = [e["data"] for e in events if e["kind"] == "run" and e["data"].get("mode") == MODE]
    return runs[0] if runs else None


def _write_notebook(path: Path, saved: Any, events: list[dict[str, Any]]) -> None:
    import copy

    import nbformat
    from nbformat.v4 import new_markdown_cell

    nb = copy.deepcopy(saved)
    # Saved widget state renders only with JavaScript fetched from the internet; without it,
    # nbconvert shows each widget's static view, and the closing cell lists the decisions.
    nb.metadata.pop("widgets", None)
    nb.cells = [c for c in nb.cells if DECISIONS_TAG not in c.get("metadata", {}).get("tags", [])]
    nb.cells.append(
        new_markdown_cell(decisions_markdown(events), metadata={"tags": [DECISIONS_TAG]})
    )
    reason = _crash_reason_of(nb)
    nb.metadata.setdefault("irlib", {})["run"] = {
        "status": "crashed" if reason else "completed",
        "reason": reason,
        "mode": MODE,
        "saved_at": utcnow().isoformat(),
    }
    text = nbformat.writes(nb)
    io.write_atomic(path, text if text.endswith("\n") else text + "\n")  # as nbformat.write


def decisions_markdown(events: Iterable[Mapping[str, Any]]) -> str:
    """Every mitigation attempt of the session, as a table: what the widgets cannot keep."""
    attempts = [e["data"] for e in events if e["kind"] == "mitigation"]
    head = "**irlib: decisions in this session** (from its evidence log, at archive time)"
    if not attempts:
        return head + "\n\nNo mitigation was proposed."
    rows = [
        "| at | mitigation | outcome | operator | confirmed by | detail |",
        "|---|---|---|---|---|---|",
    ]
    for a in attempts:
        cells = [a.get(k) or "" for k in ("at", "id", "outcome", "operator", "confirmed_by")]
        cells.append(a.get("detail") or "")
        rows.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return head + "\n\n" + "\n".join(rows)


def _crash_reason(notebook: Path) -> str | None:
    import nbformat

    if not notebook.is_file():
        return None
    return _crash_reason_of(nbformat.read(notebook, as_version=4))


def _crash_reason_of(nb: Any) -> str | None:
    """The first cell error in the notebook, said as the runner says it."""
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                n = cell.get("execution_count")
                return f"cell In[{n}] raised {out.get('ename')}: {out.get('evalue')}"
    return None


def _parameters(notebook: Path) -> dict[str, Any]:
    """The values the person ran with: the literals of the saved parameters cell."""
    from irlib.params import read_parameters

    if not notebook.is_file():
        return {}
    try:
        return {name: p.default for name, p in read_parameters(notebook).items()}
    except UsageError:
        return {}


# -- the Jupyter server side ---------------------------------------------------------------


def session_of(saved: Any, os_path: Path) -> Path | None:
    """The evidence folder named by the last marker in a saved notebook, if that folder holds
    the interactive session of this very notebook (a marker cannot point the server elsewhere)."""
    found = [
        out["data"][MARKER]
        for cell in saved.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if MARKER in out.get("data", {})
    ]
    if not found:
        return None
    run_dir = Path(str(found[-1].get("run_dir", "")))
    run = _session_record(evidence.read_records(run_dir / evidence.EVENTS_FILE))
    if run is None or Path(run["notebook"]).resolve() != os_path.resolve():
        return None
    return run_dir


def post_save_hook(
    model: Mapping[str, Any], os_path: str, contents_manager: Any = None, **_: Any
) -> None:
    """Jupyter server post-save hook (`--ContentsManager.post_save_hook=irlib.interactive.
    post_save_hook`): archive a saved runbook notebook into its session's evidence folder, in
    a thread so that the save returns at once. Never fails a save."""
    logger = getattr(contents_manager, "log", None) or log
    if model.get("type") != "notebook":
        return
    try:
        import nbformat

        saved = nbformat.read(os_path, as_version=4)
        run_dir = session_of(saved, Path(os_path))
    except Exception as e:  # an unreadable notebook is the server's business, not ours
        logger.warning("irlib: not archived %s: %s", os_path, e)
        return
    if run_dir is None:
        return
    threading.Thread(
        target=_archive_logged, args=(run_dir, saved, logger), name="irlib-archive", daemon=True
    ).start()


def _archive_logged(run_dir: Path, saved: Any, logger: Any) -> None:
    try:
        archive(run_dir, saved)
    except Exception:
        logger.exception("irlib: archiving %s failed", run_dir)
    else:
        logger.info("irlib: archived the saved notebook into %s", run_dir)
