"""The columnar copy (engine/copy.py) follows the database: built fresh, appended to when
events are only added, rebuilt when anything else changed, left usable by a crash
mid-sync, and never served when behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

import engine
from db import facts as q
from db.models import Event
from db.session import get_engine
from engine import copy as cp
from tests.conftest import ON_POSTGRES

END = datetime(2026, 7, 1)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The copy in a directory of its own (on SQLite and PostgreSQL alike)."""
    d = tmp_path / "copy"
    monkeypatch.setenv("ANALYTICS_URL", f"duckdb://{d}")
    return d


def manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def direct(url: str, func, monkeypatch: pytest.MonkeyPatch, **kw) -> pd.DataFrame:
    """The same fact read from the database itself."""
    with monkeypatch.context() as mp:
        mp.setenv("ANALYTICS_URL", "direct")
        with get_engine(url).connect() as c:
            return func(c, **kw)


def via_engine(url: str, func, **kw) -> pd.DataFrame:
    assert isinstance(engine.analytics_for(url), engine.DuckDBCopy)
    with get_engine(url).connect() as c:
        return func(c, **kw)


def names(url: str, reader=via_engine, *args) -> dict[str, int]:
    df = reader(url, q.event_names, *args)
    return dict(zip(df["event"], df["events"], strict=True))


def add_event(url: str, account_id: int, event: str, ts: datetime) -> None:
    with get_engine(url).begin() as c:
        c.execute(
            Event.__table__.insert(),
            [{"account_id": account_id, "event": event, "ts": ts.replace(tzinfo=UTC), "user_id": "u-new"}],
        )


BUMP = (
    "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS VARCHAR(200)) "
    "WHERE key IN ('data_version', 'core_version', 'copy_version')"
)


def db_counts(url: str) -> int:
    with get_engine(url).connect() as c:
        return int(c.execute(text("SELECT COUNT(*) FROM events")).scalar_one())


def test_a_fresh_copy_holds_every_event_sorted_by_account_and_time(small_db: str, store: Path, monkeypatch) -> None:
    engine.sync_after_write(small_db)
    m = manifest(store)
    assert m["rows"]["events"] == db_counts(small_db) > 0
    ev = pd.read_parquet(store / m["generation"] / m["segments"][0])
    assert str(ev["ts"].dtype).startswith("datetime64")
    assert ev[["account_id", "ts"]].equals(ev.sort_values(["account_id", "ts"])[["account_id", "ts"]])
    assert names(small_db) == names(small_db, direct, monkeypatch)


def test_new_events_are_appended_as_a_segment(small_db: str, store: Path, monkeypatch) -> None:
    engine.sync_after_write(small_db)
    before = manifest(store)
    add_event(small_db, 1, "zz_appended", datetime(2026, 6, 30, 23, 59, 59, 123456))
    engine.sync_after_write(small_db)
    after = manifest(store)
    assert after["generation"] == before["generation"]
    assert len(after["segments"]) == len(before["segments"]) + 1
    assert after["rows"]["events"] == before["rows"]["events"] + 1
    assert names(small_db)["zz_appended"] == 1
    last = via_engine(small_db, q.last_events, account_ids=[1], as_of_end=END)
    assert last["last_event"].iloc[0] == pd.Timestamp("2026-06-30 23:59:59.123456")
    assert last.equals(direct(small_db, q.last_events, monkeypatch, account_ids=[1], as_of_end=END))


def test_a_deleted_event_rebuilds_the_copy(small_db: str, store: Path, monkeypatch) -> None:
    engine.sync_after_write(small_db)
    before = manifest(store)
    with get_engine(small_db).begin() as c:
        c.execute(text("DELETE FROM events WHERE id = (SELECT MAX(id) - 10 FROM events)"))
        c.execute(text(BUMP))  # as every write through the app does
    assert names(small_db) == names(small_db, direct, monkeypatch)  # the read itself syncs
    after = manifest(store)
    assert after["generation"] != before["generation"]
    assert after["rows"]["events"] == before["rows"]["events"] - 1
    assert not (store / before["generation"]).exists() or len(list(store.glob("gen-*"))) <= 2


def test_a_health_snapshot_does_not_make_the_copy_sync_again(small_db: str, store: Path, monkeypatch) -> None:
    """A snapshot moves the data version (the pages' memo) but not what the copy holds: the
    next read uses the copy as it is (seeding 26 weeks of history re-synced it 27 times)."""
    from datetime import date

    from services.health import snapshot

    engine.sync_after_write(small_db)
    before = manifest(store)
    snapshot(url=small_db, as_of=date(2026, 6, 30))
    assert names(small_db) == names(small_db, direct, monkeypatch)
    assert manifest(store)["seq"] == before["seq"]
    # An import-like write (the copy version moves) still syncs.
    with get_engine(small_db).begin() as c:
        c.execute(text(BUMP))
    assert names(small_db) == names(small_db, direct, monkeypatch)
    assert manifest(store)["seq"] == before["seq"] + 1


def test_a_changed_milestone_reaches_the_copy(small_db: str, store: Path, monkeypatch) -> None:
    engine.sync_after_write(small_db)
    kw = {"names": [], "milestone_keys": ["kickoff_complete"], "strict": False}
    with get_engine(small_db).begin() as c:
        c.execute(text("UPDATE account_milestones SET completed_at = NULL WHERE milestone_key = 'kickoff_complete'"))
        c.execute(text(BUMP))
    assert via_engine(small_db, q.step_occurrences, **kw).empty
    assert direct(small_db, q.step_occurrences, monkeypatch, **kw).empty


def test_a_stale_copy_is_never_served(small_db: str, store: Path, monkeypatch) -> None:
    engine.sync_after_write(small_db)
    old = manifest(store)
    add_event(small_db, 2, "zz_late", datetime(2026, 6, 30, 23, 30))
    # No sync_after_write: the write bypassed the import. The read sees it anyway.
    act = via_engine(small_db, q.activity, as_of_end=END, users_days=30, active_days_window=28)
    ref = direct(small_db, q.activity, monkeypatch, as_of_end=END, users_days=30, active_days_window=28)
    pd.testing.assert_frame_equal(
        act.sort_values("account_id", ignore_index=True), ref.sort_values("account_id", ignore_index=True)
    )
    assert act.set_index("account_id").loc[2, "last_event"] == pd.Timestamp("2026-06-30 23:30")
    assert manifest(store)["rows"]["events"] == old["rows"]["events"] + 1


def test_a_crash_mid_sync_leaves_the_old_copy_and_reads_stay_right(small_db: str, store: Path, monkeypatch) -> None:
    engine.sync_after_write(small_db)
    old = manifest(store)
    with get_engine(small_db).begin() as c:
        c.execute(text("DELETE FROM events WHERE event = 'login' AND account_id = 3"))
        c.execute(text(BUMP))
    writes = []

    def dies_after_one_file(con, select, path):
        if writes:
            raise OSError("disk full (simulated crash mid-sync)")
        writes.append(path)
        real(con, select, path)

    real = cp._write_parquet
    monkeypatch.setattr(cp, "_write_parquet", dies_after_one_file)
    # The sync fails half-way: the manifest still names the old, complete generation...
    assert manifest(store) == old
    # ...and a read that cannot sync falls back to the database: right, never stale.
    assert names(small_db) == names(small_db, direct, monkeypatch)
    assert manifest(store) == old
    assert writes and writes[0].exists()  # the half-written generation is on disk, unused
    monkeypatch.setattr(cp, "_write_parquet", real)
    assert names(small_db) == names(small_db, direct, monkeypatch)
    new = manifest(store)
    assert new["generation"] != old["generation"] and new["rows"]["events"] == db_counts(small_db)


def test_a_corrupt_manifest_or_missing_file_is_rebuilt(small_db: str, store: Path, monkeypatch) -> None:
    engine.sync_after_write(small_db)
    (store / "manifest.json").write_text("{not json")
    assert names(small_db) == names(small_db, direct, monkeypatch)
    m = manifest(store)
    (store / m["generation"] / m["segments"][0]).unlink()
    assert names(small_db) == names(small_db, direct, monkeypatch)
    assert manifest(store)["rows"]["events"] == db_counts(small_db)


def test_many_appends_are_compacted_into_one_segment(small_db: str, store: Path) -> None:
    engine.sync_after_write(small_db)
    for i in range(cp.COMPACT_AFTER + 1):
        add_event(small_db, 1 + i % 5, "zz_many", datetime(2026, 6, 10, 8, i))
        engine.sync_after_write(small_db)
    m = manifest(store)
    assert len(m["segments"]) <= cp.COMPACT_AFTER
    assert m["rows"]["events"] == db_counts(small_db)
    assert names(small_db)["zz_many"] == cp.COMPACT_AFTER + 1


def test_the_default_engine_follows_the_database(small_db: str, monkeypatch) -> None:
    """SQLite: DuckDB over a copy beside the file, built by the seeding; PostgreSQL: pushdown."""
    monkeypatch.delenv("ANALYTICS_URL", raising=False)
    eng = engine.analytics_for(small_db)
    if ON_POSTGRES:
        assert isinstance(eng, engine.PostgresPushdown)
    else:
        assert isinstance(eng, engine.DuckDBCopy)
        assert eng.copy.dir.name.endswith(".analytics")
        m = eng.copy.manifest()
        assert m is not None and m["rows"]["events"] == db_counts(small_db)  # seed_demo synced it


@pytest.mark.parametrize("setting", ["mysql://x/y", "duckdb:relative", "nonsense"])
def test_an_unknown_analytics_url_fails_closed(small_db: str, monkeypatch, setting: str) -> None:
    monkeypatch.setenv("ANALYTICS_URL", setting)
    with pytest.raises(engine.AnalyticsConfigError, match="ANALYTICS_URL"):
        engine.analytics_for(small_db)


def test_last_events_of_many_accounts_from_one_scan(small_db: str, store: Path, monkeypatch) -> None:
    """A thousand ids or more: every account's last event, selected (no IN list to parse)."""
    ids = list(range(1, 1501))  # every account of the small database, and ids of none
    got = via_engine(small_db, q.last_events, account_ids=ids, as_of_end=END).sort_values("account_id")
    want = direct(small_db, q.last_events, monkeypatch, account_ids=ids, as_of_end=END).sort_values("account_id")
    assert len(want) > 5
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    few = via_engine(small_db, q.last_events, account_ids=ids[:3], as_of_end=END)
    assert sorted(few["account_id"]) == sorted(set(ids[:3]) & set(want["account_id"]))
