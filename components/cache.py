"""The one caching module the pages use.

The analytics loader (services.analytics.Facts) is kept per database and data version:
every write bumps a version, so the next run of any session gets fresh facts, and
sessions share one loader (and its bounded memo) instead of each loading 20,000 accounts.
"""

from __future__ import annotations

import time

import streamlit as st

from db.session import database_url, session_scope, versions
from services.analytics import Facts
from services.setup import ensure_ready, has_accounts


def _return_freed_memory() -> None:
    """Large blocks (128 KB and up: a column of a 100,000-row frame is 800 KB) in mappings of
    their own, given back to the system when freed. glibc's default raises that threshold
    each time such a block is freed, up to 32 MB, after which frames that come and go on
    every run are carved from the heap and its freed pages stay in the server's RSS (about
    150 MB after every page at 100,000 accounts). Once per process; elsewhere a no-op."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (glibc malloc.h)
    except (OSError, AttributeError):  # not glibc
        pass


_return_freed_memory()


@st.cache_resource(show_spinner=False, max_entries=4)
def _ready(url: str, demo_mode: bool) -> dict:
    """Migrate and defaults, plus the demo portfolio into an empty database in demo mode
    only: once per process."""
    return ensure_ready(url, demo_mode=demo_mode)


def ready(*, demo_mode: bool) -> dict:
    return _ready(database_url(), demo_mode)


def has_data() -> bool:
    """Whether any account exists; not cached, so the first import shows at once."""
    return has_accounts(database_url())


def forget_ready() -> None:
    """After a database outage, let the next run check the database again (and migrate it), and
    drop the loaders: a recreated database can restart its version counters."""
    _ready.clear()
    _facts.clear()


def data_versions() -> dict[str, int]:
    with session_scope() as s:
        return versions(s)


@st.cache_resource(show_spinner=False, max_entries=3)
def _facts(url: str, core_version: int) -> Facts:
    return Facts(url)


def facts() -> Facts:
    """The shared loader for the current data. Imports and settings changes (core version)
    give a new loader; checklist and plan saves only refresh what depends on plans."""
    v = data_versions()
    src = _facts(database_url(), v["core_version"])
    src.plans_version = max(src.plans_version, v["plans_version"])
    return src


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
