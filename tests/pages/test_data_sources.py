"""Data page, Sources: an admin sees the configured syncs (the source with its password
hidden, mapping, schedule, last run, rows read and written, watermark, problems) and runs
one now; a rejected run's problems are listed by query and row; other roles see no source."""

from __future__ import annotations

import pytest

from db.models import Account
from db.session import session_scope
from db.sync_config import save_sync
from tests.conftest import AS_OF
from tests.pages import button, metrics, open_page, table_with, texts, unescape
from tests.services import count
from tests.services.sync_sources import events, postgres_source

QUERY = {"as_of": AS_OF.isoformat()}
COLUMNS = ("name", "source", "mapping", "schedule", "status", "rows_read", "rows_written", "watermark", "problems")


@pytest.fixture
def warehouse(small_db: str):
    with postgres_source() as src:
        with session_scope(small_db) as s:
            save_sync(
                s, actor="t", name="warehouse", source_url=src.url, mapping_text=src.mapping, schedule="0 2 * * *"
            )
        yield src


def everything_shown(at) -> str:
    """All the text the page shows, tables and code included."""
    parts = [
        *texts(at.error),
        *texts(at.warning),
        *texts(at.success),
        *texts(at.info),
        *texts(at.markdown),
        *texts(at.caption),
        *texts(at.code),
        *[str(e.value) for e in at.exception],
        *[d.value.to_csv() for d in at.dataframe],
        *[str(o) for s in at.selectbox for o in s.options],
    ]
    return "\n".join(parts)


def test_an_admin_sees_the_sources_with_the_password_hidden_and_runs_one(small_db: str, use_db, warehouse) -> None:
    use_db(small_db)
    at = open_page("data", query=QUERY)
    syncs = table_with(at, *COLUMNS)
    row = syncs.iloc[0].to_dict()
    assert len(syncs) == 1
    assert row["source"] == f"postgresql+psycopg://postgres:***@127.0.0.1:5432/test?application_name={warehouse.where}"
    assert (row["mapping"], row["schedule"], row["status"]) == (
        "(stored text): team, accounts, events",
        "0 2 * * *",
        "never run",
    )
    assert warehouse.password not in everything_shown(at)
    assert metrics(at)["Accounts"] == "30"

    button(at, "Run now").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [unescape(s) for s in texts(at.success)]
    assert [s for s in shown if s.startswith("warehouse: synced: 65 row(s) read, 65 written (65 new")], shown
    row = table_with(at, *COLUMNS).iloc[0].to_dict()
    assert (row["status"], row["rows_read"], row["rows_written"], row["problems"]) == ("synced", 65, 65, 0)
    assert row["watermark"].startswith("events.timestamp = 2026-03-04T20:00:00.000059")
    assert metrics(at)["Accounts"] == "33"
    assert count(small_db, Account) == 33
    assert warehouse.password not in everything_shown(at)


def test_a_rejected_run_lists_its_problems_by_query_and_row(small_db: str, use_db, warehouse) -> None:
    use_db(small_db)
    bad = events(60, 2)
    bad[1]["acct"] = "SRC-*nobody*"
    warehouse.add_events(bad)
    at = open_page("data", query=QUERY)
    button(at, "Run now").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "warehouse: 1 problem(s); nothing was written" in [unescape(e) for e in texts(at.error)], texts(at.error)
    problems = table_with(at, "query", "row", "column", "value", "reason")
    assert problems[["query", "row", "column", "value"]].values.tolist() == [
        ["events (query)", 62, "account_id", "SRC-*nobody*"]
    ]
    assert problems["reason"].iloc[0].startswith("unknown account")
    row = table_with(at, *COLUMNS).iloc[0].to_dict()
    assert (row["status"], row["rows_read"], row["rows_written"], row["problems"]) == ("rejected", 67, 0, 1)
    assert count(small_db, Account) == 30


def test_other_roles_see_no_source(small_db: str, use_db, warehouse) -> None:
    use_db(small_db)
    at = open_page("data", query=QUERY, as_user="riley.revops@example.com")
    assert [c for c in texts(at.caption) if c.startswith("Only admins see and run the syncs") and "revops" in c]
    assert not [d for d in at.dataframe if "source" in d.value.columns]
    assert "Run now" not in [b.label for b in at.button]
    assert "warehouse" not in everything_shown(at)
