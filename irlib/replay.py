"""`irlib replay EVIDENCE`: a run's runbook again, against what that run read (its captures),
with no live system: no connection is attempted and the clock is the captures'. It writes a new
evidence folder marked as a replay and puts its verdict beside the original's: the same, or what
changed and which rule (a cause's id is its rule's name) made the difference. The rules are
the installed irlib's (`--rules current`), so a post-mortem can ask whether today's rules would
have seen it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irlib import capture, postmortem, run_results
from irlib.archive import RunResult
from irlib.errors import UsageError
from irlib.notebooks_dir import notebooks_dir as shipped
from irlib.postmortem import ReplayRow
from irlib.runner import PROFILE_COPY, RESERVED, print_to_stderr, run_runbook

SUFFIX = "replay"  # the new folder is <UTC time>-<runbook>-replay
REPLAYS = "replays"  # a post-mortem's replays: INCIDENT/replays/<incident>/, off its timeline


@dataclass(frozen=True)
class Replay:
    original: Path
    result: RunResult
    before: Mapping[str, Any] | None  # the original verdict
    after: Mapping[str, Any] | None  # the replay's

    @property
    def differences(self) -> list[str]:
        return differences(self.before, self.after)

    @property
    def same(self) -> bool:
        return self.result.status == run_results.COMPLETED and not self.differences

    @property
    def exit_code(self) -> int:
        """0 the same verdict, 1 a different one, 3 the replay crashed."""
        if self.result.status != run_results.COMPLETED:
            return 3
        return 0 if self.same else 1

    def text(self) -> str:
        lines = [
            f"original: {_line(self.before)}",
            f"replay:   {_line(self.after)}",
        ]
        if self.result.status != run_results.COMPLETED:
            lines.append(f"the replay crashed: {self.result.reason}")
        elif self.same:
            lines.append("the same verdict")
        else:
            lines += ["what changed:", *(f"  - {d}" for d in self.differences)]
        return "\n".join(lines)


def _line(verdict: Mapping[str, Any] | None) -> str:
    if not verdict:
        return "no verdict"
    causes = verdict.get("causes") or []
    top = ", ".join(f"{c.get('id')} ({c.get('score')})" for c in causes[:3])
    return f"{str(verdict.get('state')).upper()}" + (f": {top}" if top else "")


def differences(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """What a person must know: state, top cause, each rule (cause) that fires, stops firing
    or scores differently, and the mitigations recommended."""
    b, a = before or {}, after or {}
    out: list[str] = []
    if b.get("state") != a.get("state"):
        out.append(f"state {b.get('state')} -> {a.get('state')}")
    was = {c["id"]: c for c in b.get("causes") or []}
    now = {c["id"]: c for c in a.get("causes") or []}
    top_b, top_a = next(iter(was), None), next(iter(now), None)
    if top_b != top_a:
        out.append(f"top cause {top_b or 'none'} -> {top_a or 'none'}")
    for rule, cause in was.items():
        if rule not in now:
            out.append(f"rule {rule} no longer fires (it scored {cause.get('score')})")
        elif cause.get("score") != now[rule].get("score"):
            out.append(f"rule {rule} scores {cause.get('score')} -> {now[rule].get('score')}")
    for rule, cause in now.items():
        if rule not in was:
            out.append(
                f"rule {rule} fires now (score {cause.get('score')}): {cause.get('evidence')}"
            )
    if list(b.get("mitigations") or []) != list(a.get("mitigations") or []):
        out.append(f"mitigations {b.get('mitigations') or []} -> {a.get('mitigations') or []}")
    return out


def _replayable(evidence: Path) -> tuple[Path, run_results.RunResults, Path]:
    """The run whose answers a replay of `evidence` reads (a replay's own original), its
    results and its captures; UsageError when it cannot be replayed."""
    evidence = Path(evidence).resolve()
    try:
        original = run_results.read(evidence)
    except (OSError, ValueError) as e:
        raise UsageError(f"{evidence} is not a run's evidence folder: {e}") from e
    if original.replay_of:  # a replay's answers, and the verdict to compare, are its original's
        evidence = Path(original.replay_of["run_dir"])
        original = run_results.read(evidence)
    captures = capture.find(evidence)
    missing = [capture.FILE] if captures is None else []
    missing += [] if (evidence / PROFILE_COPY).is_file() else [PROFILE_COPY]
    if missing or captures is None:
        raise UsageError(
            f"{evidence} cannot be replayed: it has no {' or '.join(missing)} (archived before "
            "irlib kept captures, or an interactive session, whose kernel keeps none)"
        )
    return evidence, original, captures


def runs_to_replay(paths: list[Path]) -> list[Path]:
    """The run folders that `paths` name, in order: a run's folder itself, an incident's
    folder its runs that kept captures (not its replays). UsageError, before anything runs,
    for a path that is neither or a run that cannot be replayed."""
    runs: list[Path] = []
    for path in paths:
        if path.is_dir() and not (path / run_results.FILE).is_file():
            found = runs_of(path)
            if not found:
                raise UsageError(f"{path} holds no run that kept captures to replay")
            runs += found
        else:
            _replayable(path)
            runs.append(path)
    return runs


def runs_of(folder: Path) -> list[Path]:
    """The runs in an incident's folder that can be replayed: not replays, with captures."""
    runs = []
    for run_dir in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        try:
            results = run_results.read(run_dir)
        except (OSError, ValueError):
            continue
        if results.mode != "replay" and capture.find(run_dir) is not None:
            runs.append(run_dir)
    return runs


def replay(
    evidence: Path,
    *,
    notebooks_dir: Path,
    outputs: Path | None = None,
    execution_timeout_s: float = 120,
    log: Callable[[str], None] = print_to_stderr,
    on_verdict: Callable[[Replay], None] | None = None,
) -> Replay:
    """Replay the run in `evidence` into a new folder beside it (or OUTPUTS/<incident>/).
    UsageError (exit 2) before anything runs when it cannot be replayed. `on_verdict` hears
    the comparison as soon as the replay's verdict is known, before its HTML is rendered."""
    evidence, original, captures = _replayable(evidence)
    params = {k: v for k, v in original.parameters.items() if k not in RESERVED}
    parent = (Path(outputs) / original.incident) if outputs else evidence.parent
    log(f"replaying {evidence.name} from its captures (no connection is made) ...")

    def _tell(run_dir: Path, results: run_results.RunResults) -> None:
        if on_verdict is not None:
            result = RunResult(
                run_dir, results.exit_code, results.status, results.verdict, results.reason
            )
            on_verdict(Replay(evidence, result, original.verdict, result.verdict))

    result = run_runbook(
        original.runbook,
        profile=str(evidence / PROFILE_COPY),
        incident=original.incident,
        params=params,
        confirm=(),  # a replay never mitigates
        operator=None,
        outputs=parent.parent,
        notebooks_dir=notebooks_dir,
        execution_timeout_s=execution_timeout_s,
        log=log,
        parent=parent,
        label=f"{original.runbook}-{SUFFIX}",
        replay_of=captures,
        on_results=None if on_verdict is None else _tell,
    )
    return Replay(evidence, result, original.verdict, result.verdict)


def replay_incident(
    folder: Path,
    *,
    notebooks_dir: Path | None = None,
    log: Callable[[str], None] = print_to_stderr,
) -> tuple[ReplayRow, ...]:
    """Replay every run of the incident in `folder` that kept captures, into
    folder/replays/ (out of the incident's timeline and chain), for its post-mortem."""
    rows = []
    for run_dir in runs_of(folder):
        done = replay(
            run_dir, notebooks_dir=notebooks_dir or shipped(), outputs=folder / REPLAYS, log=log
        )
        rows.append(
            ReplayRow(
                run_dir.name,
                _line(done.before),
                _line(done.after) if done.exit_code != 3 else f"crashed: {done.result.reason}",
                tuple(done.differences) if done.exit_code != 3 else ("the replay crashed",),
                done.result.run_dir.relative_to(folder).as_posix(),
            )
        )
    return tuple(rows)


def assemble_postmortem(
    incident: str | None = None,
    *,
    outputs_dir: str | Path | None = None,
    profile_path: str | None = None,
    replay: bool = True,
    notebooks_dir: Path | None = None,
    log: Callable[[str], None] = print_to_stderr,
) -> postmortem.PostMortem | postmortem.NoIncident:
    """The post-mortem (irlib.postmortem.assemble), with each run replayed when `replay`."""
    replays = None
    if replay:

        def replays(folder: Path) -> tuple[ReplayRow, ...]:
            return replay_incident(folder, notebooks_dir=notebooks_dir, log=log)

    return postmortem.assemble(
        incident, outputs_dir=outputs_dir, profile_path=profile_path, replays=replays
    )
