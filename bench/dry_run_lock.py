"""How long a user's checklist save waits while someone validates a large events file
(issue 10, point 6: budget under 1 s on SQLite and PostgreSQL).

    python bench/dry_run_lock.py                                   # SQLite, 2,000,000 events
    python bench/dry_run_lock.py --db-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/dry_run_lock.py --events 200000 --mode thread

A fresh database (a SQLite file in a temporary folder, or a PostgreSQL schema made and
dropped here) gets a small demo portfolio; an events.csv of N new events for its accounts
is validated (a dry run) by `manage.py import --dry-run` in another process (--mode process)
or in a thread of this process, as the server would (--mode thread); meanwhile this process
saves one checklist item every 0.2 s through services.plans and records how long each save
took. Prints JSON: the longest save, the median, the count and any failures; and whether
the dry run wrote anything. Diagnostics only: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _database(url: str | None, tmp: Path) -> tuple[str, object]:
    """A fresh database URL and a function that removes it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not url or url.startswith("sqlite"):
        return f"sqlite:///{tmp / 'lock.db'}", lambda: None
    from db.session import database_url

    admin = create_engine(database_url(url), isolation_level="AUTOCOMMIT")
    schema = f"bench_lock_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    target = make_url(database_url(url)).update_query_dict({"options": f"-csearch_path={schema}"})
    return target.render_as_string(hide_password=False), drop


def _write_events(path: Path, url: str, n: int) -> None:
    from sqlalchemy import select

    from db.models import Account
    from db.session import session_scope

    with session_scope(url) as s:
        ids = list(s.execute(select(Account.external_id).order_by(Account.id)).scalars())
    with path.open("w") as f:
        f.write("account_id,event,timestamp,user_id,properties\n")
        for i in range(n):
            # Unique keys: (account, second) never repeats for n < len(ids) * 86400 * 28.
            sec = i // len(ids)
            f.write(
                f"{ids[i % len(ids)]},lock_probe,2026-02-{1 + sec // 86400:02d}T"
                f"{sec // 3600 % 24:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z,u{i % 50},\n"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db-url", default=None, help="a PostgreSQL server to use (default: a SQLite file)")
    p.add_argument("--events", type=int, default=2_000_000, help="rows of the validated events.csv")
    p.add_argument("--accounts", type=int, default=300, help="accounts of the demo portfolio")
    p.add_argument("--mode", choices=["process", "thread"], default="process", help="where the dry run runs")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between two saves")
    args = p.parse_args(argv)

    from sqlalchemy import func, select

    from db.importer import import_dir
    from db.models import ChecklistItem, Event
    from db.session import dispose_engines, session_scope
    from services.access import user_for_email
    from services.plans import ItemChange, in_session, save_checklist
    from services.setup import seed_demo

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url, drop = _database(args.db_url, tmp)
        try:
            seed_demo(url=url, accounts=args.accounts, seed=5, events=args.accounts * 20, history_weeks=0)
            (tmp / "in").mkdir()
            _write_events(tmp / "in" / "events.csv", url, args.events)
            with session_scope(url) as s:
                admin = user_for_email(s, "admin@example.com", mode="header")
                item_id = s.execute(select(ChecklistItem.id).order_by(ChecklistItem.id)).scalars().first()
                events_before = s.execute(select(func.count()).select_from(Event)).scalar_one()

            def save(status: str) -> float:
                with session_scope(url) as s:
                    it = s.get(ChecklistItem, item_id)
                    version, account = it.version, it.account_id
                t0 = time.perf_counter()
                in_session(
                    save_checklist,
                    admin,
                    account_id=account,
                    changes=[ItemChange(item_id, version, {"status": status})],
                    url=url,
                )
                return time.perf_counter() - t0

            idle = [save(s) for s in ["in progress", "blocked"] * 5]
            done = threading.Event()
            out: dict = {}
            t0 = time.perf_counter()
            if args.mode == "process":
                proc = subprocess.Popen(
                    [sys.executable, str(ROOT / "manage.py"), "import", str(tmp / "in"), "--dry-run", "--quiet"],
                    env={**os.environ, "DATABASE_URL": url},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                threading.Thread(target=lambda: (out.update(rc=proc.wait()), done.set()), daemon=True).start()
            else:

                def run() -> None:
                    try:
                        out["report"] = import_dir(tmp / "in", url=url, dry_run=True)
                    finally:
                        done.set()

                threading.Thread(target=run, daemon=True).start()
            waits: list[float] = []
            failures: list[str] = []
            n = 0
            while not done.is_set():
                n += 1
                try:
                    waits.append(save("in progress" if n % 2 else "blocked"))
                except Exception as exc:  # noqa: BLE001 - a failed save is a result here
                    failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                time.sleep(args.interval)
            dry_seconds = time.perf_counter() - t0
            with session_scope(url) as s:
                events_after = s.execute(select(func.count()).select_from(Event)).scalar_one()
            report = out.get("report")
            result = {
                "database": "postgresql" if url.startswith("postgresql") else "sqlite",
                "mode": args.mode,
                "events_validated": args.events,
                "dry_run_seconds": round(dry_seconds, 1),
                "dry_run_ok": (out.get("rc") == 0) if args.mode == "process" else bool(report and report.ok),
                "dry_run_wrote_events": events_after - events_before,
                "saves_during_dry_run": len(waits),
                "save_max_s": round(max(waits), 3) if waits else None,
                "save_median_s": round(statistics.median(waits), 3) if waits else None,
                "save_idle_max_s": round(max(idle), 3),
                "save_failures": failures,
            }
            if args.mode == "process" and out.get("rc") != 0:
                result["dry_run_stderr"] = proc.stderr.read()[-2000:]
            print(json.dumps(result, indent=2))
        finally:
            dispose_engines()
            drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
