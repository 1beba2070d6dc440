"""The first start of the local demo without a blank wait (issue 12, point 19).

The demo portfolio is generated in a background thread, one per database and process,
shared by every session: the page shell (title, progress, what is happening) is drawn at
once and follows the progress; the app opens as soon as the portfolio is loaded, and the
26 weeks of health history are computed after that, in the background, while the pages are
already usable (the sidebar says so until they are done). The data are the same as a
seed with history in one go: the same generator, then the same weekly snapshots.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import streamlit as st

from db.session import database_url, session_scope

log = logging.getLogger("onboarding.first_start")

# The demo portfolio of a first start (services.setup.seed_demo's arguments); tests make it smaller.
DEMO_SIZE: dict[str, Any] = {}
HISTORY_WEEKS = 26
HISTORY_DELAY_MAX_S = 60  # the history starts when the first page is drawn, or after this long


@dataclass
class Job:
    """Seeding the demo portfolio, then its health history, in a thread."""

    url: str
    started: float = field(default_factory=time.monotonic)
    fraction: float = 0.0
    message: str = "starting"
    history: float = 0.0  # share of the health history done
    loaded: bool = False  # the portfolio itself is in the database
    error: BaseException | None = None
    portfolio_ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    # Set when a page has been drawn on the new portfolio: the history then does not compete
    # with the first page for the CPU (and the GIL).
    drawn: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from services.health import backfill_snapshots
        from services.setup import seed_demo

        def on_seed(f: float, msg: str) -> None:
            self.fraction, self.message = f, msg

        def on_history(f: float, msg: str) -> None:
            self.history = f

        try:
            size = {"history_weeks": HISTORY_WEEKS, **DEMO_SIZE}
            weeks = size.pop("history_weeks")
            meta = seed_demo(url=self.url, history_weeks=0, progress=on_seed, **size)
            self.loaded = True
            self.portfolio_ready.set()
            log.info("first start: demo portfolio loaded in %.1f s", time.monotonic() - self.started)
            self.drawn.wait(HISTORY_DELAY_MAX_S)
            if weeks > 0:
                backfill_snapshots(
                    url=self.url, as_of=date.fromisoformat(meta["as_of"]), weeks=weeks, progress=on_history
                )
            self.history = 1.0
        except BaseException as exc:
            log.exception("first start: seeding the demo portfolio failed")
            self.error = exc
        finally:
            self.portfolio_ready.set()
            self.done.set()


_lock = threading.Lock()
_jobs: dict[str, Job] = {}


def _job(url: str) -> Job | None:
    return _jobs.get(url)


def _start(url: str) -> Job:
    with _lock:
        job = _jobs.get(url)
        if job is None or (job.done.is_set() and not job.loaded):
            job = _jobs[url] = Job(url)
            threading.Thread(target=job.run, name="first-start-seed", daemon=True).start()
        return job


def _demo_removed(url: str) -> bool:
    from db.models import Meta

    with session_scope(url) as s:
        return s.get(Meta, "demo_removed") is not None


def ensure_demo(*, has_data: bool) -> None:
    """In demo mode: start seeding an empty database in the background and draw the page
    shell while the portfolio is made (then stop this run); return at once when there is
    data. A failed seed raises its error here (the router shows the database-error page)."""
    url = database_url()
    job = _job(url)
    if job is None:
        if has_data or _demo_removed(url):
            return
        job = _start(url)
    if job.portfolio_ready.is_set():
        if not job.loaded:
            with _lock:
                _jobs.pop(url, None)  # a retry starts again
            raise job.error
        return
    _preparing_page(job)
    st.stop()


def _preparing_page(job: Job) -> None:
    st.title("Onboarding analytics")
    st.subheader("Preparing the demo portfolio")
    st.caption(
        "First start: generating a demo portfolio (600 accounts, about 200,000 events) into a new database. "
        "It takes about half a minute; the app opens by itself when it is ready."
    )

    @st.fragment(run_every=1.0)
    def progress() -> None:
        if job.portfolio_ready.is_set():
            st.rerun(scope="app")
        elapsed = time.monotonic() - job.started
        st.progress(min(max(job.fraction, 0.02), 1.0), text=f"{job.message} ({elapsed:.0f} s)")

    progress()


def page_drawn() -> None:
    """Called at the end of every run: the first one on a new portfolio lets the history start."""
    job = _job(database_url())
    if job is not None and job.loaded and not job.drawn.is_set():
        job.drawn.set()


def history_note() -> str | None:
    """While the health history is still being computed: a line for the sidebar."""
    job = _job(database_url())
    if job is None or job.done.is_set() or not job.portfolio_ready.is_set():
        return None
    return (
        f":material/hourglass_top: Computing {HISTORY_WEEKS} weeks of health history in the background "
        f"({job.history:.0%}); score histories fill in when it is done."
    )
