"""The incident record: ids, the append-only timeline under concurrent writers, refusals that
change nothing, stage targets, the seed's escalation path, the verdict cell's escalation block.
The scripted P1 incident in the lab is tests/e2e/test_incident_in_the_lab.py."""

from __future__ import annotations

import json
import multiprocessing
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from irlib import incident as inc
from irlib.escalation import EscalatedVerdict, escalation, ladder, targets
from irlib.profile import IncidentSettings
from irlib.results import Health, Verdict
from tests.helpers import IRLIB, irlib
from tests.unit.test_profile import MINIMAL

SEED = IncidentSettings()
T0 = datetime(2026, 1, 15, 9, 15, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def opened(
    outputs: Path, severity: str = "P1", now: datetime = T0, trading_impact: bool = False
) -> inc.Incident:
    return inc.open_incident(
        outputs,
        severity=severity,
        title="API unavailable",
        settings=SEED,
        by="alice",
        now=now,
        trading_impact=trading_impact,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# -- ids -------------------------------------------------------------------------------------


def test_ids_are_sequential_per_year_and_skip_folders_already_taken(tmp_path: Path) -> None:
    first = opened(tmp_path).id
    second = opened(tmp_path, now=at(1)).id
    (tmp_path / "INC-2026-0003").mkdir()  # `irlib run --incident INC-2026-0003` without a record
    third = opened(tmp_path, now=at(2)).id
    next_year = opened(tmp_path, now=datetime(2027, 1, 1, tzinfo=UTC)).id
    assert [first, second, third, next_year] == [
        "INC-2026-0001",
        "INC-2026-0002",
        "INC-2026-0004",
        "INC-2027-0001",
    ]
    record = json.loads((tmp_path / first / "incident.json").read_text())
    assert record == {
        "id": first,
        "title": "API unavailable",
        "severity": "P1",
        "opened_at": T0.isoformat(),
        "commander": "alice",
        "trading_impact": False,
        "impact": "",
        "opened_by": "alice",
    }
    assert inc.list_ids(tmp_path) == [first, second, third, next_year]


def test_concurrent_opens_from_several_processes_get_distinct_ids(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [
                *IRLIB,
                "incident",
                "open",
                "--severity",
                "P2",
                "--title",
                f"t{n}",
                "--outputs",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    ids = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    year = datetime.now(UTC).year
    assert sorted(ids) == [f"INC-{year}-{n:04d}" for n in range(1, 7)]


# -- the timeline ----------------------------------------------------------------------------


def test_concurrent_note_commands_lose_no_entry(tmp_path: Path) -> None:
    incident_id = opened(tmp_path).id
    procs = [
        subprocess.Popen(
            [
                *IRLIB,
                "incident",
                "note",
                incident_id,
                f"note {n}",
                "--outputs",
                str(tmp_path),
                "--by",
                f"p{n}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(12)
    ]
    for p in procs:
        p.communicate(timeout=60)
        assert p.returncode == 0
    lines = (tmp_path / incident_id / "timeline.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line whole: none interleaved
    notes = {e["text"] for e in entries if e["kind"] == "note"}
    assert notes == {f"note {n}" for n in range(12)}
    assert sorted(e["seq"] for e in entries) == list(range(1, 14))


def _append_many(outputs: str, incident_id: str, worker: int, count: int) -> None:
    for n in range(count):
        inc.note(outputs, incident_id, f"w{worker}-{n}", by=f"w{worker}")


def test_appends_from_racing_processes_are_all_kept_whole(tmp_path: Path) -> None:
    incident_id = opened(tmp_path).id
    ctx = multiprocessing.get_context("fork")
    workers = [
        ctx.Process(target=_append_many, args=(str(tmp_path), incident_id, w, 50)) for w in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    entries = inc.load(tmp_path, incident_id).entries
    assert sorted(e.text for e in entries if e.kind == "note") == sorted(
        f"w{w}-{n}" for w in range(4) for n in range(50)
    )
    assert sorted(e.seq for e in entries) == list(range(1, 202))  # numbered under the lock


def test_a_torn_last_line_is_skipped_and_the_next_entry_lands_whole(tmp_path: Path) -> None:
    incident_id = opened(tmp_path).id
    with open(tmp_path / incident_id / "timeline.jsonl", "a") as f:
        f.write('{"seq": 2, "at": "2026-')  # a writer killed mid-line
    inc.note(tmp_path, incident_id, "after the tear", now=at(1))
    kinds = [(e.kind, e.text) for e in inc.load(tmp_path, incident_id).entries]
    assert kinds[-1] == ("note", "after the tear") and len(kinds) == 2


@pytest.fixture
def records(tmp_path: Path) -> dict[str, str]:
    acked = opened(tmp_path).id
    inc.stamp(tmp_path, acked, "acknowledged", by="bob", now=at(2))
    done = opened(tmp_path, now=at(1)).id
    inc.stamp(tmp_path, done, "resolved", now=at(30))
    return {"acked": acked, "resolved": done}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ack", "INC-2026-0099"], "no incident 'INC-2026-0099'"),
        (["resolved", "INC-2026-0099"], "no incident 'INC-2026-0099'"),
        (["note", "../etc", "x"], "no incident '../etc'"),
        (["show", "adhoc"], "no incident 'adhoc'"),
        (["open", "--severity", "P7", "--title", "x"], "unknown severity 'P7'"),
        (["open", "--severity", "P1", "--title", "  "], "needs a --title"),
        (["ack", "{acked}"], "already acknowledged"),
        (["mitigated", "{resolved}"], "was resolved at"),
        (["resolved", "{resolved}"], "was resolved at"),
        (["message", "{acked}", "resolution", "--send"], "is not resolved"),
        (["note", "{acked}", " "], "needs some text"),
        (["escalation", "{acked}", "--at", "yesterday"], "expected an ISO time"),
    ],
    ids=[
        "ack-unknown",
        "resolved-before-open",
        "unsafe-id",
        "show-unknown",
        "bad-severity",
        "empty-title",
        "ack-twice",
        "mitigated-after-resolved",
        "resolved-twice",
        "resolution-message-before-resolved",
        "empty-note",
        "bad-time",
    ],
)
def test_bad_input_is_a_usage_error_that_changes_nothing(
    tmp_path: Path, records: dict[str, str], args: list[str], message: str
) -> None:
    before = snapshot(tmp_path)
    args = [a.format(**records) for a in args]
    result = irlib("incident", *args, "--outputs", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert snapshot(tmp_path) == before


def test_entries_are_ordered_by_time_and_carry_their_stage(tmp_path: Path) -> None:
    incident_id = opened(tmp_path).id
    inc.note(tmp_path, incident_id, "paged", now=at(1))
    inc.stamp(tmp_path, incident_id, "acknowledged", now=at(2))
    inc.note(tmp_path, incident_id, "OOM in calibration pod", kind="root-cause", now=at(10))
    inc.stamp(tmp_path, incident_id, "mitigated", "memory limits raised", now=at(20))
    inc.note(tmp_path, incident_id, "late note about minute 5", now=at(5))  # appended last
    inc.stamp(tmp_path, incident_id, "resolved", now=at(45))
    i = inc.load(tmp_path, incident_id)
    assert [(e.kind, e.stage) for e in i.entries] == [
        ("opened", "alert"),
        ("note", "alert"),
        ("acknowledged", "acknowledge"),
        ("note", "acknowledge"),
        ("root-cause", "investigate"),
        ("mitigated", "mitigate"),
        ("resolved", "resolve"),
    ]
    assert [e.seq for e in i.entries] == [1, 2, 3, 6, 4, 5, 7]  # file order is append order
    assert i.status == "resolved" and i.root_cause == "OOM in calibration pod"
    assert i.duration() == timedelta(minutes=45)


# -- targets and escalation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now_min", "expected"),
    [
        (
            3,
            {
                "respond (P1 response time)": "pending",
                "acknowledge": "pending",
                "investigate (root cause)": "pending",
                "mitigate (fix applied)": "pending",
            },
        ),
        (
            50,
            {
                "respond (P1 response time)": "met",
                "acknowledge": "met",
                "investigate (root cause)": "missed",
                "mitigate (fix applied)": "pending",
            },
        ),
        (
            70,
            {
                "respond (P1 response time)": "met",
                "acknowledge": "met",
                "investigate (root cause)": "missed",
                "mitigate (fix applied)": "overdue",
            },
        ),
    ],
    ids=["3-min", "50-min", "70-min"],
)
def test_targets_say_met_missed_pending_or_overdue(
    tmp_path: Path, now_min: float, expected: dict[str, str]
) -> None:
    incident_id = opened(tmp_path).id
    if now_min > 4:
        inc.stamp(tmp_path, incident_id, "acknowledged", now=at(4))
        inc.note(tmp_path, incident_id, "bad deploy", kind="root-cause", now=at(40))
    got = targets(inc.load(tmp_path, incident_id), SEED, at(now_min))
    assert {t.label: t.state for t in got} == expected


SEED_PATH = {
    0: ["On-call"],
    14: ["On-call"],
    16: ["On-call", "Engineering Lead"],
    31: ["On-call", "Engineering Lead", "VP Engineering"],
    61: ["On-call", "Engineering Lead", "VP Engineering", "CTO"],
}


@pytest.mark.parametrize(
    ("minutes", "roles"), SEED_PATH.items(), ids=[f"{m}-min" for m in SEED_PATH]
)
def test_escalation_follows_the_seeds_path(tmp_path: Path, minutes: int, roles: list[str]) -> None:
    i = opened(tmp_path)
    got = escalation(i, SEED, at(minutes))
    assert got.roles == roles
    assert got.engage[0].primary == "PagerDuty rotation"
    if minutes >= 16:
        assert got.engage[1].primary == "[Phone]" and got.engage[1].backup == "[Phone]"


@pytest.mark.parametrize("minutes", [0, 16], ids=["0-min", "16-min"])
def test_trading_impact_engages_compliance_from_minute_0(tmp_path: Path, minutes: int) -> None:
    i = opened(tmp_path, trading_impact=True)
    roles = escalation(i, SEED, at(minutes)).roles
    assert roles == ["On-call", "Compliance"] + (["Engineering Lead"] if minutes else [])


def test_the_escalation_command_answers_for_any_time(tmp_path: Path) -> None:
    incident_id = opened(tmp_path, trading_impact=True).id
    result = irlib(
        "incident",
        "escalation",
        incident_id,
        "--at",
        at(31).isoformat(),
        "--json",
        "--outputs",
        str(tmp_path),
        check=True,
    )
    answer = json.loads(result.stdout)
    assert [e["role"] for e in answer["engage"]] == [
        "On-call",
        "Compliance",
        "Engineering Lead",
        "VP Engineering",
    ]
    assert (answer["next_role"], answer["next_at_min"]) == ("CTO", 60.0)
    text = irlib(
        "incident",
        "escalation",
        incident_id,
        "--at",
        at(16).isoformat(),
        "--outputs",
        str(tmp_path),
        check=True,
    ).stdout
    assert "Engineering Lead (from 15 min): [Phone] (backup: [Phone])" in text
    assert "next: VP Engineering at 30 min (in 14 min)" in text


@pytest.mark.parametrize(
    ("severity", "minutes", "roles"),
    [("P2", 16, ["On-call"]), ("P2", 61, ["On-call", "Engineering Lead"]), ("P4", 61, ["On-call"])],
    ids=["P2-16-min", "P2-61-min", "P4-61-min"],
)
def test_lower_severities_stretch_the_path_by_their_response_time(
    severity: str, minutes: int, roles: list[str]
) -> None:
    assert ladder(SEED, severity, minutes).roles == roles
    flat = IncidentSettings(stretch_with_severity=False)  # the seed's minutes for every severity
    assert ladder(flat, severity, 16).roles == SEED_PATH[16]


def test_a_resolved_incident_escalates_no_further(tmp_path: Path) -> None:
    incident_id = opened(tmp_path).id
    inc.stamp(tmp_path, incident_id, "resolved", now=at(20))
    got = escalation(inc.load(tmp_path, incident_id), SEED, at(90))
    assert got.resolved and got.roles == ["On-call", "Engineering Lead"]


# -- the verdict cell ------------------------------------------------------------------------


@pytest.fixture
def profile_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    monkeypatch.delenv("IRLIB_RUN_DIR", raising=False)
    monkeypatch.delenv("IRLIB_OUTPUTS", raising=False)
    return str(path)


@pytest.mark.parametrize("how", ["IRLIB_OUTPUTS", "IRLIB_RUN_DIR"], ids=["interactive", "run"])
def test_the_verdict_shows_the_open_incidents_escalation(
    tmp_path: Path, profile_path: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    from irlib.runbook import Runbook

    outputs = tmp_path / "out"
    incident_id = opened(outputs, now=inc.utcnow() - timedelta(minutes=16)).id
    if how == "IRLIB_OUTPUTS":
        monkeypatch.setenv("IRLIB_OUTPUTS", str(outputs))
    else:
        run_dir = outputs / incident_id / "20260115T091500Z-x"
        run_dir.mkdir()
        monkeypatch.setenv("IRLIB_RUN_DIR", str(run_dir))
    verdict = Verdict(Health.DOWN, "down: probable cause bad-deploy", (), "P1")
    shown = Runbook(profile_path=profile_path, incident=incident_id).with_escalation(verdict)
    assert isinstance(shown, EscalatedVerdict) and shown.state is Health.DOWN
    assert repr(shown).startswith(repr(verdict))
    assert re.search(rf"Escalation for {incident_id} \(P1, 16(\.\d)? min since", repr(shown))
    assert "Engineering Lead (from 15 min)" in repr(shown)
    assert shown._repr_html_().startswith(verdict._repr_html_())
    assert f"<b>Escalation for {incident_id} (P1, 16" in shown._repr_html_()
    assert "<li>Engineering Lead (from 15 min): [Phone]" in shown._repr_html_()
    assert "<p>next: VP Engineering at 30 min (in 1" in shown._repr_html_()


@pytest.mark.parametrize("case", ["adhoc", "unknown-id", "resolved"], ids=str)
def test_without_an_open_incident_the_verdict_is_unchanged(
    tmp_path: Path, profile_path: str, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    from irlib.runbook import Runbook

    monkeypatch.setenv("IRLIB_OUTPUTS", str(tmp_path))
    incident_id = {"adhoc": "adhoc", "unknown-id": "INC-2026-0042"}.get(case)
    if incident_id is None:
        incident_id = opened(tmp_path).id
        inc.stamp(tmp_path, incident_id, "resolved", now=at(5))
    verdict = Verdict(Health.HEALTHY, "healthy: 3 checks passed")
    assert (
        Runbook(profile_path=profile_path, incident=incident_id).with_escalation(verdict) is verdict
    )
