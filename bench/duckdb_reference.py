"""The peer of `manage.py report funnel|retention|health` in the CLI benchmark (bench/cli.py):
a plain DuckDB script computing the same aggregate over the same database's events and
accounts, printed as CSV. Whole-process time of this script is what the report's
whole-process time is compared with.

    python bench/duckdb_reference.py PARQUET_DIR funnel --step a --step b [--window-days 14]
    python bench/duckdb_reference.py PARQUET_DIR retention --start-event a --return-event b --to 2026-11-29
    python bench/duckdb_reference.py PARQUET_DIR health --as-of 2026-11-29

PARQUET_DIR holds events.parquet (account_id, event, ts, user_id; sorted by account and time)
and accounts.parquet, written by bench/cli.py from the SQLite file (DuckDB's sqlite scanner
is an extension downloaded at run time, which this machine cannot fetch). The SQL is the
aggregate in its simplest honest form, not the app's full definitions: the funnel is
ordered, from each account's first step-1 event, each step after the one before within the
window; retention is weekly recurring retention in 7-day periods counted back from the end
date (start event in period P, return event in period P + k); health is the per-account facts a score is made of (active users and days in
the last 30 days, events, first-value reached, seats) with a score from them. Imports only
duckdb and the standard library, as a script written for the job would.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import date, timedelta
from pathlib import Path


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def funnel_sql(steps: list[str], window_days: int) -> str:
    ctes = [
        f"e AS (SELECT account_id, event, ts FROM events WHERE event IN ({', '.join(map(_q, steps))}))",
        f"s1 AS (SELECT account_id, min(ts) AS t1, min(ts) AS t FROM e WHERE event = {_q(steps[0])} GROUP BY 1)",
    ]
    for i, step in enumerate(steps[1:], start=2):
        ctes.append(
            f"s{i} AS (SELECT p.account_id, p.t1, min(e.ts) AS t FROM s{i - 1} p JOIN e ON e.account_id = p.account_id "
            f"AND e.event = {_q(step)} AND e.ts >= p.t AND e.ts <= p.t1 + INTERVAL {int(window_days)} DAY GROUP BY 1, 2)"
        )
    counts = " UNION ALL ".join(f"SELECT {i} AS step, count(*) AS n FROM s{i}" for i in range(1, len(steps) + 1))
    return f"WITH {', '.join(ctes)}, c AS ({counts}) SELECT step, n, n / first_value(n) OVER (ORDER BY step) AS conversion FROM c ORDER BY step"


def retention_sql(start_event: str, return_event: str, to: date, intervals: int) -> str:
    """Periods of 7 days counted back from the end date (the last one starts on it); p0 is the
    cohort (accounts with the start event in the period), pK those of it with the return
    event K periods later, empty where that period is after the end."""
    first = to - timedelta(weeks=intervals - 1)
    end = to + timedelta(days=1)
    span = f"ts >= DATE '{first}' AND ts < DATE '{end}'"
    period = f"datediff('day', DATE '{first}', ts) // 7"
    cols = ", ".join(
        f"CASE WHEN s.p + {k} < {intervals} THEN count(DISTINCT CASE WHEN r.p = s.p + {k} THEN r.account_id END) END AS p{k}"
        for k in range(1, intervals)
    )
    return f"""
    WITH s AS (SELECT DISTINCT account_id, {period} AS p FROM events WHERE event = {_q(start_event)} AND {span}),
         r AS (SELECT DISTINCT account_id, {period} AS p FROM events WHERE event = {_q(return_event)} AND {span})
    SELECT DATE '{first}' + 7 * CAST(s.p AS INTEGER) AS cohort, count(DISTINCT s.account_id) AS p0, {cols}
    FROM s LEFT JOIN r ON r.account_id = s.account_id AND r.p > s.p
    GROUP BY s.p ORDER BY s.p
    """


def health_sql(as_of: date) -> str:
    end = as_of + timedelta(days=1)
    return f"""
    WITH recent AS (SELECT account_id, count(*) AS events_30d, count(DISTINCT user_id) AS active_users,
                           count(DISTINCT CAST(ts AS DATE)) AS active_days
                    FROM events WHERE ts >= DATE '{end}' - INTERVAL 30 DAY AND ts < DATE '{end}' GROUP BY 1),
         firsts AS (SELECT account_id, min(ts) AS first_event, count(DISTINCT event) AS kinds
                    FROM events WHERE ts < DATE '{end}' GROUP BY 1)
    SELECT a.external_id AS account_id, a.name, a.segment, a.licensed_seats,
           coalesce(r.active_users, 0) AS active_users, coalesce(r.active_days, 0) AS active_days,
           coalesce(r.events_30d, 0) AS events_30d, f.kinds, f.first_event,
           round(100 * (0.4 * least(1, coalesce(r.active_users, 0) / greatest(a.licensed_seats, 1))
                      + 0.4 * coalesce(r.active_days, 0) / 30 + 0.2 * least(1, coalesce(f.kinds, 0) / 10)), 1) AS total
    FROM accounts a LEFT JOIN recent r ON r.account_id = a.id LEFT JOIN firsts f ON f.account_id = a.id
    WHERE a.contract_start <= DATE '{as_of}'
    ORDER BY a.external_id
    """


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="duckdb_reference.py", description=__doc__.split("\n\n")[0])
    p.add_argument("parquet_dir", type=Path)
    p.add_argument("report", choices=["funnel", "retention", "health"])
    p.add_argument("--step", action="append", default=[])
    p.add_argument("--window-days", type=int, default=14)
    p.add_argument("--start-event")
    p.add_argument("--return-event")
    p.add_argument("--intervals", type=int, default=8)
    p.add_argument("--to", type=date.fromisoformat)
    p.add_argument("--as-of", type=date.fromisoformat, default=date.today())
    args = p.parse_args(argv)

    import duckdb

    con = duckdb.connect()
    for table in ("events", "accounts"):
        path = args.parquet_dir / f"{table}.parquet"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({_q(str(path))})")
    if args.report == "funnel":
        if len(args.step) < 2:
            p.error("a funnel needs at least two --step options")
        sql = funnel_sql(args.step, args.window_days)
    elif args.report == "retention":
        if not (args.start_event and args.return_event):
            p.error("retention needs --start-event and --return-event")
        sql = retention_sql(args.start_event, args.return_event, args.to or args.as_of, args.intervals)
    else:
        sql = health_sql(args.as_of)
    cur = con.execute(sql)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow([d[0] for d in cur.description])
    out.writerows(cur.fetchall())
    return 0


if __name__ == "__main__":
    sys.exit(main())
