"""Open an account from any table in one click, in the same tab, keeping the view: the
sidebar filters and *As of* go along as query parameters, so the account opens as of the
date being reviewed, *Back* returns to the same view, and the URL can be shared.

A LinkColumn cannot do this (the grid opens every link in a new tab, and the first click
only selects the cell), so the account column is a button column. The click reruns the
page, which then follows a page link to the account, as if the user had clicked it:
Streamlit's own in-app navigation, which carries the sidebar's URL-bound filters along and
records one history entry with the final URL. (`st.switch_page` with query parameters would
not: it sends the new parameters from the server, one message per parameter the next page
puts back, and the browser records each as its own history entry on the old page's path, so
Back stopped on a Portfolio URL with the account in it and, under load, without the filters.)
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


# In-app navigation (the sidebar's links, page links, and the follow below) leaves the page
# with Streamlit sending URL changes from the server that the browser would record as extra
# history entries, so Back would stop on an intermediate URL: before the switch, the page
# being left drops its own parameters (the funnel's steps, Portfolio's tab) on its old path;
# after it, a page without the sidebar (Success plans) drops the sidebar's filters. While a
# navigation is under way, the first kind is skipped (the entry of the view being left stays
# as it was) and the second replaces the new page's entry, so the push to the new page is
# the navigation's one history entry. Installed once per browser tab by the router.
_GUARD_JS = """
export default function () {
  if (window.__navGuard) return;
  window.__navGuard = true;
  const push = history.pushState;
  let guard = null;
  history.pushState = function (state, title, url) {
    const g = guard, path = new URL(url, location.href).pathname;
    if (g && !g.arrived && path === g.from) return;
    if (g && g.arrived && path === location.pathname) return history.replaceState(state, title, url);
    if (g) g.arrived = true;
    return push.apply(this, arguments);
  };
  const arm = () => {
    const g = { from: location.pathname, arrived: false, idle: 0 };
    guard = g;
    const end = () => { clearInterval(watch); if (guard === g) guard = null; };
    // Until the new page's script has run (Streamlit's own state on the app's root; the
    // push to the new page comes while it runs).
    const watch = setInterval(() => {
      if (!g.arrived) return;
      const app = document.querySelector("[data-testid=stApp]");
      g.idle = app && app.getAttribute("data-test-script-state") === "running" ? 0 : g.idle + 1;
      if (g.idle >= 2) end();
    }, 50);
    setTimeout(end, 30000);
  };
  document.addEventListener("click", (e) => {
    const a = e.target instanceof Element && e.target.closest(
      'a[data-testid="stSidebarNavLink"], a[data-testid="stPageLink-NavLink"], a[data-testid="stTopNavLink"]');
    if (!a || a.target === "_blank" || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    if (new URL(a.href, location.href).pathname !== location.pathname) arm();
  }, true);
}
"""
# Follows the page link drawn just before it, as a user's click would.
_FOLLOW_JS = """
export default function ({ data }) {
  let tries = 0;
  const go = () => {
    const link = document.querySelector(`.st-key-${data.key} a[data-testid="stPageLink-NavLink"]`);
    if (link) { link.click(); return; }
    if (++tries < 300) requestAnimationFrame(go);
  };
  go();
}
"""
_components: dict = {}
LINK_KEY = "follow-page-link"
GUARD_KEY = "navigation-guard"


def _component(name: str, js: str):
    if name not in _components:
        _components[name] = st.components.v2.component(name, js=js)
    return _components[name]


def _hidden(key: str) -> None:
    st.html(f"<style>.st-key-{key} {{ display: none; }}</style>")


def navigation_guard() -> None:
    """Call once per run from the router (see above)."""
    _hidden(GUARD_KEY)
    with st.sidebar.container(key=GUARD_KEY):
        _component("navigation_guard", _GUARD_JS)(key=f"{GUARD_KEY}-js", height=0)


def go_to(page: str, query_params: dict[str, str]) -> None:
    """Open `page` in this tab with `query_params` added to the sidebar's (see above): one
    history entry, so Back returns to this view as it was."""
    _hidden(LINK_KEY)
    with st.container(key=LINK_KEY):
        st.page_link(page, label="Open", query_params=query_params)
        _component("follow_page_link", _FOLLOW_JS)(data={"key": LINK_KEY}, key=f"{LINK_KEY}-js", height=0)


def open_account(external_id: str, *, same_page: bool = False) -> None:
    """Open the account's page in this tab; the filters and As of stay (see above).
    From the Accounts list itself, only the account is added to the URL, which keeps every
    other parameter (the list's own search and filters too, for "All accounts" and Back)."""
    if same_page:
        st.query_params["account"] = str(external_id)
        st.rerun()
    go_to(ACCOUNTS_PAGE, {"account": str(external_id)})


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
