"""Faults: the database down at start or lost mid-session, upgrading a previous release's
schema with data in it, and imports interrupted half-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel
from streamlit.testing.v1 import AppTest

import db.models  # noqa: F401  (the tables)
from db.importer import import_files
from db.session import alembic_config, get_engine, migrate
from tests.conftest import AS_OF, ROOT

APP = str(ROOT / "app.py")
TABLES = [
    "team_members",
    "accounts",
    "events",
    "account_milestones",
    "outcomes",
    "checklist_items",
    "success_plans",
    "change_log",
    "health_snapshots",
]


def counts(url: str) -> dict[str, int]:
    with get_engine(url).connect() as c:
        return {t: c.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TABLES}


# ----------------------------------------------------------------------------- migrations


def test_the_models_and_the_migrations_agree(empty_db: str) -> None:
    with get_engine(empty_db).connect() as c:
        assert compare_metadata(MigrationContext.configure(c), SQLModel.metadata) == []


def test_upgrading_the_previous_release_keeps_all_data(unmigrated_db: str) -> None:
    url = unmigrated_db
    engine = get_engine(url)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert "done_at" not in {c["name"] for c in inspect(engine).get_columns("checklist_items")}
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO team_members (email, name, role, active) VALUES ('ann@x.example', 'Ann', 'csm', :t)"),
            {"t": True},
        )
        c.execute(
            text(
                "INSERT INTO accounts (external_id, name, segment, contract_start, arr, licensed_seats, csm_id, created_at) "
                "VALUES ('A-1', 'Acme <b>Corp</b>', 'SMB', '2025-01-10', 12000.5, 10, 1, '2025-01-10 00:00:00')"
            )
        )
        c.execute(
            text(
                "INSERT INTO events (account_id, event, ts, user_id, properties) VALUES (1, 'login', '2025-01-11 09:00:00', 'u1', '{\"a\": 1}')"
            )
        )
        c.execute(
            text(
                "INSERT INTO events (account_id, event, ts, user_id, properties) VALUES (1, 'login', '2025-01-12 09:00:00', '', NULL)"
            )
        )
        c.execute(
            text(
                "INSERT INTO milestone_definitions (key, name, phase, sort_order, target_days, is_value) "
                "VALUES ('kickoff_complete', 'Kickoff complete', 1, 1, '{\"SMB\": 3}', :f)"
            ),
            {"f": False},
        )
        c.execute(
            text(
                "INSERT INTO account_milestones (account_id, milestone_key, due_date, completed_at) VALUES (1, 'kickoff_complete', '2025-01-13', '2025-01-12 10:00:00')"
            )
        )
        c.execute(
            text("INSERT INTO outcomes (account_id, date, type, arr_change) VALUES (1, '2026-01-10', 'renewed', 0)")
        )
        for i, status in enumerate(["done", "in progress"]):
            c.execute(
                text(
                    "INSERT INTO checklist_items (account_id, category, criterion, target, actual, status, owner_id, note, metric, position, version) "
                    "VALUES (1, 'Technical Setup', :c, '100%', '', :s, 1, 'kept', NULL, :p, 3)"
                ),
                {"c": f"criterion {i}", "s": status, "p": i},
            )
        c.execute(
            text(
                "INSERT INTO change_log (at, actor, entity, entity_id, account_id, field, old, new, context) VALUES ('2025-02-01 00:00:00', 'ann@x.example', 'checklist_item', '1', 1, 'status', 'in progress', 'done', 'edit')"
            )
        )
        c.execute(
            text(
                "INSERT INTO health_snapshots (account_id, date, total, milestone, adoption, engagement, value, band, model_version) VALUES (1, '2025-02-01', 71.5, 30, 10, 11.5, 20, 'On Track', 1)"
            )
        )
    before = counts(url)

    assert migrate(url) == "0002"

    assert counts(url) == before
    with engine.connect() as c:
        acc = c.execute(text("SELECT name, arr, licensed_seats FROM accounts")).one()
        assert acc == ("Acme <b>Corp</b>", 12000.5, 10)
        props = c.execute(text("SELECT properties FROM events ORDER BY ts")).scalars().all()
        assert props == ['{"a": 1}', None]
        items = c.execute(text("SELECT status, note, version, done_at FROM checklist_items ORDER BY position")).all()
        assert [(s, n, v) for s, n, v, _ in items] == [("done", "kept", 3), ("in progress", "kept", 3)]
        # Done items get the migration time as their done time; the others none.
        assert items[0][3] is not None and items[1][3] is None
    cols = [i["column_names"] for i in inspect(engine).get_indexes("events") if i["name"] == "ix_events_account_ts"]
    assert cols == [["account_id", "ts", "event", "user_id"]]


# ----------------------------------------------------------------------------- interrupted imports


def _accounts_csv(n: int) -> bytes:
    rows = ["account_id,name,segment,contract_start"] + [f"X-{i},Account {i},SMB,2025-01-01" for i in range(n)]
    return ("\n".join(rows) + "\n").encode()


def _events_csv(n: int, accounts: int) -> bytes:
    rows = ["account_id,event,timestamp,user_id"]
    rows += [
        f"X-{i % accounts},login,2025-02-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z,u{i % 97}"
        for i in range(n)
    ]
    return ("\n".join(rows) + "\n").encode()


def test_an_import_interrupted_half_way_writes_nothing(small_db: str) -> None:
    before = counts(small_db)
    files = {"accounts.csv": _accounts_csv(50), "events.csv": _events_csv(120_000, 50)}

    def stop_half_way(fraction: float, message: str) -> None:
        if fraction > 0.5 and "events" in message:
            raise KeyboardInterrupt("operator pressed Ctrl-C")

    with pytest.raises(KeyboardInterrupt):
        import_files(files, url=small_db, progress=stop_half_way)
    assert counts(small_db) == before


def test_a_killed_cli_import_writes_nothing(small_db: str, tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_bytes(_accounts_csv(50))
    (tmp_path / "events.csv").write_bytes(_events_csv(400_000, 50))
    before = counts(small_db)
    env = {**os.environ, "DATABASE_URL": small_db}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "import", str(tmp_path)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    seen = ""
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        seen += line
        if "events.csv:" in line:  # writing events has started
            break
    assert "events.csv:" in seen, seen
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert counts(small_db) == before


# ----------------------------------------------------------------------------- database down


UNREACHABLE = {
    "postgresql refused": "postgresql+psycopg://postgres@127.0.0.1:1/nothing",
    "sqlite not a database": None,  # a file of garbage, made in the test
}


@pytest.mark.parametrize("kind", list(UNREACHABLE))
def test_database_down_at_start_gives_a_clear_page_and_recovers(
    kind: str, demo_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = UNREACHABLE[kind]
    if bad is None:
        junk = tmp_path / "broken.db"
        junk.write_bytes(b"this is not a database" * 100)
        bad = f"sqlite:///{junk}"
    monkeypatch.setenv("DATABASE_URL", bad)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["as_of"] = AS_OF.isoformat()
    at.run()
    assert not at.exception
    assert at.title[0].value == "The database is unavailable"
    assert "cannot be reached or read" in at.error[0].value
    retry = [b for b in at.button if b.label == "Retry"]
    assert retry
    # The database comes back: Retry shows the app again.
    monkeypatch.setenv("DATABASE_URL", demo_db)
    retry[0].click().run()
    assert not at.exception
    assert at.title[0].value == "Portfolio"


def test_database_lost_mid_session_gives_a_clear_page(demo_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", demo_db)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["as_of"] = AS_OF.isoformat()
    at.run()
    assert at.title[0].value == "Portfolio"
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    at.switch_page("app_pages/funnel.py").run()
    assert not at.exception
    assert at.title[0].value == "The database is unavailable"
    monkeypatch.setenv("DATABASE_URL", demo_db)
    next(b for b in at.button if b.label == "Retry").click().run()
    assert not at.exception
    assert at.title[0].value == "Funnel"
