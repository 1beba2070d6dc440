"""The CSV importer (PRODUCT.md §3): every rule, atomicity, idempotency, upsert, dry run,
encodings, defaults for new accounts, zip uploads and the CLI."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from db import importer, uploads
from db.defaults import DEFAULT_CHECKLIST, DEFAULT_MILESTONES
from db.importer import ImportReport, files_from_uploads, import_files
from db.models import AccountMilestone, Event
from db.session import data_version, get_engine, session_scope

# ----------------------------------------------------------------------------- valid files

TEAM = """email,name,role
csm@example.com,Casey Smith,csm
lead@example.com,Lee Lead,leader
"""
ACC_HEAD = (
    "account_id,name,segment,contract_start,industry,employees,plan,channel,region,arr,licensed_seats,csm_email\n"
)
ACCOUNTS = (
    ACC_HEAD
    + """A-1,Acme Corp,SMB,2026-01-05,Retail,50,pro,sales,EMEA,12000,10,csm@example.com
A-2,Beta Bank,Enterprise,2026-02-01,Finance,5000,enterprise,sales,NA,250000,200,
"""
)
MS_HEAD = "account_id,milestone,due_date,completed_at\n"
MILESTONES = (
    MS_HEAD
    + """A-1,kickoff_complete,2026-01-08,2026-01-07T10:00:00Z
A-1,technical_setup_done,,
"""
)
OUT_HEAD = "account_id,date,type,arr_change\n"
OUTCOMES = (
    OUT_HEAD
    + """A-1,2026-06-01,expanded,3000
A-2,2026-06-15,contracted,-5000
"""
)
CL_HEAD = "account_id,category,criterion,target,actual,status,owner_email,due_date\n"
CHECKLIST = (
    CL_HEAD
    + """A-1,Engagement,Champion identified,Yes,Yes,done,csm@example.com,2026-01-20
A-1,Technical Setup,All data sources connected,100%,50%,in progress,,
"""
)
EV_HEAD = "account_id,event,timestamp,user_id,properties\n"
EVENTS = (
    EV_HEAD
    + """A-1,login,2026-01-06T09:00:00Z,u1,"{""plan"": ""pro""}"
A-1,login,2026-01-06T09:00:00Z,u1,
A-1,report_shared,2026-01-07T12:30:00+02:00,u2,
A-2,login,2026-02-02T08:00:00,,
"""
)
ALL = {
    "team.csv": TEAM,
    "accounts.csv": ACCOUNTS,
    "milestones.csv": MILESTONES,
    "outcomes.csv": OUTCOMES,
    "checklist.csv": CHECKLIST,
    "events.csv": EVENTS,
}
DATA_TABLES = [
    "team_members",
    "accounts",
    "account_milestones",
    "outcomes",
    "checklist_items",
    "success_plans",
    "events",
    "change_log",
]


def as_bytes(files: dict[str, str | bytes]) -> dict[str, bytes]:
    return {k: (v.encode("utf-8") if isinstance(v, str) else v) for k, v in files.items()}


def run(url: str, files: dict[str, str | bytes], **kwargs) -> ImportReport:
    return import_files(as_bytes(files), url=url, **kwargs)


def write_dir(path: Path, files: dict[str, str | bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, data in as_bytes(files).items():
        (path / name).write_bytes(data)
    return path


def counts(url: str) -> dict[str, int]:
    """Row count of every table but alembic_version."""
    engine = get_engine(url)
    tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
    with engine.connect() as c:
        return {t: c.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}


def rows(url: str, sql: str, **params) -> list[tuple]:
    with get_engine(url).connect() as c:
        return [tuple(r) for r in c.execute(text(sql), params)]


def import_runs(url: str) -> list[tuple]:
    return rows(url, "SELECT status, problems FROM import_runs ORDER BY id")


def problem_keys(report: ImportReport) -> list[tuple]:
    return [(p.file, p.row, p.column, p.value, p.reason) for p in report.problems]


# ----------------------------------------------------------------------------- bad files


def acc(*lines: str) -> str:
    """accounts.csv with a short header: account_id,name,segment,contract_start,arr,licensed_seats,employees,csm_email."""
    return "account_id,name,segment,contract_start,arr,licensed_seats,employees,csm_email\n" + "".join(
        line + "\n" for line in lines
    )


def ev(*lines: str) -> str:
    return EV_HEAD + "".join(line + "\n" for line in lines)


def ms(*lines: str) -> str:
    return MS_HEAD + "".join(line + "\n" for line in lines)


def out(*lines: str) -> str:
    return OUT_HEAD + "".join(line + "\n" for line in lines)


def cl(*lines: str) -> str:
    return CL_HEAD + "".join(line + "\n" for line in lines)


GOOD_ACC = "A-9,Nine,SMB,2026-01-01,100,5,10,"
GOOD_EV = "A-1,login,2026-01-06T09:00:00Z,u1,"

BAD_FILES = [
    # --- references
    pytest.param(
        {"events.csv": ev(GOOD_EV, "ZZZ,login,2026-01-06T09:00:00Z,u1,")},
        [("events.csv", 3, "account_id", "unknown account: not in accounts.csv or the database")],
        id="unknown-account-events",
    ),
    pytest.param(
        {"milestones.csv": ms("NOPE,kickoff_complete,2026-01-08,")},
        [("milestones.csv", 2, "account_id", "unknown account")],
        id="unknown-account-milestones",
    ),
    pytest.param(
        {"outcomes.csv": out("A-1,2026-06-01,renewed,0", "NOPE,2026-06-01,renewed,0")},
        [("outcomes.csv", 3, "account_id", "unknown account")],
        id="unknown-account-outcomes",
    ),
    pytest.param(
        {"checklist.csv": cl("NOPE,Engagement,Champion identified,Yes,,,,")},
        [("checklist.csv", 2, "account_id", "unknown account")],
        id="unknown-account-checklist",
    ),
    pytest.param(
        {"accounts.csv": acc(GOOD_ACC, "A-8,Eight,SMB,2026-01-01,,,,ghost@example.com")},
        [("accounts.csv", 3, "csm_email", "unknown CSM email: not in the team")],
        id="unknown-csm-email",
    ),
    pytest.param(
        {"checklist.csv": cl("A-1,Engagement,Champion identified,Yes,,,ghost@example.com,")},
        [("checklist.csv", 2, "owner_email", "unknown owner email")],
        id="unknown-owner-email",
    ),
    pytest.param(
        {"milestones.csv": ms("A-1,kickoff_complete,,", "A-1,first_login,,")},
        [("milestones.csv", 3, "milestone", "unknown milestone key; defined: kickoff_complete, technical_setup_done")],
        id="unknown-milestone-key",
    ),
    # --- dates and timestamps
    pytest.param(
        {"accounts.csv": acc("A-9,Nine,SMB,2025-02-30,,,,")},
        [("accounts.csv", 2, "contract_start", "impossible date: no such day in the calendar")],
        id="impossible-date",
    ),
    pytest.param(
        {"accounts.csv": acc("A-9,Nine,SMB,9999-12-31,,,,")},
        [("accounts.csv", 2, "contract_start", "date out of range")],
        id="date-out-of-range",
    ),
    pytest.param(
        {"accounts.csv": acc("A-9,Nine,SMB,01/02/2026,,,,", "A-8,Eight,SMB,2026-1-5,,,,")},
        [
            ("accounts.csv", 2, "contract_start", "not a date: use YYYY-MM-DD"),
            ("accounts.csv", 3, "contract_start", "not a date: use YYYY-MM-DD"),
        ],
        id="not-a-date",
    ),
    pytest.param(
        {"outcomes.csv": out("A-1,June 1st,renewed,")},
        [("outcomes.csv", 2, "date", "not a date")],
        id="not-a-date-outcome",
    ),
    pytest.param(
        {"events.csv": ev(GOOD_EV, "A-1,login,yesterday,u1,", "A-1,login,2026-01-06T25:00:00Z,u1,")},
        [
            ("events.csv", 3, "timestamp", "bad timestamp: use ISO 8601"),
            ("events.csv", 4, "timestamp", "bad timestamp: use ISO 8601"),
        ],
        id="bad-timestamp",
    ),
    pytest.param(
        {"milestones.csv": ms("A-1,kickoff_complete,2026-01-08,2026-13-01T00:00:00Z")},
        [("milestones.csv", 2, "completed_at", "bad timestamp")],
        id="bad-timestamp-milestone",
    ),
    # --- enums
    pytest.param(
        {"accounts.csv": acc("A-9,Nine,Tiny,2026-01-01,,,,")},
        [("accounts.csv", 2, "segment", "unknown segment; allowed: SMB, Mid-Market, Enterprise, Strategic")],
        id="unknown-segment",
    ),
    pytest.param(
        {"team.csv": TEAM + "boss@example.com,Big Boss,boss\n"},
        [("team.csv", 4, "role", "unknown role; allowed: leader, csm, revops, admin")],
        id="unknown-role",
    ),
    pytest.param(
        {"outcomes.csv": out("A-1,2026-06-01,paused,")},
        [("outcomes.csv", 2, "type", "unknown outcome type; allowed: renewed, churned, expanded, contracted")],
        id="unknown-outcome-type",
    ),
    pytest.param(
        {"checklist.csv": cl("A-1,Engagement,Champion identified,Yes,,finished,,")},
        [("checklist.csv", 2, "status", "unknown status; allowed: not started, in progress, done, blocked, n/a")],
        id="unknown-status",
    ),
    pytest.param(
        {"checklist.csv": cl("A-1,Fun,Champion identified,Yes,,,,")},
        [("checklist.csv", 2, "category", "unknown category; allowed: Technical Setup, User Adoption")],
        id="unknown-category",
    ),
    # --- numbers
    pytest.param(
        {"accounts.csv": acc("A-9,Nine,SMB,2026-01-01,-1,,,")},
        [("accounts.csv", 2, "arr", "must not be negative")],
        id="negative-arr",
    ),
    pytest.param(
        {"accounts.csv": acc("A-9,Nine,SMB,2026-01-01,,-3,,")},
        [("accounts.csv", 2, "licensed_seats", "must not be negative")],
        id="negative-seats",
    ),
    pytest.param(
        {"accounts.csv": acc("A-9,Nine,SMB,2026-01-01,,2.5,,", "A-8,Eight,SMB,2026-01-01,,ten,,")},
        [
            ("accounts.csv", 2, "licensed_seats", "must be a whole number"),
            ("accounts.csv", 3, "licensed_seats", "not a number"),
        ],
        id="non-integer-seats",
    ),
    pytest.param(
        {
            "accounts.csv": acc(
                "A-9,Nine,SMB,2026-01-01,,3000000000,,", "A-8,Eight,SMB,2026-01-01,,,99999999999999999999,"
            )
        },
        [
            ("accounts.csv", 2, "licensed_seats", "too large: at most 2147483647"),
            ("accounts.csv", 3, "employees", "too large: at most 2147483647"),
        ],
        id="integer-too-large",
    ),
    pytest.param(
        {"accounts.csv": acc("A-9,Nine,SMB,2026-01-01,inf,,,", "A-8,Eight,SMB,2026-01-01,12k,,,")},
        [("accounts.csv", 2, "arr", "not a number"), ("accounts.csv", 3, "arr", "not a number")],
        id="arr-not-a-finite-number",
    ),
    pytest.param(
        {"outcomes.csv": out("A-1,2026-06-01,renewed,lots")},
        [("outcomes.csv", 2, "arr_change", "not a number")],
        id="arr-change-not-a-number",
    ),
    # --- properties JSON
    pytest.param(
        {
            "events.csv": ev(
                GOOD_EV, 'A-1,login,2026-01-06T09:00:00Z,u2,"{oops"', 'A-1,login,2026-01-06T09:00:00Z,u3,"[1, 2]"'
            )
        },
        [
            ("events.csv", 3, "properties", "malformed properties: must be a JSON object"),
            ("events.csv", 4, "properties", "malformed properties: must be a JSON object"),
        ],
        id="malformed-properties",
    ),
    pytest.param(
        {"events.csv": ev('A-1,login,2026-01-06T09:00:00Z,u2,"""just text"""', "A-1,login,2026-01-06T09:00:00Z,u3,42")},
        [("events.csv", 2, "properties", "JSON object"), ("events.csv", 3, "properties", "JSON object")],
        id="properties-json-not-an-object",
    ),
    # --- duplicate keys within a file
    pytest.param(
        {"accounts.csv": acc(GOOD_ACC, "A-8,Eight,SMB,2026-01-01,,,,", "A-9,Nine again,SMB,2026-01-01,,,,")},
        [("accounts.csv", 4, "account_id", "duplicate key in this file (first at row 2)")],
        id="duplicate-account",
    ),
    pytest.param(
        {"team.csv": TEAM + "CSM@Example.com,Casey Again,csm\n"},
        [("team.csv", 4, "email", "duplicate key in this file (first at row 2)")],
        id="duplicate-team-email-any-case",
    ),
    pytest.param(
        {"milestones.csv": ms("A-1,kickoff_complete,,", "A-2,kickoff_complete,,", "A-1,kickoff_complete,2026-01-09,")},
        [("milestones.csv", 4, "account_id+milestone", "duplicate key in this file (first at row 2)")],
        id="duplicate-milestone",
    ),
    pytest.param(
        {"outcomes.csv": out("A-1,2026-06-01,renewed,0", "A-1,2026-06-01,renewed,10")},
        [("outcomes.csv", 3, "account_id+date+type", "duplicate key in this file (first at row 2)")],
        id="duplicate-outcome",
    ),
    pytest.param(
        {
            "checklist.csv": cl(
                "A-1,Engagement,Champion identified,Yes,,,,", "A-1,engagement,Champion identified,No,,,,"
            )
        },
        [("checklist.csv", 3, "account_id+category+criterion", "duplicate key in this file (first at row 2)")],
        id="duplicate-checklist-item",
    ),
    # --- structure
    pytest.param(
        {"accounts.csv": "account_id,name,arr\nA-9,Nine,10\n"},
        [
            ("accounts.csv", 1, "segment", "missing required column"),
            ("accounts.csv", 1, "contract_start", "missing required column"),
        ],
        id="missing-required-columns",
    ),
    pytest.param(
        {"events.csv": "account_id,event,user_id\nA-1,login,u1\n"},
        [("events.csv", 1, "timestamp", "missing required column")],
        id="missing-required-column-events",
    ),
    pytest.param(
        {"accounts.csv": acc("A-9,,SMB,2026-01-01,,,,", "A-8,  ,SMB,2026-01-01,,,,")},
        [
            ("accounts.csv", 2, "name", "required value is empty"),
            ("accounts.csv", 3, "name", "required value is empty"),
        ],
        id="empty-required-value",
    ),
    pytest.param(
        {"events.csv": ev(GOOD_EV, ",login,2026-01-06T09:00:00Z,u1,")},
        [("events.csv", 3, "account_id", "required value is empty")],
        id="empty-required-value-events",
    ),
    pytest.param(
        {"accounts.csv": acc(",One,SMB,2026-01-01,,,,", " ,Two,SMB,2026-01-01,,,,")},
        [
            ("accounts.csv", 2, "account_id", "required value is empty"),
            ("accounts.csv", 3, "account_id", "required value is empty"),
        ],
        id="empty-keys-are-not-duplicates",
    ),
    pytest.param(
        {"events.csv": ev(GOOD_EV, "A-1,login,2026-01-06T09:00:00Z", GOOD_EV + ",extra")},
        [
            ("events.csv", 3, "", "has 3 fields but the header has 5"),
            ("events.csv", 4, "", "has 6 fields but the header has 5"),
        ],
        id="wrong-number-of-fields",
    ),
    pytest.param(
        {"accounts.csv": ""},
        [("accounts.csv", 1, "", "the file is empty: a header row is required")],
        id="empty-file",
    ),
    pytest.param(
        {"customers.csv": "id,name\n1,x\n"},
        [("customers.csv", 0, "", "unknown file name; expected one of team.csv, accounts.csv")],
        id="unknown-file-name",
    ),
    pytest.param(
        {"accounts.csv": "account_id,name,segment,contract_start,name\nA-9,Nine,SMB,2026-01-01,Nine\n"},
        [("accounts.csv", 1, "name", "column appears twice in the header")],
        id="duplicate-header-column",
    ),
    pytest.param(
        {"team.csv": TEAM + "not-an-email,Nobody,csm\n"},
        [("team.csv", 4, "email", "not an email address")],
        id="not-an-email",
    ),
    pytest.param(
        {"accounts.csv": acc("A-9," + "n" * 301 + ",SMB,2026-01-01,,,,", "A-8," + "n" * 300 + ",SMB,2026-01-01,,,,")},
        [("accounts.csv", 2, "name", "too long: at most 300 characters")],
        id="name-too-long",
    ),
    pytest.param(
        {"events.csv": ev("A-1," + "e" * 201 + ",2026-01-06T09:00:00Z,u1,")},
        [("events.csv", 2, "event", "too long: at most 200 characters")],
        id="event-name-too-long",
    ),
    pytest.param(
        {"accounts.csv": acc("A-9,Ni\x00ne,SMB,2026-01-01,,,,")},
        [("accounts.csv", 2, "name", "contains a NUL character")],
        id="nul-character",
    ),
    pytest.param(
        {"accounts.csv": acc("A-9,Café Crème,SMB,2026-01-01,,,,").encode("latin-1")},
        [("accounts.csv", 1, "", "the file is not UTF-8 text")],
        id="not-utf8",
    ),
    # --- every problem is listed, with line numbers as rows
    pytest.param(
        {
            "accounts.csv": acc(
                GOOD_ACC, "B-1,One,Tiny,2026-01-01,,,,", "B-2,Two,Huge,2026-01-01,,,,", "B-3,Three,Big,2026-01-01,,,,"
            )
        },
        [
            ("accounts.csv", 3, "segment", "unknown segment"),
            ("accounts.csv", 4, "segment", "unknown segment"),
            ("accounts.csv", 5, "segment", "unknown segment"),
        ],
        id="three-bad-rows",
    ),
    pytest.param(
        {"accounts.csv": acc("B-1,One,Tiny,2025-02-30,-5,1.5,,ghost@example.com")},
        [
            ("accounts.csv", 2, "segment", "unknown segment"),
            ("accounts.csv", 2, "contract_start", "impossible date"),
            ("accounts.csv", 2, "arr", "must not be negative"),
            ("accounts.csv", 2, "licensed_seats", "must be a whole number"),
            ("accounts.csv", 2, "csm_email", "unknown CSM email"),
        ],
        id="many-problems-one-row",
    ),
    pytest.param(
        {"accounts.csv": acc('A-9,"Multi', 'line name",SMB,2026-01-01,,,,', "", "B-1,One,Tiny,2026-01-01,,,,")},
        [("accounts.csv", 5, "segment", "unknown segment")],
        id="rows-are-line-numbers",
    ),
    pytest.param(
        {
            "accounts.csv": acc("B-1,One,Tiny,2026-01-01,,,,"),
            "events.csv": ev("A-1,login,never,u1,"),
            "outcomes.csv": out("A-2,2026-06-01,paused,"),
        },
        [
            ("accounts.csv", 2, "segment", "unknown segment"),
            ("events.csv", 2, "timestamp", "bad timestamp"),
            ("events.csv", 2, "account_id", "unknown account"),
            ("outcomes.csv", 2, "type", "unknown outcome type"),
            ("outcomes.csv", 2, "account_id", "unknown account"),
        ],
        id="problems-in-several-files",
    ),
]


@pytest.fixture(scope="module")
def reject_db(databases) -> str:
    """One migrated database for the bad-file table: a rejected import writes nothing to it."""
    from db.settings_store import init_db

    url = databases.new()
    init_db(url)
    return url


@pytest.mark.parametrize(("files", "expected"), BAD_FILES)
def test_bad_file_reports_every_problem(reject_db: str, files: dict, expected: list[tuple]) -> None:
    before = counts(reject_db)
    files = {"team.csv": TEAM, "accounts.csv": ACCOUNTS, **files}
    # A dry run first, so that a file wrongly accepted cannot write to the shared database.
    dry = run(reject_db, files, dry_run=True)
    assert not dry.ok, "the bad file was accepted"
    report = run(reject_db, files)

    assert not report.ok
    assert not report.written
    assert problem_keys(report) == problem_keys(dry)
    assert report.problem_count == len(expected) == len(report.problems), [str(p) for p in report.problems]
    remaining = list(report.problems)
    for file, row, column, reason in expected:
        match = [p for p in remaining if (p.file, p.row, p.column) == (file, row, column) and reason in p.reason]
        assert match, f"no problem {file} row {row} column {column!r} {reason!r} in {[str(p) for p in remaining]}"
        remaining.remove(match[0])
        # The readable form names file, row and column.
        assert str(match[0]).startswith(f"{file} row {row}")
    # Nothing written but the audit record of the rejected import.
    after = counts(reject_db)
    assert after.pop("import_runs") == before.pop("import_runs") + 1
    assert after == before
    assert import_runs(reject_db)[-1] == ("rejected", len(expected))


def test_problem_value_is_reported(reject_db: str) -> None:
    report = run(reject_db, {"team.csv": TEAM, "accounts.csv": acc("A-9,Nine,SMB,2025-02-30,,,,")})
    [p] = report.problems
    assert (p.file, p.row, p.column, p.value) == ("accounts.csv", 2, "contract_start", "2025-02-30")
    assert str(p) == (
        "accounts.csv row 2, column contract_start: impossible date: no such day in the calendar (value '2025-02-30')"
    )
    assert report.files["accounts.csv"].problems == 1


def test_no_files_is_a_problem(reject_db: str) -> None:
    report = import_files({}, url=reject_db)
    assert [(p.file, p.row, p.reason) for p in report.problems] == [("", 0, "no files to import")]
    assert not report.written


def test_unknown_columns_are_ignored_with_a_warning(empty_db: str) -> None:
    report = run(
        empty_db, {"accounts.csv": "account_id,name,segment,contract_start,color\nA-1,Acme,SMB,2026-01-01,red\n"}
    )
    assert report.ok, [str(p) for p in report.problems]
    assert report.warnings == ["accounts.csv: ignored unknown column(s) color"]
    assert rows(empty_db, "SELECT external_id, name FROM accounts") == [("A-1", "Acme")]


# ----------------------------------------------------------------------------- atomicity


def test_valid_accounts_with_one_bad_event_writes_nothing(empty_db: str) -> None:
    before = counts(empty_db)
    version = _data_version(empty_db)
    bad_events = ev(GOOD_EV, "A-2,login,2026-02-02T08:00:00Z,u9,", "A-1,login,2026-02-30T00:00:00Z,u1,")
    report = run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS, "events.csv": bad_events})

    assert [(p.file, p.row, p.column) for p in report.problems] == [("events.csv", 4, "timestamp")]
    assert not report.written
    after = counts(empty_db)
    assert after.pop("import_runs") == before.pop("import_runs") + 1
    assert after == before
    assert after["accounts"] == 0
    assert _data_version(empty_db) == version


def test_nothing_written_when_the_database_already_has_data(empty_db: str) -> None:
    assert run(empty_db, ALL).ok
    before = counts(empty_db)
    version = _data_version(empty_db)
    snapshot = rows(
        empty_db, "SELECT external_id, name, arr, licensed_seats, csm_id FROM accounts ORDER BY external_id"
    )

    changed = {
        "team.csv": TEAM + "new@example.com,New Person,revops\n",
        "accounts.csv": ACCOUNTS.replace("Acme Corp", "Acme Renamed").replace(",12000,", ",99000,")
        + "A-3,Gamma,Strategic,2026-03-01,,,,,,,,new@example.com\n",
        "milestones.csv": ms("A-1,kickoff_complete,2026-01-30,", "A-3,kickoff_complete,,"),
        "outcomes.csv": out("A-1,2026-06-01,expanded,9999"),
        "checklist.csv": cl("A-1,Engagement,Champion identified,Yes,No,blocked,,"),
        "events.csv": ev(
            "A-1,new_event,2026-03-01T00:00:00Z,u7,", "A-3,login,2026-03-02T00:00:00Z,u1,", "NOPE,x,2026-03-01,,"
        ),
    }
    report = run(empty_db, changed)

    assert [(p.file, p.row, p.column) for p in report.problems] == [("events.csv", 4, "account_id")]
    after = counts(empty_db)
    assert after.pop("import_runs") == before.pop("import_runs") + 1
    assert after == before
    assert (
        rows(empty_db, "SELECT external_id, name, arr, licensed_seats, csm_id FROM accounts ORDER BY external_id")
        == snapshot
    )
    assert rows(
        empty_db, "SELECT arr_change FROM outcomes o JOIN accounts a ON a.id = o.account_id WHERE external_id = 'A-1'"
    ) == [(3000.0,)]
    assert _data_version(empty_db) == version


def test_event_batches_already_sent_are_rolled_back(empty_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events stream in batches: a bad row in a later batch undoes the earlier batches too."""
    monkeypatch.setattr(importer, "EVENT_BATCH", 2)
    assert run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS}).ok
    before = counts(empty_db)
    good = [f"A-1,e{i},2026-01-06T09:00:0{i}Z,u1," for i in range(6)]
    report = run(empty_db, {"events.csv": ev(*good, "A-1,late,not-a-time,u1,")})
    assert [(p.file, p.row, p.column) for p in report.problems] == [("events.csv", 8, "timestamp")]
    assert report.files["events.csv"].rows == 7
    after = counts(empty_db)
    assert after.pop("import_runs") == before.pop("import_runs") + 1
    assert after == before
    assert after["events"] == 0
    # And with no bad row, every batch is written.
    report = run(empty_db, {"events.csv": ev(*good)})
    assert report.ok
    assert report.files["events.csv"].inserted == 6
    assert counts(empty_db)["events"] == 6


def _data_version(url: str) -> int:
    with session_scope(url) as s:
        return data_version(s)


# ----------------------------------------------------------------------------- idempotency and upsert


def test_importing_the_same_files_twice_changes_nothing(empty_db: str) -> None:
    first = run(empty_db, ALL)
    assert first.ok, [str(p) for p in first.problems]
    assert {n: (f.rows, f.inserted, f.updated, f.unchanged, f.duplicates_skipped) for n, f in first.files.items()} == {
        "team.csv": (2, 2, 0, 0, 0),
        "accounts.csv": (2, 2, 0, 0, 0),
        "milestones.csv": (2, 2, 0, 0, 0),
        "outcomes.csv": (2, 2, 0, 0, 0),
        "checklist.csv": (2, 2, 0, 0, 0),
        # The second login row repeats the first one's natural key.
        "events.csv": (4, 3, 0, 0, 1),
    }
    before = counts(empty_db)

    second = run(empty_db, ALL)
    assert second.ok and second.written
    for name in ["team.csv", "accounts.csv", "milestones.csv", "outcomes.csv", "checklist.csv"]:
        f = second.files[name]
        assert (f.inserted, f.updated, f.unchanged) == (0, 0, 2), name
    ev_report = second.files["events.csv"]
    assert (ev_report.rows, ev_report.inserted, ev_report.duplicates_skipped) == (4, 0, 4)
    assert second.duplicates_skipped == 4
    after = counts(empty_db)
    assert after.pop("import_runs") == before.pop("import_runs") + 1
    assert after == before
    assert [s for s, _ in import_runs(empty_db)] == ["imported", "imported"]


def test_changed_arr_updates_the_account_and_logs_the_change(empty_db: str) -> None:
    assert run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS}).ok
    assert counts(empty_db)["change_log"] == 0

    report = run(empty_db, {"accounts.csv": ACCOUNTS.replace(",12000,", ",15000.5,")}, actor="ops@example.com")
    assert report.ok
    f = report.files["accounts.csv"]
    assert (f.inserted, f.updated, f.unchanged) == (0, 1, 1)
    assert rows(empty_db, "SELECT external_id, arr FROM accounts ORDER BY external_id") == [
        ("A-1", 15000.5),
        ("A-2", 250000.0),
    ]
    assert rows(empty_db, "SELECT actor, entity, entity_id, field, old, new, context FROM change_log") == [
        ("ops@example.com", "account", "A-1", "arr", "12000.0", "15000.5", "import")
    ]


def test_update_of_a_checklist_item_bumps_its_version(empty_db: str) -> None:
    assert run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS, "checklist.csv": CHECKLIST}).ok
    report = run(empty_db, {"checklist.csv": CHECKLIST.replace("Yes,Yes,done", "Yes,No,blocked")})
    assert (report.files["checklist.csv"].updated, report.files["checklist.csv"].unchanged) == (1, 1)
    assert rows(
        empty_db,
        "SELECT criterion, actual, status, version FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
        "WHERE a.external_id = 'A-1' ORDER BY position",
    ) == [("Champion identified", "No", "blocked", 2), ("All data sources connected", "50%", "in progress", 1)]
    logged = rows(empty_db, "SELECT entity, field, old, new FROM change_log ORDER BY field")
    assert logged == [("checklist_item", "actual", "Yes", "No"), ("checklist_item", "status", "done", "blocked")]


def test_new_checklist_rows_leave_existing_items_in_place(empty_db: str) -> None:
    """Adding an item to an existing account's checklist must not move or re-bind the others."""
    assert run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS}).ok
    sql = (
        "SELECT criterion, position, metric, version FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
        "WHERE a.external_id = 'A-2' ORDER BY position, criterion"
    )
    before = rows(empty_db, sql)
    assert len(before) == 12

    checklist = (
        "account_id,category,criterion,target\n"
        "A-2,Engagement,Champion identified,Yes\n"  # an existing, unchanged item
        "A-2,User Adoption,Active weekly users,80%+\n"  # existing, unchanged
        "A-2,Engagement,Executive sponsor engaged,Yes\n"  # new
    )
    report = run(empty_db, {"checklist.csv": checklist})
    f = report.files["checklist.csv"]
    assert (f.inserted, f.updated, f.unchanged) == (1, 0, 2)
    after = rows(empty_db, sql)
    assert [r for r in after if r[0] != "Executive sponsor engaged"] == before
    assert ("Executive sponsor engaged", 2, None, 1) in after


# ----------------------------------------------------------------------------- dry run


def test_dry_run_of_good_files_reports_counts_and_writes_nothing(empty_db: str) -> None:
    before = counts(empty_db)
    report = run(empty_db, ALL, dry_run=True)
    assert report.ok and report.dry_run
    assert not report.written
    assert report.files["accounts.csv"].inserted == 2
    assert report.files["events.csv"].inserted == 3
    assert counts(empty_db) == before  # not even an import_runs row


def test_dry_run_reports_the_same_problems_as_a_real_run(empty_db: str) -> None:
    assert run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS}).ok
    bad = {
        "accounts.csv": acc("A-9,Nine,Tiny,2025-02-30,-1,,,ghost@example.com", "A-9,Again,SMB,2026-01-01,,,,"),
        "events.csv": ev(GOOD_EV, "NOPE,x,yesterday,,[1]"),
        "checklist.csv": cl("A-1,Fun,Champion identified,Yes,,,,"),
    }
    before = counts(empty_db)
    dry = run(empty_db, bad, dry_run=True)
    assert counts(empty_db) == before
    real = run(empty_db, bad)
    assert problem_keys(dry) == problem_keys(real)
    assert dry.problem_count == real.problem_count == 9
    assert not dry.written and not real.written


# ----------------------------------------------------------------------------- encodings and case


def test_bom_crlf_and_case_insensitive_enums(empty_db: str) -> None:
    files = {
        "team.csv": "\ufeffEmail,Name,Role\r\nCSM@Example.com,Casey Smith,CSM\r\n".encode(),
        "accounts.csv": (
            "\ufeffaccount_id,name,segment,contract_start,csm_email\r\n"
            "A-1,Acme Corp,smb,2026-01-05,csm@EXAMPLE.com\r\n"
            "A-2,Beta Bank,mid-market,2026-02-01,\r\n"
            "A-3,Gamma,ENTERPRISE,2026-03-01,\r\n"
        ).encode(),
        "checklist.csv": (
            "\ufeffaccount_id,category,criterion,status\r\nA-1,engagement,Champion identified,DONE\r\n"
        ).encode(),
        "outcomes.csv": b"account_id,date,type,arr_change\r\nA-1,2026-06-01,Renewed,0\r\n",
        "events.csv": "\ufeffaccount_id,event,timestamp\r\nA-1,login,2026-01-06T09:00:00Z\r\n".encode(),
    }
    report = import_files(files, url=empty_db)
    assert report.ok, [str(p) for p in report.problems]
    assert rows(empty_db, "SELECT email, name, role FROM team_members") == [("csm@example.com", "Casey Smith", "csm")]
    assert rows(
        empty_db,
        "SELECT a.external_id, a.name, a.segment, t.email FROM accounts a "
        "LEFT JOIN team_members t ON t.id = a.csm_id ORDER BY a.external_id",
    ) == [
        ("A-1", "Acme Corp", "SMB", "csm@example.com"),
        ("A-2", "Beta Bank", "Mid-Market", None),
        ("A-3", "Gamma", "Enterprise", None),
    ]
    assert rows(
        empty_db,
        "SELECT category, criterion, status FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
        "WHERE a.external_id = 'A-1'",
    ) == [("Engagement", "Champion identified", "done")]
    assert rows(empty_db, "SELECT type FROM outcomes") == [("renewed",)]
    assert rows(empty_db, "SELECT event, user_id FROM events") == [("login", "")]


# ----------------------------------------------------------------------------- new accounts


def test_new_accounts_get_default_milestones_checklist_and_plan(empty_db: str) -> None:
    report = run(
        empty_db,
        {"team.csv": TEAM, "accounts.csv": ACCOUNTS, "milestones.csv": MILESTONES, "checklist.csv": CHECKLIST},
    )
    assert report.ok, [str(p) for p in report.problems]

    # A-2 (Enterprise, starts 2026-02-01) had no milestone rows: the six defaults, due per segment target.
    start = date(2026, 2, 1)
    expected = [(m["key"], start + timedelta(days=m["target_days"]["Enterprise"])) for m in DEFAULT_MILESTONES]
    got = rows(
        empty_db,
        "SELECT m.milestone_key, m.due_date, m.completed_at FROM account_milestones m "
        "JOIN accounts a ON a.id = m.account_id JOIN milestone_definitions d ON d.key = m.milestone_key "
        "WHERE a.external_id = 'A-2' ORDER BY d.sort_order",
    )
    assert [(k, _as_date(d)) for k, d, _ in got] == expected
    assert expected[3] == ("first_value_achieved", date(2026, 4, 2))
    assert all(c is None for _, _, c in got)

    # A-2's checklist is the 12-item template, in order, not started.
    items = rows(
        empty_db,
        "SELECT c.category, c.criterion, c.target, c.status, c.metric, c.position, c.version FROM checklist_items c "
        "JOIN accounts a ON a.id = c.account_id WHERE a.external_id = 'A-2' ORDER BY c.position",
    )
    assert len(items) == 12
    assert [(i[0], i[1], i[2], i[4]) for i in items] == [
        (t["category"], t["criterion"], t["target"], t["metric"]) for t in DEFAULT_CHECKLIST
    ]
    assert {(i[3], i[6]) for i in items} == {("not started", 1)}
    assert [i[5] for i in items] == list(range(12))

    # A-1 had two rows of its own: kept as given (the blank due date filled from the SMB
    # target), and the other four milestones added with their default due dates.
    got_a1 = {
        k: _as_date(d)
        for k, d in rows(
            empty_db,
            "SELECT m.milestone_key, m.due_date FROM account_milestones m JOIN accounts a ON a.id = m.account_id "
            "WHERE a.external_id = 'A-1'",
        )
    }
    assert got_a1["kickoff_complete"] == date(2026, 1, 8)
    assert got_a1["technical_setup_done"] == date(2026, 1, 12)
    assert set(got_a1) == {m["key"] for m in DEFAULT_MILESTONES}
    a1_start = got_a1["technical_setup_done"] - timedelta(days=7)  # SMB target for technical setup
    assert got_a1["onboarding_concluded"] == a1_start + timedelta(days=30)
    assert rows(
        empty_db,
        "SELECT c.criterion, c.status, c.position, c.metric FROM checklist_items c "
        "JOIN accounts a ON a.id = c.account_id WHERE a.external_id = 'A-1' ORDER BY c.position",
    ) == [("Champion identified", "done", 0, None), ("All data sources connected", "in progress", 1, None)]

    # Both get an empty success plan.
    plans = rows(
        empty_db,
        "SELECT a.external_id, p.goals, p.success_30, p.champion, p.version FROM success_plans p "
        "JOIN accounts a ON a.id = p.account_id ORDER BY a.external_id",
    )
    assert plans == [("A-1", "", "", "", 1), ("A-2", "", "", "", 1)]


def test_existing_accounts_get_no_new_defaults(empty_db: str) -> None:
    assert run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS}).ok
    before = counts(empty_db)
    assert (before["account_milestones"], before["checklist_items"], before["success_plans"]) == (12, 24, 2)
    # Re-importing with a changed name (an update, not a new account) adds nothing.
    assert run(empty_db, {"accounts.csv": ACCOUNTS.replace("Beta Bank", "Beta Bank AG")}).ok
    after = counts(empty_db)
    assert (after["account_milestones"], after["checklist_items"], after["success_plans"]) == (12, 24, 2)


def _as_date(v) -> date:
    return v if isinstance(v, date) else date.fromisoformat(str(v)[:10])


def test_timestamps_without_offset_are_utc_whatever_the_other_rows(empty_db: str) -> None:
    """A value without an offset is UTC even after a row with an offset (pandas would lend it that offset)."""
    events = ev(
        "A-1,a,2026-01-06T09:00:00+02:00,u1,",
        "A-1,b,2026-01-06T09:00:00,u1,",
        "A-1,c,2026-01-06,u1,",
        "A-1,d,2026-01-06T09:00:00-05:30,u1,",
        "A-1,e,2026-01-06T09:00:00Z,u1,",
    )
    milestones = ms("A-1,kickoff_complete,,2026-01-07T10:00:00+05:00", "A-1,technical_setup_done,,2026-01-08T10:00:00")
    report = run(
        empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS, "events.csv": events, "milestones.csv": milestones}
    )
    assert report.ok, [str(p) for p in report.problems]
    with get_engine(empty_db).connect() as c:
        got = c.execute(select(Event.event, Event.ts).order_by(Event.event)).all()
        done = c.execute(
            select(AccountMilestone.milestone_key, AccountMilestone.completed_at).order_by(
                AccountMilestone.milestone_key
            )
        ).all()
    assert [(e, _utc(ts)) for e, ts in got] == [
        ("a", datetime(2026, 1, 6, 7, tzinfo=UTC)),
        ("b", datetime(2026, 1, 6, 9, tzinfo=UTC)),
        ("c", datetime(2026, 1, 6, tzinfo=UTC)),
        ("d", datetime(2026, 1, 6, 14, 30, tzinfo=UTC)),
        ("e", datetime(2026, 1, 6, 9, tzinfo=UTC)),
    ]
    assert [(k, _utc(ts)) for k, ts in done if ts is not None] == [
        ("kickoff_complete", datetime(2026, 1, 7, 5, tzinfo=UTC)),
        ("technical_setup_done", datetime(2026, 1, 8, 10, tzinfo=UTC)),
    ]


def _utc(ts) -> datetime:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


# ----------------------------------------------------------------------------- uploads


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_upload_expands_the_csv_files(empty_db: str) -> None:
    team, accounts = TEAM.encode(), ACCOUNTS.encode()
    data = _zip(
        {
            "export/team.csv": team,
            "export/accounts.csv": accounts,
            "export/README.txt": b"not a csv",
            "__MACOSX/export/._accounts.csv": b"\x00\x05\x16\x07",
        }
    )
    files = files_from_uploads([("x.zip", data), ("events.csv", EVENTS.encode())])
    # Zip members are not decompressed here: they are streamed when the import reads them.
    assert set(files) == {"team.csv", "accounts.csv", "events.csv"}
    assert files["events.csv"] == EVENTS.encode()
    for name, inner, body in (("team.csv", "export/team.csv", team), ("accounts.csv", "export/accounts.csv", accounts)):
        member = files[name]
        assert isinstance(member, uploads.ZipMember)
        assert (member.member, member.size, member.label) == (inner, len(body), f"{inner} in x.zip")
    report = import_files(files, url=empty_db)
    assert report.ok
    assert counts(empty_db)["accounts"] == 2


def test_corrupt_zip_is_a_problem_not_an_exception(empty_db: str) -> None:
    files = files_from_uploads([("upload.zip", b"PK\x03\x04 this is not really a zip")])
    report = import_files(files, url=empty_db)
    assert not report.ok
    assert [(p.file, p.row, p.reason) for p in report.problems] == [("upload.zip", 0, "not a readable zip file")]
    assert counts(empty_db)["accounts"] == 0


# ----------------------------------------------------------------------------- the CLI


def test_cli_imports_good_files(empty_db: str, cli, tmp_path: Path) -> None:
    d = write_dir(tmp_path / "in", ALL)
    res = cli(empty_db, "import", str(d), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "imported in" in res.stdout
    assert "1 duplicate event(s) skipped" in res.stdout
    assert counts(empty_db)["accounts"] == 2
    assert rows(empty_db, "SELECT actor, source, status FROM import_runs") == [("cli", str(d), "imported")]


def test_cli_prints_every_problem_and_exits_1(empty_db: str, cli, tmp_path: Path) -> None:
    d = write_dir(
        tmp_path / "bad",
        {
            "team.csv": TEAM,
            "accounts.csv": acc("B-1,One,Tiny,2025-02-30,-5,,,", "B-2,Two,SMB,2026-01-01,,x,,"),
            "events.csv": ev("B-1,login,yesterday,u1,{oops", "NOPE,login,2026-01-01,u1,"),
        },
    )
    expected = run(empty_db, {p.name: p.read_bytes() for p in d.iterdir()}, dry_run=True)
    assert expected.problem_count == 7
    res = cli(empty_db, "import", str(d), "--quiet")
    assert res.returncode == 1
    assert "7 problem(s); nothing was written:" in res.stdout
    for p in expected.problems:
        assert f"  {p}" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    assert counts(empty_db)["accounts"] == 0


def test_cli_dry_run_writes_nothing(empty_db: str, cli, tmp_path: Path) -> None:
    d = write_dir(tmp_path / "in", ALL)
    before = counts(empty_db)
    res = cli(empty_db, "import", str(d), "--dry-run", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "dry run: the files are valid; nothing was written" in res.stdout
    assert counts(empty_db) == before


def test_cli_json_report(empty_db: str, cli, tmp_path: Path) -> None:
    d = write_dir(tmp_path / "bad", {"team.csv": TEAM, "accounts.csv": acc("B-1,One,Tiny,2026-01-01,,,,")})
    res = cli(empty_db, "import", str(d), "--format", "json", "--quiet")
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["ok"] is False
    assert report["written"] is False
    assert report["problem_count"] == 1
    assert report["problems"] == [
        {
            "file": "accounts.csv",
            "row": 2,
            "column": "segment",
            "value": "Tiny",
            "reason": "unknown segment; allowed: SMB, Mid-Market, Enterprise, Strategic",
        }
    ]
    assert report["files"]["team.csv"]["rows"] == 2


def test_cli_missing_directory_is_a_readable_error(empty_db: str, cli, tmp_path: Path) -> None:
    res = cli(empty_db, "import", str(tmp_path / "nope"))
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: {tmp_path / 'nope'} is not a directory"
