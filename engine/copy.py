"""The columnar copy of the app database: Parquet files that DuckDB (or chdb) reads.

Layout of a copy directory (by default `<stem>.analytics/` beside the SQLite file)::

    manifest.json          which generation and files are current, and the source state
    gen-000003/            one generation: events-000.parquet (+ appended segments),
                           accounts-0001.parquet, milestones-0001.parquet
    .lock                  fcntl lock held by the one process that syncs

Events are sorted by (account_id, ts) with native timestamps (microseconds, naive UTC).
A sync appends the events with ids above the copy's last id as a new segment when that is
all that changed (same count below it), and rebuilds everything into a new generation
otherwise (or when the copy is missing, corrupt or asked to). Accounts and milestones
(small) are rewritten whenever anything changed. Files are written first; the new
manifest is renamed into place last, so a crash mid-sync leaves the old copy as it was
(and, being behind the database, it is never served: the next read syncs again).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

FORMAT = 2  # 2: accounts with their attributes and CSM, milestones with id and due date
COMPACT_AFTER = 8  # segments; more than this and the events are merged into one file
_CHUNK = 5_000  # rows per fetch: Python objects stay small, the rows accumulate in Arrow

# What db/facts.accounts reads (and milestones), so the copy can answer it (engine.DuckDBCopy).
_ACCOUNT_TYPES = {
    "id": pa.int64(),
    "external_id": pa.string(),
    "name": pa.string(),
    "segment": pa.string(),
    "industry": pa.string(),
    "employees": pa.int64(),
    "plan": pa.string(),
    "channel": pa.string(),
    "region": pa.string(),
    "arr": pa.float64(),
    "contract_start": pa.string(),
    "licensed_seats": pa.int64(),
    "csm_id": pa.int64(),
    "csm_email": pa.string(),
    "csm_name": pa.string(),
}
_ACCOUNTS_SQL = (
    "SELECT a.id, a.external_id, a.name, a.segment, a.industry, a.employees, a.plan, a.channel, a.region, "
    "a.arr, {contract_start}, a.licensed_seats, a.csm_id, t.email AS csm_email, t.name AS csm_name "
    "FROM accounts a LEFT JOIN team_members t ON t.id = a.csm_id"
)
_MILESTONE_TYPES = {
    "id": pa.int64(),
    "account_id": pa.int64(),
    "milestone_key": pa.string(),
    "due_date": pa.string(),
    "completed_at": pa.string(),
}

_EVENT_TYPES = {
    "id": pa.int64(),
    "account_id": pa.int64(),
    "event": pa.string(),
    "ts": pa.string(),
    "user_id": pa.string(),
    "properties": pa.string(),
}


def _dialect(conn: Any) -> str:
    return conn.dialect.name


def source_state(conn: Any) -> dict:
    """What the copy must match, from index lookups only (a read checks it every time):
    the copy version (every write through the app that may change events, accounts or
    milestones bumps it: db.session.bump_data_version), the smallest and largest event id
    (an append, or a direct insert, moves the largest), and count and largest id of accounts
    (small) and the largest milestone id."""
    from db.session import fetch

    dv = fetch(conn, "SELECT value FROM meta WHERE key = 'copy_version'")
    dv = dv[0][0] if dv else None
    # Apart: SQLite answers a lone MIN or MAX from the index, both at once by a full scan.
    lo = fetch(conn, "SELECT MIN(id) FROM events")[0][0]
    hi = fetch(conn, "SELECT MAX(id) FROM events")[0][0]
    n_acc, max_acc = fetch(conn, "SELECT COUNT(*), MAX(id) FROM accounts")[0]
    max_ms = fetch(conn, "SELECT MAX(id) FROM account_milestones")[0][0]
    return {
        "copy_version": int(dv or 0),
        "events": [int(lo or 0), int(hi or 0)],
        "accounts": [int(n_acc or 0), int(max_acc or 0)],
        "milestones": int(max_ms or 0),
    }


def _read_source(conn: Any, sql: str, types: dict[str, pa.DataType]) -> pa.Table:
    """Rows of `sql` from the app database as an Arrow table (timestamps as text)."""
    raw = conn.connection.dbapi_connection
    if _dialect(conn) == "postgresql":
        buf = io.BytesIO()
        with raw.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)") as cp:
            for block in cp:
                buf.write(block)
        buf.seek(0)
        if buf.getbuffer().nbytes == 0:
            return pa.table({k: pa.array([], type=t) for k, t in types.items()})
        return pacsv.read_csv(
            buf,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )
    cur = raw.cursor()
    try:
        cur.execute(sql)
        names = [d[0] for d in cur.description]
        batches = []
        while rows := cur.fetchmany(_CHUNK):
            cols = list(zip(*rows, strict=True))
            batches.append(pa.table({n: pa.array(c, type=types[n]) for n, c in zip(names, cols, strict=True)}))
    finally:
        cur.close()
    if not batches:
        return pa.table({k: pa.array([], type=t) for k, t in types.items()})
    return pa.concat_tables(batches)


def _ts_text(conn: Any, col: str) -> str:
    if _dialect(conn) == "postgresql":
        return f"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS {col}"
    return col


def _write_parquet(con: duckdb.DuckDBPyConnection, select: str, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    con.execute(f"COPY ({select}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)")
    os.replace(tmp, path)


class ParquetCopy:
    """One copy directory for one app database."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self._lock = threading.Lock()

    # -------------------------------------------------------------- reading

    def manifest(self) -> dict | None:
        """The current manifest, or None when missing, corrupt or pointing at missing files."""
        try:
            m = json.loads((self.dir / "manifest.json").read_text())
            if m.get("format") != FORMAT:
                return None
            gen = self.dir / m["generation"]
            for f in [*m["segments"], m["accounts"], m["milestones"]]:
                if not (gen / f).is_file():
                    return None
            return m
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def files(self, m: dict) -> dict[str, list[str]]:
        gen = self.dir / m["generation"]
        return {
            "events": [str(gen / f) for f in m["segments"]],
            "accounts": [str(gen / m["accounts"])],
            "account_milestones": [str(gen / m["milestones"])],
        }

    # -------------------------------------------------------------- syncing

    @contextlib.contextmanager
    def _locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.dir / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def sync(self, conn: Any, *, rebuild: bool = False) -> dict:
        """Bring the copy up to date with the database behind `conn`; returns the manifest."""
        with self._locked():
            state = source_state(conn)
            m = self.manifest()
            if m is not None and not rebuild and m["state"] == state:
                return m
            con = duckdb.connect()
            try:
                return self._sync(conn, con, m, state, rebuild)
            finally:
                con.close()

    def _sync(self, conn: Any, con: duckdb.DuckDBPyConnection, m: dict | None, state: dict, rebuild: bool) -> dict:
        from db.session import fetch

        hi = state["events"][1]
        append = False
        if m is not None and not rebuild:
            old_max = m["state"]["events"][1]
            counts = fetch(
                conn, "SELECT COUNT(*), SUM(CASE WHEN id > :m THEN 1 ELSE 0 END) FROM events", {"m": old_max}
            )[0]
            n_now, n_new = int(counts[0] or 0), int(counts[1] or 0)
            append = (
                m["state"]["events"][0] == state["events"][0] and hi >= old_max and n_now - m["rows"]["events"] == n_new
            )
        if append:
            gen_name, segments, seq = m["generation"], list(m["segments"]), m["seq"] + 1
            events_n = m["rows"]["events"]
            lo = m["state"]["events"][1]
        else:
            seq = (m["seq"] + 1) if m else 1
            gen_name, segments, events_n, lo = f"gen-{seq:06d}", [], 0, 0
        gen = self.dir / gen_name
        gen.mkdir(parents=True, exist_ok=True)
        max_read = lo
        if hi > lo or not segments:
            tbl = _read_source(
                conn,
                f"SELECT id, account_id, event, {_ts_text(conn, 'ts')}, user_id, properties FROM events "
                f"WHERE id > {int(lo)} AND id <= {int(hi)}",
                _EVENT_TYPES,
            )
            con.register("src", tbl)
            name = f"events-{seq:06d}.parquet"
            _write_parquet(
                con,
                "SELECT id, account_id, event, CAST(ts AS TIMESTAMP) AS ts, user_id, properties FROM src "
                "ORDER BY account_id, ts",
                gen / name,
            )
            con.unregister("src")
            if len(tbl) or not segments:
                segments.append(name)
            events_n += len(tbl)
            if len(tbl):
                max_read = max(max_read, int(tbl.column("id").to_numpy().max()))
        if len(segments) > COMPACT_AFTER:
            seq += 1
            new_gen = self.dir / f"gen-{seq:06d}"
            new_gen.mkdir(parents=True, exist_ok=True)
            files = ", ".join(f"'{gen / s}'" for s in segments)
            name = f"events-{seq:06d}.parquet"
            _write_parquet(con, f"SELECT * FROM read_parquet([{files}]) ORDER BY account_id, ts", new_gen / name)
            gen_name, gen, segments = new_gen.name, new_gen, [name]
        accounts = _read_source(
            conn,
            _ACCOUNTS_SQL.format(
                contract_start="CAST(a.contract_start AS TEXT) AS contract_start"
                if _dialect(conn) == "postgresql"
                else "a.contract_start"
            ),
            _ACCOUNT_TYPES,
        )
        con.register("acc", accounts)
        acc_name = f"accounts-{seq:06d}.parquet"
        _write_parquet(
            con, "SELECT * REPLACE (CAST(contract_start AS DATE) AS contract_start) FROM acc", gen / acc_name
        )
        ms = _read_source(
            conn,
            f"SELECT id, account_id, milestone_key, {'CAST(due_date AS TEXT) AS due_date' if _dialect(conn) == 'postgresql' else 'due_date'}, "
            f"{_ts_text(conn, 'completed_at')} FROM account_milestones",
            _MILESTONE_TYPES,
        )
        con.register("ms", ms)
        ms_name = f"milestones-{seq:06d}.parquet"
        # TRY_CAST: a due date that is not one reads as missing, as db/facts.naive_date does.
        _write_parquet(
            con,
            "SELECT id, account_id, milestone_key, TRY_CAST(due_date AS DATE) AS due_date, "
            "CAST(completed_at AS TIMESTAMP) AS completed_at FROM ms",
            gen / ms_name,
        )
        written = dict(state)
        if max_read != hi:  # the database moved while we read: the next check syncs again
            written["events"] = [state["events"][0], max_read]
        if len(accounts) != state["accounts"][0]:
            written["accounts"] = [len(accounts), -1]
        new = {
            "format": FORMAT,
            "generation": gen_name,
            "seq": seq,
            "segments": segments,
            "accounts": acc_name,
            "milestones": ms_name,
            "state": written,
            "rows": {"events": events_n, "accounts": len(accounts), "milestones": len(ms)},
        }
        tmp = self.dir / "manifest.json.tmp"
        with open(tmp, "w") as fh:
            json.dump(new, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "manifest.json")
        self._clean(keep={gen_name, m["generation"] if m else gen_name})
        return new

    def _clean(self, *, keep: set[str]) -> None:
        """Remove generations other than the current and the previous one (a reader may
        still be on it) and stray files of a crashed sync."""
        for p in self.dir.iterdir():
            if p.is_dir() and p.name.startswith("gen-") and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()
