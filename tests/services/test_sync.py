"""Sync from SQL sources (db/sync.py), against real sources on this machine: PostgreSQL (a
schema of its own), MariaDB (a database and a user with a password of their own) and a DuckDB
file, each with its own table and column names. The rows go through the import: the same
validation, upsert, atomicity and problem report; a watermark makes the next run read only
new rows (counted on the source's side); a source that fails mid-run leaves nothing written
and the watermark as it was; passwords appear nowhere."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

import engine
from db import facts as q
from db.models import Account, ChangeLog, Event, ImportRun, SyncConfig, SyncRun, SyncWatermark, TeamMember
from db.session import get_engine, session_scope
from db.sync import MappingError, SyncError, parse_mapping, run_sync
from db.sync_config import due_syncs, run_configured, run_due, save_sync
from db.sync_source import masked_url, scrub
from tests.services.sync_sources import (
    T0,
    duckdb_source,
    events,
    mariadb_source,
    postgres_source,
)

SOURCES = ["postgresql", "mariadb", "duckdb"]


@pytest.fixture
def source(request, tmp_path: Path):
    kind = request.param
    ctx = {
        "postgresql": postgres_source,
        "mariadb": mariadb_source,
        "duckdb": lambda: duckdb_source(tmp_path),
    }[kind]()
    with ctx as src:
        yield src


@pytest.fixture
def pg_source():
    with postgres_source() as src:
        yield src


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The engine's columnar copy in a directory of its own."""
    d = tmp_path / "copy"
    monkeypatch.setenv("ANALYTICS_URL", f"duckdb://{d}")
    return d


def synced_counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        accts = s.execute(select(Account.id).where(Account.external_id.like("SRC-%"))).scalars().all()
        return {
            "team": s.execute(select(func.count()).where(TeamMember.email.like("%.src@example.com"))).scalar_one(),
            "accounts": len(accts),
            "events": s.execute(select(func.count()).where(Event.account_id.in_(accts or [-1]))).scalar_one(),
        }


def table_count(url: str, model) -> int:
    with session_scope(url) as s:
        return s.execute(select(func.count()).select_from(model)).scalar_one()


def watermark(url: str, key: str) -> datetime | None:
    """The stored events watermark (a timestamp)."""
    with session_scope(url) as s:
        w = s.execute(
            select(SyncWatermark).where(SyncWatermark.sync_key == key, SyncWatermark.entity == "events")
        ).scalar_one_or_none()
        return None if w is None else datetime.fromisoformat(w.value)


def at(hours: int, kind: str) -> datetime:
    """Event number `hours`'s timestamp as the source's driver gives it back (PostgreSQL's
    timestamptz: aware; MariaDB's DATETIME and DuckDB's TIMESTAMP: naive, taken as UTC)."""
    t = T0 + timedelta(hours=hours, microseconds=hours)
    return t.replace(tzinfo=UTC) if kind == "postgresql" else t


# ----------------------------------------------------------------------------- runs


@pytest.mark.parametrize("source", SOURCES, indirect=True)
def test_first_run_then_an_incremental_run_reads_only_the_new_rows(source, empty_db: str) -> None:
    mapping = parse_mapping(source.mapping)
    first = run_sync(source.url, mapping, url=empty_db, batch_rows=25)
    assert first.status == "synced", first.message
    assert first.rows_read == {"team": 2, "accounts": 3, "events": 60}
    assert source.reads() == 60
    assert synced_counts(empty_db) == {"team": 2, "accounts": 3, "events": 60}
    assert watermark(empty_db, first.sync_key) == at(59, source.kind)
    with session_scope(empty_db) as s:
        a = s.execute(select(Account).where(Account.external_id == "SRC-2")).scalar_one()
        assert (a.name, a.segment, a.contract_start.isoformat(), a.licensed_seats) == (
            "O'Brien & Co",
            "Enterprise",
            "2026-02-01",
            50,
        )
        # A value that starts with ' is kept as the source has it (the CSV path drops export's escape).
        assert s.execute(select(Account.name).where(Account.external_id == "SRC-3")).scalar_one() == "'Quoted Ltd"
        e = s.execute(select(Event).order_by(Event.ts.desc()).limit(1)).scalar_one()
        assert (e.event, e.user_id, json.loads(e.properties)) == ("invite_sent", "u4", {"i": 59, "plan": "pro"})

    source.add_events(events(60, 7))
    second = run_sync(source.url, mapping, url=empty_db, batch_rows=25)
    assert second.status == "synced", second.message
    assert second.rows_read["events"] == 7
    assert source.reads() == 67  # the source returned only the 7 new rows
    assert second.report.files["events.csv"].inserted == 7
    assert synced_counts(empty_db)["events"] == 67
    assert watermark(empty_db, first.sync_key) == at(66, source.kind)

    third = run_sync(source.url, mapping, url=empty_db)
    assert (third.status, third.rows_read["events"], third.rows_written) == ("synced", 0, 0)
    assert source.reads() == 67


def test_a_report_after_a_sync_sees_the_new_events(pg_source, empty_db: str, store: Path) -> None:
    mapping = parse_mapping(pg_source.mapping)
    assert run_sync(pg_source.url, mapping, url=empty_db).status == "synced"
    assert isinstance(engine.analytics_for(empty_db), engine.DuckDBCopy)
    with get_engine(empty_db).connect() as c:
        before = dict(zip(*(q.event_names(c)[k] for k in ("event", "events")), strict=True))
    assert before == {"workspace_created": 15, "login": 15, "report_viewed": 15, "invite_sent": 15}
    pg_source.add_events(events(60, 4))  # one of each name
    assert run_sync(pg_source.url, mapping, url=empty_db).status == "synced"
    with get_engine(empty_db).connect() as c:
        after = dict(zip(*(q.event_names(c)[k] for k in ("event", "events")), strict=True))
    assert after == {k: v + 1 for k, v in before.items()}


def test_an_invalid_row_writes_nothing_and_is_reported_by_query_and_row(pg_source, empty_db: str) -> None:
    mapping = parse_mapping(pg_source.mapping)
    assert run_sync(pg_source.url, mapping, url=empty_db).status == "synced"
    key = f"source:{masked_url(pg_source.url)}"
    mark = watermark(empty_db, key)
    before = synced_counts(empty_db)
    runs_before = table_count(empty_db, ImportRun)
    # New rows: a valid one, then one of an account nobody knows, then one whose properties are no object.
    new = events(60, 3)
    new[1]["acct"] = "SRC-404"
    new[2]["props"] = json.dumps([1, 2])
    pg_source.add_events(new)
    pg_source.run(f"UPDATE {pg_source.where}.crm SET tier = 'Huge' WHERE code = 'SRC-1'")

    res = run_sync(pg_source.url, mapping, url=empty_db)
    assert res.status == "rejected"
    assert res.message == "3 problem(s); nothing was written"
    got = [(p.file, p.row, p.column, p.value, p.reason.split(";")[0].split(":")[0]) for p in res.report.problems]
    assert got == [
        ("accounts (query)", 1, "segment", "Huge", got[0][4]),
        ("events (query)", 2, "account_id", "SRC-404", "unknown account"),
        ("events (query)", 3, "properties", "[1, 2]", "malformed properties"),
    ]
    assert got[0][4].startswith("unknown segment")
    assert synced_counts(empty_db) == before
    assert watermark(empty_db, key) == mark
    with session_scope(empty_db) as s:
        assert s.execute(select(Account.segment).where(Account.external_id == "SRC-1")).scalar_one() == "SMB"
        run = s.execute(select(SyncRun).order_by(SyncRun.id.desc()).limit(1)).scalar_one()
        assert (run.status, run.problems, run.rows_written) == ("rejected", 3, 0)
        assert [p["file"] for p in json.loads(run.problem_list)] == [g[0] for g in got]
        assert s.execute(select(ImportRun.status).order_by(ImportRun.id.desc()).limit(1)).scalar_one() == "rejected"
    assert table_count(empty_db, ImportRun) == runs_before + 1


def test_a_source_that_disappears_mid_run_leaves_nothing_written(pg_source, empty_db: str) -> None:
    mapping = parse_mapping(pg_source.mapping)
    assert run_sync(pg_source.url, mapping, url=empty_db).status == "synced"
    key = f"source:{masked_url(pg_source.url)}"
    mark = watermark(empty_db, key)
    pg_source.add_events(events(60, 40))
    pg_source.run(f"UPDATE {pg_source.where}.crm SET company = 'Renamed' WHERE code = 'SRC-1'")
    before = synced_counts(empty_db)

    def kill(entity: str, rows: int) -> None:
        if entity == "events":  # the first batch of events is in the import's transaction already
            pg_source.run(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a",
                {"a": pg_source.where},
            )

    res = run_sync(pg_source.url, mapping, url=empty_db, batch_rows=10, on_batch=kill)
    assert res.status == "failed"
    assert res.message.startswith("the source failed while the events query was read (after 10 rows): ")
    assert res.message.endswith("; nothing was written")
    assert res.rows_read["events"] == 10
    assert synced_counts(empty_db) == before
    with session_scope(empty_db) as s:
        assert s.execute(select(Account.name).where(Account.external_id == "SRC-1")).scalar_one() == "Acme Source"
        assert s.execute(select(ImportRun.status).order_by(ImportRun.id.desc()).limit(1)).scalar_one() == "failed"
        assert s.execute(select(SyncRun.status).order_by(SyncRun.id.desc()).limit(1)).scalar_one() == "failed"
    assert watermark(empty_db, key) == mark
    # The next run reads the rows again from the same watermark.
    again = run_sync(pg_source.url, mapping, url=empty_db)
    assert (again.status, again.rows_read["events"]) == ("synced", 40)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg://postgres:Pw-Unreachable@127.0.0.1:1/test", "cannot connect to the source"),
        ("mysql+pymysql://nobody:Pw-Unreachable@127.0.0.1:3306/none", "cannot connect to the source"),
        ("nosuchdialect://u:Pw-Unreachable@h/db", "no SQLAlchemy driver for 'nosuchdialect' is installed"),
        ("not a url Pw-Unreachable", "the source is not a SQLAlchemy URL"),
    ],
)
def test_an_unusable_source_is_a_clear_message_without_the_password(
    url: str, reason: str, empty_db: str, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    mapping = parse_mapping('[accounts]\nquery = "SELECT 1 AS account_id"\n')
    res = run_sync(url, mapping, url=empty_db)
    assert res.status == "failed"
    assert reason in res.message
    assert "Pw-Unreachable" not in res.message + res.source
    assert "Pw-Unreachable" not in caplog.text
    with session_scope(empty_db) as s:
        run = s.execute(select(SyncRun)).scalar_one()
        assert "Pw-Unreachable" not in json.dumps([run.source, run.message, run.sync_key])


def test_a_query_the_source_refuses_is_named_and_writes_nothing(pg_source, empty_db: str) -> None:
    mapping = parse_mapping(
        pg_source.mapping.replace(f"FROM {pg_source.where}.usage", f"FROM {pg_source.where}.usage_gone")
    )
    res = run_sync(pg_source.url, mapping, url=empty_db)
    assert res.status == "failed"
    assert res.message.startswith("the source refused the events query: ")
    assert f'relation "{pg_source.where}.usage_gone" does not exist' in res.message
    assert res.message.endswith("; nothing was written")
    assert synced_counts(empty_db) == {"team": 0, "accounts": 0, "events": 0}  # team and accounts rolled back too
    assert table_count(empty_db, SyncWatermark) == 0


def test_a_second_full_run_changes_nothing(source_kind_pg_or_maria, empty_db: str) -> None:
    src = source_kind_pg_or_maria
    mapping = parse_mapping(src.mapping)
    assert run_sync(src.url, mapping, url=empty_db, full=True).status == "synced"
    counts = synced_counts(empty_db)
    changes = table_count(empty_db, ChangeLog)
    res = run_sync(src.url, mapping, url=empty_db, full=True)
    assert res.status == "synced"
    assert res.rows_read == {"team": 2, "accounts": 3, "events": 60}  # --full reads everything again
    files = res.report.files
    assert [(f.inserted, f.updated, f.unchanged) for f in files.values()] == [(0, 0, 2), (0, 0, 3), (0, 0, 0)]
    assert files["events.csv"].duplicates_skipped == 60
    assert res.rows_written == 0
    assert synced_counts(empty_db) == counts
    assert table_count(empty_db, ChangeLog) == changes


@pytest.fixture(params=["postgresql", "mariadb"])
def source_kind_pg_or_maria(request):
    ctx = postgres_source() if request.param == "postgresql" else mariadb_source()
    with ctx as src:
        yield src


def test_a_large_load_from_postgresql_builds_the_indexes_at_the_end(pg_source, empty_db: str, monkeypatch) -> None:
    """The source's planner estimate tells the importer a large load is coming (into
    PostgreSQL it then drops the secondary event indexes and rebuilds them once); repeated
    rows are still skipped."""
    from db import importer
    from db.bulk import secondary_event_indexes
    from tests.services.sync_sources import events as make_events

    monkeypatch.setattr(importer, "LARGE_LOAD_EVENTS", 40)
    dropped: list[list[str]] = []
    real_drop = importer.drop_event_indexes

    def spy(session):
        out = real_drop(session)
        dropped.append([i.name for i in out])
        return out

    monkeypatch.setattr(importer, "drop_event_indexes", spy)
    pg_source.run(f"ANALYZE {pg_source.where}.usage")  # the planner's estimate: 60 rows
    pg_source.add_events(make_events(10, 5))  # 5 repeats of rows already there
    res = run_sync(pg_source.url, parse_mapping(pg_source.mapping), url=empty_db, batch_rows=20)
    assert res.status == "synced", res.message
    fr = res.report.files["events.csv"]
    assert (res.rows_read["events"], fr.inserted, fr.duplicates_skipped) == (65, 60, 5)
    assert synced_counts(empty_db)["events"] == 60
    dialect = get_engine(empty_db).dialect.name
    want = sorted(ix.name for ix in secondary_event_indexes(dialect))
    if dialect == "postgresql":
        assert [sorted(d) for d in dropped] == [want]
    else:
        assert dropped == []  # SQLite keeps maintaining its indexes
    from sqlalchemy import inspect

    assert want == sorted(i["name"] for i in inspect(get_engine(empty_db)).get_indexes("events") if i["name"] in want)


def test_a_dry_run_writes_nothing_and_keeps_no_watermark(pg_source, empty_db: str) -> None:
    res = run_sync(pg_source.url, parse_mapping(pg_source.mapping), url=empty_db, dry_run=True)
    assert res.status == "dry run"
    assert res.message == "dry run: 65 row(s) read and valid; nothing was written"
    assert res.report.files["events.csv"].inserted == 60
    assert synced_counts(empty_db) == {"team": 0, "accounts": 0, "events": 0}
    assert table_count(empty_db, SyncWatermark) == 0
    assert datetime.fromisoformat(res.watermarks["events"]["value"]) == at(59, "postgresql")


# ----------------------------------------------------------------------------- credentials


def test_the_password_appears_in_no_output_log_record_or_table(empty_db: str, cli, caplog, tmp_path) -> None:
    with mariadb_source() as src:
        pw = src.password
        mapping_file = tmp_path / "mapping.toml"
        mapping_file.write_text(src.mapping)
        bad_file = tmp_path / "bad.toml"
        bad_file.write_text(src.mapping.replace("AS csm_email", "AS csm_emial"))
        runs = [
            cli(empty_db, "sync", "--source", src.url, "--mapping", str(mapping_file)),
            cli(empty_db, "sync", "--source", src.url, "--mapping", str(bad_file), "--format", "json"),
            cli(empty_db, "sync", "--source", src.url.replace(pw, pw + "x"), "--mapping", str(mapping_file)),
            cli(
                empty_db,
                "sync",
                "--source",
                src.url.replace(src.where + "?", "nosuchdb?"),
                "--mapping",
                str(mapping_file),
            ),
            cli(empty_db, "sync", "--save", "crm", "--source", src.url, "--mapping", str(mapping_file)),
            cli(empty_db, "sync", "--name", "crm"),
            cli(empty_db, "sync", "--list"),
        ]
        codes = [r.returncode for r in runs]
        assert codes == [0, 0, 1, 1, 0, 0, 0], [r.stderr for r in runs]
        assert "Access denied for user" in runs[2].stderr  # the driver's reason is told ...
        assert "error: cannot connect to the source" in runs[3].stderr
        for r in runs:
            assert pw not in r.stdout + r.stderr  # ... never the password
        assert f"{src.user}:***@127.0.0.1" in runs[0].stdout
        # (csm_emial is an unknown column: a warning naming the query; the accounts keep their CSM.)
        assert "accounts (query): ignored unknown column(s) csm_emial" in json.loads(runs[1].stdout)["warnings"]

        # Every log record, in this process (the engine's SQL log included): a failing run and a good one.
        caplog.set_level(logging.DEBUG)
        run_sync(src.url.replace(pw, pw + "x"), parse_mapping(src.mapping), url=empty_db)
        run_sync(src.url, parse_mapping(src.mapping), url=empty_db)
        assert [r for r in caplog.records if r.name == "db.sync"]
        assert pw not in caplog.text

        with get_engine(empty_db).connect() as c:
            for table in ("sync_runs", "sync_watermarks", "import_runs", "change_log"):
                rows = c.execute(text(f"SELECT * FROM {table}")).all()
                assert rows or table == "change_log"
                assert pw not in json.dumps([list(r) for r in rows], default=str), table
            logged = c.execute(text("SELECT new FROM change_log WHERE entity = 'sync'")).scalars().all()
            assert logged == [f"{masked_url(src.url)}; schedule none"]
            # The stored configuration keeps what it needs to run (that table is never shown).
            assert c.execute(text("SELECT source_url FROM syncs")).scalar_one() == src.url


def test_a_password_from_the_environment_is_stored_as_a_reference(empty_db: str, monkeypatch) -> None:
    with mariadb_source() as src:
        ref = src.url.replace(src.password, "${SRC_TEST_PW}")
        with session_scope(empty_db) as s:
            save_sync(s, actor="t", name="crm", source_url=ref, mapping_text=src.mapping)
        monkeypatch.delenv("SRC_TEST_PW", raising=False)
        res = run_configured("crm", url=empty_db)
        assert (res.status, res.message) == (
            "failed",
            "the source URL refers to ${SRC_TEST_PW}, which is not set in the environment",
        )
        monkeypatch.setenv("SRC_TEST_PW", src.password)
        res = run_configured("crm", url=empty_db)
        assert res.status == "synced", res.message
        assert res.source == f"mysql+pymysql://{src.user}:${{SRC_TEST_PW}}@127.0.0.1:3306/{src.where}?charset=utf8mb4"
        with get_engine(empty_db).connect() as c:
            assert src.password not in json.dumps(
                [list(r) for r in c.execute(text("SELECT * FROM syncs"))], default=str
            )


@pytest.mark.parametrize(
    ("message", "secrets", "shown"),
    [
        ("auth failed for s3cr@t", ["s3cr@t"], "auth failed for ***"),
        ("dsn postgresql://bob:s3cr%40t@h/db", ["s3cr@t"], "dsn postgresql://bob:***@h/db"),
        ("dsn mysql://bob:anything@h/db", [], "dsn mysql://bob:***@h/db"),
        ("quoted s3cr%40t and plus s3cr+t", ["s3cr@t", "s3cr t"], "quoted *** and plus ***"),
        ("nothing secret here", ["pw"], "nothing secret here"),
    ],
)
def test_driver_messages_are_scrubbed(message: str, secrets: list[str], shown: str) -> None:
    assert scrub(message, secrets) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://bob:pw@h:5432/db", "postgresql+psycopg://bob:***@h:5432/db"),
        ("postgresql+psycopg://bob:${PW}@h/db", "postgresql+psycopg://bob:${PW}@h/db"),
        (
            "snowflake://u:pw@acct/db?private_key_file_pwd=pk&warehouse=w",
            "snowflake://u:***@acct/db?private_key_file_pwd=***&warehouse=w",
        ),
        ("duckdb:////data/src.duckdb", "duckdb:////data/src.duckdb"),
        ("secret-ish garbage", "(not a SQLAlchemy URL)"),
    ],
)
def test_source_urls_are_shown_with_secrets_hidden(url: str, shown: str) -> None:
    assert masked_url(url) == shown


# ----------------------------------------------------------------------------- mappings, schedules


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[acounts]\nquery = 'SELECT 1'", "unknown table(s) [acounts]; expected some of team, accounts"),
        ("", "has no entity table"),
        ("[events]\nwatermark = 'timestamp'", "[events]: a query (SQL text) is required"),
        (
            "[events]\nquery = 'SELECT * FROM e WHERE ts > :watermark'",
            "uses :watermark but no watermark column is named",
        ),
        ("[events]\nquery = 'SELECT * FROM e WHERE ts > :since'", "the query uses :since; only :watermark is bound"),
        ("[events]\nquery = 'SELECT 1'\nwatermerk = 'ts'", "unknown key(s) watermerk"),
        ("[events]\nquery = 'SELECT 1'\nwatermark = 'ts'\nwatermark_type = 'uuid'", "watermark_type must be one of"),
        ("[events\nquery = 1", "is not valid TOML"),
    ],
)
def test_a_bad_mapping_is_refused_naming_where(toml: str, message: str) -> None:
    with pytest.raises(MappingError) as err:
        parse_mapping(toml)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("entity", "column", "kind", "lowest"),
    [
        ("events", "timestamp", "timestamp", datetime(1, 1, 1)),
        ("outcomes", "date", "date", datetime(1, 1, 1).date()),
        ("accounts", "employees", "integer", -(2**63)),
        ("accounts", "account_id", "text", ""),
        ("accounts", "updated_at", "timestamp", datetime(1, 1, 1)),  # not a contract column: timestamp
    ],
)
def test_the_first_run_binds_the_lowest_value_of_the_watermarks_type(entity, column, kind, lowest) -> None:
    from db.sync_source import LOWEST

    m = parse_mapping(f"[{entity}]\nquery = 'SELECT * FROM x WHERE {column} > :watermark'\nwatermark = '{column}'")
    eq = next(iter(m.entities.values()))
    assert (eq.watermark_type, LOWEST[eq.watermark_type]) == (kind, lowest)


def next_2am(t: datetime) -> datetime:
    c = t.replace(hour=2, minute=0, second=0, microsecond=0)
    return c if c > t else c + timedelta(days=1)


def test_scheduled_syncs_are_due_once_their_time_has_come(pg_source, empty_db: str) -> None:
    with session_scope(empty_db) as s:
        save_sync(
            s, actor="t", name="nightly", source_url=pg_source.url, mapping_text=pg_source.mapping, schedule="0 2 * * *"
        )
        save_sync(s, actor="t", name="manual", source_url=pg_source.url, mapping_text=pg_source.mapping)
        with pytest.raises(SyncError, match="not a crontab line"):
            save_sync(
                s, actor="t", name="bad", source_url=pg_source.url, mapping_text=pg_source.mapping, schedule="2am"
            )
    with session_scope(empty_db) as s:
        saved = s.execute(select(SyncConfig.updated_at).where(SyncConfig.name == "nightly")).scalar_one()
    saved = saved if saved.tzinfo else saved.replace(tzinfo=UTC)
    with session_scope(empty_db) as s:
        assert due_syncs(s, now=next_2am(saved) - timedelta(minutes=1)) == []
        assert due_syncs(s, now=next_2am(saved) + timedelta(minutes=3)) == ["nightly"]
    ran = run_due(url=empty_db, now=next_2am(saved) + timedelta(minutes=3))
    assert [(r.sync_name, r.status) for r in ran] == [("nightly", "synced")]
    assert synced_counts(empty_db)["events"] == 60
    with session_scope(empty_db) as s:
        started = s.execute(select(SyncRun.started_at)).scalar_one()
        started = started if started.tzinfo else started.replace(tzinfo=UTC)
        # Once per time it comes round, counted from the last run.
        assert due_syncs(s, now=next_2am(started) - timedelta(seconds=1)) == []
        assert due_syncs(s, now=next_2am(started) + timedelta(seconds=1)) == ["nightly"]


def test_the_cli_runs_saves_and_lists_syncs(pg_source, empty_db: str, cli, tmp_path: Path) -> None:
    mapping_file = tmp_path / "m.toml"
    mapping_file.write_text(pg_source.mapping)
    r = cli(empty_db, "sync", "--source", pg_source.url, "--mapping", str(mapping_file), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "dry run: 65 row(s) read and valid; nothing was written" in r.stdout
    assert synced_counts(empty_db)["events"] == 0
    r = cli(
        empty_db,
        "sync",
        "--save",
        "warehouse",
        "--source",
        pg_source.url,
        "--mapping",
        str(mapping_file),
        "--schedule",
        "30 1 * * *",
    )
    assert r.returncode == 0, r.stderr
    r = cli(empty_db, "sync", "--name", "warehouse", "--batch-rows", "20")
    assert r.returncode == 0, r.stderr
    assert "sync events: 20 rows read" in r.stderr and "sync events: 60 rows read" in r.stderr
    assert "synced: 65 row(s) read, 65 written (65 new, 0 updated)" in r.stdout
    r = cli(empty_db, "sync", "--list")
    assert r.returncode == 0
    assert "warehouse: postgresql+psycopg://postgres:***@127.0.0.1:5432/test" in r.stdout
    assert "schedule 30 1 * * * | last run" in r.stdout and ": synced" in r.stdout
    assert "65 read, 65 written, 0 problem(s); watermark events.timestamp = 2026-03-04" in r.stdout
    r = cli(empty_db, "sync", "--name", "nope")
    assert (r.returncode, r.stderr.strip()) == (1, "error: no configured sync named 'nope'; configured: warehouse")
    r = cli(
        empty_db,
        "sync",
        "--source",
        "postgresql+psycopg://postgres:Pw-Cli@127.0.0.1:1/test",
        "--mapping",
        str(mapping_file),
    )
    assert r.returncode == 1
    assert "error: cannot connect to the source postgresql+psycopg://postgres:***@127.0.0.1:1/test" in r.stderr
    assert "Pw-Cli" not in r.stdout + r.stderr
