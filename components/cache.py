"""The one caching module the pages use.

The analytics loader (services.analytics.Facts) is kept per database and data version:
every write bumps the version, so the next run of any session gets fresh facts, and
sessions share one loader (and its bounded memo) instead of each loading 20,000 accounts.
"""

from __future__ import annotations

import time

import streamlit as st

from db.session import data_version as _data_version
from db.session import database_url, session_scope
from services.analytics import Facts
from services.setup import ensure_ready


@st.cache_resource(show_spinner=False, max_entries=4)
def _ready(url: str) -> dict:
    """Migrate, defaults, and the demo portfolio into an empty database: once per process."""
    return ensure_ready(url)


def ready() -> dict:
    return _ready(database_url())


def forget_ready() -> None:
    """After a database outage, let the next run check the database again."""
    _ready.clear()


def data_version() -> int:
    with session_scope() as s:
        return _data_version(s)


@st.cache_resource(show_spinner=False, max_entries=3)
def _facts(url: str, version: int) -> Facts:
    return Facts(url)


def facts() -> Facts:
    """The shared loader for the current data version."""
    return _facts(database_url(), data_version())


def timed(label: str):
    """Context manager recording server-side render time per page (for the benchmark)."""

    class _T:
        def __enter__(self):
            self.t0 = time.perf_counter()
            return self

        def __exit__(self, *exc):
            st.session_state.setdefault("_timings", {})[label] = time.perf_counter() - self.t0
            return False

    return _T()
