"""Each aggregation's SQL, written once in DuckDB's dialect and transpiled by sqlglot to
PostgreSQL and ClickHouse.

The templates read three relations: `events(id, account_id, event, ts, user_id,
properties)`, `accounts(id, contract_start)` and `account_milestones(account_id,
milestone_key, completed_at)`. Parameters are `:name` placeholders: the template is
transpiled once (cached), then each value is rendered as a literal of the target dialect
(ints through int(), strings quoted and escaped, timestamps from datetime), so nothing a
user typed is ever spliced in as SQL.

Only the JSON bits (`prop_expr`, `PROPERTY_KEYS`) differ per dialect: the three engines
share no JSON function names that sqlglot maps one to one.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime

DIALECTS = ("duckdb", "postgres", "clickhouse")

ACTIVITY = """
SELECT account_id,
  COUNT(DISTINCT CASE WHEN ts >= :u0 AND user_id <> '' THEN user_id END) AS active_users,
  COUNT(DISTINCT CASE WHEN ts >= :d0 THEN CAST(ts AS DATE) END) AS active_days,
  COUNT(DISTINCT CASE WHEN ts >= :w0 AND user_id <> '' THEN user_id END) AS weekly_users,
  MAX(ts) AS last_event
FROM events WHERE ts >= :lb AND ts < :end GROUP BY account_id
"""

LAST_EVENTS = """
SELECT account_id, MAX(ts) AS last_event FROM events
WHERE account_id IN :ids AND ts < :end GROUP BY account_id
"""

# Every account's (a copy engine scans the column once; an IN list of tens of thousands of
# ids took DuckDB longer to parse than the scan).
LAST_EVENTS_EVERY = """
SELECT account_id, MAX(ts) AS last_event FROM events WHERE ts < :end GROUP BY account_id
"""

# Day N of an account ends contract_start + N days (metrics/days.py); offsets are days.
ACTIVITY_ANCHORED = """
SELECT e.account_id,
  COUNT(DISTINCT CASE WHEN e.ts >= CAST(a.contract_start + :off_u AS TIMESTAMP) AND e.user_id <> ''
    THEN e.user_id END) AS active_users,
  COUNT(DISTINCT CASE WHEN e.ts >= CAST(a.contract_start + :off_d AS TIMESTAMP)
    THEN CAST(e.ts AS DATE) END) AS active_days
FROM accounts a JOIN events e ON e.account_id = a.id
WHERE e.ts >= CAST(a.contract_start + :off_lb AS TIMESTAMP) AND e.ts < CAST(a.contract_start + :off AS TIMESTAMP)
GROUP BY e.account_id
"""

STEP_EVENTS = "SELECT account_id, event AS name, ts, {prop} AS prop FROM events WHERE event IN :names"

STEP_MILESTONES = """
SELECT account_id, milestone_key AS name, completed_at AS ts FROM account_milestones
WHERE completed_at IS NOT NULL AND milestone_key IN :keys
"""

# Strict funnels: the first instant of each run of instants holding only other events.
STRICT_BREAKS = """
WITH s AS (SELECT account_id, ts, {step} AS st FROM events{done}),
t AS (SELECT account_id, ts, MAX(st) AS has_step FROM s GROUP BY account_id, ts),
l AS (SELECT account_id, ts, has_step, LAG(has_step) OVER (PARTITION BY account_id ORDER BY ts) AS prev FROM t)
SELECT account_id, ts FROM l WHERE has_step = 0 AND prev = 1
"""
STRICT_DONE = (
    " UNION ALL SELECT account_id, completed_at AS ts, 1 AS st FROM account_milestones"
    " WHERE completed_at IS NOT NULL AND milestone_key IN :keys"
)

EVENT_NAMES = """
SELECT event, COUNT(*) AS events, COUNT(DISTINCT account_id) AS accounts FROM events
GROUP BY event ORDER BY events DESC, event
"""

EARLY_EVENT_COUNTS = """
SELECT e.account_id, e.event, COUNT(*) AS n FROM accounts a JOIN events e ON e.account_id = a.id
WHERE e.ts < CAST(a.contract_start + :days AS TIMESTAMP) GROUP BY e.account_id, e.event
"""

FIRST_EVER = "SELECT account_id, MIN(ts) AS first_ts FROM events WHERE event = :e GROUP BY account_id"

EVENT_DAYS = """
SELECT DISTINCT account_id, CAST(ts AS DATE) AS day FROM events
WHERE event = :e AND ts >= :s AND ts < :end
"""

DAILY_ACTIVITY = """
SELECT CAST(ts AS DATE) AS day, COUNT(*) AS events,
  COUNT(DISTINCT CASE WHEN user_id <> '' THEN user_id END) AS users
FROM events WHERE account_id = :a AND ts >= :s GROUP BY CAST(ts AS DATE) ORDER BY day
"""

# JSON: the value as JSON text (SQLite's json_extract returns it typed; engine/__init__
# decodes the few distinct values the same way), NULL when absent or not JSON.
_PROP = {
    "duckdb": "CASE WHEN json_valid(properties) THEN CAST(json_extract(properties, :path) AS VARCHAR) END",
    "postgres": "CAST(CAST(properties AS json) -> :key AS text)",
    "clickhouse": "if(isValidJSON(properties), nullIf(JSONExtractRaw(properties, :key), ''), NULL)",
}

PROPERTY_KEYS = {
    "duckdb": "SELECT DISTINCT unnest(json_keys(properties)) AS key FROM events "
    "WHERE properties IS NOT NULL AND json_valid(properties) AND json_type(properties) = 'OBJECT'",
    "postgres": "SELECT DISTINCT jsonb_object_keys(CAST(properties AS jsonb)) AS key FROM events "
    "WHERE properties IS NOT NULL AND substr(properties, 1, 1) = '{'",
    "clickhouse": "SELECT DISTINCT arrayJoin(JSONExtractKeys(assumeNotNull(properties))) AS key FROM events "
    "WHERE properties IS NOT NULL AND isValidJSON(properties) AND JSONType(assumeNotNull(properties)) = 'Object'",
}

_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def prop_expr(dialect: str) -> str:
    return _PROP[dialect]


@functools.lru_cache(maxsize=256)
def transpiled(template: str, dialect: str) -> str:
    """The template in the target dialect, placeholders kept as `:name`."""
    if dialect == "duckdb":
        return template
    import sqlglot

    # Placeholders survive transpiling as named parameters; protect them as identifiers.
    protected = _PLACEHOLDER.sub(lambda m: f"__p_{m.group(1)}", template)
    out = sqlglot.transpile(protected, read="duckdb", write=dialect)[0]
    if dialect == "clickhouse":
        # sqlglot maps TIMESTAMP to DateTime (seconds); events carry microseconds.
        out = out.replace("Nullable(DateTime)", "Nullable(DateTime64(6))")
    return re.sub(r"__p_([a-z0-9_]+)", r":\1", out)


def literal(value: object, dialect: str) -> str:
    """One parameter value as a SQL literal of `dialect`."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return f"toDateTime64('{text}', 6)" if dialect == "clickhouse" else f"TIMESTAMP '{text}'"
    if isinstance(value, date):
        return f"toDate('{value.isoformat()}')" if dialect == "clickhouse" else f"DATE '{value.isoformat()}'"
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("an empty list parameter")
        return "(" + ", ".join(literal(v, dialect) for v in value) + ")"
    if isinstance(value, str):
        s = value.replace("'", "''")
        if dialect == "clickhouse":  # ClickHouse also reads backslash escapes in literals
            s = s.replace("\\", "\\\\")
        return f"'{s}'"
    raise TypeError(f"unsupported parameter type {type(value).__name__}")


def render(template: str, dialect: str, params: dict) -> str:
    """The template in `dialect` with every placeholder replaced by its literal."""
    sql = transpiled(template, dialect)

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in params:
            raise KeyError(f"missing SQL parameter {name!r}")
        return literal(params[name], dialect)

    return _PLACEHOLDER.sub(sub, sql)
