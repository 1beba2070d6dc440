"""Open an account from any table in one click, in the same tab, keeping the view: the
sidebar filters and *As of* go along as query parameters, so the account opens as of the
date being reviewed, *Back* returns to the same view, and the URL can be shared.

A LinkColumn cannot do this (the grid opens every link in a new tab, and the first click
only selects the cell), so the account column is a button column: the click reruns the
page, which switches to the Accounts page with the view's parameters.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

from components.filters import MULTI
from services.analytics import today

ACCOUNTS_PAGE = "app_pages/accounts.py"
# The parameters every filtered page shares (the sidebar's widgets, components/filters.py).
GLOBAL = ("as_of", "start", *(key for key, _ in MULTI))


def view_params() -> dict[str, str | list[str]]:
    """The sidebar's filters and As of as query parameters (defaults left out, as the
    widgets bound to the URL leave them out)."""
    ss = st.session_state
    out: dict[str, str | list[str]] = {}
    as_of = ss.get("as_of")
    if isinstance(as_of, date) and as_of != today():
        out["as_of"] = as_of.isoformat()
    for key, _ in MULTI:
        if vals := list(ss.get(key) or []):
            out[key] = [str(v) for v in vals]
    rng = ss.get("start") or ()
    if isinstance(rng, list | tuple) and rng:
        out["start"] = [d.isoformat() for d in rng if isinstance(d, date)]
    return out


def page_params(exclude: tuple[str, ...] = ("account",)) -> dict[str, list[str]]:
    """This page's own query parameters (its bound widgets), to come back to the same view."""
    return {k: st.query_params.get_all(k) for k in st.query_params if k not in exclude and k not in GLOBAL}


def account_column(key: str, label: str = "Account", width: int | str | None = None) -> Any:
    """The account (its id or name) as a one-click button that opens it in the same tab."""
    return st.column_config.ButtonColumn(
        label,
        type="tertiary",
        alignment="left",
        pinned=True,
        width=width,
        help="Open the account here, as of the same date and with the same filters (Back returns to this view)",
        key=key,
    )


def open_account(external_id: str, *, keep_page: bool = False) -> None:
    """Switch to the account's page, keeping the view (and this page's own parameters when
    the account opens on the same page, so "All accounts" returns to the same list)."""
    params: dict[str, str | list[str]] = {**(page_params() if keep_page else {}), **view_params()}
    params["account"] = str(external_id)
    st.switch_page(ACCOUNTS_PAGE, query_params=params)


def follow_click(key: str, ids: pd.Series, *, labels: pd.Series | None = None, keep_page: bool = False) -> None:
    """Call after drawing the table: open the account whose button was clicked (the click
    is in session state only during the rerun it triggered). `ids`: the external id of
    each row; `labels`: the buttons' labels when they are not the ids (e.g. names)."""
    click = st.session_state.get(key)
    if click is None:
        return
    label, row = str(click["label"]), int(click["row"])
    shown = (ids if labels is None else labels).astype(str).reset_index(drop=True)
    ids = ids.reset_index(drop=True)
    # The row the grid reports, checked against the label clicked (the first row with it otherwise).
    if not (0 <= row < len(ids) and shown.iloc[row] == label):
        hits = shown.index[shown == label]
        if not len(hits):
            return
        row = int(hits[0])
    open_account(ids.iloc[row], keep_page=keep_page)
