"""The benchmark: every performance budget of the issues, measured on the 20,000-account demo
database (about 2,000,000 events), medians of several runs, written to BENCHMARKS.md.

    python manage.py bench                      # build data/bench.db if missing, run all
    python manage.py bench --only analytics     # analytics | pages | save | import | load
    DATABASE_URL=postgresql+psycopg://... python manage.py bench --db-url $DATABASE_URL

Timings are wall-clock seconds on this machine; nothing here asserts (tests never time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results.json"
BENCH_DB = f"sqlite:///{ROOT / 'data' / 'bench.db'}"
AS_OF = date(2026, 11, 29)
ACCOUNTS = 20_000

# (key, what, budget in seconds, issue)
BUDGETS = [
    ("import_2m_wall", "CLI import of 2,000,000 events into SQLite: wall time (median)", 30.0, 16),
    ("import_2m_rss_mb", "CLI import of 2,000,000 events into SQLite: peak memory (MB)", 1024.0, 16),
    ("import_2m_pg_wall", "CLI import of 2,000,000 events into PostgreSQL: wall time (median)", 30.0, 16),
    ("import_2m_pg_rss_mb", "CLI import of 2,000,000 events into PostgreSQL: peak memory (MB)", 1024.0, 16),
    ("import_10m_ratio", "CLI import of 10,000,000 events: time / the 2M time (linear: 5)", 5.5, 16),
    ("import_10m_rss_mb", "CLI import of 10,000,000 events: peak memory (MB)", 1024.0, 16),
    ("sync_2m_wall", "manage.py sync of 2,000,000 events (and 20,000 accounts) from PostgreSQL into SQLite: wall", 90.0, 14),
    ("sync_2m_rss_mb", "manage.py sync of 2,000,000 events from PostgreSQL into SQLite: peak memory (MB)", 1536.0, 14),
    ("sync_2m_incremental_wall", "manage.py sync, incremental run adding 10,000 events, into SQLite: wall", 5.0, 14),
    ("sync_2m_pg_wall", "manage.py sync of 2,000,000 events from PostgreSQL into PostgreSQL: wall", 90.0, 14),
    ("sync_2m_pg_rss_mb", "manage.py sync of 2,000,000 events into PostgreSQL: peak memory (MB)", 1536.0, 14),
    ("sync_2m_pg_incremental_wall", "manage.py sync, incremental run adding 10,000 events, into PostgreSQL: wall", 5.0, 14),
    ("seed_100k_wall", "seed-demo --accounts 100000: wall time", 300.0, 16),
    ("seed_100k_rss_mb", "seed-demo --accounts 100000: peak memory (MB)", 3072.0, 16),
    ("cold_funnel", "Funnel, all accounts, cold (facts loaded from the database)", 1.5, 3),
    ("cold_ttv", "Time to value, all accounts, cold", 1.5, 3),
    ("cold_cohorts", "Cohorts, all accounts, cold", 1.5, 3),
    ("cold_health", "Health for all accounts, cold", 1.5, 3),
    ("warm_funnel", "Funnel, per-account facts loaded", 0.2, 3),
    ("warm_ttv", "Time to value, per-account facts loaded", 0.2, 3),
    ("warm_cohorts", "Cohorts, per-account facts loaded", 0.2, 3),
    ("warm_health", "Health for all accounts, per-account facts loaded", 0.2, 3),
    ("page_cold_portfolio", "Portfolio page, cold (server-side, AppTest)", 2.0, 4),
    ("page_cold_funnel", "Funnel page, cold", 2.0, 4),
    ("page_cold_cohorts", "Cohorts page, cold", 2.0, 4),
    ("page_cold_health_model", "Health model page, cold", 2.0, 4),
    ("page_filter_portfolio", "Portfolio page after a filter change", 0.5, 4),
    ("page_filter_funnel", "Funnel page after a filter change", 0.5, 4),
    ("page_filter_cohorts", "Cohorts page after a filter change", 0.5, 4),
    ("page_filter_health_model", "Health model page after a filter change", 0.5, 4),
    ("checklist_save", "Checklist save (service: validate, version check, change log, commit)", 0.3, 5),
    ("checklist_save_page", "Checklist save through the Success plans page (click Save to page shown again)", 0.3, 5),
    ("load_page_p95", "20 concurrent sessions: page time p95", 3.0, 6),
    ("load_lost_saves", "20 concurrent sessions: acknowledged saves lost or duplicated", 0.0, 6),
    ("cli_funnel_ratio", "`manage.py report funnel`, whole process, CPU ÷ a DuckDB script's", 2.0, 16),
    ("cli_retention_ratio", "`manage.py report retention`, whole process, CPU ÷ a DuckDB script's", 2.0, 16),
    ("cli_health_ratio", "`manage.py report health`, whole process, CPU ÷ a DuckDB script's", 2.0, 16),
]


def median_of(
    fn: Callable[[], object], runs: int, before: Callable[[], object] | None = None
) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def ensure_db(url: str) -> None:
    from db.settings_store import init_db
    from services.setup import account_count

    init_db(url)
    n = account_count(url)
    if n >= ACCOUNTS:
        return
    print(f"building the benchmark database ({ACCOUNTS:,} accounts) at {url} ...", flush=True)
    from services.setup import seed_demo

    seed_demo(url=url, accounts=ACCOUNTS, seed=42, as_of=AS_OF, replace=n > 0, history_weeks=12)


# ----------------------------------------------------------------------------- analytics


def bench_analytics(url: str, runs: int) -> dict:
    from services import analytics as an

    steps = ["workspace_created", "integration_connected", "user_invited", "dashboard_created"]
    jobs = {
        "funnel": lambda src: an.funnel_report(src, steps=steps, as_of=AS_OF),
        "ttv": lambda src: an.ttv_report(src, by="segment", as_of=AS_OF),
        "cohorts": lambda src: an.cohort_report(src, by="month", as_of=AS_OF),
        "health": lambda src: an.health_table(src, as_of=AS_OF),
    }
    out = {}
    for name, job in jobs.items():
        cold = []
        for _ in range(runs):
            src = an.Facts(url)  # nothing loaded: every fact comes from the database
            t0 = time.perf_counter()
            job(src)
            cold.append(time.perf_counter() - t0)
        src = an.Facts(url)
        job(src)
        warm, _ = median_of(lambda src=src, job=job: job(src), runs, before=src.clear_results)
        out[f"cold_{name}"] = statistics.median(cold)
        out[f"warm_{name}"] = warm
        print(f"  {name:8s} cold {statistics.median(cold):.3f} s   warm {warm:.3f} s", flush=True)
    return out


# ----------------------------------------------------------------------------- pages


def bench_pages(url: str, runs: int) -> dict:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DEMO_MODE", "1")  # the benchmark database is a demo: open it as the local demo
    pages = {
        "portfolio": None,
        "funnel": "app_pages/funnel.py",
        "cohorts": "app_pages/cohorts.py",
        "health_model": "app_pages/health_model.py",
    }
    out = {}
    # Warm the process once (imports, first-start checks), as a running server would be.
    AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    for name, path in pages.items():
        cold, filt = [], []
        for i in range(runs):
            st.cache_resource.clear()
            st.cache_data.clear()
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
            at.query_params["as_of"] = AS_OF.isoformat()
            if path:
                at.run()  # the home page first, then switch: time only the switch
                st.cache_resource.clear()
                at.switch_page(path)
            t0 = time.perf_counter()
            at.run()
            cold.append(time.perf_counter() - t0)
            assert not at.exception, at.exception
            seg = ["SMB", "Enterprise", "Mid-Market", "Strategic", "SMB"][i % 5]
            at.multiselect(key="segment").set_value([seg])
            t0 = time.perf_counter()
            at.run()
            filt.append(time.perf_counter() - t0)
            assert not at.exception, at.exception
        out[f"page_cold_{name}"] = statistics.median(cold)
        out[f"page_filter_{name}"] = statistics.median(filt)
        print(
            f"  {name:13s} cold {statistics.median(cold):.3f} s   after filter {statistics.median(filt):.3f} s",
            flush=True,
        )
    return out


# ----------------------------------------------------------------------------- save


def bench_save(url: str, runs: int) -> dict:
    from sqlalchemy import text

    from db.session import get_engine, session_scope
    from services.access import user_for_email
    from services.plans import ItemChange, save_checklist

    with get_engine(url).connect() as c:
        rows = c.execute(
            text(
                "SELECT t.email, a.id, c.id, c.version FROM accounts a JOIN team_members t ON t.id = a.csm_id "
                "JOIN checklist_items c ON c.account_id = a.id WHERE t.role = 'csm' ORDER BY a.id, c.position LIMIT 1"
            )
        ).one()
    email, account_id, item_id, version = rows
    with session_scope(url) as s:
        user = user_for_email(s, email, mode="bench")
    times = []
    for i in range(max(runs, 10)):
        with session_scope(url) as s:
            t0 = time.perf_counter()
            res = save_checklist(
                s, user, account_id=account_id, changes=[ItemChange(item_id, version, {"actual": f"bench {i}"})]
            )
            times.append(time.perf_counter() - t0)
        version = res.versions[item_id]
    print(f"  checklist save (service) median {statistics.median(times) * 1000:.0f} ms", flush=True)
    return {"checklist_save": statistics.median(times), "checklist_save_page": bench_save_page(url, runs)}


def bench_save_page(url: str, runs: int) -> float:
    """The same save through the page: edit a cell, click Save, until the page is shown
    again (server-side, AppTest, as a signed-in CSM)."""
    from sqlalchemy import text
    from streamlit.testing.v1 import AppTest

    from db.session import get_engine

    os.environ["DATABASE_URL"] = url
    with get_engine(url).connect() as c:
        email, ext = c.execute(
            text(
                "SELECT t.email, a.external_id FROM accounts a JOIN team_members t ON t.id = a.csm_id WHERE t.role = 'csm' ORDER BY a.id LIMIT 1"
            )
        ).one()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost/oauth2callback",
        "cookie_secret": "bench",
        "client_id": "x",
        "client_secret": "x",
        "server_metadata_url": "http://localhost/x",
    }
    at.user = {"is_logged_in": True, "email": email, "name": "bench"}
    at.query_params["as_of"] = AS_OF.isoformat()
    at.query_params["account"] = ext
    at.run()
    at.switch_page("app_pages/success_plans.py").run()
    times = []
    for i in range(max(runs, 5)):
        key = next(k for k in at.session_state if str(k).startswith("cl_editor_"))
        at.session_state[key] = {
            "edited_rows": {0: {"actual": f"page bench {i}"}},
            "added_rows": [],
            "deleted_rows": [],
        }
        at.run()
        save = next(b for b in at.button if b.label == "Save checklist")
        save.click()
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
    print(f"  checklist save (page) median {statistics.median(times) * 1000:.0f} ms", flush=True)
    return statistics.median(times)


# ----------------------------------------------------------------------------- import


def bench_import(url: str, runs: int = 3) -> dict:
    """Export the benchmark database and import it through the CLI (whole process, under
    /usr/bin/time -v) into a fresh SQLite file and, when the benchmark database is
    PostgreSQL or BENCH_PG_URL names a server, a fresh PostgreSQL database: median of `runs`."""
    from db.exporter import export_dir

    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    out: dict = {}
    try:
        print("  exporting the benchmark database to CSV ...", flush=True)
        export_dir(work / "csv", url=url, backup=False)  # the contract CSV import is what is measured
        events = _csv_rows(work / "csv" / "events.csv")
        out["import_events"] = events
        for kind, key in _import_targets(url):
            walls, rss = [], []
            for i in range(runs):
                target = _fresh_target(kind, work, key)
                seconds, rss_mb = _timed_import(work / "csv", target)
                print(f"  {kind} run {i + 1}: {events:,} events in {seconds:.1f} s, peak {rss_mb:.0f} MB", flush=True)
                walls.append(seconds)
                rss.append(rss_mb)
            out[f"{key}_wall"] = statistics.median(walls)
            out[f"{key}_rss_mb"] = max(rss)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for kind, key in _import_targets(url):
            if kind != "sqlite":
                _drop_pg_database(kind, f"onboarding_{key}_bench")


def bench_import_10m(url: str, accounts: int = 100_000) -> dict:
    """Import the 100,000-account demo (about 10,000,000 events) through the CLI into a fresh
    database of the benchmark's kind; one run (it takes minutes). The ratio to the 2M time
    in results.json says whether the import is linear."""
    from db import demo
    from db.exporter import format_frame

    work = Path(tempfile.mkdtemp(prefix="bench-import-10m-"))
    try:
        print(f"  writing the {accounts:,}-account demo as CSV ...", flush=True)
        csv_dir = work / "csv"
        csv_dir.mkdir()
        first = True
        for data in demo.generate_chunks(accounts=accounts, seed=42, as_of=AS_OF):
            checklist = data.checklist.drop(columns=["metric", "position"])
            for name, df in [
                ("team.csv", data.team if first else data.team.iloc[:0]),
                ("accounts.csv", data.accounts),
                ("milestones.csv", data.milestones),
                ("outcomes.csv", data.outcomes),
                ("checklist.csv", checklist),
                ("events.csv", data.events.rename(columns={"ts": "timestamp"})),
            ]:
                format_frame(name, df).to_csv(csv_dir / name, mode="w" if first else "a", header=first, index=False)
            first = False
        target = _fresh_target(url if url.startswith("postgres") else "sqlite", work, "import_10m")
        seconds, rss_mb = _timed_import(csv_dir, target)
        events = _csv_rows(csv_dir / "events.csv")
        print(f"  imported {events:,} events in {seconds:.1f} s, peak {rss_mb:.0f} MB", flush=True)
        return {"import_10m_wall": seconds, "import_10m_rss_mb": rss_mb, "import_10m_events": events}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if url.startswith("postgres"):
            _drop_pg_database(url, "onboarding_import_10m_bench")


def bench_seed_100k(accounts: int = 100_000) -> dict:
    """`manage.py seed-demo --accounts 100000` into a fresh SQLite file: the whole process."""
    work = Path(tempfile.mkdtemp(prefix="bench-seed-"))
    try:
        target = f"sqlite:///{work / 'seed.db'}"
        args = ["seed-demo", "--accounts", str(accounts), "--as-of", AS_OF.isoformat()]
        seconds, rss_mb = _timed_cli(args, target)
        print(f"  seeded {accounts:,} accounts in {seconds:.1f} s, peak {rss_mb:.0f} MB", flush=True)
        return {"seed_100k_wall": seconds, "seed_100k_rss_mb": rss_mb}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _csv_rows(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f) - 1


def _import_targets(url: str) -> list[tuple[str, str]]:
    """(kind, result key): SQLite always; PostgreSQL (its server URL as the kind) when given."""
    targets = [("sqlite", "import_2m")]
    pg = url if url.startswith("postgres") else os.environ.get("BENCH_PG_URL", "")
    if pg:
        targets.append((pg, "import_2m_pg"))
    return targets


def _fresh_target(kind: str, work: Path, key: str) -> str:
    """A migrated, empty database: a new SQLite file, or a scratch PostgreSQL database."""
    if kind == "sqlite":
        path = work / f"{key}.db"
        for p in work.glob(f"{key}.db*"):
            p.unlink()
        target = f"sqlite:///{path}"
    else:
        target = _scratch_pg_database(kind, f"onboarding_{key}_bench")
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate"],
        env={**os.environ, "DATABASE_URL": target},
        check=True,
        capture_output=True,
    )
    return target


def _timed_import(csv_dir: Path, target: str) -> tuple[float, float]:
    return _timed_cli(["import", str(csv_dir), "--quiet"], target)


def _timed_cli(args: list[str], target: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one whole `manage.py` process (/usr/bin/time -v)."""
    proc = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, str(ROOT / "manage.py"), *args],
        env={**os.environ, "DATABASE_URL": target},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    seconds = sum(p * 60 ** (len(parts) - 1 - i) for i, p in enumerate(parts))
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return seconds, rss_kb / 1024


def _admin_engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from db.session import database_url

    return create_engine(make_url(database_url(url)).set(database="postgres"), isolation_level="AUTOCOMMIT")


def _scratch_pg_database(url: str, name: str) -> str:
    """A fresh database next to the benchmark one (dropped afterwards)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from db.session import database_url

    _drop_pg_database(url, name)
    eng = _admin_engine(url)
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return make_url(database_url(url)).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(url: str, name: str) -> None:
    from sqlalchemy import text

    from db.session import dispose_engines

    dispose_engines()
    eng = _admin_engine(url)
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


# ----------------------------------------------------------------------------- report


def machine() -> dict:
    import sqlite3

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    mem = ""
    with contextlib.suppress(OSError, StopIteration, ValueError), open("/proc/meminfo", encoding="utf-8") as f:
        kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    pg = ""
    with contextlib.suppress(OSError):
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres_client": pg,
        "os": platform.platform(),
    }


def write_markdown(results: dict) -> Path:
    m = results.get("machine", machine())
    lines = [
        "# Benchmarks",
        "",
        "Produced by `python manage.py bench` (bench/bench.py); the load test by `python -m bench.load`. "
        f"Database: the {ACCOUNTS:,}-account demo portfolio (about 2,000,000 events), as of {AS_OF}. "
        "Medians of 5 runs unless stated. Times are server-side wall-clock seconds.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM; Python {m['python']}; SQLite {m['sqlite']}; {m['postgres_client']}; {m['os']}.",
        "",
    ]
    for backend in ("sqlite", "postgresql"):
        r = results.get(backend)
        if not r:
            continue
        lines += [
            f"## {'SQLite' if backend == 'sqlite' else 'PostgreSQL'}",
            "",
            "| issue | what | budget | measured | within budget |",
            "|---|---|---|---|---|",
        ]
        for key, what, budget, issue in BUDGETS:
            if key not in r:
                continue
            v = r[key]
            if key.endswith("_ratio"):  # the CLI budget (bench/cli.py): report CPU / DuckDB script CPU
                name = key[len("cli_") : -len("_ratio")]
                meas = (
                    f"{v:.2f}× ({r.get(f'cli_{name}_app_cpu', 0):.2f} s vs {r.get(f'cli_{name}_ref_cpu', 0):.2f} s CPU)"
                )
                bud = f"≤ {budget:g}×"
            elif key.endswith("_mb"):
                meas, bud = f"{v:,.0f} MB", f"< {budget:,.0f} MB"
            elif key == "load_lost_saves":
                meas, bud = f"{int(v)}", "0"
            elif v < 1:
                meas, bud = f"{v * 1000:.0f} ms", (f"< {budget * 1000:.0f} ms" if budget < 1 else f"< {budget:g} s")
            else:
                meas, bud = f"{v:.2f} s", f"< {budget:g} s"
            ok = v <= budget if key == "load_lost_saves" or key.endswith("_ratio") else v < budget
            lines.append(f"| {issue} | {what} | {bud} | {meas} | {'yes' if ok else '**no**'} |")
        extra = r.get("notes")
        if extra:
            lines += ["", *[f"- {n}" for n in extra]]
        lines.append("")
        from bench.browser import markdown as browser_markdown

        lines += browser_markdown(r)
    path = ROOT / "BENCHMARKS.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="manage.py bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--db-url", default=None, help="benchmark database (default: data/bench.db, built if missing)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument(
        "--only",
        default="analytics,pages,save,import,cli,browser",
        help="comma list of: analytics, pages, save, import, import-10m, seed-100k, cli, browser, sync",
    )
    p.add_argument(
        "--no-write", action="store_true", help="print only; do not update bench/results.json and BENCHMARKS.md"
    )
    args = p.parse_args(argv)
    url = args.db_url or BENCH_DB
    backend = "postgresql" if url.startswith("postgres") else "sqlite"
    only = set(args.only.split(","))
    ensure_db(url)
    r: dict = {}
    if "analytics" in only:
        print("analytics (issue 3)", flush=True)
        r.update(bench_analytics(url, args.runs))
    if "pages" in only:
        print("pages (issue 4)", flush=True)
        r.update(bench_pages(url, args.runs))
    if "save" in only:
        print("checklist save (issue 5)", flush=True)
        r.update(bench_save(url, args.runs))
    if "import" in only:
        print("import (issue 16)", flush=True)
        r.update(bench_import(url, runs=min(args.runs, 3)))
    if "import-10m" in only:
        print("import of 10M events (issue 16)", flush=True)
        r.update(bench_import_10m(url))
        key = "import_2m_pg_wall" if url.startswith("postgres") else "import_2m_wall"
        earlier = json.loads(RESULTS.read_text()).get(backend, {}) if RESULTS.exists() else {}
        base = r.get(key) or earlier.get(key)  # the 2M time of this run, else of the last one
        if base:
            r["import_10m_ratio"] = r["import_10m_wall"] / base
    if "seed-100k" in only:
        print("seed-demo --accounts 100000 (issue 16)", flush=True)
        r.update(bench_seed_100k())
    if "sync" in only:
        print("sync from a PostgreSQL source (issue 14)", flush=True)
        from bench.sync import bench_sync

        pg = url if url.startswith("postgres") else os.environ.get("BENCH_PG_URL", "")
        if not pg:
            raise SystemExit("the sync benchmark needs a PostgreSQL server for its source: set BENCH_PG_URL")
        r.update(bench_sync(pg))
    if "cli" in only and backend == "sqlite":
        print("whole CLI report processes vs a DuckDB script (issue 16)", flush=True)
        from bench.cli import bench_cli

        r.update(bench_cli(url, args.runs))
    if "browser" in only:
        print("browser (issue 16): headless Chromium, ratios to a trivial page", flush=True)
        from bench.browser import bench_browser

        r.update(bench_browser(url, args.runs))
    if args.no_write:
        print(json.dumps(r, indent=2))
        return 0
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault(backend, {}).update(r)
    results["machine"] = machine()
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {RESULTS.relative_to(ROOT)} and {write_markdown(results).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
