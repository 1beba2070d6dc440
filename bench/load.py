"""Load test: 20 simultaneous sessions against one running server.

Leaders browse Portfolio and Cohorts, RevOps change funnel filters, CSMs edit and save
checklists (two sessions of one CSM edit the same item, so conflicts happen). Identity
comes from the trusted-header sign-in (AUTH_HEADER=X-Forwarded-Email), one header per
browser context. Afterwards every save the app acknowledged must be in the database and in
the change log exactly once, and no refused save may be.

Sessions speak Streamlit's websocket protocol (what the browser sends: a rerun with the
URL's query string, the page and the widget states), so the times are the server's.
Twenty Chromium tabs on the same two cores measured mostly Chromium (tried first: the
server was under half busy while the tabs saturated the machine).

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

Q = f"as_of={AS_OF.isoformat()}"
# Saved values carry the run's id, so a run is checked on its own saves only.
RUN_ID = f"{int(time.time()):x}"
# Sessions arrive over the first seconds (people do not all click at the same instant).
RAMP_SECONDS = 15


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


class Session:
    """One app session over Streamlit's websocket protocol, as the browser speaks it:
    each interaction is a rerun message (URL query string, page, widget states) and lasts
    until the server reports the script finished. No browser renders anything, so the
    times are the server's."""

    def __init__(self, base: str, email: str) -> None:
        self.base = base
        self.email = email
        self.ws = None
        self.elements: list[tuple[str, object]] = []
        self.messages: list = []  # toasts and alerts of the whole interaction

    async def __aenter__(self) -> Session:
        import websockets

        host = self.base.split("//", 1)[1]
        self.ws = await websockets.connect(
            f"ws://{host}/_stcore/stream",
            subprotocols=["streamlit"],
            additional_headers={"X-Forwarded-Email": self.email, "Origin": self.base},
            max_size=None,
            open_timeout=60,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def rerun(self, query: str, page: str, states: list | None = None) -> float:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_name = page
        for st_ in states or []:
            msg.rerun_script.widget_states.widgets.append(st_)
        t0 = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        self.elements, self.messages = [], []
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await asyncio.wait_for(self.ws.recv(), timeout=120))
            kind = fm.WhichOneof("type")
            if kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                el = fm.delta.new_element
                self.elements.append((el.WhichOneof("type"), el))
                if el.WhichOneof("type") in ("toast", "alert"):
                    self.messages.append(el)
            if kind == "script_finished":
                if fm.script_finished != 2:
                    return time.perf_counter() - t0
                # 2 = finished early for st.rerun(): the page is drawn again; keep only
                # the new drawing (widget ids change), and the toasts shown before it.
                self.elements = []

    def find(self, kind: str) -> list:
        return [e for k, e in self.elements if k == kind]

    def exception(self) -> str | None:
        ex = self.find("exception")
        return ex[0].exception.message if ex else None


async def timed(stats: Stats, label: str, sess: Session, query: str, page: str, states: list | None = None) -> bool:
    try:
        elapsed = await sess.rerun(query, page, states)
    except Exception as exc:  # noqa: BLE001 - counted as an error, the run goes on
        stats.errors.append(f"{label}: {type(exc).__name__}: {str(exc)[:120]}")
        return False
    stats.pages.append((label, elapsed))
    if sess.exception():
        stats.errors.append(f"{label}: exception on page: {sess.exception()[:120]}")
        return False
    return True


SEGMENTS = ["SMB", "Mid-Market", "Enterprise", "Strategic"]


async def leader(base: str, email: str, stats: Stats, until: float, rng: random.Random) -> None:
    async with Session(base, email) as sess:
        while time.time() < until:
            page = rng.choice(["", "", "cohorts"])
            q = Q
            if rng.random() < 0.6:
                q += f"&segment={rng.choice(SEGMENTS)}"
            if page == "cohorts" and rng.random() < 0.4:
                q += "&view=Time+to+value"
            await timed(stats, "leader " + (page or "portfolio"), sess, q, page)
            await asyncio.sleep(rng.uniform(1.0, 3.0))


async def revops(base: str, email: str, stats: Stats, until: float, rng: random.Random) -> None:
    async with Session(base, email) as sess:
        while time.time() < until:
            q = f"{Q}&mode={rng.choice(['ordered', 'strict', 'unordered'])}"
            if rng.random() < 0.5:
                q += f"&segment={rng.choice(SEGMENTS)}"
            by = rng.choice([None, None, "segment", "plan", "region"])
            if by:
                q += f"&by={by}"
            await timed(stats, "revops funnel", sess, q, "funnel")
            await asyncio.sleep(rng.uniform(1.0, 3.0))


async def csm(base: str, email: str, account: str, tag: str, stats: Stats, until: float, rng: random.Random) -> None:
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    q = f"{Q}&account={account}"
    async with Session(base, email) as sess:
        await timed(stats, "csm plan", sess, q, "success-plans")
        n = 0
        while time.time() < until:
            n += 1
            value = f"load {RUN_ID} {tag}-{n}"
            editors = [e.dataframe.id for e in sess.find("dataframe") if e.dataframe.editing_mode != 0]
            buttons = {e.button.label: e.button.id for e in sess.find("button")}
            if not editors or "Save checklist" not in buttons:
                stats.errors.append(f"{tag}: checklist editor not on the page")
                await timed(stats, "csm plan", sess, q, "success-plans")
                continue
            edit = WidgetState(
                id=editors[0],
                string_value=json.dumps(
                    {"edited_rows": {"0": {"actual": value}}, "added_rows": [], "deleted_rows": []}
                ),
            )
            await timed(stats, "csm edit", sess, q, "success-plans", [edit])
            t0 = time.perf_counter()
            ok = await timed(
                stats,
                "csm save",
                sess,
                q,
                "success-plans",
                [edit, WidgetState(id=buttons["Save checklist"], trigger_value=True)],
            )
            elapsed = time.perf_counter() - t0
            toasts = [e.toast.body for e in sess.messages if e.WhichOneof("type") == "toast"]
            alerts = [e.alert.body for e in sess.messages if e.WhichOneof("type") == "alert"]
            if ok and any(t.startswith("Saved: 1 changed") for t in toasts + alerts):
                stats.saves.append(elapsed)
                stats.acknowledged.append((email, account, value))
            elif ok and any("someone else saved this checklist" in a for a in alerts):
                stats.saves.append(elapsed)
                stats.refused.append((email, account, value))
                # Take the colleague's version and carry on, as a user would.
                reload_id = {e.button.label: e.button.id for e in sess.find("button")}.get(
                    "Reload (discard my unsaved edits)"
                )
                if reload_id:
                    await timed(
                        stats, "csm reload", sess, q, "success-plans", [WidgetState(id=reload_id, trigger_value=True)]
                    )
            elif ok:
                stats.errors.append(f"{tag}: save neither acknowledged nor refused: {toasts + alerts}")
            await asyncio.sleep(rng.uniform(1.5, 4.0))


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


async def warm_up(base: str, db_url: str) -> None:
    email = plan_sessions(db_url, 20)[0][1]
    async with Session(base, email) as sess:
        for page in ("", "cohorts", "funnel"):
            await sess.rerun(Q, page)


async def after(delay: float, job) -> None:
    await asyncio.sleep(delay)
    await job


async def run(base: str, db_url: str, sessions: int, duration: float, seed: int) -> Stats:
    stats = Stats()
    rng = random.Random(seed)
    plan = plan_sessions(db_url, sessions)
    until = time.time() + duration + RAMP_SECONDS
    tasks = []
    for i, spec in enumerate(plan):
        r = random.Random(rng.random() + i)
        ramp = i * RAMP_SECONDS / max(len(plan) - 1, 1)
        if spec[0] == "leader":
            job = leader(base, spec[1], stats, until, r)
        elif spec[0] == "revops":
            job = revops(base, spec[1], stats, until, r)
        else:
            job = csm(base, spec[1], spec[2], spec[3], stats, until, r)
        tasks.append(after(ramp, job))
    await asyncio.gather(*tasks)
    return stats


def verify(db_url: str, stats: Stats) -> dict:
    """Every acknowledged save is in the change log exactly once; no refused one is."""
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine(db_url).connect() as c:
        rows = c.execute(
            text("SELECT actor, new FROM change_log WHERE field = 'actual' AND new LIKE :p"), {"p": f"load {RUN_ID} %"}
        ).all()
        finals = dict(
            c.execute(
                text(
                    "SELECT a.external_id, c.actual FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
                    "WHERE c.actual LIKE :p"
                ),
                {"p": f"load {RUN_ID} %"},
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
        # The server has been up a while: one session has loaded the analyses once.
        asyncio.run(warm_up(base, args.db_url))
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
