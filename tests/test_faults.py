"""Faults: the database down at start or lost mid-session (the error page names no server
detail), its tables dropped or its SQLite file deleted or replaced under the running app,
upgrading a previous release's schema with data in it, and imports interrupted half-way."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlmodel import SQLModel
from streamlit.testing.v1 import AppTest

import db.models  # noqa: F401  (the tables)
from db.importer import import_files
from db.models import include_object
from db.session import DatabaseUnavailable, alembic_config, check_connection, dispose_engine, get_engine, migrate
from services.plans import ItemChange, in_session, save_checklist
from tests.conftest import AS_OF, ROOT, SMALL
from tests.pages import open_page
from tests.services import ALEX, LEADER, external_id, items, member, owned_accounts

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
        # Indexes of another dialect only (db/models.py) are not this database's schema.
        ctx = MigrationContext.configure(c, opts={"include_object": include_object(c.dialect.name)})
        assert compare_metadata(ctx, SQLModel.metadata) == []


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

    assert migrate(url) == "0005"

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


def page_text(at: AppTest) -> str:
    """Everything the page shows (every element's content), main area and sidebar."""
    return "\n".join(str(node.proto) for node in at._tree if getattr(node, "proto", None) is not None)


def test_the_database_error_page_names_no_host_port_database_or_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Shown before anyone is identified: a generic reason on the page, the detail in the log."""
    secrets = ["reporting_svc", "hunter2", "127.0.0.2", "54329", "crm_production"]
    junk_dir = tmp_path / "srv-private-volume"
    junk_dir.mkdir()
    junk = junk_dir / "customers-eu.db"
    junk.write_bytes(b"this is not a database" * 100)
    for url, hidden in (
        ("postgresql+psycopg://reporting_svc:hunter2@127.0.0.2:54329/crm_production", secrets),
        (f"sqlite:///{junk}", ["srv-private-volume", "customers-eu"]),
    ):
        monkeypatch.setenv("DATABASE_URL", url)
        caplog.clear()
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        assert not at.exception
        assert at.title[0].value == "The database is unavailable"
        assert "cannot be reached or read" in at.error[0].value
        assert [b for b in at.button if b.label == "Retry"]
        shown = page_text(at)
        assert [s for s in hidden if s in shown] == []
        # The operator finds the detail in the server log (never the password).
        logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "onboarding.app")
        assert hidden[0] in logged and "hunter2" not in logged


# ----------------------------------------------------------------------------- SQLite file lost


@pytest.fixture
def sqlite_app_db(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A small demo portfolio in a SQLite file of its own (whatever the suite's database):
    deleting or replacing a file is a SQLite matter."""
    from services.setup import seed_demo

    path = tmp_path / "onboarding.db"
    url = f"sqlite:///{path}"
    seed_demo(url=url, **SMALL)
    yield url, path
    dispose_engine(url)


def _lose(path: Path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    else:  # a copy moved over it, as a restore or another process would
        copy = path.with_name("restored.db")
        shutil.copyfile(path, copy)
        os.replace(copy, path)


def _note_in_file(path: Path, item_id: int) -> str | None:
    """The note as stored in whatever file is now at the path (outside the app's engine)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT note FROM checklist_items WHERE id = ?", (item_id,)).fetchone()
    finally:
        con.close()
    return row[0] if row else None


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_save_after_the_sqlite_file_is_deleted_or_replaced_is_refused(
    sqlite_app_db: tuple[str, Path], how: str
) -> None:
    url, path = sqlite_app_db
    alex = member(url, ALEX)
    aid = owned_accounts(url, ALEX)[0]
    first, second = items(url, aid)[:2]
    # The app is running: its engine has the file open and a save goes through.
    res = in_session(
        save_checklist, alex, url=url, account_id=aid, changes=[ItemChange(first.id, first.version, {"note": "kept"})]
    )
    assert res.changed == 1

    _lose(path, how)

    with pytest.raises(DatabaseUnavailable) as err:
        in_session(
            save_checklist,
            alex,
            url=url,
            account_id=aid,
            changes=[ItemChange(second.id, second.version, {"note": "would be lost"})],
        )
    assert f"was {'deleted' if how == 'deleted' else 'replaced'}" in str(err.value)
    assert str(path) in str(err.value)
    # Every later use is refused too, and nothing makes a new, empty database at the path.
    with pytest.raises(DatabaseUnavailable):
        check_connection(url)
    if how == "deleted":
        assert not path.exists()
    else:
        assert _note_in_file(path, second.id) != "would be lost"


def test_the_success_plans_page_shows_the_error_page_when_the_sqlite_file_is_gone(
    sqlite_app_db: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, path = sqlite_app_db
    monkeypatch.setenv("DATABASE_URL", url)
    aid = owned_accounts(url, ALEX)[0]
    at = open_page("success_plans", query={"as_of": AS_OF.isoformat(), "account": external_id(url, aid)}, as_user=ALEX)
    key = at.data_editor[0].key
    at.session_state[key] = {"edited_rows": {0: {"note": "would be lost"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.button(key="save_checklist").disabled

    path.unlink()
    at.button(key="save_checklist").click().run()

    assert not at.exception, [e.value for e in at.exception]
    assert "The database is unavailable" in [t.value for t in at.title]
    assert [e.value for e in at.error if "database file was deleted" in e.value]
    assert not [s.value for s in at.success if "Saved" in s.value]
    assert [b for b in at.button if b.label == "Retry"]
    assert not path.exists()


# ----------------------------------------------------------------------------- schema dropped


def _drop_every_table(url: str) -> None:
    """What dropping and recreating the database does to a running app: no table left."""
    engine = get_engine(url)
    meta = MetaData()
    meta.reflect(bind=engine)
    meta.drop_all(bind=engine)
    assert inspect(engine).get_table_names() == []


def _open(url: str, monkeypatch: pytest.MonkeyPatch, *, signed_in: bool) -> AppTest:
    monkeypatch.setenv("DATABASE_URL", url)
    at = open_page("portfolio", query={"as_of": AS_OF.isoformat()}, as_user=LEADER if signed_in else None)
    assert at.title[0].value == "Portfolio"
    return at


def _retry(at: AppTest) -> None:
    retry = [b for b in at.button if b.label == "Retry"]
    assert retry, [t.value for t in at.title]
    retry[0].click().run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.parametrize("signed_in", [True, False], ids=["identity", "sidebar"])
def test_tables_dropped_under_a_running_app_give_the_error_page_until_they_are_back(
    small_db: str, monkeypatch: pytest.MonkeyPatch, signed_in: bool
) -> None:
    """Signed in, the first query is the identity lookup; in the local demo, the sidebar's team."""
    from services.setup import seed_demo

    at = _open(small_db, monkeypatch, signed_in=signed_in)
    _drop_every_table(small_db)

    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "The database is unavailable"
    assert "cannot be reached or read" in at.error[0].value
    assert "team_members" not in page_text(at)

    seed_demo(url=small_db, **SMALL)  # the database is back
    _retry(at)
    assert at.title[0].value == "Portfolio"


def test_retry_migrates_a_recreated_empty_database(small_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(small_db, monkeypatch, signed_in=True)
    _drop_every_table(small_db)
    at.run()
    assert at.title[0].value == "The database is unavailable"

    _retry(at)
    # Retry ran the migrations: the schema is back at head, and the page is no error page.
    with get_engine(small_db).connect() as c:
        assert MigrationContext.configure(c).get_current_revision() == "0005"
    assert {"team_members", "accounts", "checklist_items"} <= set(inspect(get_engine(small_db)).get_table_names())
    assert "The database is unavailable" not in [t.value for t in at.title]
