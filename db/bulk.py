"""Bulk writers shared by the importer and the demo loader.

Entity files are upserted by natural key with a diff, so a re-import changes nothing
and reports what it inserted, updated and left unchanged. Events are appended with
ON CONFLICT DO NOTHING on their natural key (COPY into a temporary table on
PostgreSQL), which makes re-imports idempotent and counts duplicates skipped. A large
load into PostgreSQL drops the secondary events indexes, the natural key's unique
constraint and the account_id foreign key, streams the batches by COPY from a writer
thread (the server stores one batch while the importer reads the next), removes the
duplicates in one pass at the end and builds it all again, in the same transaction (a
rollback restores them).

ONBOARDING_BULK_TIMINGS=1 prints the large load's phases (seconds) to stderr.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Index, Integer, Table, bindparam, event, func, select, tuple_, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import Session

from db.models import ChangeLog, Event, utcnow

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
    insert_only: Sequence[str] = (),
) -> UpsertResult:
    """Insert new rows and update changed ones (only `columns` are compared and written;
    `insert_only` columns are written on new rows only). New rows go in by one bulk insert
    (`insert_rows`); changed rows are updated by id in one executemany per shape.
    write=False: only read and count (a dry run takes no write lock)."""
    result = UpsertResult(new_ids={})
    if rows.empty:
        return result
    key = list(key)
    cols = [c for c in columns if c in rows.columns and c not in key]
    keys_in = list(zip(*[_py_list(rows[k]) for k in key], strict=True))
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

    to_insert: list[int] = []  # positions of the new rows
    to_update: list[dict] = []
    logs: list[dict] = []
    values = {c: _py_list(rows[c]) for c in cols}
    for i, k in enumerate(keys_in):
        old = existing.get(k)
        if old is None:
            to_insert.append(i)
            continue
        changed = {c: values[c][i] for c in cols if not _same(values[c][i], old[c])}
        if not changed:
            result.unchanged += 1
            continue
        upd = {"_id": old["id"], **changed}
        if on_update:
            upd.update({c: (f(old) if callable(f) else f) for c, f in on_update.items()})
        to_update.append(upd)
        if log_entity:
            ext = _value(values, key, k, i, log_key) if log_key else None
            for c, v in changed.items():
                logs.append(
                    {
                        "at": utcnow(),
                        "actor": actor,
                        "entity": log_entity,
                        "entity_id": str(ext if log_key else old["id"]),
                        "account_id": _value(values, key, k, i, account_col) if account_col else None,
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
        extra = [c for c in insert_only if c in rows.columns and c not in key and c not in cols]
        for c in extra:
            values[c] = _py_list(rows[c])
        names = [*key, *cols, *extra]
        columns_in = {
            **{c: [k[j] for k in (keys_in[i] for i in to_insert)] for j, c in enumerate(key)},
            **{c: [values[c][i] for i in to_insert] for c in [*cols, *extra]},
        }
        before = session.execute(select(func.max(table.c.id))).scalar() if return_ids else None
        insert_rows(session, table, columns_in, names)
        result.inserted = len(to_insert)
        if return_ids:
            ins_keys = [keys_in[i] for i in to_insert]
            result.new_ids = _ids_of(session, table, key, ins_keys, above=int(before or 0))
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


def _py_list(s: pd.Series) -> list:
    """A column as Python values, as `_norm` gives them (NaN/NaT/NA -> None, numpy -> python)."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iub":
        return s.tolist()
    if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
        return [None if v != v else v for v in s.tolist()]
    vals = s.astype(object).where(s.notna(), None).tolist()
    return [v if v is None or v.__class__ is str else _norm(v) for v in vals]


def _value(values: dict[str, list], key: Sequence[str], k: tuple, i: int, col: str) -> Any:
    """Row i's value of `col` (a key part or a compared column; None if neither)."""
    if col in key:
        return k[list(key).index(col)]
    return values[col][i] if col in values else None


def insert_rows(session: Session, table: Table, columns: dict[str, list], names: Sequence[str]) -> None:
    """Insert rows given column-wise, with the same values SQLAlchemy's insert would write
    (the columns' bind processing, Python-side defaults for the columns not given), but
    without per-row statement work: SQLite gets one executemany of tuples, PostgreSQL one
    COPY into the table (constraints are checked as for an INSERT)."""
    conn = session.connection()
    dialect = conn.dialect
    n = len(columns[names[0]]) if names else 0
    if n == 0:
        return
    cols = list(names)
    data: list[list] = []
    for c in cols:
        proc = table.c[c].type._cached_bind_processor(dialect)
        vals = columns[c]
        if isinstance(table.c[c].type, Integer):  # a nullable id column mapped through floats (1.0)
            vals = [int(v) if isinstance(v, float) and v.is_integer() else v for v in vals]
        data.append([None if v is None else proc(v) for v in vals] if proc else list(vals))
    for c in table.c:
        if c.name in cols or c.primary_key or c.default is None:
            continue
        d = c.default
        proc = c.type._cached_bind_processor(dialect)
        if d.is_scalar:
            v = d.arg
            data.append([proc(v) if proc and v is not None else v] * n)
        elif d.is_callable:
            vals = [d.arg(None) for _ in range(n)]
            data.append([proc(v) if proc and v is not None else v for v in vals])
        else:  # a SQL expression default: let SQLAlchemy handle it
            session.execute(table.insert(), [{c: columns[c][i] for c in names} for i in range(n)])
            return
        cols.append(c.name)
    dbapi = conn.connection.dbapi_connection
    cur = dbapi.cursor()
    quoted = ", ".join(f'"{c}"' for c in cols)
    if dialect.name == "postgresql":
        sql = f'COPY "{table.name}" ({quoted}) FROM STDIN'
    else:
        sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join("?" for _ in cols)})'
    try:
        with _as_sqlalchemy_errors(dialect, sql):
            if dialect.name == "postgresql":
                with cur.copy(sql) as copy:
                    for row in zip(*data, strict=True):
                        copy.write_row(row)
            else:
                cur.executemany(sql, zip(*data, strict=True))
    finally:
        cur.close()


@contextlib.contextmanager
def _as_sqlalchemy_errors(dialect: Any, statement: str):
    """The driver's errors as SQLAlchemy raises them for its own statements (the importer
    turns those into a message for the user: a full disk, a lock timeout ...)."""
    base = dialect.loaded_dbapi.Error
    try:
        yield
    except base as exc:
        raise DBAPIError.instance(statement, None, exc, base) from exc


def _ids_of(session: Session, table: Table, key: Sequence[str], keys: list[tuple], *, above: int) -> dict[tuple, int]:
    """natural key -> id of these just inserted rows: those with an id above `above` (the
    largest before the insert), read in one range scan of the primary key."""
    wanted = set(keys)
    out: dict[tuple, int] = {}
    q = select(table.c.id, *[table.c[k] for k in key]).where(table.c.id > above)
    for r in session.execute(q):
        k = tuple(v if v.__class__ in (str, int) else _norm(v) for v in r[1:])
        if k in wanted:
            out[k] = r[0]
    if len(out) < len(wanted) and above:  # ids not from a rising sequence: look everywhere
        return _ids_of(session, table, key, keys, above=0)
    return out


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


def _ts_text(ts: pd.Series) -> list[str]:
    """UTC timestamps as text (microseconds, as SQLite stores them), formatted in Arrow."""
    return _micro_text(ts).to_pylist()


def _micro_text(ts: pd.Series) -> Any:
    """UTC timestamps as Arrow strings 'YYYY-MM-DD HH:MM:SS.ffffff' (always six digits):
    Arrow's cast of a timestamp[us] to string, the text of strftime('%Y-%m-%d %H:%M:%S')
    (whose %S prints the microseconds) at a thirtieth of its cost."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micro = pa.array(ts.dt.tz_localize(None).to_numpy(dtype="datetime64[us]"), type=pa.timestamp("us"))
    return pc.cast(micro, pa.string())


def insert_events(session: Session, frame: pd.DataFrame, *, keyless: bool = False) -> int:
    """Append events (account_id as the internal id); return how many were new.

    `frame` columns: account_id (int), event, ts (tz-aware UTC), user_id ('' if none),
    properties (str or None). SQLite: one executemany of prebuilt tuples; PostgreSQL: COPY
    (CSV, written by Arrow) into a temporary table, then one INSERT ... ON CONFLICT DO
    NOTHING; or, keyless=True (a large load with the natural key dropped, see
    `drop_natural_key`), COPY straight into the events table, every row counted new: the
    batch is encoded here and queued for a writer thread that COPYs it while the caller
    goes on (`finish_event_copy` waits for the queued batches and raises their error).
    """
    if frame.empty:
        return 0
    conn = session.connection()
    dbapi = conn.connection.dbapi_connection
    ts = pd.to_datetime(frame["ts"], utc=True)
    cur = dbapi.cursor()
    try:
        if conn.dialect.name == "sqlite":
            props = frame["properties"].astype(object).where(frame["properties"].notna(), None).tolist()
            # Six digits of microseconds always: SQLITE_TS exactly.
            rows = zip(
                frame["account_id"].astype("int64").tolist(),
                frame["event"].tolist(),
                _ts_text(ts),
                frame["user_id"].tolist(),
                props,
                strict=True,
            )
            cur.executemany(
                "INSERT INTO events (account_id, event, ts, user_id, properties) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                rows,
            )
            return int(cur.rowcount)
        if keyless:  # queued for the writer thread (see _PipelinedCopy)
            _pipelined_copy(conn).write(_copy_csv(frame, ts))
            return len(frame)
        payload = _copy_csv(frame, ts)
        columns = "(account_id, event, ts, user_id, properties)"
        # CSV as Arrow writes it: every text value quoted ("" is an empty string), a NULL
        # (properties) an unquoted empty field; quoted values may hold newlines.
        cur.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS _import_events "
            "(account_id integer, event text, ts timestamptz, user_id text, properties text) ON COMMIT DROP"
        )
        cur.execute("TRUNCATE _import_events")
        with cur.copy(f"COPY _import_events {columns} FROM STDIN (FORMAT csv)") as copy:
            copy.write(payload)
        cur.execute(
            f"INSERT INTO events {columns} SELECT account_id, event, ts, user_id, properties FROM _import_events "
            "ON CONFLICT DO NOTHING"
        )
        return int(cur.rowcount)
    finally:
        cur.close()


def _copy_csv(frame: pd.DataFrame, ts: pd.Series) -> bytes:
    """The rows as COPY's CSV, built in Arrow: ts as UTC text with its offset (microseconds),
    every text value quoted, a missing properties value NULL (an unquoted empty field)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    ts_text = pc.binary_join_element_wise(_micro_text(ts), "+00", "")
    props = frame["properties"]
    table = pa.table(
        {
            "a": pa.array(frame["account_id"].to_numpy(dtype="int64")),
            "e": pa.array(frame["event"].to_numpy(dtype=object), type=pa.string()),
            "t": ts_text,
            "u": pa.array(frame["user_id"].to_numpy(dtype=object), type=pa.string()),
            "p": pa.array(props.astype(object).where(props.notna(), None).to_numpy(), type=pa.string()),
        }
    )
    sink = pa.BufferOutputStream()
    pacsv.write_csv(
        table,
        sink,
        write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed", delimiter=","),
    )
    return sink.getvalue().to_pybytes()


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


NATURAL_KEY = "uq_events_natural"
_DROPPED_FKS = "bulk.events_foreign_keys"  # session.info: the foreign keys drop_natural_key dropped


def drop_natural_key(session: Session) -> bool:
    """Drop the events' natural-key constraint and their foreign keys (account_id) for a
    large PostgreSQL load (in the caller's transaction): rows then go in without a
    unique-index probe and a foreign-key trigger each (the trigger's lookup of the account
    cost more than the rest of the COPY: 2M events 32 s with it, 9 s without), and
    `restore_natural_key` removes the duplicates afterwards in one pass and adds both back.
    (Every account_id was checked against the accounts before it was written; adding the
    foreign key back checks them again, in one join.) Dropping a foreign key takes an
    exclusive lock on accounts until the import ends, as dropping the indexes takes one on
    events."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return False
    fks = conn.exec_driver_sql(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'events'::regclass AND contype = 'f' ORDER BY conname"
    ).all()
    with _phase("drop constraints"):
        conn.exec_driver_sql(f'ALTER TABLE events DROP CONSTRAINT "{NATURAL_KEY}"')
        for name, _definition in fks:
            conn.exec_driver_sql(f'ALTER TABLE events DROP CONSTRAINT "{name}"')
    session.info[_DROPPED_FKS] = [tuple(r) for r in fks]
    return True


def restore_natural_key(session: Session) -> int:
    """Delete every event that repeats an earlier one (same account, event, ts and user_id;
    the smallest id stays, which is the row ON CONFLICT DO NOTHING would have kept: stored
    rows and earlier rows of the file come first), add the constraint back and the foreign
    keys `drop_natural_key` dropped. Returns how many were deleted."""
    finish_event_copy(session)
    conn = session.connection()
    conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
    removed = _add_natural_key(conn)
    for name, definition in session.info.pop(_DROPPED_FKS, []):
        with _phase(f"add {name}"):
            conn.exec_driver_sql(f'ALTER TABLE events ADD CONSTRAINT "{name}" {definition}')
    return removed


def _add_natural_key(conn: Any) -> int:
    add = f'ALTER TABLE events ADD CONSTRAINT "{NATURAL_KEY}" UNIQUE (account_id, event, ts, user_id)'
    # Most loads repeat nothing (an export has no duplicates): building the constraint's
    # index is then the whole check. Only when it fails are the repeats looked for.
    savepoint = conn.begin_nested()
    try:
        with _phase(f"add {NATURAL_KEY}"):
            conn.exec_driver_sql(add)
    except DBAPIError as exc:
        savepoint.rollback()
        if getattr(exc.orig, "sqlstate", None) != "23505":  # not a unique violation
            raise
    else:
        savepoint.commit()
        return 0
    with _phase("delete repeats"):
        removed = conn.exec_driver_sql(
            "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER "
            "(PARTITION BY account_id, event, ts, user_id ORDER BY id) AS n FROM events) AS d WHERE d.n > 1)"
        ).rowcount
    with _phase(f"add {NATURAL_KEY}"):
        conn.exec_driver_sql(add)
    return int(removed or 0)


# Sort memory for the index builds of a large load (the server's, per statement).
BUILD_MEMORY = "256MB"


def rebuild_event_indexes(session: Session, indexes: Sequence[Index]) -> None:
    """Create the dropped indexes again (same definitions as the model's)."""
    finish_event_copy(session)
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
    for ix in indexes:
        with _phase(f"create {ix.name}"):
            ix.create(conn, checkfirst=False)
    if conn.dialect.name == "postgresql":
        with _phase("analyze"):
            conn.exec_driver_sql("ANALYZE events")


# ----------------------------------------------------------------------------- pipelined COPY

# Batches encoded and waiting for the writer thread (besides the one it sends): the
# importer runs at most this far ahead of the server.
COPY_QUEUE_BATCHES = 2
_COPY_SQL = "COPY events (account_id, event, ts, user_id, properties) FROM STDIN (FORMAT csv)"
_PIPE = "bulk.pipelined_copy"  # SQLAlchemy Connection.info: the open _PipelinedCopy
_ABORT = object()


class _PipelinedCopy:
    """A writer thread that COPYs queued event batches into the events table, each batch one
    COPY statement (as before: statement_timeout applies to each), on the import's own
    connection and transaction, while the importer's thread reads, validates and encodes
    the next batches (Arrow and psycopg release the GIL for their work).

    Nothing else may use the connection meanwhile: any statement on it (a commit, a
    savepoint ...) first waits for the queued batches (and raises their error, as the
    driver's own error in SQLAlchemy's form), a rollback first discards them, so the
    connection is never used by two threads at once and the batches are written in order
    before anything that follows them."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._dbapi = conn.connection.dbapi_connection
        self._base_error = conn.dialect.loaded_dbapi.Error
        self._queue: queue.Queue = queue.Queue(maxsize=COPY_QUEUE_BATCHES)
        self._error: BaseException | None = None
        self._closed = False
        self.waited = 0.0  # seconds the importer waited for room in the queue
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="events-copy", daemon=True)
        self._thread.start()
        conn.info[_PIPE] = self
        event.listen(conn, "before_cursor_execute", self._before_statement)
        event.listen(conn, "commit", self._before_statement)
        event.listen(conn, "rollback", self._before_rollback)

    def _run(self) -> None:
        item: Any = b""  # until the first batch comes
        try:
            cur = self._dbapi.cursor()
            try:
                while (item := self._queue.get()) is not None and item is not _ABORT:
                    with cur.copy(_COPY_SQL) as copy:
                        copy.write(item)
            finally:
                cur.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the importer's thread
            self._error = exc
            while item is not None and item is not _ABORT:  # the producer must never block
                item = self._queue.get()

    def write(self, payload: bytes) -> None:
        if self._error is not None:
            self.finish()  # raises it
        t = time.perf_counter()
        self._queue.put(payload)
        self.waited += time.perf_counter() - t

    def finish(self) -> None:
        """Wait for every queued batch; raise the first error (as SQLAlchemy's DBAPIError)."""
        if self._close(None):
            _timing("copy (first batch to last row stored)", time.perf_counter() - self.started)
            _timing("copy: importer waited for the server", self.waited)
        if self._error is not None:
            exc, self._error = self._error, None
            if isinstance(exc, self._base_error):
                raise DBAPIError.instance(_COPY_SQL, None, exc, self._base_error) from exc
            raise exc

    def abort(self) -> None:
        """Stop writing (a rollback follows): batches not yet sent are dropped."""
        self._close(_ABORT)
        self._error = None

    def _close(self, sentinel: Any) -> bool:
        if self._closed:
            return False
        self._closed = True
        if self._conn.info.get(_PIPE) is self:
            del self._conn.info[_PIPE]
        self._queue.put(sentinel)
        self._thread.join()
        return True

    def _before_statement(self, *_args: Any) -> None:
        if not self._closed:
            self.finish()

    def _before_rollback(self, *_args: Any) -> None:
        if not self._closed:
            self.abort()


def _pipelined_copy(conn: Any) -> _PipelinedCopy:
    pipe = conn.info.get(_PIPE)
    return pipe if pipe is not None else _PipelinedCopy(conn)


def finish_event_copy(session: Session) -> None:
    """Wait until the events queued by insert_events(keyless=True) are written; raise the
    error, if writing them failed. (Any statement on the connection does this first.)"""
    pipe = session.connection().info.get(_PIPE)
    if pipe is not None:
        pipe.finish()


def abort_event_copy(session: Session) -> None:
    """Drop the events still queued by insert_events(keyless=True), if any (the import is
    failing: its rollback follows)."""
    try:
        pipe = session.connection().info.get(_PIPE)
    except SQLAlchemyError:  # no usable connection: nothing was queued on it
        return
    if pipe is not None:
        pipe.abort()


# ----------------------------------------------------------------------------- timings

_TIMINGS = os.environ.get("ONBOARDING_BULK_TIMINGS") == "1"


def _timing(what: str, seconds: float) -> None:
    if _TIMINGS:
        print(f"bulk-timing {what}: {seconds:.2f} s", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _phase(what: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        _timing(what, time.perf_counter() - t)


EVENTS_TABLE: Table = Event.__table__  # type: ignore[assignment]
