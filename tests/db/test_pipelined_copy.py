"""A large PostgreSQL events load (issue 16): the batches go to the server by COPY from a
writer thread while the importer reads the next ones, with the natural key and the
account_id foreign key dropped meanwhile. It stores exactly the rows (and ids, in file
order) the batched path stores; a failure in the middle, in the server or in the importer,
leaves nothing written and every index and constraint in place; a statement on the
connection meanwhile sees every row queued before it. The timestamps are written as text
by Arrow's cast, the text strftime gave (SQLite stores it)."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from sqlalchemy import text

from db import bulk, importer
from db.session import get_engine, session_scope
from tests.conftest import ON_POSTGRES
from tests.db.test_bulk_import import TRICKY, events_csv, index_defs, many, run

postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="the pipelined COPY is PostgreSQL's large load")


def constraints(url: str) -> dict[str, str]:
    with get_engine(url).connect() as c:
        return dict(
            c.execute(
                text(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = 'events'::regclass ORDER BY conname"
                )
            ).all()
        )


def rows_by_id(url: str) -> list[tuple]:
    """Every event in id order, ids counted from the first (the order rows were written)."""
    with get_engine(url).connect() as c:
        return [
            tuple(r)
            for r in c.execute(
                text(
                    "SELECT e.id - (SELECT MIN(id) FROM events), a.external_id, e.event, e.ts, e.user_id, "
                    "e.properties FROM events e JOIN accounts a ON a.id = e.account_id ORDER BY e.id"
                )
            )
        ]


def copy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "events-copy"]


def fresh(databases) -> str:
    from db.settings_store import init_db

    url = databases.new()
    init_db(url)
    return url


@postgres_only
def test_the_pipelined_load_stores_exactly_what_the_batched_path_stores(
    databases, empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = TRICKY + many(300)
    lines[100] = lines[7]  # a repeat across batches: the first row stays
    data = events_csv(lines)
    monkeypatch.setattr(importer, "EVENT_BATCH", 40)
    batched = run(empty_db, data)
    assert batched.ok, batched.problems
    other = fresh(databases)
    monkeypatch.setattr(importer, "LARGE_LOAD_EVENTS", 10)
    queued: list[int] = []
    real = bulk._PipelinedCopy.write

    def spy(self, payload):
        queued.append(len(payload))
        return real(self, payload)

    monkeypatch.setattr(bulk._PipelinedCopy, "write", spy)
    piped = run(other, data)
    assert piped.ok, piped.problems
    assert len(queued) == 8  # every batch went through the writer thread
    got = rows_by_id(other)
    assert got == rows_by_id(empty_db)
    assert len(got) == len(lines) - 1
    f, g = batched.files["events.csv"], piped.files["events.csv"]
    assert (g.inserted, g.duplicates_skipped) == (f.inserted, f.duplicates_skipped) == (len(lines) - 1, 1)
    assert constraints(other) == constraints(empty_db)
    assert "events_account_id_fkey" in constraints(other)
    assert index_defs(other) == index_defs(empty_db)
    assert copy_threads() == []


@postgres_only
def test_a_server_error_in_the_middle_of_the_pipelined_load_leaves_nothing(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "EVENT_BATCH", 30)
    monkeypatch.setattr(importer, "LARGE_LOAD_EVENTS", 10)
    before_ix, before_con = index_defs(empty_db), constraints(empty_db)
    real = bulk._copy_csv
    calls = [0]

    def third_batch_unreadable(frame, ts):
        calls[0] += 1
        payload = real(frame, ts)
        # The server rejects the third batch (a row with a timestamp it cannot read).
        return payload.replace(b"+00", b"+00 not a time", 1) if calls[0] == 3 else payload

    monkeypatch.setattr(bulk, "_copy_csv", third_batch_unreadable)
    with pytest.raises(importer.ImportFailed):
        run(empty_db, events_csv(many(200)))
    assert calls[0] >= 3
    with get_engine(empty_db).connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM events")).scalar_one() == 0
        assert c.execute(text("SELECT COUNT(*) FROM accounts")).scalar_one() == 0
    assert index_defs(empty_db) == before_ix
    assert constraints(empty_db) == before_con
    assert copy_threads() == []
    monkeypatch.setattr(bulk, "_copy_csv", real)  # the database is fine for the next import
    again = run(empty_db, events_csv(many(200)))
    assert again.ok and again.files["events.csv"].inserted == 200


@postgres_only
def test_an_importer_failure_while_batches_are_queued_leaves_nothing(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "EVENT_BATCH", 30)
    monkeypatch.setattr(importer, "LARGE_LOAD_EVENTS", 10)
    before_ix, before_con = index_defs(empty_db), constraints(empty_db)
    real = importer._ref_check
    calls = [0]

    def fail_on_the_fifth_batch(ctx, name, *a, **k):
        if name == "events.csv":
            calls[0] += 1
            if calls[0] == 5:  # four batches queued or written by the writer thread
                raise importer.SQLAlchemyError("disk full")
        return real(ctx, name, *a, **k)

    monkeypatch.setattr(importer, "_ref_check", fail_on_the_fifth_batch)
    with pytest.raises(importer.ImportFailed):
        run(empty_db, events_csv(many(200)))
    assert calls[0] == 5
    with get_engine(empty_db).connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM events")).scalar_one() == 0
    assert index_defs(empty_db) == before_ix
    assert constraints(empty_db) == before_con
    assert copy_threads() == []


@postgres_only
def test_a_statement_meanwhile_sees_every_queued_row_and_a_rollback_drops_them(empty_db: str) -> None:
    assert run(empty_db, events_csv(many(2))).ok
    with session_scope(empty_db) as s:
        account = s.connection().exec_driver_sql("SELECT MIN(id) FROM accounts").scalar_one()
    t0 = pd.Timestamp("2026-04-01", tz="UTC")

    def frame(start: int, n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "account_id": [account] * n,
                "event": ["piped"] * n,
                "ts": [t0 + pd.Timedelta(minutes=start + i) for i in range(n)],
                "user_id": [""] * n,
                "properties": [None] * n,
            }
        )

    with session_scope(empty_db) as s:
        assert bulk.drop_natural_key(s)
        for start in range(0, 5000, 500):
            assert bulk.insert_events(s, frame(start, 500), keyless=True) == 500
        assert copy_threads()  # still writing, or waiting for more
        n, first, last = (
            s.connection().exec_driver_sql("SELECT COUNT(*), MIN(ts), MAX(ts) FROM events WHERE event = 'piped'").one()
        )
        assert (n, first, last) == (5000, t0, t0 + pd.Timedelta(minutes=4999))
        assert copy_threads() == []
        assert bulk.insert_events(s, frame(5000, 10), keyless=True) == 10  # a new writer thread
        s.rollback()
        assert copy_threads() == []
    with get_engine(empty_db).connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM events WHERE event = 'piped'")).scalar_one() == 0
    assert "uq_events_natural" in constraints(empty_db)


def test_the_timestamp_text_is_strftimes_to_the_microsecond() -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from db.session import SQLITE_TS

    # The frames' timestamps are pandas' (nanoseconds: years 1677 to 2262).
    LOW, HIGH = pd.Timestamp("1678-01-01").value // 1000, pd.Timestamp("2262-01-01").value // 1000
    rng = np.random.default_rng(16)
    edges = [0, -1, 1, -500_000, LOW, HIGH, 1_780_000_000_123_456]
    micros = np.concatenate([edges, rng.integers(LOW, HIGH, 100_000)])
    ts = pd.Series(pd.to_datetime(micros, unit="us", utc=True))
    got = bulk._ts_text(ts)
    assert got == pc.strftime(pa.array(micros.astype("datetime64[us]")), format="%Y-%m-%d %H:%M:%S").to_pylist()
    assert got[:2] == ["1970-01-01 00:00:00.000000", "1969-12-31 23:59:59.999999"]
    assert got[6] == pd.Timestamp(1_780_000_000_123_456, unit="us").strftime(SQLITE_TS)
    assert (
        bulk._copy_csv(
            pd.DataFrame({"account_id": [7], "event": ["e"], "user_id": [""], "properties": [None]}), ts[2:3]
        )
        == b'7,"e","1970-01-01 00:00:00.000001+00","",\n'
    )
