"""A file is recognised by its header when its name is not a contract name (and the report
says which file it was taken as); enum problems suggest the nearest allowed value; problems
are listed by file and row; the six templates import together."""

from __future__ import annotations

import pytest

from db.filemap import enum_reason, match_header, suggest, template_csv
from db.importer import SPECS, import_files
from db.models import SEGMENTS, Account
from tests.services import count

ACCOUNTS = (
    b"account_id,name,segment,contract_start\n"
    b"NEW-1,One Co,Mid Market,2026-05-01\n"
    b"NEW-2,Two Co,enterprize,2026-05-01\n"
    b"NEW-3,Three Co,Tiny,2026-05-01\n"
)


@pytest.mark.parametrize(
    ("header", "entity"),
    [
        (["email", "name", "role"], "team.csv"),
        (["account_id", "name", "segment", "contract_start", "arr"], "accounts.csv"),
        (["account_id", "event", "timestamp", "user_id"], "events.csv"),
        (["account_id", "milestone", "completed_at"], "milestones.csv"),
        (["account_id", "date", "type", "arr_change"], "outcomes.csv"),
        (["account_id", "category", "criterion", "status"], "checklist.csv"),
        (["foo", "bar"], None),
        (["account_id", "name", "segment"], None),  # contract_start missing
    ],
)
def test_a_header_names_its_contract_file(header: list[str], entity: str | None) -> None:
    assert match_header(header)[0] == entity


@pytest.mark.parametrize(
    ("value", "choices", "expected"),
    [
        ("Mid Market", SEGMENTS, "Mid-Market"),
        ("midmarket", SEGMENTS, "Mid-Market"),
        ("enterprize", SEGMENTS, "Enterprise"),
        ("Strategik", SEGMENTS, "Strategic"),
        ("Tiny", SEGMENTS, None),
        ("in-progress", ("not started", "in progress", "done", "blocked", "n/a"), "in progress"),
        ("renew", ("renewed", "churned", "expanded", "contracted"), "renewed"),
        ("", SEGMENTS, None),
    ],
)
def test_the_nearest_allowed_value_is_suggested(value: str, choices: tuple, expected: str | None) -> None:
    assert suggest(value, choices) == expected


def test_a_file_with_another_name_is_taken_by_its_header_with_suggestions(small_db: str) -> None:
    report = import_files({"bad_accounts.csv": ACCOUNTS}, url=small_db, dry_run=True)
    assert "bad_accounts.csv: taken as accounts.csv" in report.warnings[0]
    frame = report.problems_frame()
    assert frame[["file", "row", "column"]].values.tolist() == [
        ["bad_accounts.csv (as accounts.csv)", 2, "segment"],
        ["bad_accounts.csv (as accounts.csv)", 3, "segment"],
        ["bad_accounts.csv (as accounts.csv)", 4, "segment"],
    ]
    allowed = "allowed: SMB, Mid-Market, Enterprise, Strategic"
    assert frame["reason"].tolist() == [
        f'unknown segment; did you mean "Mid-Market"? {allowed}',
        f'unknown segment; did you mean "Enterprise"? {allowed}',
        f"unknown segment; {allowed}",
    ]
    assert report.summary_frame()["file"].tolist() == ["bad_accounts.csv (as accounts.csv)"]
    assert enum_reason("segment", "Mid Market", SEGMENTS) == frame["reason"][0]


def test_a_header_that_fits_no_file_says_what_is_missing(small_db: str) -> None:
    report = import_files(
        {"notes.csv": b"foo,bar\n1,2\n", "acc.csv": b"account_id,name,segment\nX,Y,SMB\n"}, url=small_db, dry_run=True
    )
    reasons = {p.file: p.reason for p in report.problems}
    assert "its header (foo, bar) matches none of the contract files" in reasons["notes.csv"]
    assert "closest to accounts.csv but lacks the required column(s) contract_start" in reasons["acc.csv"]
    assert list(reasons) == ["acc.csv", "notes.csv"]  # by file


def test_two_files_of_one_entity_are_refused_naming_both(small_db: str) -> None:
    good = b"account_id,name,segment,contract_start\nNEW-9,Nine,SMB,2026-05-01\n"
    report = import_files({"accounts.csv": good, "copy.csv": good}, url=small_db)
    assert not report.ok and not report.written
    assert [p.reason for p in report.problems if p.file == "copy.csv"] == [
        "its header is that of accounts.csv, which accounts.csv already is; give only one"
    ]
    assert count(small_db, Account) == 30


def test_problems_are_sorted_by_file_and_row(small_db: str) -> None:
    events = b"account_id,event,timestamp\nNOPE,login,2026-05-01T00:00:00Z\nACC-00001,login,yesterday\n"
    accounts = b"account_id,name,segment,contract_start\nZ-1,,SMB,2026-05-01\nZ-2,Two,SMB,2026-02-30\n"
    report = import_files({"events.csv": events, "accounts.csv": accounts}, url=small_db, dry_run=True)
    keys = [(p.file, p.row) for p in report.problems]
    assert keys == sorted(keys)
    assert keys == [("accounts.csv", 2), ("accounts.csv", 3), ("events.csv", 2), ("events.csv", 3)]


def test_the_six_templates_import_together_into_an_empty_database(empty_db: str) -> None:
    files = {f"template_{name}": template_csv(name) for name in SPECS}
    report = import_files(files, url=empty_db)
    assert report.ok and report.written, [str(p) for p in report.problems]
    assert {f.file: f.inserted for f in report.files.values()} == {
        "template_team.csv (as team.csv)": 2,
        "template_accounts.csv (as accounts.csv)": 1,
        "template_milestones.csv (as milestones.csv)": 1,
        "template_outcomes.csv (as outcomes.csv)": 1,
        "template_checklist.csv (as checklist.csv)": 1,
        "template_events.csv (as events.csv)": 1,
    }
    for name, spec in SPECS.items():
        header = template_csv(name).decode().splitlines()[0].split(",")
        required = [c.name for c in spec if c.required]
        assert header[: len(required)] == required
