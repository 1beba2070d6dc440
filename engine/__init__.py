"""One analytics engine interface: the event-heavy facts of db/facts.py, answered as
Arrow-backed DataFrames by the engine the configuration picks (docs/engine.md).

- SQLite app database (default): DuckDB over a Parquet copy beside the file
  (`<stem>.analytics/`, engine/copy.py), checked for freshness on every read.
- PostgreSQL app database (default): the same SQL pushed down to the server, results
  fetched with `COPY (...) TO STDOUT`.
- `ANALYTICS_URL=duckdb:///dir` / `chdb:///dir`: DuckDB / ClickHouse's engine (chdb, in
  process) over a Parquet copy kept in `dir` (`duckdb://` / `chdb://`: beside the SQLite file).
- `ANALYTICS_URL=clickhouse://user:pass@host:8123/db`: a ClickHouse server (clickhouse-connect;
  not tested here).
- `ANALYTICS_URL=direct`: no engine; db/facts.py reads the app database with its own SQL.

`analytics_for(db_url)` returns the engine (None for direct reads); `sync_after_write(db_url)`
brings a copy up to date after an import, a restore or demo seeding.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine import sql as S

if TYPE_CHECKING:  # duckdb, pyarrow, chdb load on first use: the CLI's start-up stays short
    import pyarrow as pa

    from engine.copy import ParquetCopy

log = logging.getLogger(__name__)

__all__ = ["AnalyticsConfigError", "analytics_for", "for_connection", "sync_after_write"]


class AnalyticsConfigError(ValueError):
    """ANALYTICS_URL names no engine this app can use."""


# ----------------------------------------------------------------------------- results


def _naive(s: pd.Series) -> pd.Series:
    """Any timestamp column (naive, aware, text) -> naive UTC datetime64[ns]."""
    if s.dtype == object:
        s = pd.to_datetime(s, utc=True, format="ISO8601")
    elif getattr(s.dt, "tz", None) is None:
        return s.astype("datetime64[ns]")
    else:
        s = pd.to_datetime(s, utc=True)
    return s.dt.tz_localize(None).astype("datetime64[ns]")


def _days(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).astype("datetime64[ns]")


def _ints(df: pd.DataFrame, cols: tuple[str, ...]) -> pd.DataFrame:
    for c in cols:
        if c in df:
            df[c] = df[c].fillna(0).astype("int64") if len(df) else df[c].astype("int64")
    return df


_JSON_CACHE: dict[str, object] = {}


def _sqlite_json(v: object) -> object:
    """A JSON value as SQLite's json_extract returns it (so every engine gives one value)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    try:
        out = json.loads(v)
    except (TypeError, ValueError):
        return v
    if isinstance(out, bool):
        return int(out)
    if isinstance(out, dict | list):
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False)
    return out


# ----------------------------------------------------------------------------- engines


class Analytics:
    """The aggregations; subclasses run SQL (`_run`) in one dialect and return Arrow."""

    dialect = "duckdb"
    name = "duckdb"

    def _run(self, conn: Any, sql: str) -> pa.Table | None:
        raise NotImplementedError

    def _frame(self, conn: Any, template: str, params: dict) -> pd.DataFrame | None:
        table = self._run(conn, S.render(template, self.dialect, params))
        return None if table is None else table.to_pandas()

    # The methods mirror db/facts.py (same arguments, same columns and dtypes); None means
    # "read the database instead" (a copy that could not be brought up to date).

    def accounts(self, conn: Any) -> pd.DataFrame | None:
        """db/facts.accounts from the engine (None: read the database)."""
        return None

    def milestones(self, conn: Any) -> pd.DataFrame | None:
        """db/facts.milestones from the engine (None: read the database)."""
        return None

    def activity(self, conn: Any, *, u0: datetime, d0: datetime, w0: datetime, lb: datetime, end: datetime):
        df = self._frame(conn, S.ACTIVITY, {"u0": u0, "d0": d0, "w0": w0, "lb": lb, "end": end})
        if df is not None:
            df = _ints(df, ("account_id", "active_users", "active_days", "weekly_users"))
            df["last_event"] = _naive(df["last_event"])
        return df

    def last_events(self, conn: Any, *, account_ids: list[int], as_of_end: datetime):
        if not account_ids:
            return pd.DataFrame(
                {"account_id": pd.Series(dtype="int64"), "last_event": pd.Series(dtype="datetime64[ns]")}
            )
        df = self._frame(conn, S.LAST_EVENTS, {"ids": [int(x) for x in account_ids], "end": as_of_end})
        if df is not None:
            df = _ints(df, ("account_id",))
            df["last_event"] = _naive(df["last_event"])
        return df

    def activity_anchored(self, conn: Any, *, off: int, users_days: int, active_days_window: int):
        params = {
            "off": off,
            "off_u": off - users_days,
            "off_d": off - active_days_window,
            "off_lb": off - max(users_days, active_days_window),
        }
        df = self._frame(conn, S.ACTIVITY_ANCHORED, params)
        return None if df is None else _ints(df, ("account_id", "active_users", "active_days"))

    def step_occurrences(
        self, conn: Any, *, names: list[str], milestone_keys: list[str], strict: bool, prop: str | None
    ):
        cols = ["account_id", "name", "ts", "prop"]
        parts = []
        if names:
            template = S.STEP_EVENTS.format(prop=S.prop_expr(self.dialect) if prop else "NULL")
            params = {"names": list(names)}
            if prop:
                params.update({"path": '$."' + prop + '"', "key": prop})
            ev = self._frame(conn, template, params)
            if ev is None:
                return None
            if prop:
                uniq = ev["prop"].dropna().unique()
                ev["prop"] = ev["prop"].map({u: _sqlite_json(u) for u in uniq})
            parts.append(ev)
        if milestone_keys:
            ms = self._frame(conn, S.STEP_MILESTONES, {"keys": list(milestone_keys)})
            if ms is None:
                return None
            ms["name"] = "milestone:" + ms["name"].astype(object)
            ms["prop"] = None
            parts.append(ms)
        if strict:
            step = "CASE WHEN event IN :names THEN 1 ELSE 0 END" if names else "0"
            template = S.STRICT_BREAKS.format(step=step, done=S.STRICT_DONE if milestone_keys else "")
            br = self._frame(conn, template, {"names": list(names), "keys": list(milestone_keys)})
            if br is None:
                return None
            br["name"] = None
            br["prop"] = None
            parts.append(br)
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c == "ts" else object) for c in cols})
        for p in parts:
            p["ts"] = _naive(p["ts"])
            p["name"] = p["name"].astype(object)
            p["prop"] = p["prop"].astype(object)
        out = pd.concat([p[cols] for p in parts], ignore_index=True)
        out["account_id"] = out["account_id"].astype("int64")
        out["name"] = out["name"].where(out["name"].notna(), None)
        out["prop"] = out["prop"].where(out["prop"].notna(), None)
        return out.reset_index(drop=True)

    def event_property_keys(self, conn: Any):
        table = self._run(conn, S.PROPERTY_KEYS[self.dialect])
        return None if table is None else sorted(str(k) for k in table.column("key").to_pylist() if k is not None)

    def event_names(self, conn: Any):
        df = self._frame(conn, S.EVENT_NAMES, {})
        return None if df is None else _ints(df, ("events", "accounts"))

    def early_event_counts(self, conn: Any, *, days: int):
        df = self._frame(conn, S.EARLY_EVENT_COUNTS, {"days": days})
        return None if df is None else _ints(df, ("account_id", "n"))

    def event_periods(self, conn: Any, *, event: str, start: datetime | None, end: datetime, first_ever: bool):
        if first_ever:
            df = self._frame(conn, S.FIRST_EVER, {"e": event})
            if df is not None:
                df = df.rename(columns={"first_ts": "ts"})
                df["ts"] = _naive(df["ts"])
        else:
            df = self._frame(conn, S.EVENT_DAYS, {"e": event, "s": start or datetime(1970, 1, 1), "end": end})
            if df is not None:
                df = df.rename(columns={"day": "ts"})
                df["ts"] = _days(df["ts"])
        return None if df is None else _ints(df, ("account_id",))

    def daily_activity(self, conn: Any, *, account_id: int, since: datetime):
        df = self._frame(conn, S.DAILY_ACTIVITY, {"a": int(account_id), "s": since})
        if df is not None:
            df = _ints(df, ("events", "users"))
            df["day"] = _days(df["day"])
        return df


class _CopyEngine(Analytics):
    """An engine over the Parquet copy: checks it against the database on every read,
    syncs when behind, and answers None (read the database) when it cannot."""

    def __init__(self, copy: ParquetCopy) -> None:
        self.copy = copy
        self._views_lock = threading.Lock()
        self._key: tuple | None = None

    def last_events(self, conn: Any, *, account_ids: list[int], as_of_end: datetime):
        """As Analytics.last_events, from every account's last event (one scan of the copy's
        columns) selected to these accounts."""
        if len(account_ids) < 1000:
            return super().last_events(conn, account_ids=account_ids, as_of_end=as_of_end)
        df = self._frame(conn, S.LAST_EVENTS_EVERY, {"end": as_of_end})
        if df is not None:
            df = _ints(df, ("account_id",))
            df = df[df["account_id"].isin([int(x) for x in account_ids])].reset_index(drop=True)
            df["last_event"] = _naive(df["last_event"])
        return df

    def fresh(self, conn: Any) -> dict | None:
        """The manifest of an up-to-date copy, syncing first if needed; None if that failed."""
        from engine.copy import source_state

        m = self.copy.manifest()
        try:
            if m is not None and m["state"] == source_state(conn):
                return m
            return self.copy.sync(conn)
        except Exception:  # a copy we cannot write is no reason to fail the read
            log.warning("analytics copy in %s could not be synced; reading the database", self.copy.dir, exc_info=True)
            return None

    def _run(self, conn: Any, sql: str) -> pa.Table | None:
        m = self.fresh(conn)
        if m is None:
            return None
        try:
            return self._query(m, sql)
        except Exception:
            # A generation removed under us by another process's sync: once more, fresh.
            log.info("analytics copy changed under a read; retrying", exc_info=True)
            m = self.fresh(conn)
            return None if m is None else self._query(m, sql)


class DuckDBCopy(_CopyEngine):
    dialect = "duckdb"
    name = "duckdb"

    def __init__(self, copy: ParquetCopy) -> None:
        super().__init__(copy)
        self._con = None

    def _query(self, m: dict, sql: str) -> pa.Table:
        import duckdb

        key = (m["generation"], tuple(m["segments"]), m["accounts"], m["milestones"])
        with self._views_lock:
            if self._key != key:
                con = duckdb.connect()
                for view, files in self.copy.files(m).items():
                    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                    con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet([{listed}])")
                self._con, self._key = con, key
            cur = self._con.cursor()
        try:
            return cur.sql(sql).to_arrow_table()
        finally:
            cur.close()

    # Accounts and milestones as db/facts reads them from a SQLite database: same rows, order
    # (external id; id, which is SQLite's table order) and dtypes. Only for SQLite: PostgreSQL
    # orders text by its collation and returns a heap in no set order.

    def accounts(self, conn: Any) -> pd.DataFrame | None:
        if conn.dialect.name != "sqlite":
            return None
        t = self._run(
            conn,
            "SELECT id AS account_id, external_id, name, segment, industry, employees, plan, channel, region, arr, "
            "contract_start, licensed_seats, csm_id, csm_email, csm_name FROM accounts ORDER BY external_id",
        )
        if t is None or t.num_rows == 0:
            return None
        df = t.to_pandas(date_as_object=False)
        df["contract_start"] = df["contract_start"].astype("datetime64[ns]")
        for c in ("csm_id", "employees", "arr", "licensed_seats"):
            if df[c].isna().all():  # the database's rows give no number: object Nones, then to_numeric
                df[c] = pd.Series([None] * len(df), dtype=object)
                if c != "csm_id":
                    df[c] = pd.to_numeric(df[c], errors="coerce")
        return df

    def milestones(self, conn: Any) -> pd.DataFrame | None:
        if conn.dialect.name != "sqlite":
            return None
        t = self._run(
            conn, "SELECT account_id, milestone_key, due_date, completed_at FROM account_milestones ORDER BY id"
        )
        if t is None or t.num_rows == 0:
            return None
        df = t.to_pandas(date_as_object=False)
        df["due_date"] = df["due_date"].astype("datetime64[ns]")
        df["completed_at"] = _naive(df["completed_at"])
        return df


class ChdbCopy(_CopyEngine):
    """ClickHouse's engine in process (chdb) over the same Parquet copy."""

    dialect = "clickhouse"
    name = "chdb"
    _chdb_lock = threading.Lock()

    def _query(self, m: dict, sql: str) -> pa.Table:
        import chdb

        files = self.copy.files(m)

        def table(match: re.Match) -> str:
            paths = files[match.group(2)]
            glob = (
                paths[0]
                if len(paths) == 1
                else paths[0].rsplit("/", 1)[0] + "/{" + ",".join(p.rsplit("/", 1)[1] for p in paths) + "}"
            )
            return f"{match.group(1)} file('{glob}', 'Parquet')"

        sql = re.sub(r"\b(FROM|JOIN) (events|accounts|account_milestones)\b", table, sql)
        with self._chdb_lock:
            return chdb.query(sql + " SETTINGS session_timezone = 'UTC'", "ArrowTable")


class PostgresPushdown(Analytics):
    """The SQL runs on the PostgreSQL server; results arrive through COPY as CSV."""

    dialect = "postgres"
    name = "postgres"

    def _run(self, conn: Any, sql: str) -> pa.Table:
        import io

        import pyarrow as pa
        import pyarrow.csv as pacsv

        buf = io.BytesIO()
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)") as cp:
            for block in cp:
                buf.write(block)
        head = buf.getvalue().split(b"\n", 1)[0].decode()
        names = next(iter(__import__("csv").reader([head]))) if head else []
        buf.seek(0)
        # Text stays text (an event named "42" is not a number); timestamps are parsed by
        # Arrow's C++ reader (PostgreSQL's "2026-06-01 10:00:00.5+00"); days, counts inferred.
        types = {
            n: pa.timestamp("us", tz="UTC") if n in _TIMESTAMPS else pa.string() for n in names if n not in _INFERRED
        }
        return pacsv.read_csv(
            buf,
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
        )


_TIMESTAMPS = {"ts", "last_event", "first_ts"}
_INFERRED = {"account_id", "active_users", "active_days", "weekly_users", "events", "accounts", "n", "users", "day"}


class ClickHouseServer(Analytics):
    """A ClickHouse server through clickhouse-connect. NOT TESTED HERE (no server in CI; the
    same SQL is tested on ClickHouse's engine through chdb). Events are appended by id into
    a MergeTree ordered by (account_id, ts); accounts and milestones are replaced; a read
    checks the database's state first, as the copy engines do."""

    dialect = "clickhouse"
    name = "clickhouse"
    _DDL = (
        "CREATE TABLE IF NOT EXISTS events (id Int64, account_id Int64, event String, "
        "ts DateTime64(6), user_id String, properties Nullable(String)) "
        "ENGINE = MergeTree ORDER BY (account_id, ts)",
        "CREATE TABLE IF NOT EXISTS accounts (id Int64, contract_start Nullable(Date)) ENGINE = MergeTree ORDER BY id",
        "CREATE TABLE IF NOT EXISTS account_milestones (account_id Int64, milestone_key String, "
        "completed_at Nullable(DateTime64(6))) ENGINE = MergeTree ORDER BY account_id",
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = None
        self._state: dict | None = None
        self._sync_lock = threading.Lock()

    def client(self):
        if self._client is None:
            import clickhouse_connect

            self._client = clickhouse_connect.get_client(dsn=self.url)
        return self._client

    def _run(self, conn: Any, sql: str) -> pa.Table:
        from engine.copy import source_state

        if source_state(conn) != self._state:
            self.sync(conn)
        return self.client().query_arrow(sql + " SETTINGS session_timezone = 'UTC'")

    def sync(self, conn: Any) -> None:
        import duckdb
        import pyarrow as pa

        from engine.copy import _EVENT_TYPES, _read_source, _ts_text, source_state

        with self._sync_lock:
            state = source_state(conn)
            c = self.client()
            for ddl in self._DDL:
                c.command(ddl)
            old = self._state
            if old is None or old["events"][0] != state["events"][0] or state["events"][1] < old["events"][1]:
                c.command("TRUNCATE TABLE events")
                lo = 0
            else:
                lo = old["events"][1]
            duck = duckdb.connect()
            ev = _read_source(
                conn,
                f"SELECT id, account_id, event, {_ts_text(conn, 'ts')}, user_id, properties FROM events "
                f"WHERE id > {int(lo)} AND id <= {int(state['events'][1])}",
                _EVENT_TYPES,
            )
            duck.register("ev", ev)
            c.insert_arrow(
                "events", duck.sql("SELECT * REPLACE (CAST(ts AS TIMESTAMP) AS ts) FROM ev").to_arrow_table()
            )
            acc = _read_source(
                conn, "SELECT id, contract_start FROM accounts", {"id": pa.int64(), "contract_start": pa.string()}
            )
            ms = _read_source(
                conn,
                f"SELECT account_id, milestone_key, {_ts_text(conn, 'completed_at')} FROM account_milestones",
                {"account_id": pa.int64(), "milestone_key": pa.string(), "completed_at": pa.string()},
            )
            duck.register("acc", acc)
            duck.register("ms", ms)
            c.command("TRUNCATE TABLE accounts")
            c.insert_arrow(
                "accounts",
                duck.sql("SELECT id, CAST(contract_start AS DATE) AS contract_start FROM acc").to_arrow_table(),
            )
            c.command("TRUNCATE TABLE account_milestones")
            c.insert_arrow(
                "account_milestones",
                duck.sql("SELECT * REPLACE (CAST(completed_at AS TIMESTAMP) AS completed_at) FROM ms").to_arrow_table(),
            )
            duck.close()
            self._state = state


# ----------------------------------------------------------------------------- choosing

_engines: dict[tuple[str, str], Analytics | None] = {}
_lock = threading.Lock()


def _copy_beside(db_url: str) -> Path:
    from db.session import sqlite_file

    if (plain := sqlite_file(db_url)) is not None:
        return Path(plain).with_name(Path(plain).stem + ".analytics")
    from sqlalchemy.engine import make_url

    u = make_url(db_url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        raise AnalyticsConfigError(
            "ANALYTICS_URL without a directory keeps the copy beside a SQLite file; with this database "
            "give one, e.g. ANALYTICS_URL=duckdb:///var/lib/onboarding/analytics"
        )
    p = Path(u.database)
    return p.with_name(p.stem + ".analytics")


def _require(module: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise AnalyticsConfigError(f"ANALYTICS_URL needs the {module} package: pip install {package}")


def _build(db_url: str, setting: str) -> Analytics | None:
    from db.session import sqlite_file
    from engine.copy import ParquetCopy

    if setting in ("", "default") and sqlite_file(db_url) is not None:
        return DuckDBCopy(ParquetCopy(_copy_beside(db_url)))
    from sqlalchemy.engine import make_url

    backend = make_url(db_url).get_backend_name()
    if setting in ("", "default"):
        if backend == "postgresql":
            return PostgresPushdown()
        if backend == "sqlite":
            db = make_url(db_url).database
            if not db or db == ":memory:" or db.startswith("file:"):
                return None
            return DuckDBCopy(ParquetCopy(_copy_beside(db_url)))
        return None
    if setting == "direct":
        return None
    m = re.match(r"^(duckdb|chdb)://(/.*)?$", setting)
    if m:
        directory = Path(m.group(2)) if m.group(2) and m.group(2) != "/" else _copy_beside(db_url)
        copy = ParquetCopy(directory)
        if m.group(1) == "chdb":
            _require("chdb", "chdb==4.4.0")
            return ChdbCopy(copy)
        return DuckDBCopy(copy)
    if setting.startswith(("clickhouse://", "clickhouses://")):
        _require("clickhouse_connect", "clickhouse-connect")
        return ClickHouseServer(setting)
    raise AnalyticsConfigError(
        f"ANALYTICS_URL={setting!r} is not an engine: use direct, duckdb:///dir, chdb:///dir or clickhouse://host/db"
    )


def analytics_for(db_url: str | None = None) -> Analytics | None:
    """The analytics engine for the app database at db_url (None: read the database directly)."""
    from db.session import database_url

    url = database_url(db_url)
    setting = os.environ.get("ANALYTICS_URL", "").strip()
    key = (url, setting)
    with _lock:
        if key not in _engines:
            _engines[key] = _build(url, setting)
        return _engines[key]


def for_connection(conn: Any) -> Analytics | None:
    """The engine for the database a SQLAlchemy Connection is bound to."""
    from db.session import engine_url

    return analytics_for(engine_url(conn))


def sync_after_write(db_url: str | None = None, *, rebuild: bool = False) -> None:
    """Bring the engine's copy up to date after a write (import, restore, demo seeding).
    Never fails the write it follows: a copy left behind is synced (or bypassed) on read."""
    try:
        eng = analytics_for(db_url)
        if eng is None or isinstance(eng, PostgresPushdown):
            return
        from db.session import get_engine

        with get_engine(db_url).connect() as conn:
            if isinstance(eng, _CopyEngine):
                eng.copy.sync(conn, rebuild=rebuild)
            elif isinstance(eng, ClickHouseServer):
                eng.sync(conn)
    except AnalyticsConfigError:
        raise
    except Exception:
        log.warning("analytics copy not synced after the write; the next read syncs it", exc_info=True)
