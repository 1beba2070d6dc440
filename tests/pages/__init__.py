"""Helpers for the AppTest page tests: open the app on a page the way a shared link would
(query parameters set before the first run), as the local demo admin or as a team member
signed in through OIDC (AppTest can seed st.user and the [auth] secrets, not headers)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

APP = str(ROOT / "app.py")
# Enough of an [auth] section for the app to choose OIDC sign-in; AppTest supplies st.user.
OIDC_SECRETS = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "test-cookie-secret",
    "client_id": "test-client",
    "client_secret": "test-secret",
    "server_metadata_url": "https://login.example.com/.well-known/openid-configuration",
}


def open_page(page: str, *, query: dict | None = None, as_user: str | None = None, check: bool = True) -> AppTest:
    """Open the app with these query parameters, then go to the page <page>.py.

    The router (app.py) must run first: AppTest's switch_page before any run executes the
    page file on its own, without the router's identity and sidebar. Parameters bound to
    the target page's widgets are not bound on the home page, so they reach the target page.
    as_user: sign in as this email through OIDC (else the local demo admin)."""
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    if as_user:
        at.secrets["auth"] = dict(OIDC_SECRETS)
        at.user = {"is_logged_in": True, "email": as_user, "name": as_user.split("@")[0]}
    at.run()
    # The start page is Portfolio, or My work for a CSM.
    signed_in = at.session_state["_user"] if "_user" in at.session_state else None  # noqa: SIM401 (AppTest session state has no get)
    start = None if signed_in is None else ("my_work" if signed_in.role == "csm" else "portfolio")
    if start is not None and page != start and not at.exception:
        at.switch_page(page_file(page)).run()
    if check:
        assert_ok(at)
    return at


def page_file(page: str) -> str:
    """The page's script, relative to app.py (the page folder was renamed once already)."""
    for folder in ("app_pages", "pages"):
        if (ROOT / folder / f"{page}.py").is_file():
            return f"{folder}/{page}.py"
    raise AssertionError(f"no page script named {page}.py")


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metrics(at: AppTest) -> dict[str, str]:
    """Every st.metric on the page: label -> the value shown."""
    return {m.label: m.value for m in at.metric}


def table_with(at: AppTest, *columns: str, index: int = 0) -> pd.DataFrame:
    """The index-th table (st.dataframe / st.data_editor) that has all these columns."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(found) > index, (
        f"no table with columns {columns}; tables: {[list(d.value.columns) for d in at.dataframe]}"
    )
    return found[index]


def button(at: AppTest, label: str):
    """The button (or form submit button) with this label."""
    for b in [*at.button, *at.form_submit_button]:
        if b.label == label:
            return b
    raise AssertionError(f"no button {label!r}; buttons: {[b.label for b in at.button]}")


def texts(elements: Iterable) -> list[str]:
    return [e.value for e in elements]


def unescape(md: str) -> str:
    """Markdown-escaped user text (components.safe.md) back to the text a reader sees (md()
    also puts an invisible word joiner into URLs, so they are no links)."""
    return re.sub(r"\\(.)", r"\1", md).replace("\u2060", "")


def pct(x: float) -> str:
    """A share as the KPI tiles show it: whole percent with a space, e.g. '57 %'."""
    return f"{x * 100:.0f} %"
