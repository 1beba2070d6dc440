"""Per-account facts for the metrics: aggregation happens in SQL, pandas gets small frames.

Every function takes a Connection (keyword-only after it) and returns a DataFrame whose
timestamps are naive UTC datetime64[ns] and dates are datetime64[ns] at midnight.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from db.session import SQLITE_TS, LiteConnection, fetch, sqlite_param

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def _ts_param(conn: Connection, value: datetime) -> object:
    """A timestamp bound for raw SQL: SQLite compares text, PostgreSQL timestamptz."""
    if conn.dialect.name == "sqlite":
        return value.strftime(SQLITE_TS)
    return pd.Timestamp(value).tz_localize("UTC").to_pydatetime() if pd.Timestamp(value).tzinfo is None else value


def _day(conn: Connection, col: str) -> str:
    return f"date({col})" if conn.dialect.name == "sqlite" else f"CAST({col} AS DATE)"


def _add_days_ts(conn: Connection, date_col: str, days: str) -> str:
    """SQL for `date_col + days` as a timestamp comparable with events.ts."""
    if conn.dialect.name == "sqlite":
        return f"strftime('%Y-%m-%d %H:%M:%f000', {date_col}, ({days}) || ' days')"
    return f"(CAST({date_col} AS TIMESTAMP) + ({days}) * INTERVAL '1 day') AT TIME ZONE 'UTC'"


def _json_field(conn: Connection, col: str, field: str) -> str:
    if conn.dialect.name == "sqlite":
        return f"CASE WHEN json_valid({col}) THEN json_extract({col}, '$.{field}') END"
    return f"(CAST({col} AS json) ->> '{field}')"


def naive_ts(s: pd.Series) -> pd.Series:
    """Any timestamp column (text from SQLite, aware from PostgreSQL) -> naive UTC."""
    if s.empty:
        return pd.to_datetime(s).astype("datetime64[ns]")
    first = s.dropna().iloc[0] if s.notna().any() else None
    if isinstance(first, str):
        try:  # SQLite's own storage format: the fast, exact path
            return pd.to_datetime(s, format=SQLITE_TS)
        except ValueError:
            return pd.to_datetime(s, utc=True, format="mixed").dt.tz_localize(None)
    out = pd.to_datetime(s, utc=True)
    return out.dt.tz_localize(None).astype("datetime64[ns]")


def naive_date(s: pd.Series) -> pd.Series:
    if s.empty:
        return pd.to_datetime(s).astype("datetime64[ns]")
    first = s.dropna().iloc[0] if s.notna().any() else None
    if isinstance(first, str):
        return pd.to_datetime(s, format="%Y-%m-%d", errors="coerce")
    return pd.to_datetime(s, errors="coerce").astype("datetime64[ns]")


def _join(conn: Connection) -> str:
    """accounts-then-events join: SQLite's CROSS JOIN fixes that order (an index range per
    account), PostgreSQL plans a plain join itself."""
    return "CROSS JOIN" if conn.dialect.name == "sqlite" else ","


# A `:name` placeholder as SQLAlchemy's text() finds one.
_PLACEHOLDER = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


def _lite_statement(sql: str, params: dict, expanding: tuple[str, ...]) -> tuple[str, dict]:
    """`sql` and its parameters for sqlite3's named style, as SQLAlchemy renders them for
    SQLite: an expanding list becomes one placeholder per value, values are bound as its
    SQLite dialect binds them (db.session.sqlite_param)."""
    out: dict = {}

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name in expanding:
            values = list(params[name])
            for i, v in enumerate(values):
                out[f"{name}_{i + 1}"] = sqlite_param(v)
            return "(" + ", ".join(f":{name}_{i + 1}" for i in range(len(values))) + ")"
        out[name] = sqlite_param(params[name])
        return ":" + name

    return _PLACEHOLDER.sub(sub, sql), out


def _read(conn: Connection, sql: str, params: dict | None = None, *, expanding: tuple[str, ...] = ()) -> pd.DataFrame:
    """Run a query and return a DataFrame. SQLAlchemy compiles it (parameter style, IN
    lists; on a db.session.LiteConnection, _lite_statement does the same for sqlite3); rows
    come straight from the driver's cursor, which is several times faster than building Row
    objects for hundreds of thousands of rows."""
    if isinstance(conn, LiteConnection):
        statement, args = _lite_statement(sql, params or {}, expanding)
        cur = conn.connection.dbapi_connection.execute(statement, args)
        try:
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
        finally:
            cur.close()
        return pd.DataFrame.from_records(rows, columns=cols)
    from sqlalchemy import bindparam, text

    stmt = text(sql)
    if expanding:
        stmt = stmt.bindparams(*[bindparam(n, expanding=True) for n in expanding])
    if params:
        stmt = stmt.bindparams(**params)
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.params
    args = tuple(values[n] for n in compiled.positiontup) if compiled.positional else values
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(str(compiled), args)
        cols = [d[0] for d in cur.description]
        rows = cur.fetchall()
    finally:
        cur.close()
    return pd.DataFrame.from_records(rows, columns=cols)


def _analytics(conn: Connection):
    """The analytics engine for this database (engine/), or None to read it directly."""
    from engine import for_connection

    return for_connection(conn)


def accounts(conn: Connection) -> pd.DataFrame:
    """Accounts with their CSM (email and name)."""
    eng = _analytics(conn)
    if eng is not None and (df := eng.accounts(conn)) is not None:
        return df
    df = _read(
        conn,
        "SELECT a.id AS account_id, a.external_id, a.name, a.segment, a.industry, a.employees, a.plan, "
        "a.channel, a.region, a.arr, a.contract_start, a.licensed_seats, a.csm_id, "
        "t.email AS csm_email, t.name AS csm_name "
        "FROM accounts a LEFT JOIN team_members t ON t.id = a.csm_id ORDER BY a.external_id",
    )
    df["contract_start"] = naive_date(df["contract_start"])
    for c in ("arr", "employees", "licensed_seats"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def milestones(conn: Connection) -> pd.DataFrame:
    """Every account milestone: account_id, milestone_key, due_date, completed_at."""
    eng = _analytics(conn)
    if eng is not None and (df := eng.milestones(conn)) is not None:
        return df
    df = _read(conn, "SELECT account_id, milestone_key, due_date, completed_at FROM account_milestones")
    df["due_date"] = naive_date(df["due_date"])
    df["completed_at"] = naive_ts(df["completed_at"])
    return df


def outcomes(conn: Connection) -> pd.DataFrame:
    df = _read(conn, "SELECT account_id, date, type, arr_change FROM outcomes")
    df["date"] = naive_date(df["date"])
    df["arr_change"] = pd.to_numeric(df["arr_change"], errors="coerce")
    return df


def plans(conn: Connection) -> pd.DataFrame:
    return _read(conn, "SELECT account_id, champion, admin_contact, executive_sponsor FROM success_plans")


def checklist_value(conn: Connection, *, as_of_end: datetime) -> pd.DataFrame:
    """Per account: Value Realization items (not n/a) and how many were done by as_of_end."""
    return _read(
        conn,
        "SELECT account_id, COUNT(*) AS value_items, "
        "SUM(CASE WHEN status = 'done' AND done_at IS NOT NULL AND done_at < :end THEN 1 ELSE 0 END) AS value_done "
        "FROM checklist_items WHERE category = 'Value Realization' AND status != 'n/a' GROUP BY account_id",
        {"end": _ts_param(conn, as_of_end)},
    )


def checklist_values(conn: Connection, *, ends: list[datetime]) -> pd.DataFrame:
    """`checklist_value` at several as-of ends in one scan: value_items, then value_done_<i>
    for ends[i]."""
    done = ", ".join(
        f"SUM(CASE WHEN status = 'done' AND done_at IS NOT NULL AND done_at < :end_{i} THEN 1 ELSE 0 END) AS value_done_{i}"
        for i in range(len(ends))
    )
    return _read(
        conn,
        f"SELECT account_id, COUNT(*) AS value_items, {done} "
        "FROM checklist_items WHERE category = 'Value Realization' AND status != 'n/a' GROUP BY account_id",
        {f"end_{i}": _ts_param(conn, e) for i, e in enumerate(ends)},
    )


def checklist_value_anchored(conn: Connection, *, end_offset_days: int) -> pd.DataFrame:
    """Like `checklist_value`, with each account's as-of end `end_offset_days` after its
    contract start (for point-in-time scores at day 30/60)."""
    end = _add_days_ts(conn, "a.contract_start", ":off")
    return _read(
        conn,
        f"SELECT c.account_id, COUNT(*) AS value_items, "
        f"SUM(CASE WHEN c.status = 'done' AND c.done_at IS NOT NULL AND c.done_at < {end} THEN 1 ELSE 0 END) AS value_done "
        f"FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
        f"WHERE c.category = 'Value Realization' AND c.status != 'n/a' GROUP BY c.account_id",
        {"off": end_offset_days},
    )


def checklist_overview(conn: Connection) -> pd.DataFrame:
    """Per account: checklist items, done, blocked, overdue (not done, due date passed today)."""
    today = date.today()
    df = _read(
        conn,
        "SELECT account_id, COUNT(*) AS items, "
        "SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS done, "
        "SUM(CASE WHEN status = 'blocked' THEN 1 ELSE 0 END) AS blocked, "
        "SUM(CASE WHEN status NOT IN ('done', 'n/a') AND due_date < :today THEN 1 ELSE 0 END) AS overdue "
        "FROM checklist_items GROUP BY account_id",
        {"today": today},
    )
    return df


def activity(conn: Connection, *, as_of_end: datetime, users_days: int, active_days_window: int) -> pd.DataFrame:
    """Per account, as of `as_of_end` (exclusive): distinct active users in the trailing
    `users_days`, active days in the trailing `active_days_window`, users in the last 7 days,
    and the last event within the longest of those windows (accounts without any event in
    them are absent: see `last_events` for those)."""
    u0 = as_of_end - timedelta(days=users_days)
    d0 = as_of_end - timedelta(days=active_days_window)
    w0 = as_of_end - timedelta(days=7)
    lb = min(u0, d0, w0)
    eng = _analytics(conn)
    if eng is not None and (df := eng.activity(conn, u0=u0, d0=d0, w0=w0, lb=lb, end=as_of_end)) is not None:
        return df
    df = _read(
        conn,
        f"SELECT account_id, "
        f"COUNT(DISTINCT CASE WHEN ts >= :u0 AND user_id != '' THEN user_id END) AS active_users, "
        f"COUNT(DISTINCT CASE WHEN ts >= :d0 THEN {_day(conn, 'ts')} END) AS active_days, "
        f"COUNT(DISTINCT CASE WHEN ts >= :w0 AND user_id != '' THEN user_id END) AS weekly_users, "
        f"MAX(ts) AS last_event "
        f"FROM events WHERE ts >= :lb AND ts < :end GROUP BY account_id",
        {
            "u0": _ts_param(conn, u0),
            "d0": _ts_param(conn, d0),
            "w0": _ts_param(conn, w0),
            "lb": _ts_param(conn, lb),
            "end": _ts_param(conn, as_of_end),
        },
    )
    df["last_event"] = naive_ts(df["last_event"])
    return df


def last_events(conn: Connection, *, account_ids: list[int], as_of_end: datetime) -> pd.DataFrame:
    """The last event before as_of_end of each given account (index seeks per account)."""
    eng = _analytics(conn)
    if (
        eng is not None
        and (df := eng.last_events(conn, account_ids=list(account_ids), as_of_end=as_of_end)) is not None
    ):
        return df
    parts = []
    for i in range(0, len(account_ids), 5000):
        parts.append(
            _read(
                conn,
                "SELECT account_id, MAX(ts) AS last_event FROM events WHERE account_id IN :ids AND ts < :end GROUP BY account_id",
                {"ids": [int(x) for x in account_ids[i : i + 5000]], "end": _ts_param(conn, as_of_end)},
                expanding=("ids",),
            )
        )
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["account_id", "last_event"])
    df["last_event"] = naive_ts(df["last_event"])
    return df


def activity_anchored(
    conn: Connection, *, end_offset_days: int, users_days: int, active_days_window: int
) -> pd.DataFrame:
    """Like `activity`, but each account's as-of end is `end_offset_days` after its contract
    start (metrics/days.py: day N ends N + 1 days after it), for scores at day 30/60."""
    eng = _analytics(conn)
    if eng is not None:
        df = eng.activity_anchored(
            conn, off=end_offset_days, users_days=users_days, active_days_window=active_days_window
        )
        if df is not None:
            return df
    end = _add_days_ts(conn, "a.contract_start", ":off")
    u0 = _add_days_ts(conn, "a.contract_start", ":off - :ud")
    d0 = _add_days_ts(conn, "a.contract_start", ":off - :ad")
    lb = _add_days_ts(conn, "a.contract_start", ":off - :mx")
    df = _read(
        conn,
        f"SELECT e.account_id, "
        f"COUNT(DISTINCT CASE WHEN e.ts >= {u0} AND e.user_id != '' THEN e.user_id END) AS active_users, "
        f"COUNT(DISTINCT CASE WHEN e.ts >= {d0} THEN {_day(conn, 'e.ts')} END) AS active_days "
        f"FROM accounts a {_join(conn)} events e "
        f"WHERE e.account_id = a.id AND e.ts >= {lb} AND e.ts < {end} GROUP BY e.account_id",
        {"off": end_offset_days, "ud": users_days, "ad": active_days_window, "mx": max(users_days, active_days_window)},
    )
    return df


def step_occurrences(
    conn: Connection, *, names: list[str], milestone_keys: list[str], strict: bool, prop: str | None = None
) -> pd.DataFrame:
    """Events (and milestone completions as `milestone:<key>`) that can fill funnel steps
    or exclusions, with `prop`: the value of the event property `prop` (None if unset).

    Strict mode also needs to know where the account did something else: it gets one row
    with name None at the first instant of each run of instants that hold only other
    events (a later one would clear nothing more). An instant that also holds a step
    event is no break: PostHog takes such a group without its strict clearing.
    """
    eng = _analytics(conn)
    if eng is not None:
        df = eng.step_occurrences(conn, names=names, milestone_keys=milestone_keys, strict=strict, prop=prop)
        if df is not None:
            return df
    cols = ["account_id", "name", "ts", "prop"]
    parts = []
    if names:
        if prop:
            # The key is bound, never spliced into the SQL.
            value = (
                "CASE WHEN json_valid(properties) THEN json_extract(properties, :path) END"
                if conn.dialect.name == "sqlite"
                else "(CAST(properties AS json) ->> :path)"
            )
            params = {"names": names, "path": '$."' + prop + '"' if conn.dialect.name == "sqlite" else prop}
        else:
            value, params = "NULL", {"names": names}
        parts.append(
            _read(
                conn,
                f"SELECT account_id, event AS name, ts, {value} AS prop FROM events WHERE event IN :names",
                params,
                expanding=("names",),
            )
        )
    if milestone_keys:
        ms = _read(
            conn,
            "SELECT account_id, milestone_key AS name, completed_at AS ts, NULL AS prop FROM account_milestones "
            "WHERE completed_at IS NOT NULL AND milestone_key IN :keys",
            {"keys": milestone_keys},
            expanding=("keys",),
        )
        ms["name"] = "milestone:" + ms["name"]
        parts.append(ms)
    if strict:
        step = "CASE WHEN event IN :names THEN 1 ELSE 0 END" if names else "0"
        done = (
            " UNION ALL SELECT account_id, completed_at AS ts, 1 AS st FROM account_milestones"
            " WHERE completed_at IS NOT NULL AND milestone_key IN :keys"
            if milestone_keys
            else ""
        )
        breaks = _read(
            conn,
            f"WITH s AS (SELECT account_id, ts, {step} AS st FROM events{done}),"
            " t AS (SELECT account_id, ts, MAX(st) AS has_step FROM s GROUP BY account_id, ts),"
            " l AS (SELECT account_id, ts, has_step,"
            " LAG(has_step) OVER (PARTITION BY account_id ORDER BY ts) AS prev FROM t)"
            " SELECT account_id, NULL AS name, ts, NULL AS prop FROM l WHERE has_step = 0 AND prev = 1",
            {**({"names": names} if names else {}), **({"keys": milestone_keys} if milestone_keys else {})},
            expanding=tuple(x for x, v in (("names", names), ("keys", milestone_keys)) if v),
        )
        parts.append(breaks)
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c == "ts" else object) for c in cols})
    out = pd.concat(parts, ignore_index=True)
    out["ts"] = naive_ts(out["ts"])
    out["prop"] = out["prop"].astype(object).where(out["prop"].notna(), None)
    return out[cols].reset_index(drop=True)


def event_property_keys(conn: Connection) -> list[str]:
    """The property names that events carry (for an event-property breakdown)."""
    eng = _analytics(conn)
    if eng is not None and (keys := eng.event_property_keys(conn)) is not None:
        return keys
    if conn.dialect.name == "sqlite":
        sql = (
            "SELECT DISTINCT j.key AS key FROM events e, json_each(e.properties) j "
            "WHERE e.properties IS NOT NULL AND json_valid(e.properties) AND json_type(e.properties) = 'object'"
        )
    else:
        sql = (
            "SELECT DISTINCT jsonb_object_keys(CAST(properties AS jsonb)) AS key FROM events "
            "WHERE properties IS NOT NULL AND substr(properties, 1, 1) = '{'"
        )
    return sorted(str(k) for k in _read(conn, sql)["key"].tolist())


def event_names(conn: Connection) -> pd.DataFrame:
    """Event names with their volume and how many accounts do them."""
    eng = _analytics(conn)
    if eng is not None and (df := eng.event_names(conn)) is not None:
        return df
    return _read(
        conn,
        "SELECT event, COUNT(*) AS events, COUNT(DISTINCT account_id) AS accounts FROM events GROUP BY event ORDER BY events DESC",
    )


def early_event_counts(conn: Connection, *, days: int) -> pd.DataFrame:
    """Per account and event: how many times it happened in the first `days` days (days 0
    to days - 1). An event before the contract start counts as day 0, as a milestone
    completed before it does (and as time to value clamps it)."""
    eng = _analytics(conn)
    if eng is not None and (df := eng.early_event_counts(conn, days=days)) is not None:
        return df
    end = _add_days_ts(conn, "a.contract_start", ":days")
    return _read(
        conn,
        f"SELECT e.account_id, e.event, COUNT(*) AS n FROM accounts a {_join(conn)} events e "
        f"WHERE e.account_id = a.id AND e.ts < {end} GROUP BY e.account_id, e.event",
        {"days": days},
    )


def event_periods(
    conn: Connection, *, event: str, start: datetime | None, end: datetime, first_ever: bool = False
) -> pd.DataFrame:
    """Distinct (account, day) of an event in [start, end); with first_ever, each account's
    first-ever occurrence instead (over all time)."""
    eng = _analytics(conn)
    if eng is not None:
        df = eng.event_periods(conn, event=event, start=start, end=end, first_ever=first_ever)
        if df is not None:
            return df
    if first_ever:
        df = _read(
            conn,
            "SELECT account_id, MIN(ts) AS ts FROM events WHERE event = :e GROUP BY account_id",
            {"e": event},
        )
    else:
        df = _read(
            conn,
            f"SELECT DISTINCT account_id, {_day(conn, 'ts')} AS ts FROM events "
            f"WHERE event = :e AND ts >= :s AND ts < :end",
            {"e": event, "s": _ts_param(conn, start or datetime(1970, 1, 1)), "end": _ts_param(conn, end)},
        )
    df["ts"] = naive_ts(df["ts"]) if first_ever else pd.to_datetime(df["ts"])
    return df


def snapshots(conn: Connection, *, since: date | None = None) -> pd.DataFrame:
    """Stored health snapshots (weekly history)."""
    df = _read(
        conn,
        "SELECT account_id, date, total, milestone, adoption, engagement, value, band, model_version "
        "FROM health_snapshots WHERE date >= :since",
        {"since": since or date(1970, 1, 1)},
    )
    df["date"] = naive_date(df["date"])
    return df


def snapshot_rows(conn: Connection, *, since: date, until: date, limit: int) -> pd.DataFrame | None:
    """Every account's stored snapshot in the window (date, account, band, score), what
    `snapshot_trend` aggregates, compactly (dates and bands as categories, 15 bytes a row),
    so that a filtered trend is a selection of it; None when the window holds more than
    `limit` rows (daily snapshots of a large portfolio: aggregate in SQL instead)."""
    n = _read(
        conn, "SELECT COUNT(*) AS n FROM health_snapshots WHERE date >= :since AND date <= :until", {"since": since, "until": until}
    )["n"].iloc[0]
    if int(n or 0) > limit:
        return None
    df = _read(
        conn,
        "SELECT date, account_id, band, total FROM health_snapshots WHERE date >= :since AND date <= :until",
        {"since": since, "until": until},
    )
    return pd.DataFrame(
        {
            "date": naive_date(df["date"]).astype("category"),
            "account_id": df["account_id"].astype("int32"),
            "band": df["band"].astype("category"),
            "total": pd.to_numeric(df["total"]).astype("float64"),
        }
    )


def account_metric_facts(conn: Connection, *, account_id: int, as_of_end: datetime) -> dict:
    """Event-derived values for checklist items bound to a metric, for one account."""
    role = _json_field(conn, "properties", "role")
    names = (
        "users_ever",
        "weekly_users",
        "admins_trained",
        "analysts_trained",
        "dashboards_created",
        "reports_shared",
    )
    (row,) = fetch(
        conn,
        f"SELECT "
        f"COUNT(DISTINCT CASE WHEN user_id != '' THEN user_id END) AS users_ever, "
        f"COUNT(DISTINCT CASE WHEN ts >= :w0 AND user_id != '' THEN user_id END) AS weekly_users, "
        f"COUNT(DISTINCT CASE WHEN event = 'training_attended' AND {role} = 'admin' THEN user_id END) AS admins_trained, "
        f"COUNT(DISTINCT CASE WHEN event = 'training_attended' AND {role} = 'analyst' THEN user_id END) AS analysts_trained, "
        f"SUM(CASE WHEN event = 'dashboard_created' THEN 1 ELSE 0 END) AS dashboards_created, "
        f"SUM(CASE WHEN event = 'report_shared' THEN 1 ELSE 0 END) AS reports_shared "
        f"FROM events WHERE account_id = :a AND ts < :end",
        {"a": account_id, "w0": _ts_param(conn, as_of_end - timedelta(days=7)), "end": _ts_param(conn, as_of_end)},
    )
    return {k: int(v or 0) for k, v in zip(names, row, strict=True)}


# Checklist metric facts of every account in one pass over the copy's columns (DuckDB).
_METRIC_FACTS = """
WITH e AS (SELECT account_id, user_id, ts, event, properties FROM events WHERE ts < :end),
u AS (SELECT account_id, COUNT(*) AS users_ever, COUNT(*) FILTER (WHERE last >= :w0) AS weekly_users
  FROM (SELECT account_id, user_id, MAX(ts) AS last FROM e WHERE user_id <> '' GROUP BY account_id, user_id)
  GROUP BY account_id),
n AS (SELECT account_id,
  COUNT(DISTINCT CASE WHEN role = 'admin' THEN user_id END) AS admins_trained,
  COUNT(DISTINCT CASE WHEN role = 'analyst' THEN user_id END) AS analysts_trained,
  COUNT(*) FILTER (WHERE event = 'dashboard_created') AS dashboards_created,
  COUNT(*) FILTER (WHERE event = 'report_shared') AS reports_shared
  FROM (SELECT account_id, user_id, event, CASE WHEN event = 'training_attended' AND json_valid(properties)
      THEN json_extract_string(properties, '$.role') END AS role
    FROM e WHERE event IN ('training_attended', 'dashboard_created', 'report_shared'))
  GROUP BY account_id)
SELECT account_id, users_ever, weekly_users, admins_trained, analysts_trained, dashboards_created, reports_shared
FROM u FULL JOIN n USING (account_id)
"""


def metric_facts_columns(conn: Connection, *, as_of_end: datetime) -> pd.DataFrame | None:
    """`account_metric_facts` of every account with an event before as_of_end, as columns
    from the DuckDB copy; None when there is no such copy (the caller reads the database)."""
    eng = _analytics(conn)
    if eng is None or eng.dialect != "duckdb":
        return None
    df = eng._frame(conn, _METRIC_FACTS, {"w0": as_of_end - timedelta(days=7), "end": as_of_end})
    if df is None:
        return None
    for c in df.columns:
        df[c] = df[c].fillna(0).astype("int64")
    return df


def recent_events(conn: Connection, *, account_id: int, limit: int = 50) -> pd.DataFrame:
    df = _read(
        conn,
        "SELECT ts, event, user_id, properties FROM events WHERE account_id = :a ORDER BY ts DESC LIMIT :n",
        {"a": account_id, "n": limit},
    )
    df["ts"] = naive_ts(df["ts"])
    return df


def daily_activity(conn: Connection, *, account_id: int, since: datetime) -> pd.DataFrame:
    """One account's events and active users per day since a date."""
    eng = _analytics(conn)
    if eng is not None and (df := eng.daily_activity(conn, account_id=account_id, since=since)) is not None:
        return df
    df = _read(
        conn,
        f"SELECT {_day(conn, 'ts')} AS day, COUNT(*) AS events, "
        f"COUNT(DISTINCT CASE WHEN user_id != '' THEN user_id END) AS users "
        f"FROM events WHERE account_id = :a AND ts >= :s GROUP BY {_day(conn, 'ts')} ORDER BY day",
        {"a": account_id, "s": _ts_param(conn, since)},
    )
    df["day"] = pd.to_datetime(df["day"])
    return df


_EVENT_QUALITY = """
SELECT (SELECT COUNT(*) FROM events) AS events,
  (SELECT COUNT(*) FROM events e JOIN accounts a ON a.id = e.account_id
    WHERE e.ts < CAST(a.contract_start AS TIMESTAMP)) AS before,
  (SELECT COUNT(DISTINCT e.account_id) FROM events e JOIN accounts a ON a.id = e.account_id
    WHERE e.ts < CAST(a.contract_start AS TIMESTAMP)) AS before_accounts,
  (SELECT COUNT(*) FROM accounts a WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id)) AS no_events
"""


def _event_quality_columns(conn: Connection) -> dict[str, int] | None:
    """The event scans of `data_quality` (rows, events before contract start, accounts
    without events) on the DuckDB copy; None without one (the database is read instead)."""
    eng = _analytics(conn)
    if eng is None or eng.dialect != "duckdb":
        return None
    df = eng._frame(conn, _EVENT_QUALITY, {})
    return None if df is None else {c: int(df[c].iloc[0]) for c in df.columns}


def data_quality(conn: Connection) -> dict:
    """Rows per table, events before contract start, accounts without events, last import."""
    tables = [
        "team_members",
        "accounts",
        "events",
        "account_milestones",
        "outcomes",
        "success_plans",
        "checklist_items",
        "health_snapshots",
        "interventions",
        "change_log",
    ]
    ev = _event_quality_columns(conn)
    counts = {
        t: ev["events"] if ev is not None and t == "events" else int(fetch(conn, f"SELECT COUNT(*) FROM {t}")[0][0])
        for t in tables
    }
    if ev is not None:
        before, no_events = (ev["before"], ev["before_accounts"]), ev["no_events"]
    else:
        start_ts = _add_days_ts(conn, "a.contract_start", "0")
        before = fetch(
            conn,
            f"SELECT COUNT(*), COUNT(DISTINCT e.account_id) FROM events e JOIN accounts a ON a.id = e.account_id WHERE e.ts < {start_ts}",
        )[0]
        no_events = int(
            fetch(
                conn,
                "SELECT COUNT(*) FROM accounts a WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = a.id)",
            )[0][0]
        )
    last_rows = fetch(
        conn,
        "SELECT finished_at, actor, duplicates_skipped, summary FROM import_runs "
        "WHERE status = 'imported' ORDER BY finished_at DESC LIMIT 1",
    )
    last = last_rows[0] if last_rows else None
    dup_total = int(
        fetch(conn, "SELECT COALESCE(SUM(duplicates_skipped), 0) FROM import_runs WHERE status = 'imported'")[0][0]
    )
    rejected = int(fetch(conn, "SELECT COUNT(*) FROM import_runs WHERE status = 'rejected'")[0][0])
    return {
        "rows": counts,
        "events_before_start": int(before[0]),
        "accounts_with_events_before_start": int(before[1]),
        "accounts_without_events": no_events,
        "duplicates_skipped_total": dup_total,
        "rejected_imports": rejected,
        "last_import": None
        if last is None
        else {
            "at": naive_ts(pd.Series([last[0]])).iloc[0].to_pydatetime(),
            "by": last[1],
            "duplicates_skipped": int(last[2]),
        },
    }


def _ids_clause(conn: Connection, col: str) -> str:
    """`col` is one of the ids bound as :ids (one parameter, any number of ids)."""
    if conn.dialect.name == "sqlite":
        return f"{col} IN (SELECT value FROM json_each(:ids))"
    return f"{col} = ANY(CAST(:ids AS integer[]))"


def _ids_param(conn: Connection, ids: list[int]) -> object:
    import json

    ids = [int(i) for i in ids]
    return json.dumps(ids) if conn.dialect.name == "sqlite" else ids


def snapshot_trend(conn: Connection, *, since: date, until: date, account_ids: list[int] | None) -> pd.DataFrame:
    """Per snapshot date and band: accounts and summed score (aggregated in SQL)."""
    where = "date >= :since AND date <= :until"
    params: dict = {"since": since, "until": until}
    if account_ids is not None:
        where += " AND " + _ids_clause(conn, "account_id")
        params["ids"] = _ids_param(conn, account_ids)
    df = _read(
        conn,
        f"SELECT date, band, COUNT(*) AS accounts, SUM(total) AS total FROM health_snapshots WHERE {where} GROUP BY date, band",
        params,
    )
    df["date"] = naive_date(df["date"])
    return df
