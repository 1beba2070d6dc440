"""The sidebar's line saying what data is shown: the demo portfolio, your own, or both
(issue 12, point 16). Recomputed whenever the data changes (an import, "Remove demo data")."""

from __future__ import annotations

import streamlit as st

from components import cache, first_start
from db.session import database_url
from services.demo_data import Portfolio, portfolio


@st.cache_data(show_spinner=False, max_entries=8, ttl=3600)
def _portfolio(url: str, core_version: int) -> Portfolio:
    return portfolio(url)


def current() -> Portfolio:
    """What the database holds now (cached per data version)."""
    return _portfolio(database_url(), cache.data_versions()["core_version"])


def data_banner() -> None:
    """One caption in the sidebar: what is shown (nothing before any data)."""
    line = current().banner()
    if line:
        st.sidebar.caption(line)
    if note := first_start.history_note():
        st.sidebar.caption(note)
