"""`irlib run`: execute one runbook notebook headless with papermill and archive its evidence.

Talks to papermill/nbclient (a local kernel), nbconvert (HTML, no kernel) and `git log`; writes
only inside its own new run folder. Everything is checked (runbook, profile, parameters) before
that folder exists. It must not import JupyterLab, and imports papermill and nbconvert only when
a run starts, so that `irlib --help` stays fast.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irlib import capture, evidence, io, run_results
from irlib.archive import (
    NOTEBOOK,
    RunResult,
    archive,
    make_run_dir,
    mark_completed,
    secret_env_names,
    warm_html,
)
from irlib.errors import ProfileError, UsageError
from irlib.guard import parse_mitigation_id
from irlib.params import read_parameters, validate
from irlib.profile import Profile, load_profile

if TYPE_CHECKING:
    from irlib.kernels import WarmKernel
    from irlib.run_results import RunResults

PROFILE_COPY = "profile.yaml"  # the profile a run used, in its folder (it holds no secret)

# What the runner sets itself when the notebook declares it, and the option that sets it.
RESERVED = {
    "profile_path": "--profile",
    "incident": "--incident",
    "operator": "--operator",
    "confirm": "--confirm",
}


def print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Plan:
    """Everything decided before a run folder exists."""

    runbook: str
    notebook: Path
    profile: Profile
    profile_path: Path
    incident: str
    operator: str
    parameters: dict[str, Any]  # what papermill injects
    secret_envs: tuple[str, ...]


def run_runbook(
    runbook: str,
    *,
    profile: str | None,
    incident: str | None,
    params: Mapping[str, Any],
    confirm: Sequence[str],
    operator: str | None,
    outputs: Path,
    notebooks_dir: Path,
    execution_timeout_s: float = 120,
    log: Callable[[str], None] = print_to_stderr,
    parent: Path | None = None,
    label: str | None = None,
    replay_of: Path | None = None,
    kernel: WarmKernel | None = None,
    on_results: Callable[[Path, RunResults], None] | None = None,
) -> RunResult:
    """Run `notebooks_dir/<runbook>.ipynb` and archive it under `outputs/<incident>/`
    (or `parent/`, for the drills) in a new folder `<UTC time>-<label or runbook>`.

    Raises UsageError/ProfileError (exit 2) before anything runs; otherwise always returns,
    with the run folder holding notebook, HTML, results.json and manifest.json. Without
    `kernel`, one run per process at a time: the kernel's settings travel in os.environ, and
    papermill changes the working directory while it runs. With a warm `kernel`
    (irlib.kernels, started in the notebooks' folder), the settings are given to that kernel
    and nothing of this process changes, so runs may go on in several threads; the kernel is
    the caller's to shut down. `on_results(run_dir, results)` is called once results.json is
    written and the run is in its incident's timeline, before the HTML and the manifest.

    Every answer the run reads is captured (captures.jsonl) beside a copy of its profile;
    `replay_of` (an earlier run's captures file) answers every read from it instead,
    connecting nowhere (irlib.replay). `on_results` hears the outcome before the HTML is
    rendered (irlib.archive.archive).
    """
    plan = _plan(runbook, profile, incident, params, confirm, operator, notebooks_dir, log)
    started = io.utcnow()
    folder = Path(parent) if parent is not None else Path(outputs) / plan.incident
    run_dir = make_run_dir(folder.resolve(), started, label or plan.runbook)
    log(
        f"running {plan.runbook} against profile {plan.profile.name} "
        f"(incident {plan.incident}, operator {plan.operator}) ..."
    )
    secrets = evidence.secret_values(plan.secret_envs)
    evidence.append_record(
        run_dir / evidence.EVENTS_FILE,
        {
            "kind": "run",
            "at": started.isoformat(),
            "data": evidence.redact_value(_run_facts(plan), secrets),
        },
    )
    shutil.copyfile(plan.profile_path, run_dir / PROFILE_COPY)  # what a replay connects "to"
    t0 = time.monotonic()
    tape = f"replay:{replay_of}" if replay_of else f"record:{run_dir}"
    in_process = replay_of is not None and kernel is None and not _inside_ipython()
    reason = _execute(plan, run_dir, execution_timeout_s, tape, kernel, in_process=in_process)
    finished = io.utcnow()

    def results_written(results: RunResults) -> None:
        _attach_to_incident(run_dir, log)
        if on_results is not None:
            try:
                on_results(run_dir, results)
            except Exception as e:  # the caller's step must not cost the evidence its HTML
                log(f"warning: after the results: {type(e).__name__}: {e}")

    result = _archive(
        plan,
        run_dir,
        reason,
        started,
        finished,
        time.monotonic() - t0,
        replay_of=replay_of,
        on_results=results_written,
    )
    _log_outcome(result, log)
    return result


def _inside_ipython() -> bool:
    """An IPython shell runs this process already (the post-mortem notebook replays in its
    kernel): an in-process kernel would take its place as the process's one shell."""
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None


def _attach_to_incident(run_dir: Path, log: Callable[[str], None]) -> None:
    """Add this run to the timeline of the incident record in its parent folder, if any."""
    from irlib import incident

    try:
        if incident.attach_run(run_dir):
            log(f"added to the timeline of incident {run_dir.parent.name}")
    except Exception as e:  # the evidence is archived: a record it cannot update costs nothing
        log(f"warning: not added to incident {run_dir.parent.name}'s timeline: {e}")


def _plan(
    runbook: str,
    profile: str | None,
    incident: str | None,
    given: Mapping[str, Any],
    confirm: Sequence[str],
    operator: str | None,
    notebooks_dir: Path,
    log: Callable[[str], None],
) -> _Plan:
    notebook = _resolve_notebook(runbook, Path(notebooks_dir))
    profile_arg = profile or os.environ.get("IRLIB_PROFILE") or None
    loaded = load_profile(profile_arg)  # None: its error says to pass --profile
    profile_path = Path(str(profile_arg)).resolve()
    incident = io.check_safe_name(incident or "adhoc", "incident")  # it becomes a folder name
    operator = io.operator_name(operator)
    for mitigation in confirm:  # a typo here would otherwise surface only mid-run
        parse_mitigation_id(mitigation)
    declared = read_parameters(notebook)
    profile_envs = secret_env_names(loaded.to_dict())
    key_env = loaded.evidence.signing_key_env
    if key_env and not os.environ.get(key_env):  # an unsigned manifest would pass unnoticed
        raise ProfileError(
            f"the profile signs evidence with the key in ${key_env} (evidence.signing_key_env), "
            "but it is not set"
        )
    values = validate(
        notebook, given, reserved=RESERVED, secrets=evidence.secret_values(profile_envs)
    )
    _scenario_validate(runbook, {**{k: p.default for k, p in declared.items()}, **values})
    runner_set = {
        "profile_path": str(profile_path),
        "incident": incident,
        "operator": operator,
        "confirm": list(confirm),
    }
    for name, value in runner_set.items():
        if name in declared:
            values[name] = value
        elif name == "confirm" and confirm:
            log(f"warning: {runbook} takes no confirm parameter; --confirm is ignored")
    # An `*_env` parameter names a secret's env var, as the profile's `*_env` settings do.
    notebook_envs = [
        str(v)
        for n, v in {**{k: p.default for k, p in declared.items()}, **values}.items()
        if n.endswith("_env") and isinstance(v, str)
    ]
    return _Plan(
        runbook=runbook,
        notebook=notebook,
        profile=loaded,
        profile_path=profile_path,
        incident=incident,
        operator=operator,
        parameters=values,
        secret_envs=tuple(dict.fromkeys([*profile_envs, *notebook_envs])),
    )


def _scenario_validate(runbook: str, values: Mapping[str, Any]) -> None:
    """A scenario's own check of its parameters' values (irlib.runbooks.Scenario.validate)."""
    from irlib.runbooks import SCENARIOS, _load

    scenario = SCENARIOS.get(runbook)
    if scenario is not None and scenario.validate:
        _load(scenario.validate)(values)


def _resolve_notebook(runbook: str, notebooks_dir: Path) -> Path:
    available = sorted(p.stem for p in notebooks_dir.glob("*.ipynb"))
    path = notebooks_dir / f"{runbook}.ipynb"
    if not io.SAFE_NAME.match(runbook) or not path.is_file():  # it becomes a path
        raise UsageError(
            f"unknown runbook {runbook!r}; available: {', '.join(available) or 'none'} "
            f"(in {notebooks_dir})"
        )
    return path


def _run_facts(plan: _Plan) -> dict[str, Any]:
    return {
        "runbook": plan.runbook,
        "incident": plan.incident,
        "operator": plan.operator,
        "profile": plan.profile.name,
        "parameters": plan.parameters,
    }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set env vars for a kernel, which inherits this process's environment; restore after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _execute(
    plan: _Plan,
    run_dir: Path,
    timeout: float,
    tape: str,
    kernel: WarmKernel | None = None,
    in_process: bool = False,
) -> str | None:
    """Run the notebook; None when it completed, else why it crashed (its notebook marked).
    `tape`: irlib.capture's mode for the kernel (record into run_dir, or replay). `kernel`:
    a warm kernel to run it in, given the same settings a cold one inherits. Without one, a
    kernel of this run's own, started first thing so that its start overlaps this process's
    imports and the HTML's warm-up, and shut down after. `in_process`: in a kernel inside
    this process (irlib.inprocess), for a replay: no kernel to start, nothing to import
    twice, and the notebook saved once at the end."""
    env = {
        evidence.RUN_DIR_ENV: str(run_dir),
        evidence.REDACT_ENVS_ENV: ",".join(plan.secret_envs),
        capture.ENV: tape,
    }
    from irlib import kernels  # light: it imports jupyter_client only to start a kernel

    starting = None
    if kernel is None and not in_process:
        starting = kernels.start_in_background(plan.notebook.parent, {**os.environ, **env})

    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if starting is not None:  # (after papermill's imports: nbconvert shares some of them)
        threading.Thread(target=warm_html, name="warm-html", daemon=True).start()

    from irlib import papermill_engine

    timeout_s = max(1, math.ceil(timeout))  # nbclient counts whole seconds
    papermill_marked_all_completed = True
    km = None
    if in_process:
        from irlib.inprocess import KernelManager

        km = KernelManager()

    def execute(**how: Any) -> None:
        papermill.execute_notebook(
            str(plan.notebook),
            str(run_dir / NOTEBOOK),
            parameters=plan.parameters,
            kernel_name="python3",
            engine_name=papermill_engine.NAME,  # saves the running notebook once a second
            execution_timeout=timeout_s,
            progress_bar=False,
            log_output=False,
            **how,
        )

    try:
        if starting is not None:
            kernel = starting.result()  # or KernelError: it did not start
        if kernel is not None:
            # started in the notebooks' folder; no chdir in this process
            kernel.set_environment(env)
            execute(km=kernel.km)
            return None
        with environment(env):
            capture.reset()  # a kernel in this process reads its tape from env afresh
            execute(cwd=str(plan.notebook.parent), km=km, request_save_on_cell_execute=False)
        return None
    except PapermillExecutionError as e:
        reason = f"cell In[{e.exec_count}] raised {e.ename}: {e.evalue}"
        papermill_marked_all_completed = False  # it marked the failing cell itself
    except CellTimeoutError:
        reason = f"timed out: a cell ran longer than {timeout_s:g} s (--timeout)"
    except DeadKernelError as e:
        reason = f"the kernel died ({e}) while a cell was running"
    except kernels.KernelError as e:
        reason = f"the kernel did not start: {e}"
    except KeyboardInterrupt:
        reason = "interrupted by the operator (Ctrl-C)"
    except Exception as e:  # a notebook papermill cannot read or write, say
        reason = f"papermill failed: {type(e).__name__}: {e}"
    finally:
        if km is not None:  # nbclient leaves a kernel it was given running
            km.shutdown_kernel()
        if starting is not None:
            kernels.stop_when_started(starting)
    _mark_crashed(run_dir / NOTEBOOK, plan.notebook, reason, papermill_marked_all_completed)
    return reason


def _mark_crashed(path: Path, source: Path, reason: str, fix_statuses: bool) -> None:
    """Make the saved notebook say it crashed: on a timeout or a dead kernel papermill has
    marked every cell "completed", including those that never ran."""
    import nbformat
    from nbformat.v4 import new_markdown_cell

    nb = nbformat.read(path if path.exists() else source, as_version=4)
    started = [i for i, c in enumerate(nb.cells) if _papermill(c).get("start_time")]
    failed = started[-1] if started else None
    if fix_statuses:
        for i, cell in enumerate(nb.cells):
            meta = _papermill(cell)
            if i == failed:
                meta.update(status="failed", exception=True)
            elif meta and not meta.get("start_time"):
                meta["status"] = "not run"
    if fix_statuses and failed is not None:
        nb.cells.insert(
            failed + 1,
            new_markdown_cell(
                f"**irlib: the cell above did not finish: {reason}**",
                metadata={"tags": ["irlib-crash-marker"]},
            ),
        )
    nb.cells.insert(
        0,
        new_markdown_cell(
            '<div style="background:#f8d7da;padding:8px;border:1px solid #a94442">'
            f"<b>irlib: this run crashed</b>: {html.escape(reason)}.<br>"
            "The cells after the failing one did not run; the evidence below is partial.</div>",
            metadata={"tags": ["irlib-crash-banner"]},
        ),
    )
    nb.metadata.setdefault("irlib", {})["run"] = {
        "status": "crashed",
        "reason": reason,
        "failed_cell": None if failed is None else failed + 1,  # index after the banner
    }
    nbformat.write(nb, path)


def _papermill(cell: Any) -> Any:
    return cell.get("metadata", {}).get("papermill", {})


def _archive(
    plan: _Plan,
    run_dir: Path,
    reason: str | None,
    started: datetime,
    finished: datetime,
    duration_s: float,
    replay_of: Path | None = None,
    on_results: Callable[[RunResults], None] | None = None,
) -> RunResult:
    """notebook.html, results.json and manifest.json, every file redacted before hashing."""
    if reason is None:
        mark_completed(run_dir / NOTEBOOK)
    original = None
    if replay_of is not None:
        folder = Path(replay_of).resolve().parent
        was = run_results.read(folder)
        original = {"run_dir": str(folder), "verdict": was.verdict}
    return archive(
        run_dir,
        runbook=plan.runbook,
        incident=plan.incident,
        operator=plan.operator,
        profile={"name": plan.profile.name, "path": str(plan.profile_path)},
        parameters=plan.parameters,
        source=plan.notebook,
        secret_envs=plan.secret_envs,
        reason=reason,
        started=started,
        finished=finished,
        duration_s=duration_s,
        signing_key_env=plan.profile.evidence.signing_key_env,
        mode="replay" if replay_of is not None else None,
        replay_of=original,
        on_results=on_results,
    )


def _log_outcome(result: RunResult, log: Callable[[str], None]) -> None:
    if result.status == "crashed":
        log(f"crashed: {result.reason}")
    elif result.verdict is None:
        log("completed without a verdict")
    else:
        causes = result.verdict.get("causes") or []
        top = ", ".join(f"{c.get('id')} ({c.get('score')})" for c in causes[:3])
        mitigations = ", ".join(result.verdict.get("mitigations") or [])
        log(
            f"verdict: {str(result.verdict.get('state')).upper()}"
            + (f"; probable causes: {top}" if top else "")
            + (f"; mitigations: {mitigations}" if mitigations else "")
        )
    log(f"evidence: {result.run_dir} (exit {result.exit_code})")
