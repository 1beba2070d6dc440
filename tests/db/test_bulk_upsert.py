"""The set-based entity writer (issue 16): new rows go in by one bulk insert (executemany of
tuples on SQLite, COPY on PostgreSQL) that must store exactly what SQLAlchemy's insert
stores, defaults included; an import of checklist rows sets their metric binding, position
and done_at as before; a re-import updates changed rows, logs each change and bumps the
version, and a third import of the same files changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, text
from sqlmodel import Session

from db import bulk
from db.models import Account, AccountMilestone, ChecklistItem, Outcome, TeamMember
from db.session import get_engine
from tests.db.test_importer import ACCOUNTS, CL_HEAD, TEAM, counts, rows, run


def _account_ids(url: str) -> list[int]:
    return [r[0] for r in rows(url, "SELECT id FROM accounts ORDER BY id")]


def _cases(a1: int, a2: int) -> list[tuple]:
    """(table, key columns, rows as SQLAlchemy's insert takes them, columns compared)."""
    return [
        (
            TeamMember.__table__,
            ["email"],
            [{"email": "x@e.com", "name": "X", "role": "csm"}],
            ["name", "role", "active"],
        ),
        (
            Account.__table__,
            ["external_id"],
            [
                {
                    "external_id": "B-1",
                    "name": "Bee",
                    "segment": "SMB",
                    "contract_start": date(2026, 1, 5),
                    "employees": None,
                    "arr": 12.5,
                    "licensed_seats": 3,
                    "plan": None,
                }
            ],
            ["name", "segment", "contract_start", "employees", "arr", "licensed_seats", "plan", "channel"],
        ),
        (
            AccountMilestone.__table__,
            ["account_id", "milestone_key"],
            [
                {
                    "account_id": a1,
                    "milestone_key": "kickoff_complete",
                    "due_date": date(2026, 2, 1),
                    "completed_at": datetime(2026, 1, 9, 8, 30, tzinfo=UTC),
                },
                {"account_id": a1, "milestone_key": "technical_setup_done", "due_date": None, "completed_at": None},
            ],
            ["due_date", "completed_at"],
        ),
        (
            Outcome.__table__,
            ["account_id", "date", "type"],
            [{"account_id": a1, "date": date(2026, 3, 1), "type": "expansion", "arr_change": -1.25}],
            ["arr_change"],
        ),
        (
            ChecklistItem.__table__,
            ["account_id", "category", "criterion"],
            [
                {
                    "account_id": a1,
                    "category": "Engagement",
                    "criterion": 'Quote\'s "test", with\nnewline\\',
                    "status": "done",
                    "owner_id": None,
                    "due_date": date(2026, 1, 2),
                    "done_at": datetime(2026, 1, 3, 4, 5, 6, 789, tzinfo=UTC),
                    "metric": None,
                    "position": 4,
                }
            ],
            ["target", "actual", "status", "owner_id", "due_date", "note", "metric", "position", "done_at", "version"],
        ),
    ]


@pytest.mark.parametrize("case", range(5), ids=["team", "accounts", "milestones", "outcomes", "checklist"])
def test_insert_rows_stores_what_sqlalchemys_insert_stores(empty_db: str, case: int) -> None:
    assert run(empty_db, {"accounts.csv": ACCOUNTS.replace(",csm@example.com", ",")}).ok
    a1, a2 = _account_ids(empty_db)
    table, key, given, compared = _cases(a1, a2)[case]
    # The same rows twice, the second time under other keys: once by SQLAlchemy, once in bulk.
    other = [{**r, key[-1]: r[key[-1]] + "-bulk" if isinstance(r[key[-1]], str) else r[key[-1]]} for r in given]
    if table is Outcome.__table__:
        other = [{**r, "type": "renewal"} for r in given]
    engine = get_engine(empty_db)
    if table.name in ("account_milestones", "checklist_items"):  # the new accounts' defaults
        with engine.begin() as c:
            c.execute(table.delete())
    if table is AccountMilestone.__table__:  # the other keys: the other account's rows
        other = [{**r, "account_id": a2} for r in given]
    top = rows(empty_db, f"SELECT COALESCE(MAX(id), 0) FROM {table.name}")[0][0]
    with Session(engine) as s:
        s.execute(table.insert(), given)
        names = list(given[0])
        bulk.insert_rows(s, table, {c: [r[c] for r in other] for c in names}, names)
        s.commit()
    with engine.connect() as c:
        got = c.execute(select(table).where(table.c.id > top).order_by(table.c.id)).mappings().all()
    assert len(got) == 2 * len(given)
    ref, new = got[: len(given)], got[len(given) :]
    for r, n in zip(ref, new, strict=True):
        assert {k: r[k] for k in compared} == {k: n[k] for k in compared}
        if "created_at" in table.c:  # a callable default: set on both, to about the same time
            assert n["created_at"] is not None and abs((n["created_at"] - r["created_at"]).total_seconds()) < 60
    # Raw text as stored (SQLite keeps dates and timestamps as text: the same text).
    cols = ", ".join(c for c in compared if c not in ("active",))
    raw = rows(empty_db, f"SELECT {cols} FROM {table.name} WHERE id > {top} ORDER BY id")
    assert raw[: len(given)] == raw[len(given) :]


CL = CL_HEAD.strip() + ",done_at\n"


def test_checklist_import_then_reimport_updates_logs_and_then_changes_nothing(empty_db: str) -> None:
    first = CL + (
        "A-1,User Adoption,Admins trained,Yes,Yes,done,csm@example.com,2026-01-20,2026-01-18T10:00:00Z\n"
        "A-1,Engagement,Our own criterion,x,,done,,,\n"
        "A-1,Technical Setup,All data sources connected,100%,50%,in progress,,,2026-01-01T00:00:00Z\n"
    )
    rep = run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS, "checklist.csv": first})
    assert rep.ok, rep.problems
    f = rep.files["checklist.csv"]
    assert (f.inserted, f.updated, f.unchanged) == (3, 0, 0)
    sql = (
        "SELECT criterion, position, metric, status, CASE WHEN done_at IS NULL THEN 1 ELSE 0 END, version "
        "FROM checklist_items c "
        "JOIN accounts a ON a.id = c.account_id WHERE a.external_id = 'A-1' ORDER BY position"
    )
    assert rows(empty_db, sql) == [
        ("Admins trained", 0, "admins_trained", "done", 0, 1),
        ("Our own criterion", 1, None, "done", 0, 1),  # done without a date: the import time
        ("All data sources connected", 2, None, "in progress", 1, 1),  # not done: no done_at
    ]
    given = rows(
        empty_db,
        "SELECT done_at FROM checklist_items WHERE criterion = 'Admins trained' "
        "AND account_id = (SELECT id FROM accounts WHERE external_id = 'A-1')",
    )[0][0]
    given = datetime.fromisoformat(given) if isinstance(given, str) else given
    assert given.replace(tzinfo=None) == datetime(2026, 1, 18, 10, 0) or given == datetime(2026, 1, 18, 10, tzinfo=UTC)
    assert counts(empty_db)["change_log"] == 0

    second = first.replace("Yes,Yes,done,csm@example.com", "Yes,No,blocked,csm@example.com")
    rep = run(empty_db, {"checklist.csv": second}, actor="ops@example.com")
    f = rep.files["checklist.csv"]
    assert (f.inserted, f.updated, f.unchanged) == (0, 1, 2)
    assert rows(empty_db, sql)[0] == ("Admins trained", 0, "admins_trained", "blocked", 1, 2)
    assert rows(empty_db, "SELECT actor, entity, field, old, new, context FROM change_log ORDER BY field") == [
        ("ops@example.com", "checklist_item", "actual", "Yes", "No", "import"),
        ("ops@example.com", "checklist_item", "status", "done", "blocked", "import"),
    ]
    before = counts(empty_db)
    rep = run(empty_db, {"checklist.csv": second})
    f = rep.files["checklist.csv"]
    assert (f.inserted, f.updated, f.unchanged) == (0, 0, 3)
    after = counts(empty_db)
    assert {k: v for k, v in after.items() if k != "import_runs"} == {
        k: v for k, v in before.items() if k != "import_runs"
    }


def test_reimported_accounts_keep_their_ids_and_values(empty_db: str) -> None:
    assert run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS}).ok
    sql = "SELECT id, external_id, name, segment, contract_start, employees, arr, csm_id FROM accounts ORDER BY id"
    before = rows(empty_db, sql)
    rep = run(empty_db, {"team.csv": TEAM, "accounts.csv": ACCOUNTS})
    assert rep.ok and rep.files["accounts.csv"].unchanged == 2 and rep.files["team.csv"].unchanged == 2
    assert rows(empty_db, sql) == before
    with get_engine(empty_db).connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM change_log")).scalar_one() == 0
