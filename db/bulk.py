"""Bulk writers shared by the importer and the demo loader.

Entity files are upserted by natural key with a diff, so a re-import changes nothing
and reports what it inserted, updated and left unchanged. Events are appended with
ON CONFLICT DO NOTHING on their natural key (COPY into a temporary table on
PostgreSQL), which makes re-imports idempotent and counts duplicates skipped. A large
load into PostgreSQL drops the secondary events indexes and builds them again once at
the end, in the same transaction (the natural key's unique index stays, for dedup).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Index, Table, bindparam, select, tuple_, update
from sqlmodel import Session

from db.models import ChangeLog, Event, utcnow

SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"

# Account fields written from accounts.csv (and by the demo loader), besides the key.
ACCOUNT_COLUMNS = (
    "name",
    "segment",
    "contract_start",
    "industry",
    "employees",
    "plan",
    "channel",
    "region",
    "arr",
    "licensed_seats",
    "csm_id",
)


@dataclass
class UpsertResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    new_ids: dict | None = None  # natural key -> id for inserted rows


def _norm(v: Any) -> Any:
    """Normalise a cell for comparison and for binding (NaN/NaT -> None, numpy -> python)."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if isinstance(v, np.generic):
        v = v.item()
        if isinstance(v, float) and math.isnan(v):
            return None
    return v


def _same(a: Any, b: Any) -> bool:
    a, b = _norm(a), _norm(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b
    if isinstance(a, date) and isinstance(b, date):
        return a == b
    return a == b


def upsert(
    session: Session,
    table: Table,
    rows: pd.DataFrame,
    *,
    key: Sequence[str],
    columns: Sequence[str],
    actor: str,
    log_entity: str | None = None,
    log_key: str | None = None,
    account_col: str | None = None,
    on_update: dict[str, Any] | None = None,
    return_ids: bool = False,
    write: bool = True,
) -> UpsertResult:
    """Insert new rows and update changed ones (only `columns` are compared and written).
    write=False: only read and count (a dry run takes no write lock)."""
    result = UpsertResult(new_ids={})
    if rows.empty:
        return result
    key = list(key)
    cols = [c for c in columns if c in rows.columns and c not in key]
    keys_in = [tuple(_norm(v) for v in t) for t in rows[key].itertuples(index=False, name=None)]
    existing: dict[tuple, dict] = {}
    select_cols = [table.c.id, *[table.c[k] for k in key], *[table.c[c] for c in cols]]
    if "version" in table.c and "version" not in cols:
        select_cols.append(table.c.version)
    wanted = set(keys_in)
    # Many keys: one scan of the table beats many IN lists.
    queries = (
        [select(*select_cols)]
        if len(keys_in) > 2000
        else [select(*select_cols).where(_key_in(table, key, chunk)) for chunk in _chunks(keys_in, 500)]
    )
    for q in queries:
        for r in session.execute(q).mappings():
            k = tuple(_norm(r[c]) for c in key)
            if k in wanted:
                existing[k] = dict(r)

    to_insert: list[dict] = []
    to_update: list[dict] = []
    logs: list[dict] = []
    records = rows[key + cols].to_dict("records")
    for k, rec in zip(keys_in, records, strict=True):
        rec = {c: _norm(v) for c, v in rec.items()}
        old = existing.get(k)
        if old is None:
            to_insert.append(rec)
            continue
        changed = {c: rec[c] for c in cols if not _same(rec[c], old[c])}
        if not changed:
            result.unchanged += 1
            continue
        upd = {"_id": old["id"], **changed}
        if on_update:
            upd.update({c: (f(old) if callable(f) else f) for c, f in on_update.items()})
        to_update.append(upd)
        if log_entity:
            for c, v in changed.items():
                logs.append(
                    {
                        "at": utcnow(),
                        "actor": actor,
                        "entity": log_entity,
                        "entity_id": str(rec[log_key] if log_key else old["id"]),
                        "account_id": rec.get(account_col) if account_col else None,
                        "field": c,
                        "old": _text(old[c]),
                        "new": _text(v),
                        "context": "import",
                    }
                )
    if not write:
        result.inserted, result.updated = len(to_insert), len(to_update)
        return result
    if to_insert:
        session.execute(table.insert(), to_insert)
        result.inserted = len(to_insert)
        if return_ids:
            ins_keys = [tuple(r[k] for k in key) for r in to_insert]
            for chunk in _chunks(ins_keys, 500):
                q = select(table.c.id, *[table.c[k] for k in key]).where(_key_in(table, key, chunk))
                for r in session.execute(q).mappings():
                    result.new_ids[tuple(_norm(r[k]) for k in key)] = r["id"]
    if to_update:
        by_shape: dict[tuple, list[dict]] = {}
        for u in to_update:
            by_shape.setdefault(tuple(sorted(u)), []).append(u)
        for shape, batch in by_shape.items():
            stmt = (
                update(table)
                .where(table.c.id == bindparam("_id"))
                .values({c: bindparam(c) for c in shape if c != "_id"})
            )
            session.connection().execute(stmt, batch)
        result.updated = len(to_update)
    if logs:
        session.execute(ChangeLog.__table__.insert(), logs)
    return result


def _key_in(table: Table, key: Sequence[str], chunk: Sequence[tuple]):
    if len(key) == 1:
        return table.c[key[0]].in_([k[0] for k in chunk])
    return tuple_(*[table.c[k] for k in key]).in_(list(chunk))


def _text(v: Any) -> str | None:
    v = _norm(v)
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def _chunks(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _ts_text(ts: pd.Series, fmt: str) -> list[str]:
    """UTC timestamps as text (microseconds, as SQLite stores them), formatted in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micro = pa.array(ts.dt.tz_localize(None).to_numpy(dtype="datetime64[us]"), type=pa.timestamp("us"))
    return pc.strftime(micro, format=fmt).to_pylist()


def insert_events(session: Session, frame: pd.DataFrame) -> int:
    """Append events (account_id as the internal id); return how many were new.

    `frame` columns: account_id (int), event, ts (tz-aware UTC), user_id ('' if none),
    properties (str or None). SQLite: one executemany of prebuilt tuples; PostgreSQL: COPY
    (CSV) into a temporary table, then one INSERT ... ON CONFLICT DO NOTHING.
    """
    if frame.empty:
        return 0
    conn = session.connection()
    dbapi = conn.connection.dbapi_connection
    ts = pd.to_datetime(frame["ts"], utc=True)
    props = frame["properties"].astype(object).where(frame["properties"].notna(), None).tolist()
    accounts = frame["account_id"].astype("int64").tolist()
    events = frame["event"].tolist()
    users = frame["user_id"].tolist()
    cur = dbapi.cursor()
    try:
        if conn.dialect.name == "sqlite":
            # Arrow's %S prints the microseconds of a timestamp[us]: SQLITE_TS exactly.
            rows = zip(accounts, events, _ts_text(ts, "%Y-%m-%d %H:%M:%S"), users, props, strict=True)
            cur.executemany(
                "INSERT INTO events (account_id, event, ts, user_id, properties) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                rows,
            )
            return int(cur.rowcount)
        cur.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS _import_events "
            "(account_id integer, event text, ts timestamptz, user_id text, properties text) ON COMMIT DROP"
        )
        cur.execute("TRUNCATE _import_events")
        csv_text = pd.DataFrame(
            {
                "a": accounts,
                "e": events,
                "t": [t + "+00" for t in _ts_text(ts, "%Y-%m-%d %H:%M:%S")],
                "u": users,
                "p": props,
            }
        ).to_csv(index=False, header=False, lineterminator="\r\n")
        # CSV: an unquoted empty field is NULL (properties), but user_id '' stays ''. With
        # CRLF rows the writer quotes every field holding a carriage return or a newline.
        with cur.copy(
            "COPY _import_events (account_id, event, ts, user_id, properties) FROM STDIN "
            "(FORMAT csv, FORCE_NOT_NULL (user_id))"
        ) as copy:
            copy.write(csv_text.encode("utf-8"))
        cur.execute(
            "INSERT INTO events (account_id, event, ts, user_id, properties) "
            "SELECT account_id, event, ts, user_id, properties FROM _import_events "
            "ON CONFLICT DO NOTHING"
        )
        return int(cur.rowcount)
    finally:
        cur.close()


# ----------------------------------------------------------------------------- large loads

# A load of at least this many events into PostgreSQL drops the events table's secondary
# indexes and builds them again at the end (in the same transaction), when that is cheaper
# than maintaining them row by row: the rows loaded outnumber those already there.
LARGE_LOAD_EVENTS = 1_000_000


def secondary_event_indexes(dialect: str) -> list[Index]:
    """The events indexes this dialect has, besides the primary key and the natural key."""
    out = []
    for ix in EVENTS_TABLE.indexes:
        cond = getattr(ix, "_ddl_if", None)
        if cond is None or cond.dialect in (None, dialect):
            out.append(ix)
    return sorted(out, key=lambda ix: ix.name or "")


def stored_event_estimate(session: Session) -> int:
    """About how many events are stored (PostgreSQL's planner estimate: no table scan)."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return int(conn.exec_driver_sql("SELECT COUNT(*) FROM events").scalar_one())
    est = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE oid = 'events'::regclass").scalar_one()
    return max(int(est or 0), 0)


def drop_event_indexes(session: Session) -> list[Index]:
    """Drop the events table's secondary indexes (PostgreSQL, inside the caller's
    transaction: a rollback brings them back). Returns what to rebuild."""
    conn = session.connection()
    dropped = secondary_event_indexes(conn.dialect.name)
    for ix in dropped:
        conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{ix.name}"')
    return dropped


def rebuild_event_indexes(session: Session, indexes: Sequence[Index]) -> None:
    """Create the dropped indexes again (same definitions as the model's)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    for ix in indexes:
        ix.create(conn, checkfirst=False)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE events")


EVENTS_TABLE: Table = Event.__table__  # type: ignore[assignment]
