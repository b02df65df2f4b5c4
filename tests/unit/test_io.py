"""irlib.io and irlib.k8s.quantity: the shared plumbing, pure (files in tmp_path, no lab)."""

from __future__ import annotations

import ast
import getpass
import json
import threading
from datetime import UTC
from pathlib import Path

import pytest

from irlib import incident, io, results
from irlib.errors import UsageError
from irlib.k8s import quantity
from irlib.runbooks.p2_calibration_failures import batch_bound


def test_io_sits_at_the_bottom_of_the_layers() -> None:
    tree = ast.parse(Path(io.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    # and the clock, which a replay sets to its captures' (irlib.capture imports only errors)
    assert {m for m in imported if m.startswith("irlib")} == {"irlib.errors", "irlib.capture"}


def test_one_clock_re_exported_where_it_was() -> None:
    assert results.utcnow is io.utcnow and incident.utcnow is io.utcnow
    assert io.utcnow().tzinfo is UTC


# -- atomic writes -------------------------------------------------------------------------------


def test_write_atomic_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old", encoding="utf-8")
    io.write_atomic(path, "new ✓\n")
    assert path.read_text(encoding="utf-8") == "new ✓\n"
    io.write_json_atomic(path, {"b": "é", "a": 1}, fsync=True)
    assert path.read_text(encoding="utf-8") == '{\n  "b": "é",\n  "a": 1\n}\n'
    io.write_json_atomic(path, {"b": 2, "a": 1}, sort_keys=True)
    assert list(json.loads(path.read_text(encoding="utf-8"))) == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "notebook.ipynb"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        io.write_atomic(path, "half \ud800 written")  # a lone surrogate: not UTF-8
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["notebook.ipynb"]


def test_write_once_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "incident.json"
    io.write_json_atomic(path, {"id": "INC-1"}, fsync=True, overwrite=False)
    with pytest.raises(FileExistsError):
        io.write_json_atomic(path, {"id": "INC-2"}, fsync=True, overwrite=False)
    assert json.loads(path.read_text(encoding="utf-8")) == {"id": "INC-1"}
    assert [p.name for p in tmp_path.iterdir()] == ["incident.json"]


# -- JSON lines ----------------------------------------------------------------------------------


def test_read_jsonl_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "run", "n": 1}\n{"kind": "check", "n": 2}\n{"kind": "ve', "utf-8")
    assert [r["n"] for r in io.read_jsonl(path)] == [1, 2]
    assert io.read_jsonl(tmp_path / "missing.jsonl") == []


def test_read_jsonl_skips_blank_and_non_object_lines_and_bytes_torn_in_a_character(
    tmp_path: Path,
) -> None:
    path = tmp_path / "timeline.jsonl"
    path.write_bytes(b'{"n": 1}\n\n[1, 2]\n"text"\n{"n": 2}\n{"text": "caf\xc3')
    assert io.read_jsonl(path) == [{"n": 1}, {"n": 2}]


def test_a_record_holding_a_unicode_line_separator_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    record = {"kind": "check", "log": "pod said\u2028this\x85and that"}  # JSON leaves them raw
    io.append_jsonl(path, [record, {"kind": "verdict"}])
    assert io.read_jsonl(path) == [record, {"kind": "verdict"}]


def test_append_jsonl_after_a_torn_line_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"n": 1}\n{"n": 2, "tor', encoding="utf-8")
    io.append_jsonl(path, [{"n": 3}, {"n": 4}])
    io.append_jsonl(path, [{"n": 5}])
    io.append_jsonl(path, [])  # nothing to append: nothing written
    assert [r["n"] for r in io.read_jsonl(path)] == [1, 3, 4, 5]
    assert path.read_text(encoding="utf-8").endswith('{"n": 4}\n{"n": 5}\n')
    io.append_jsonl(tmp_path / "new.jsonl", [{"n": 1}])
    assert (tmp_path / "new.jsonl").read_text(encoding="utf-8") == '{"n": 1}\n'


# -- the lock ------------------------------------------------------------------------------------


def test_locked_keeps_a_second_locker_out_until_released(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    acquired, release = threading.Event(), threading.Event()

    def second() -> None:
        with io.locked(path):  # its own open file: flock excludes it, even in this process
            acquired.set()
            release.wait(5)

    with io.locked(path) as f:
        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        assert not acquired.wait(0.3)
        f.write("mine\n")
    assert acquired.wait(5)
    release.set()
    thread.join(5)
    assert not thread.is_alive()
    assert path.read_text(encoding="utf-8") == "mine\n"


def test_locked_creates_the_file_and_reads_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / ".incident-seq-2025.lock"
    with io.locked(path) as f:
        assert f.read() == ""
    path.write_bytes(b'{"n": 1}\n{"t": "\xc3')  # torn inside a character: read, not an error
    with io.locked(path) as f:
        assert io.parse_jsonl(f.read()) == [{"n": 1}]


# -- names, people, places -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["INC-2025-0001", "adhoc", "p1_system_unavailable", "a.b_c-9"])
def test_safe_names_are_accepted(name: str) -> None:
    assert io.check_safe_name(name, "incident") == name
    assert io.SAFE_NAME.match(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../etc", ".hidden", "-rf", "a/b", "a b", "inc\n", "inc\nx", "é"]
)
def test_unsafe_names_are_refused_with_the_callers_message(name: str) -> None:
    with pytest.raises(UsageError) as e:
        io.check_safe_name(name, "incident")
    assert str(e.value) == f"incident {name!r}: use letters, digits, '.', '_' and '-' only"
    assert e.value.exit_code == 2


def test_operator_name_prefers_the_explicit_name_then_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "bob")
    assert io.operator_name("carol") == "carol"
    assert io.operator_name() == "alice"
    assert io.operator_name("") == "alice"
    monkeypatch.delenv("USER")
    assert io.operator_name() == "bob"  # getpass: $LOGNAME


@pytest.mark.parametrize("error", [KeyError("getpwuid(): uid not found: 1000"), OSError("no")])
def test_operator_name_without_user_or_passwd_entry_is_unknown(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def no_passwd_entry() -> str:
        raise error

    monkeypatch.delenv("USER", raising=False)
    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    assert io.operator_name() == "unknown"
    assert io.operator_name("dave") == "dave"


def test_outputs_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(io.RUN_DIR_ENV, raising=False)
    monkeypatch.delenv(io.OUTPUTS_ENV, raising=False)
    repo = Path(io.__file__).resolve().parent.parent
    assert io.outputs_root() == repo / "outputs"  # a checkout: its pyproject.toml is there
    monkeypatch.setenv(io.OUTPUTS_ENV, "rel/outputs")
    assert io.outputs_root() == Path("rel/outputs")  # as given, not resolved
    run_dir = tmp_path / "runs" / "INC-2025-0001" / "20250101T000000Z-p1"
    run_dir.mkdir(parents=True)
    monkeypatch.setenv(io.RUN_DIR_ENV, str(run_dir))
    assert io.outputs_root() == (tmp_path / "runs").resolve()  # a run: where it is archived
    assert io.outputs_root(tmp_path / "given") == tmp_path / "given"
    assert io.outputs_root("") == (tmp_path / "runs").resolve()  # empty is not given


# -- Kubernetes quantities -----------------------------------------------------------------------

# value, parse (cores/bytes), cpu_millicores, memory_bytes
QUANTITIES = [
    (None, 0.0, 0.0, 0.0),
    ("", 0.0, 0.0, 0.0),
    ("0", 0.0, 0.0, 0.0),
    ("2", 2.0, 2000.0, 2.0),
    ("0.5", 0.5, 500.0, 0.5),
    ("250m", 0.25, 250.0, 0.25),
    ("1500m", 1.5, 1500.0, 1.5),
    ("123456789n", 123456789e-9, 123.456789, 123456789e-9),
    ("987654u", 987654e-6, 987.654, 987654e-6),
    ("1k", 1e3, 1e6, 1e3),
    ("1M", 1e6, 1e9, 1e6),
    ("1G", 1e9, 1e12, 1e9),
    ("1Ki", 1024.0, 1024e3, 1024.0),
    ("512Mi", 512.0 * 2**20, 512e3 * 2**20, 512.0 * 2**20),
    ("1.5Gi", 1.5 * 2**30, 1.5e3 * 2**30, 1.5 * 2**30),
    ("1Ti", 2.0**40, 1e3 * 2**40, 2.0**40),
    ("128974848", 128974848.0, 128974848e3, 128974848.0),
    ("1e3", 1e3, 1e6, 1e3),
    (" 2Gi ", 2.0 * 2**30, 2e3 * 2**30, 2.0 * 2**30),
]


@pytest.mark.parametrize(("value", "number", "millicores", "num_bytes"), QUANTITIES)
def test_quantities(value: str | None, number: float, millicores: float, num_bytes: float) -> None:
    assert quantity.parse(value) == pytest.approx(number)
    assert quantity.cpu_millicores(value) == pytest.approx(millicores)
    assert quantity.millicores(value) == round(millicores)
    assert quantity.memory_bytes(value) == pytest.approx(num_bytes)
    assert quantity.parse_or_none(value) == (None if not value else pytest.approx(number))


def test_cpu_as_metrics_server_writes_it_is_exact() -> None:
    # divided, as `kubectl top` does: the same floats as the checks always had
    assert quantity.cpu_millicores("123456789n") == 123456789 / 1e6
    assert quantity.cpu_millicores("987654u") == 987654 / 1e3
    assert quantity.cpu_millicores("250m") == 250.0


@pytest.mark.parametrize("garbage", ["abc", "lots", "its limit", "5X", "1.2.3Mi", "1 Gi", "Mi"])
def test_what_is_not_a_quantity(garbage: str) -> None:
    with pytest.raises(ValueError):
        quantity.parse(garbage)  # as the API server refuses it
    with pytest.raises(ValueError):
        quantity.cpu_millicores(garbage)
    assert quantity.memory_bytes(garbage) == 0.0
    assert quantity.parse_or_none(garbage) is None


def test_quantities_back_to_text() -> None:
    assert quantity.nanocores(250) == "250000000n"
    assert quantity.kibibytes(512 * quantity.MI) == "524288Ki"
    assert quantity.parse(quantity.kibibytes(3 * quantity.MI)) == 3 * quantity.MI


def test_the_batch_bound_reads_the_working_set_as_the_log_spells_it() -> None:
    assert batch_bound(1180, "3.1 Gi", "2Gi") == batch_bound(1180, "3.1Gi", "2Gi") == 500
    assert batch_bound(1180, "3.1Gi", "its limit") is None
    assert batch_bound(1180, "3.1Gi", "-2Gi") is None
