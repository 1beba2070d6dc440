"""Open an account from any table in one click, in the same tab, keeping the view: the
sidebar filters and *As of* go along as query parameters, so the account opens as of the
date being reviewed, *Back* returns to the same view, and the URL can be shared.

A LinkColumn cannot do this (the grid opens every link in a new tab, and the first click
only selects the cell), so the account column is a button column: the click reruns the
page, which switches to the Accounts page in the same session. The sidebar's widgets are
bound to the URL and live in the router, so they keep their values on the next page and put
them back into its URL (switch_page may not set a bound parameter itself).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

ACCOUNTS_PAGE = "app_pages/accounts.py"
# Pixel widths of the first columns of Portfolio's attention table (account, health, why,
# intervention, days overdue, triggers): together they fit the main area at 1400 px with the
# sidebar open (about 940 px), and "Why" holds the longest reason (tests/e2e checks both).
ATTENTION_WIDTHS = {"link": 150, "health": 60, "reason": 395, "intervention": 150, "days_overdue": 95, "triggers": 65}


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


def open_account(external_id: str, *, same_page: bool = False) -> None:
    """Switch to the account's page in this tab; the filters and As of stay (see above).
    From the Accounts list itself, only the account is added to the URL, which keeps every
    other parameter (the list's own search and filters too, for "All accounts" and Back)."""
    if same_page:
        st.query_params["account"] = str(external_id)
        st.rerun()
    st.switch_page(ACCOUNTS_PAGE, query_params={"account": str(external_id)})


def follow_click(key: str, ids: pd.Series, *, labels: pd.Series | None = None, same_page: bool = False) -> None:
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
    open_account(ids.iloc[row], same_page=same_page)
