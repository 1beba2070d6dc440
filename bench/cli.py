"""Whole-process CLI budget (issue 16): `python manage.py report funnel|retention|health` on the
benchmark database against a DuckDB script computing the same aggregate from the same data
(bench/duckdb_reference.py), run side by side (alternately), medians of N runs.

Each process is timed from spawn to exit: wall-clock seconds and CPU seconds (user + system
of the process and its threads, from wait4). The budget is the ratio of the medians, report
over reference, on CPU (the figure the issue measured; on a shared 2-core machine wall time
mostly measures the neighbours), with wall time beside it. One untimed run of each first,
so that files the app keeps beside the database (its columnar copy) and Python's bytecode
cache of the app's modules (`__pycache__`, written unless PYTHONDONTWRITEBYTECODE is set,
which this harness unsets for the children) exist, as they would after any earlier command
of an installed app. Without the cache every report process compiles about 45 ms of source.

    python -m bench.cli [--db PATH] [--runs 5] [--report health] [--app-root OLD_CHECKOUT] [--write]
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench import AS_OF  # noqa: E402

STEPS = ["workspace_created", "integration_connected", "user_invited", "dashboard_created"]
START_EVENT, RETURN_EVENT = "workspace_created", "dashboard_created"

# report: (manage.py arguments, duckdb_reference.py arguments)
REPORTS: dict[str, tuple[list[str], list[str]]] = {
    "funnel": (
        ["funnel", *[a for s in STEPS for a in ("--step", s)], "--window", "14d", "--as-of", str(AS_OF)],
        ["funnel", *[a for s in STEPS for a in ("--step", s)], "--window-days", "14"],
    ),
    "retention": (
        ["retention", "--start-event", START_EVENT, "--return-event", RETURN_EVENT, "--as-of", str(AS_OF)],
        ["retention", "--start-event", START_EVENT, "--return-event", RETURN_EVENT, "--to", str(AS_OF)],
    ),
    "health": (["health", "--as-of", str(AS_OF)], ["health", "--as-of", str(AS_OF)]),
}


def sqlite_path(url: str) -> Path:
    from sqlalchemy.engine import make_url

    from db.session import database_url

    u = make_url(database_url(url))
    if u.get_backend_name() != "sqlite" or not u.database:
        raise ValueError("the CLI benchmark compares against DuckDB over the SQLite file: give a SQLite database")
    return Path(u.database)


def parquet_copy(db: Path) -> Path:
    """events.parquet (sorted by account and time, native timestamps) and accounts.parquet
    beside the SQLite file, rebuilt when the file is newer: the reference's input."""
    import duckdb
    import pyarrow as pa

    out = db.with_name(db.name + ".bench-parquet")
    stamp = out / "source-mtime"
    if stamp.exists() and stamp.read_text() == str(db.stat().st_mtime_ns):
        return out
    out.mkdir(exist_ok=True)
    print(f"  writing the DuckDB reference's Parquet copy of {db.name} ...", flush=True)
    con = duckdb.connect()
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tables = {
        "events": ("SELECT account_id, event, ts, user_id FROM events", "ORDER BY account_id, ts"),
        "accounts": ("SELECT id, external_id, name, segment, plan, licensed_seats, contract_start FROM accounts", ""),
    }
    for name, (select, order) in tables.items():
        cur = src.execute(select)
        cols = [d[0] for d in cur.description]
        first = True
        while rows := cur.fetchmany(250_000):
            batch = pa.table(dict(zip(cols, [list(c) for c in zip(*rows, strict=True)], strict=True)))
            con.register("batch", batch)
            casts = ", ".join(
                f"CAST({c} AS TIMESTAMP) AS {c}"
                if c == "ts"
                else f"CAST({c} AS DATE) AS {c}"
                if c == "contract_start"
                else c
                for c in cols
            )
            con.execute(f"{'CREATE TABLE t AS' if first else 'INSERT INTO t'} SELECT {casts} FROM batch")
            con.unregister("batch")
            first = False
        con.execute(f"COPY (SELECT * FROM t {order}) TO '{out / (name + '.parquet')}' (FORMAT parquet)")
        con.execute("DROP TABLE t")
    src.close()
    stamp.write_text(str(db.stat().st_mtime_ns))
    return out


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of one whole process. CPU from the rusage of reaped children
    before and after (one child at a time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:4])} exited {proc.returncode}: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def bench_cli(url: str, runs: int, app_root: Path = ROOT, reports: list[str] | None = None) -> dict:
    db = sqlite_path(url)
    parquet = parquet_copy(db)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed app has its bytecode cached
    app = [sys.executable, str(app_root / "manage.py"), "report"]
    ref = [sys.executable, str(ROOT / "bench" / "duckdb_reference.py"), str(parquet)]
    out: dict = {}
    for name in reports or list(REPORTS):
        app_args, ref_args = REPORTS[name]
        _, _, text = run(app + app_args, env)  # untimed: files beside the database settle
        run(ref + ref_args, env)
        times: dict[str, list[tuple[float, float]]] = {"app": [], "ref": []}
        for _ in range(runs):
            w, c, text = run(app + app_args, env)
            times["app"].append((w, c))
            w, c, ref_text = run(ref + ref_args, env)
            times["ref"].append((w, c))
        if len(text.splitlines()) < 2 or len(ref_text.splitlines()) < 2:
            raise RuntimeError(f"{name}: a process printed no rows")
        for who in ("app", "ref"):
            out[f"cli_{name}_{who}_wall"] = statistics.median(w for w, _ in times[who])
            out[f"cli_{name}_{who}_cpu"] = statistics.median(c for _, c in times[who])
        out[f"cli_{name}_ratio"] = out[f"cli_{name}_app_cpu"] / out[f"cli_{name}_ref_cpu"]
        out[f"cli_{name}_wall_ratio"] = out[f"cli_{name}_app_wall"] / out[f"cli_{name}_ref_wall"]
        print(
            f"  report {name:9s} CPU {out[f'cli_{name}_app_cpu']:.2f} s (wall {out[f'cli_{name}_app_wall']:.2f})   "
            f"DuckDB script CPU {out[f'cli_{name}_ref_cpu']:.2f} s (wall {out[f'cli_{name}_ref_wall']:.2f})   "
            f"ratio {out[f'cli_{name}_ratio']:.2f} (wall {out[f'cli_{name}_wall_ratio']:.2f})",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    import json

    from bench.bench import BENCH_DB, RESULTS, machine, write_markdown

    p = argparse.ArgumentParser(prog="python -m bench.cli", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default=None, help="the benchmark SQLite file (default data/bench.db)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--report", action="append", choices=list(REPORTS), help="only these (repeatable; default all)")
    p.add_argument("--app-root", type=Path, default=ROOT, help="the checkout whose manage.py is timed (before/after)")
    p.add_argument("--write", action="store_true", help="merge into bench/results.json and rewrite BENCHMARKS.md")
    args = p.parse_args(argv)
    url = f"sqlite:///{Path(args.db).resolve()}" if args.db else BENCH_DB
    r = bench_cli(url, args.runs, args.app_root.resolve(), args.report)
    if args.write:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results.setdefault("sqlite", {}).update(r)
        results["machine"] = machine()
        RESULTS.write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {RESULTS.relative_to(ROOT)} and {write_markdown(results).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
