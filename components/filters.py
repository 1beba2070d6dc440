"""Sidebar filters kept in the URL query string (widgets bound to query parameters), so a
copied link opens the same view.

Global parameters: as_of, start (contract start range), segment, industry, plan,
channel, csm, region. Pages bind their own widgets the same way (steps, mode, view...).
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from db.models import SEGMENTS
from services.analytics import Filters, today

MULTI = (
    ("segment", "Segment"),
    ("industry", "Industry"),
    ("plan", "Plan"),
    ("channel", "Channel"),
    ("csm", "CSM"),
    ("region", "Region"),
)


def as_of() -> date:
    """The as-of date chosen in the sidebar (URL parameter as_of, default today)."""
    v = st.session_state.get("as_of")
    return v if isinstance(v, date) else today()


def sidebar_filters(opts: dict) -> Filters:
    """Render the filters in the sidebar and return them (`opts`: Facts.filter_options())."""
    sb = st.sidebar
    sb.subheader("Filters")
    sb.date_input(
        "As of",
        value=today(),
        key="as_of",
        bind="query-params",
        help="Everything is computed from the data up to this date (point in time).",
        format="YYYY-MM-DD",
    )
    options = {key: opts[key] for key, _ in MULTI}
    options["segment"] = [s for s in SEGMENTS if s in set(opts["segment"])]
    csm_names = opts["csm_names"]
    values: dict[str, tuple[str, ...]] = {}
    for key, label in MULTI:
        sel = sb.multiselect(
            label,
            options[key],
            key=key,
            bind="query-params",
            placeholder="All",
            format_func=(lambda e: csm_names.get(e) or e) if key == "csm" else str,
        )
        values[key] = tuple(sel)
    lo, hi = opts["start_range"]
    rng = sb.date_input(
        "Contract start between",
        value=(),
        key="start",
        bind="query-params",
        min_value=lo.date() if pd.notna(lo) else None,
        max_value=hi.date() if pd.notna(hi) else None,
        help="Only accounts whose contract started in this range. Empty = all.",
        format="YYYY-MM-DD",
    )
    rng = tuple(rng) if isinstance(rng, list | tuple) else ((rng,) if rng else ())
    flt = Filters(start_from=rng[0] if rng else None, start_to=rng[1] if len(rng) > 1 else None, **values)
    if not flt.is_empty():
        sb.button("Clear filters", icon=":material/filter_alt_off:", on_click=_clear)
    return flt


def _clear() -> None:
    for key, _ in MULTI:
        st.session_state[key] = []
    st.session_state["start"] = ()
