"""Browser-measured page times (issue 16): the app served by `streamlit run`, driven by
Playwright in Debian's headless Chromium (1400x1000), each figure as a ratio to a trivial
Streamlit page (bench/trivial_app.py) measured the same way in the same run.

    python manage.py bench --only browser [--runs 3]
    python -m bench.browser --db-url sqlite:///copy.db --runs 3 [--app-root DIR] [--json out.json]

What is timed, each a median of N runs:
- first visit: a fresh server start (until /_stcore/health answers), then the page's URL in a
  new browser tab, until the page is settled;
- page switch: a click on the page's sidebar link from the page before it (warm server), until
  settled (the trivial app: alternating between its two identical pages);
- filter change: the sidebar's Segment multiselect on a page just opened (the trivial app has
  the same widget).
Settled = the page's title is shown, `stApp[data-test-script-state]` is not "running" and
the DOM has had no mutation for 300 ms; the time is that of the last mutation (toolbarMode
"minimal" hides the status widget, so it is not waited on). Also the server's RSS (process
tree, psutil) after every page was visited. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIVIAL = Path(__file__).resolve().parent / "trivial_app.py"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 1000}
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AS_OF = "2026-11-29"
QUIET_MS = 300
SEGMENTS = ("SMB", "Mid-Market", "Enterprise", "Strategic")

# (key, URL path, title) in sidebar order; the demo admin sees every page.
PAGES = [
    ("portfolio", "", "Portfolio"),
    ("funnel", "funnel", "Funnel"),
    ("cohorts", "cohorts", "Cohorts"),
    ("health_model", "health-model", "Health model"),
    ("accounts", "accounts", "Accounts"),
    ("success_plans", "success-plans", "Success plans"),
    ("my_work", "my-work", "My work"),
    ("data", "data", "Data"),
    ("settings", "settings", "Settings"),
]
FILTERED = ("portfolio", "funnel", "cohorts", "health_model", "accounts", "my_work")
TITLES = {k: t for k, _, t in PAGES}

# Installed before any page script: the time of the last DOM mutation and the script-state
# transitions of the app root.
OBSERVER = """
(() => {
  window.__last = performance.now();
  window.__states = [];
  const obs = new MutationObserver(ms => {
    window.__last = performance.now();
    for (const m of ms) {
      if (m.type === 'attributes' && m.attributeName === 'data-test-script-state')
        window.__states.push(m.target.getAttribute('data-test-script-state'));
    }
  });
  const go = () => obs.observe(document.documentElement,
    {subtree: true, childList: true, attributes: true, characterData: true});
  if (document.documentElement) go(); else document.addEventListener('DOMContentLoaded', go);
})();
"""

PROBE = """
t => {
  const app = document.querySelector('[data-testid=stApp]');
  const state = app ? app.getAttribute('data-test-script-state') : null;
  const titled = !t || [...document.querySelectorAll('h1')].some(h => h.innerText.trim() === t);
  return {state, titled, now: performance.now(), last: window.__last,
          ran: (window.__states || []).includes('running'), url: location.href};
}
"""


def slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s.lower())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run SCRIPT` on a free port (headless, loopback only)."""

    def __init__(self, script: Path, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(self.port)),
                *("--server.headless", "true", "--server.address", "127.0.0.1"),
            ],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"streamlit did not start ({script}); see {log}")

    def rss_mb(self) -> float:
        import psutil

        p = psutil.Process(self.proc.pid)
        procs = [p, *p.children(recursive=True)]
        return sum(x.memory_info().rss for x in procs if x.is_running()) / 1024 / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def settle(
    page,
    t0: float,
    title: str | None = None,
    *,
    url_has: str | None = None,
    new_title: bool = False,
    timeout: float = 120,
) -> float:
    """Seconds from t0 (the page's performance.now(), ms) to the last DOM mutation, once the
    page is settled. After an in-page action something must show that it took effect: a
    script run seen, the URL showing the change (url_has), or the new page's title
    (new_title: a warm rerun can be too quick for the "running" state to reach the DOM)."""
    end = time.time() + timeout
    while time.time() < end:
        p = page.evaluate(PROBE, title)
        started = p["ran"] or (url_has is not None and url_has in p["url"]) or new_title or t0 == 0
        if (
            p["titled"]
            and p["state"] not in (None, "initial", "running")
            and started
            and p["now"] - p["last"] >= QUIET_MS
        ):
            return max(p["last"] - t0, 0.0) / 1000
        time.sleep(0.05)
    raise TimeoutError(f"page not settled after {timeout} s (title {title!r})")


def _mark(page) -> float:
    """Reset the script-state log; the page's clock now (ms)."""
    return page.evaluate("() => { window.__states = []; return performance.now(); }")


def first_visit(browser, server: Server, path: str, title: str) -> float:
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.add_init_script(OBSERVER)
    page = ctx.new_page()
    sep = "&" if "?" in path else "?"
    t0 = time.perf_counter()
    page.goto(f"{server.base}/{path}{sep}as_of={AS_OF}", wait_until="commit")
    # performance.now() counts from the navigation start: the last mutation is the time.
    took = settle(page, 0.0, title)
    wall = time.perf_counter() - t0
    ctx.close()
    return min(took, wall)


def open_page(browser, server: Server, path: str, title: str):
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.add_init_script(OBSERVER)
    page = ctx.new_page()
    sep = "&" if "?" in path else "?"
    page.goto(f"{server.base}/{path}{sep}as_of={AS_OF}", wait_until="commit")
    settle(page, 0.0, title)
    return ctx, page


def switch(page, title: str) -> float:
    link = page.locator("[data-testid=stSidebarNavLink]").filter(has=page.get_by_text(title, exact=True))
    t0 = _mark(page)
    link.first.click()
    return settle(page, t0, title, new_title=True)


def filter_change(page, title: str, segment: str) -> float | None:
    """Seconds for the Segment filter to take effect; None (and a screenshot in artifacts/)
    when the widget cannot be found, so one bad run does not end the benchmark."""
    box = page.get_by_role("combobox", name="Segment")
    try:
        box.wait_for(timeout=120_000)
    except Exception:  # noqa: BLE001 - reported, the run is skipped
        page.screenshot(path=str(ROOT / "artifacts" / f"bench-filter-missing-{slug(title)}.png"))
        print(f"  (no Segment filter on {title}: run skipped, see artifacts/)", flush=True)
        return None
    box.click()
    page.keyboard.press("ArrowDown")
    option = page.get_by_role("option", name=segment, exact=True)
    option.wait_for()
    t0 = _mark(page)
    option.click()
    page.keyboard.press("Escape")
    return settle(page, t0, title, url_has=f"segment={segment}")


def _progress(raw: dict) -> None:
    """The raw figures so far (artifacts/bench-browser-progress.json), should a run be cut short."""
    with open(ROOT / "artifacts" / "bench-browser-progress.json", "w") as f:
        json.dump(raw, f, indent=1)


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_browser(
    url: str,
    runs: int = 3,
    *,
    app_root: Path = ROOT,
    pages: list[str] | None = None,
    first_pages: list[str] | None = None,
    filter_pages: list[str] | None = None,
) -> dict:
    """Every figure in seconds, its ratio to the trivial page's, and the server RSS (MB).
    pages: the pages switched between (default all); first_pages / filter_pages: the pages
    whose first visit / filter change is timed (default: all of those)."""
    from playwright.sync_api import sync_playwright

    chosen = [p for p in PAGES if pages is None or p[0] in pages]
    logs = ROOT / "artifacts"
    logs.mkdir(exist_ok=True)
    app_env = {"DATABASE_URL": url, "DEMO_MODE": "1"}
    out: dict = {}
    raw: dict[str, list[float]] = {}

    def log(msg: str) -> None:
        print(f"  {msg}", flush=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            # --- the trivial page: first visit, switch (alternating), filter change
            times = []
            for _ in range(runs):
                s = Server(TRIVIAL, ROOT, {}, logs / "bench-trivial.log")
                try:
                    times.append(first_visit(browser, s, "", "Trivial A"))
                finally:
                    s.stop()
            raw["trivial_first"] = times
            s = Server(TRIVIAL, ROOT, {}, logs / "bench-trivial.log")
            try:
                ctx, page = open_page(browser, s, "", "Trivial A")
                sw = [switch(page, "Trivial B" if i % 2 == 0 else "Trivial A") for i in range(runs + 1)][1:]
                ctx.close()
                flt = []
                for i in range(runs):
                    ctx, page = open_page(browser, s, "", "Trivial A")
                    flt.append(filter_change(page, "Trivial A", SEGMENTS[i % len(SEGMENTS)]))
                    ctx.close()
                raw["trivial_switch"], raw["trivial_filter"] = sw, flt
                out["browser_trivial_rss_mb"] = s.rss_mb()
            finally:
                s.stop()
            log(
                f"trivial page: first visit {_med(raw['trivial_first']):.2f} s, switch {_med(raw['trivial_switch']):.2f} s, "
                f"filter {_med(raw['trivial_filter']):.2f} s"
            )

            # --- the app: first visit of each page after a fresh server start
            for key, path, title in [p for p in chosen if first_pages is None or p[0] in first_pages]:
                times = []
                for _ in range(runs):
                    s = Server(app_root / "app.py", app_root, app_env, logs / "bench-app.log")
                    try:
                        times.append(first_visit(browser, s, path, title))
                    finally:
                        s.stop()
                raw[f"first_{key}"] = times
                _progress(raw)
                log(f"{title:14s} first visit {_med(times):.2f} s  {[round(t, 2) for t in times]}")

            # --- one warm server: switches by the sidebar, filter changes, RSS
            s = Server(app_root / "app.py", app_root, app_env, logs / "bench-app.log")
            try:
                ctx, page = open_page(browser, s, chosen[0][1], chosen[0][2])
                for _key, _path, title in chosen[1:]:  # warm-up round: every page once
                    switch(page, title)
                switch(page, chosen[0][2])
                for _ in range(runs):
                    for i, (key, _path, title) in enumerate(chosen):
                        if i == 0:
                            continue
                        raw.setdefault(f"switch_{key}", []).append(switch(page, title))
                    raw.setdefault(f"switch_{chosen[0][0]}", []).append(switch(page, chosen[0][2]))
                    _progress(raw)
                ctx.close()
                for key, _ in [
                    (k, p) for k, p, _ in chosen if k in FILTERED and (filter_pages is None or k in filter_pages)
                ]:
                    path = next(p for k, p, _ in chosen if k == key)
                    for i in range(runs):
                        ctx, page = open_page(browser, s, path, TITLES[key])
                        took = filter_change(page, TITLES[key], SEGMENTS[i % len(SEGMENTS)])
                        if took is not None:
                            raw.setdefault(f"filter_{key}", []).append(took)
                        ctx.close()
                        _progress(raw)
                out["browser_rss_mb"] = s.rss_mb()
            finally:
                s.stop()
        finally:
            browser.close()

    for name, xs in raw.items():
        out[f"browser_{name}_s"] = _med(xs)
    for kind in ("first", "switch", "filter"):
        base = out[f"browser_trivial_{kind}_s"]
        for key, _path, _title in chosen:
            v = out.get(f"browser_{kind}_{key}_s")
            if v is not None:
                out[f"browser_{kind}_{key}_ratio"] = v / base if base else float("nan")
    for key, _path, title in chosen:
        bits = [
            f"{kind} {out[f'browser_{kind}_{key}_s']:.2f} s ({out[f'browser_{kind}_{key}_ratio']:.1f}x)"
            for kind in ("first", "switch", "filter")
            if f"browser_{kind}_{key}_s" in out
        ]
        log(f"{title:14s} " + ", ".join(bits))
    log(
        f"server RSS after every page: {out['browser_rss_mb']:.0f} MB (trivial app {out['browser_trivial_rss_mb']:.0f} MB)"
    )
    out["browser_runs"] = runs
    out["browser_pages"] = [t for _k, _p, t in chosen]
    out["browser_raw"] = raw
    return out


def markdown(r: dict) -> list[str]:
    """The browser section of BENCHMARKS.md (these figures are browser-measured)."""
    if "browser_trivial_first_s" not in r:
        return []
    lines = [
        "### Browser-measured (headless Chromium)",
        "",
        "Unlike the figures above (server-side), these are measured in a real browser: `streamlit run app.py` driven by "
        "Playwright in headless Chromium at 1400x1000, as the local demo admin, each page settled (title shown, the "
        "app's script state not running, no DOM mutation for 300 ms; the time of the last mutation). Each is also given "
        "as a ratio to a trivial Streamlit page (bench/trivial_app.py: a title, one metric, one small Plotly chart, one "
        f"small table) measured the same way in the same run. Medians of {r.get('browser_runs', '?')} runs. Budget "
        "(issue 16): every ratio ≤ 1.5 at 20,000 accounts.",
        "",
        "| page | first visit after a server start | page switch (sidebar) | filter change (Segment) |",
        "|---|---|---|---|",
    ]

    def cell(kind: str, key: str) -> str:
        v = r.get(f"browser_{kind}_{key}_s")
        if v is None:
            return "–"
        ratio = r.get(f"browser_{kind}_{key}_ratio", float("nan"))
        mark = "" if ratio <= 1.5 else " **over**"
        return f"{v:.2f} s ({ratio:.1f}×{mark})"

    lines.append(
        "| trivial page | "
        + " | ".join(f"{r[f'browser_trivial_{k}_s']:.2f} s (1×)" for k in ("first", "switch", "filter"))
        + " |"
    )
    for key, _path, title in PAGES:
        if f"browser_first_{key}_s" in r or f"browser_switch_{key}_s" in r:
            lines.append(f"| {title} | {cell('first', key)} | {cell('switch', key)} | {cell('filter', key)} |")
    visited = r.get("browser_pages") or [t for _k, _p, t in PAGES]
    every = "every page" if len(visited) == len(PAGES) else "these pages (" + ", ".join(visited) + ")"
    lines += [
        "",
        f"- Server RSS (process tree) after visiting {every}: {r['browser_rss_mb']:,.0f} MB "
        f"(the trivial app: {r['browser_trivial_rss_mb']:,.0f} MB). Budget at 100,000 accounts: < 1 GB.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.browser", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--db-url", required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--app-root", type=Path, default=ROOT, help="the app's checkout (for before/after figures)")
    p.add_argument("--pages", default=None, help="comma list of page keys (default: all)")
    p.add_argument("--first-pages", default=None, help="comma list: time the first visit of these only")
    p.add_argument("--filter-pages", default=None, help="comma list: time the filter change on these only")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args(argv)
    split = lambda v: v.split(",") if v else None  # noqa: E731
    r = bench_browser(
        args.db_url,
        args.runs,
        app_root=args.app_root,
        pages=split(args.pages),
        first_pages=split(args.first_pages),
        filter_pages=split(args.filter_pages),
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
