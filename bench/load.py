"""Load test: 20 simultaneous browser sessions against one running server.

Leaders browse Portfolio and Cohorts, RevOps change funnel filters, CSMs edit and save
checklists (two sessions of one CSM edit the same item, so conflicts happen). Identity
comes from the trusted-header sign-in (AUTH_HEADER=X-Forwarded-Email), one header per
browser context. Afterwards every save the app acknowledged must be in the database and in
the change log exactly once, and no refused save may be.

    python -m bench.load                         # SQLite benchmark database (data/bench.db)
    python -m bench.load --db-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

Prints p50/p95 page and save times and writes them to bench/results.json / BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench import AS_OF, BENCH_DB, RESULTS, ensure_db, machine, write_markdown  # noqa: E402

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
Q = f"as_of={AS_OF.isoformat()}"


@dataclass
class Stats:
    pages: list[tuple[str, float]] = field(default_factory=list)
    saves: list[float] = field(default_factory=list)
    acknowledged: list[tuple[str, str, str]] = field(default_factory=list)  # (email, account, value)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(ROOT / "bench" / "load-server.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": db_url, "AUTH_HEADER": "X-Forwarded-Email"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


async def idle(page, timeout: float = 60) -> None:
    """Wait until Streamlit has finished the run (its running indicator is gone)."""
    end = time.time() + timeout
    seen_quiet = 0
    await asyncio.sleep(0.15)
    while time.time() < end:
        running = await page.locator('[data-testid="stStatusWidget"]').count()
        seen_quiet = 0 if running else seen_quiet + 1
        if seen_quiet >= 3:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("page did not finish")


async def timed(stats: Stats, label: str, page, action) -> None:
    t0 = time.perf_counter()
    try:
        await action()
        await idle(page)
        if await page.locator('[data-testid="stException"]').count():
            stats.errors.append(f"{label}: exception on page")
        stats.pages.append((label, time.perf_counter() - t0))
    except Exception as exc:  # noqa: BLE001 - counted as an error, the run goes on
        stats.errors.append(f"{label}: {type(exc).__name__}: {str(exc)[:120]}")


async def leader(browser, base: str, email: str, stats: Stats, until: float, rng: random.Random) -> None:
    ctx = await browser.new_context(
        viewport={"width": 1400, "height": 1000}, extra_http_headers={"X-Forwarded-Email": email}
    )
    page = await ctx.new_page()
    targets = [
        f"/?{Q}",
        f"/cohorts?{Q}",
        f"/cohorts?view=Time+to+value&{Q}",
        f"/?{Q}&segment=Enterprise",
        f"/cohorts?{Q}&segment=SMB",
    ]
    while time.time() < until:
        url = base + rng.choice(targets)
        await timed(stats, "leader page", page, lambda url=url: page.goto(url))
        await asyncio.sleep(rng.uniform(1.0, 3.0))
    await ctx.close()


async def revops(browser, base: str, email: str, stats: Stats, until: float, rng: random.Random) -> None:
    ctx = await browser.new_context(
        viewport={"width": 1400, "height": 1000}, extra_http_headers={"X-Forwarded-Email": email}
    )
    page = await ctx.new_page()
    await timed(stats, "funnel open", page, lambda: page.goto(f"{base}/funnel?{Q}"))
    while time.time() < until:
        choice = rng.random()
        if choice < 0.4:
            mode = rng.choice(["ordered", "strict", "unordered"])
            await timed(
                stats, "funnel mode", page, lambda mode=mode: page.get_by_role("radio", name=mode, exact=True).click()
            )
        elif choice < 0.7:
            seg = rng.choice(["SMB", "Mid-Market", "Enterprise", "Strategic"])
            await timed(
                stats,
                "funnel filter",
                page,
                lambda seg=seg: page.goto(f"{base}/funnel?{Q}&segment={seg.replace(' ', '+')}"),
            )
        else:
            by = rng.choice(["segment", "plan", "region"])
            await timed(stats, "funnel breakdown", page, lambda by=by: page.goto(f"{base}/funnel?{Q}&by={by}"))
        await asyncio.sleep(rng.uniform(1.0, 3.0))
    await ctx.close()


async def edit_first_actual(page, value: str) -> bool:
    canvas = page.locator('[data-testid="stDataFrame"] canvas').first
    await canvas.scroll_into_view_if_needed()
    box = await canvas.bounding_box()
    await page.mouse.click(box["x"] + 80, box["y"] + 35 + 17)
    await asyncio.sleep(0.3)
    for _ in range(3):
        await page.keyboard.press("ArrowRight")
        await asyncio.sleep(0.1)
    await page.keyboard.press("Enter")
    await asyncio.sleep(0.4)
    await page.keyboard.press("Control+A")
    await page.keyboard.type(value, delay=30)
    await page.keyboard.press("Enter")
    try:
        await page.wait_for_selector("text=1 unsaved change", timeout=10_000)
        return True
    except Exception:  # noqa: BLE001
        await page.keyboard.press("Escape")
        return False


async def csm(
    browser, base: str, email: str, account: str, tag: str, stats: Stats, until: float, rng: random.Random
) -> None:
    ctx = await browser.new_context(
        viewport={"width": 1400, "height": 1000}, extra_http_headers={"X-Forwarded-Email": email}
    )
    page = await ctx.new_page()
    await timed(stats, "plan open", page, lambda: page.goto(f"{base}/success-plans?account={account}&{Q}"))
    n = 0
    while time.time() < until:
        n += 1
        value = f"load {tag}-{n}"
        try:
            if not await edit_first_actual(page, value):
                stats.errors.append(f"{tag}: could not edit the cell")
                await timed(stats, "plan open", page, lambda: page.goto(f"{base}/success-plans?account={account}&{Q}"))
                continue
            t0 = time.perf_counter()
            await page.get_by_role("button", name="Save checklist").click()
            saved = page.get_by_text("Saved: 1 changed")
            refused = page.get_by_text("Not saved: someone else saved this checklist", exact=False)
            deadline = time.time() + 60
            outcome = None
            while time.time() < deadline and outcome is None:
                if await saved.count():
                    outcome = "saved"
                elif await refused.count():
                    outcome = "refused"
                else:
                    await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t0
            await idle(page)
            if outcome == "saved":
                stats.saves.append(elapsed)
                stats.acknowledged.append((email, account, value))
            elif outcome == "refused":
                stats.saves.append(elapsed)
                stats.refused.append((email, account, value))
                # Take the colleague's version and carry on, as a user would.
                await timed(
                    stats,
                    "plan reload",
                    page,
                    lambda: page.get_by_role("button", name="Reload (discard my unsaved edits)").click(),
                )
            else:
                stats.errors.append(f"{tag}: save neither acknowledged nor refused")
        except Exception as exc:  # noqa: BLE001
            stats.errors.append(f"{tag}: {type(exc).__name__}: {str(exc)[:120]}")
            await timed(stats, "plan open", page, lambda: page.goto(f"{base}/success-plans?account={account}&{Q}"))
        await asyncio.sleep(rng.uniform(1.5, 4.0))
    await ctx.close()


def plan_sessions(db_url: str, sessions: int) -> list[tuple]:
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine(db_url).connect() as c:
        team = c.execute(text("SELECT email, role FROM team_members WHERE active ORDER BY email")).all()
        csms = [e for e, r in team if r == "csm"]
        leaders = [e for e, r in team if r == "leader"] or [e for e, r in team if r == "admin"]
        revopss = [e for e, r in team if r == "revops"] or leaders
        owned = {
            e: c.execute(
                text(
                    "SELECT a.external_id FROM accounts a JOIN team_members t ON t.id = a.csm_id WHERE t.email = :e ORDER BY a.external_id LIMIT 3"
                ),
                {"e": e},
            )
            .scalars()
            .all()
            for e in csms
        }
    n_csm = max(2, round(sessions * 0.4))
    n_rev = max(1, round(sessions * 0.3))
    n_lead = max(1, sessions - n_csm - n_rev)
    plan = [("leader", leaders[i % len(leaders)]) for i in range(n_lead)] + [
        ("revops", revopss[i % len(revopss)]) for i in range(n_rev)
    ]
    for i in range(n_csm):
        # With more CSM sessions than CSMs, a CSM has two sessions on the same item, so
        # conflicting saves happen (the second save on a stale version must be refused).
        email = csms[i % len(csms)]
        plan.append(("csm", email, owned[email][0], f"s{i}"))
    return plan


async def run(base: str, db_url: str, sessions: int, duration: float, seed: int) -> Stats:
    from playwright.async_api import async_playwright

    stats = Stats()
    rng = random.Random(seed)
    plan = plan_sessions(db_url, sessions)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=LAUNCH_ARGS)
        until = time.time() + duration
        tasks = []
        for i, spec in enumerate(plan):
            r = random.Random(rng.random() + i)
            if spec[0] == "leader":
                tasks.append(leader(browser, base, spec[1], stats, until, r))
            elif spec[0] == "revops":
                tasks.append(revops(browser, base, spec[1], stats, until, r))
            else:
                tasks.append(csm(browser, base, spec[1], spec[2], spec[3], stats, until, r))
        await asyncio.gather(*tasks)
        await browser.close()
    return stats


def verify(db_url: str, stats: Stats) -> dict:
    """Every acknowledged save is in the change log exactly once; no refused one is."""
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine(db_url).connect() as c:
        rows = c.execute(text("SELECT actor, new FROM change_log WHERE field = 'actual' AND new LIKE 'load %'")).all()
        finals = dict(
            c.execute(
                text(
                    "SELECT a.external_id, c.actual FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
                    "WHERE c.actual LIKE 'load %'"
                )
            ).all()
        )
    logged: dict[str, int] = {}
    for _actor, new in rows:
        logged[new] = logged.get(new, 0) + 1
    lost = [v for _, _, v in stats.acknowledged if logged.get(v, 0) == 0]
    duplicated = [v for v, n in logged.items() if n > 1]
    leaked = [v for _, _, v in stats.refused if logged.get(v, 0)]
    # The item ends with the value of the last acknowledged save made on it.
    last_ack: dict[str, str] = {}
    for _, account, v in stats.acknowledged:
        last_ack[account] = v
    wrong_final = {a: (v, finals.get(a)) for a, v in last_ack.items() if finals.get(a) != v}
    return {"lost": lost, "duplicated": duplicated, "refused_but_written": leaked, "wrong_final": wrong_final}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db-url", default=BENCH_DB)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--duration", type=float, default=120, help="seconds of load (default 120)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    ensure_db(args.db_url)
    proc, base = start_server(args.db_url)
    try:
        # One warm-up visit, as on a server that has been up for a while.
        urllib.request.urlopen(f"{base}/", timeout=30).read()
        stats = asyncio.run(run(base, args.db_url, args.sessions, args.duration, args.seed))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    check = verify(args.db_url, stats)
    page_times = sorted(t for _, t in stats.pages)

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")

    saves = sorted(stats.saves)
    out = {
        "load_sessions": args.sessions,
        "load_duration_s": args.duration,
        "load_page_views": len(page_times),
        "load_page_p50": pct(page_times, 0.5),
        "load_page_p95": pct(page_times, 0.95),
        "load_saves_acknowledged": len(stats.acknowledged),
        "load_saves_refused": len(stats.refused),
        "load_save_p50": pct(saves, 0.5),
        "load_save_p95": pct(saves, 0.95),
        "load_errors": len(stats.errors),
        "load_lost_saves": len(check["lost"])
        + len(check["duplicated"])
        + len(check["refused_but_written"])
        + len(check["wrong_final"]),
    }
    print(json.dumps(out, indent=2))
    if stats.errors:
        print("errors:", *stats.errors[:20], sep="\n  ")
    print("verification:", json.dumps(check, indent=2, default=str))
    by_label: dict[str, list[float]] = {}
    for label, t in stats.pages:
        by_label.setdefault(label, []).append(t)
    for label, ts in sorted(by_label.items()):
        print(f"  {label:18s} n={len(ts):4d} p50={statistics.median(ts):.2f}s p95={pct(sorted(ts), 0.95):.2f}s")
    if not args.no_write:
        backend = "postgresql" if args.db_url.startswith("postgres") else "sqlite"
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results.setdefault(backend, {}).update(out)
        notes = results[backend].setdefault("notes", [])
        notes[:] = [n for n in notes if not n.startswith("Load test")]
        notes.append(
            f"Load test: {args.sessions} sessions for {args.duration:.0f} s ({len(page_times)} page views, {len(stats.acknowledged)} saves acknowledged, "
            f"{len(stats.refused)} refused as conflicts, {len(stats.errors)} errors); page p50 {out['load_page_p50']:.2f} s, "
            f"save p50 {out['load_save_p50']:.2f} s / p95 {out['load_save_p95']:.2f} s; every acknowledged save found once in the change log: "
            f"{'yes' if out['load_lost_saves'] == 0 else 'NO'}."
        )
        results["machine"] = machine()
        RESULTS.write_text(json.dumps(results, indent=2, default=str))
        write_markdown(results)
    return 0 if out["load_lost_saves"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
