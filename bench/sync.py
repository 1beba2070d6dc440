"""Sync benchmark (issue 14): `manage.py sync` of 20,000 accounts and 2,000,000 events from a
PostgreSQL source (a scratch schema filled with generate_series, its own table and column
names) into a fresh SQLite file and a fresh PostgreSQL database, each a whole process under
/usr/bin/time -v (wall time, peak RSS); then 10,000 new events added at the source and the
incremental run that reads only them.

    python -m bench.sync [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--events 2000000]

Budgets (issue 14): the full sync under 90 s and 1.5 GB, the incremental run under 5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench import _drop_pg_database, _fresh_target, _timed_cli  # noqa: E402

SCHEMA = "bench_sync_source"
EVENTS = ["workspace_created", "integration_connected", "user_invited", "dashboard_created", "report_shared"]

MAPPING = f"""
[accounts]
query = "SELECT id AS account_id, company AS name, tier AS segment, start_date AS contract_start FROM {SCHEMA}.crm_accounts"

[events]
query = "SELECT account AS account_id, name AS event, ts AS timestamp, uid AS user_id FROM {SCHEMA}.product_events WHERE ts > :watermark"
watermark = "timestamp"
"""


def fill_source(pg_url: str, *, accounts: int, events: int) -> None:
    """The source schema: accounts S-00001.., events spread over half a year, each unique."""
    from sqlalchemy import create_engine, text

    names = "ARRAY[" + ", ".join(f"'{e}'" for e in EVENTS) + "]"
    eng = create_engine(pg_url)
    with eng.begin() as c:
        c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        c.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        c.execute(
            text(
                f"CREATE TABLE {SCHEMA}.crm_accounts AS SELECT 'S-' || lpad(i::text, 6, '0') AS id, "
                "'Company ' || i AS company, (ARRAY['SMB', 'Mid-Market', 'Enterprise', 'Strategic'])[1 + i % 4] AS tier, "
                "DATE '2025-06-01' + (i % 150) AS start_date FROM generate_series(1, :n) AS i"
            ),
            {"n": accounts},
        )
        c.execute(
            text(
                f"CREATE TABLE {SCHEMA}.product_events AS SELECT 'S-' || lpad((1 + i % :a)::text, 6, '0') AS account, "
                f"({names})[1 + (i / :a) % {len(EVENTS)}] AS name, "
                "TIMESTAMP '2025-06-01' + i * INTERVAL '7 seconds' AS ts, 'u' || (i % 11) AS uid "
                "FROM generate_series(1, :n) AS i"
            ),
            {"a": accounts, "n": events},
        )
        c.execute(text(f"CREATE INDEX ON {SCHEMA}.product_events (ts)"))
    eng.dispose()


def add_events(pg_url: str, *, accounts: int, n: int) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(pg_url)
    with eng.begin() as c:
        c.execute(
            text(
                f"INSERT INTO {SCHEMA}.product_events SELECT 'S-' || lpad((1 + i % :a)::text, 6, '0'), 'report_shared', "
                f"(SELECT max(ts) FROM {SCHEMA}.product_events) + i * INTERVAL '1 second', 'u' || (i % 11) "
                "FROM generate_series(1, :n) AS i"
            ),
            {"a": accounts, "n": n},
        )
    eng.dispose()


def bench_sync(pg_url: str, *, accounts: int = 20_000, events: int = 2_000_000, added: int = 10_000) -> dict:
    from sqlalchemy import create_engine, text

    out: dict = {}
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    mapping = work / "sync.toml"
    mapping.write_text(MAPPING)
    source = pg_url
    try:
        for kind, key in (("sqlite", "sync_2m"), (pg_url, "sync_2m_pg")):
            print(f"  source: {accounts:,} accounts, {events:,} events ...", flush=True)
            fill_source(pg_url, accounts=accounts, events=events)
            target = _fresh_target(kind, work, key)
            args = ["sync", "--source", source, "--mapping", str(mapping)]
            seconds, rss = _timed_cli(args, target)
            print(f"  {key}: {events:,} events in {seconds:.1f} s, peak {rss:.0f} MB", flush=True)
            out[f"{key}_wall"], out[f"{key}_rss_mb"] = seconds, rss
            add_events(pg_url, accounts=accounts, n=added)
            seconds, rss = _timed_cli(args, target)
            print(f"  {key} incremental: {added:,} new events in {seconds:.1f} s, peak {rss:.0f} MB", flush=True)
            out[f"{key}_incremental_wall"] = seconds
            eng = create_engine(target)
            with eng.connect() as c:
                out[f"{key}_events"] = int(c.execute(text("SELECT COUNT(*) FROM events")).scalar_one())
            eng.dispose()
            if kind != "sqlite":
                _drop_pg_database(kind, f"onboarding_{key}_bench")
    finally:
        eng = create_engine(pg_url)
        with eng.begin() as c:
            c.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        eng.dispose()
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__.split("\n\n")[0])
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--accounts", type=int, default=20_000)
    args = p.parse_args(argv)
    r = bench_sync(args.pg_url, accounts=args.accounts, events=args.events)
    for k, v in r.items():
        print(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
