"""The evidence chain of a folder of runs (an incident's, or a drill's): each run's manifest names
the sha256 of the manifest archived before it in the same folder (the first names the incident
record, incident.json, written once), and is signed with an HMAC-SHA256 when the profile names a
key's env var. `chain.jsonl` lists every manifest in the order it was archived. `verify` rechecks
every file, link and signature and says exactly what is wrong. Reads and writes only inside that
folder; the key is read from the environment and never written, not even as a hash of it alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irlib import io
from irlib.incident import RECORD

CHAIN = "chain.jsonl"
MANIFEST = "manifest.json"
ALGORITHM = "hmac-sha256"
# The files of a run folder that mark it as one (a crashed run may have no manifest).
RUN_FILES = (MANIFEST, "results.json", "notebook.ipynb")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def seal(run_dir: Path, manifest: Mapping[str, Any], *, key_env: str | None) -> str:
    """Write `manifest` as run_dir/manifest.json, linked to the manifest archived before it in
    the same folder and signed when `key_env` names a key, and append it to the folder's
    chain.jsonl: all under the chain's lock, so that two runs archiving at once stay in one
    line. Returns the manifest's sha256. A named key that is not set leaves the manifest
    unsigned and says so in it (the runner refuses such a run before it starts)."""
    folder = run_dir.parent
    with io.locked(folder / CHAIN) as chain:
        entries = io.parse_jsonl(chain.read())
        previous = _head(folder, entries)
        sealed = dict(manifest)
        sealed["chain"] = {"folder": folder.name, "previous": previous}
        if key_env:
            key = os.environ.get(key_env)
            sealed["signature"] = (
                _signature(sealed, key, key_env)
                if key
                else {"alg": ALGORITHM, "key_env": key_env, "missing": True}
            )
        io.write_json_atomic(run_dir / MANIFEST, sealed)
        digest = sha256_file(run_dir / MANIFEST)
        io.append_jsonl(
            folder / CHAIN,
            [
                {
                    "run": run_dir.name,
                    "manifest_sha256": digest,
                    "previous": (previous.get("run") or previous.get("record"))
                    if previous
                    else None,
                    "previous_sha256": previous["sha256"] if previous else None,
                    "at": io.utcnow().isoformat(),
                }
            ],
        )
    return digest


def _head(folder: Path, entries: list[dict[str, Any]]) -> dict[str, str] | None:
    """What the next manifest links to: the last one archived, else the incident record."""
    if entries:
        return {"run": str(entries[-1]["run"]), "sha256": str(entries[-1]["manifest_sha256"])}
    if (folder / RECORD).is_file():
        return {"record": RECORD, "sha256": sha256_file(folder / RECORD)}
    return None


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    """What a signature covers: the whole manifest but its signature, in one fixed form."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(key: str) -> str:
    """A short name for a key, to tell two keys apart in a report: an HMAC of a fixed text, so
    it gives away no more than a signature does."""
    return hmac.new(key.encode(), b"irlib evidence key id", hashlib.sha256).hexdigest()[:16]


def _signature(manifest: Mapping[str, Any], key: str, key_env: str) -> dict[str, Any]:
    mac = hmac.new(key.encode(), _canonical(manifest), hashlib.sha256).hexdigest()
    return {"alg": ALGORITHM, "key_env": key_env, "key_id": key_id(key), "value": mac}


# -- verification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCheck:
    """One run folder: its manifest's and notebook's sha256 and what is wrong with it."""

    run: str
    manifest_sha256: str | None
    notebook_sha256: str | None
    signed: bool
    problems: tuple[str, ...]

    @property
    def verified(self) -> bool:
        return self.manifest_sha256 is not None and not self.problems


@dataclass(frozen=True)
class Report:
    """The verification of one folder: every run (in the chain's order, then any outside it)
    and the problems of the chain itself (a removed run, a broken link)."""

    folder: Path
    runs: tuple[RunCheck, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not self.problems and all(r.verified for r in self.runs)

    def run(self, name: str) -> RunCheck | None:
        return next((r for r in self.runs if r.run == name), None)

    def all_problems(self) -> list[str]:
        return [*self.problems, *(f"{r.run}: {p}" for r in self.runs for p in r.problems)]

    def summary(self) -> str:
        signed = sum(r.signed for r in self.runs)
        if self.ok:
            sig = f", {signed} signature(s) checked" if signed else ", unsigned"
            return f"verified: {len(self.runs)} run(s), every file and chain link{sig}"
        if not self.runs:
            return "FAILED: no run folder here"
        return f"FAILED: {len(self.all_problems())} problem(s) in {len(self.runs)} run(s)"

    def text(self) -> str:
        lines = [f"{self.folder}: {self.summary()}"]
        lines += [f"  chain: {p}" for p in self.problems]
        for r in self.runs:
            lines.append(f"  {'ok  ' if r.verified else 'FAIL'} {r.run}")
            lines += [f"         {p}" for p in r.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "ok": self.ok,
            "summary": self.summary(),
            "problems": list(self.problems),
            "runs": [
                {
                    "run": r.run,
                    "verified": r.verified,
                    "signed": r.signed,
                    "manifest_sha256": r.manifest_sha256,
                    "problems": list(r.problems),
                }
                for r in self.runs
            ],
        }


def run_folders(folder: Path) -> list[Path]:
    """The run folders directly under `folder`, by name (their names start with their UTC time)."""
    return sorted(
        p for p in folder.iterdir() if p.is_dir() and any((p / n).is_file() for n in RUN_FILES)
    )


def verify(
    folder: Path,
    *,
    key_env: str | None = None,
    environ: Mapping[str, str] = os.environ,
    exclude: tuple[str, ...] = (),
) -> Report:
    """Recheck every run folder in `folder`: each file against its manifest (and no file the
    manifest does not list), each manifest against the chain (a changed, removed, inserted or
    foreign run), and each signature with the key in `key_env` (default: the env var the
    manifest names). A manifest that should be signed and cannot be checked is a problem.
    `exclude`: run folders still being written (a post-mortem's own run)."""
    folder = Path(folder)
    found = {p.name: p for p in run_folders(folder) if p.name not in exclude}
    entries = io.read_jsonl(folder / CHAIN) if (folder / CHAIN).is_file() else []
    problems: list[str] = []
    if found and not entries:
        problems.append(f"{CHAIN} is missing or empty: no run here can be placed in a chain")
    latest: dict[str, dict[str, Any]] = {}
    expected = _genesis(folder, entries, problems)
    for n, entry in enumerate(entries, 1):
        run = str(entry.get("run"))
        if entry.get("previous_sha256") != expected:
            problems.append(
                f"link {n} ({run}) follows a manifest that is not the one before it in "
                f"{CHAIN}: a run was removed, inserted or changed before it"
            )
        latest[run] = entry
        expected = entry.get("manifest_sha256")
    for run in latest:
        if run not in found:
            problems.append(f"run {run} is in the chain but its folder is missing (removed)")
    ordered = [r for r in latest if r in found] + [r for r in found if r not in latest]
    checks = tuple(_check_run(found[r], folder, latest.get(r), key_env, environ) for r in ordered)
    return Report(folder, checks, tuple(problems))


def _genesis(folder: Path, entries: list[dict[str, Any]], problems: list[str]) -> str | None:
    """What the first link names: nothing, or the incident record as it was (written once)."""
    first = entries[0] if entries else {}
    sha = first.get("previous_sha256")
    if sha is None:
        return None
    if first.get("previous") != RECORD:
        problems.append(
            f"the chain's first link follows run {first.get('previous')}, which is not in "
            f"{CHAIN}: its first lines were removed"
        )
    elif not (folder / RECORD).is_file():
        problems.append(f"{RECORD} is missing: the first run was archived after it")
    elif sha256_file(folder / RECORD) != sha:
        problems.append(f"{RECORD} changed after the first run of this folder was archived")
    return str(sha)


def _check_run(
    run_dir: Path,
    folder: Path,
    entry: Mapping[str, Any] | None,
    key_env: str | None,
    environ: Mapping[str, str],
) -> RunCheck:
    problems: list[str] = []
    try:
        raw = (run_dir / MANIFEST).read_bytes()
        manifest = json.loads(raw)
        files = manifest["files"]
    except FileNotFoundError:
        return RunCheck(run_dir.name, None, None, False, ("manifest.json is missing",))
    except (OSError, ValueError, KeyError, TypeError) as e:
        return RunCheck(
            run_dir.name, None, None, False, (f"manifest.json is unreadable ({type(e).__name__})",)
        )
    digest = hashlib.sha256(raw).hexdigest()
    for name, meta in sorted(files.items()):
        path = run_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != meta.get("sha256"):
            problems.append(f"{name} does not match its sha256 in the manifest")
    for path in sorted(run_dir.rglob("*")):
        name = path.relative_to(run_dir).as_posix()
        if path.is_file() and name != MANIFEST and name not in files:
            problems.append(f"{name} is not in the manifest (added after the run)")
    link = manifest.get("chain") or {}
    owner = link.get("folder")
    if entry is None:
        where = f"archived in {owner!r}" if owner and owner != folder.name else "not archived here"
        problems.append(f"not in this folder's {CHAIN} ({where}): copied or inserted")
    else:
        if entry.get("manifest_sha256") != digest:
            problems.append(
                "manifest.json is not the one the chain recorded: it changed after the run"
            )
        if (link.get("previous") or {}).get("sha256") != entry.get("previous_sha256"):
            problems.append("its manifest links to another predecessor than the chain's")
        if owner != folder.name:
            problems.append(f"its manifest was archived in {owner!r}, not {folder.name!r}")
    signed = _check_signature(manifest, key_env, environ, problems)
    notebook = (files.get("notebook.ipynb") or {}).get("sha256")
    return RunCheck(run_dir.name, digest, notebook, signed, tuple(problems))


def _check_signature(
    manifest: Mapping[str, Any],
    key_env: str | None,
    environ: Mapping[str, str],
    problems: list[str],
) -> bool:
    """True when a signature was checked and holds; its problems appended otherwise."""
    signature = manifest.get("signature")
    if not isinstance(signature, Mapping):
        if key_env:
            problems.append(f"not signed, but a key was given (${key_env})")
        return False
    name = key_env or str(signature.get("key_env"))
    if signature.get("missing"):
        problems.append(f"not signed: ${signature.get('key_env')} was not set when archived")
        return False
    key = environ.get(name)
    if not key:
        problems.append(f"signature not checked: ${name} is not set")
        return False
    expected = hmac.new(key.encode(), _canonical(manifest), hashlib.sha256).hexdigest()
    if hmac.compare_digest(expected, str(signature.get("value"))):
        return True
    if signature.get("key_id") != key_id(key):
        problems.append(f"signature does not verify: signed with another key than ${name}'s")
    else:
        problems.append("signature does not verify: the manifest changed after it was signed")
    return False
