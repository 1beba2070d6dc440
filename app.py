"""Router: page config, database readiness, identity, shared sidebar, navigation."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Onboarding analytics", page_icon=":material/rocket_launch:", layout="wide")
# The process's first run imports the analytics stack (seconds): say so at once instead of a blank page.
_starting = st.empty() if "services.analytics" not in sys.modules else None
if _starting is not None:
    _starting.caption("Starting the app…")

from sqlalchemy.exc import DBAPIError  # noqa: E402

from components import cache, first_start, links  # noqa: E402
from components.auth import (  # noqa: E402
    auth_config,
    current_user,
    demo_view_as,
    misconfigured_page,
    no_data_page,
    user_badge,
)
from components.banner import data_banner  # noqa: E402
from components.filters import sidebar_filters  # noqa: E402
from db.session import DatabaseUnavailable, check_connection, describe_db_error, public_reason  # noqa: E402
from services.admin_read import team_members  # noqa: E402

if _starting is not None:
    _starting.empty()

# Pages whose numbers follow the sidebar's account filters.
FILTERED = {"Portfolio", "Funnel", "Cohorts", "Accounts", "Health model", "My work"}


log = logging.getLogger("onboarding.app")

# Anything that means the database cannot be reached or read as expected: connection lost,
# tables or schema dropped ("no such table", "relation ... does not exist"), the SQLite file
# deleted or replaced. Each gives the database-error page, wherever it happens.
DB_ERRORS = (DatabaseUnavailable, DBAPIError)


def database_error(exc: BaseException) -> None:
    """A clear page instead of a stack trace; retry brings the app back when the database is.
    The page can appear before anyone is identified (the team is in the database), so it
    names no host, port, path, database or user: the detail goes to the server log."""
    log.error("database unavailable: %s", describe_db_error(exc), exc_info=exc)
    # The next run checks the database again and re-runs migrations (a recreated database).
    cache.forget_ready()
    st.title("The database is unavailable")
    st.error(f"{public_reason(exc)} The server log has the details.", icon=":material/database:")
    st.write(
        "Nothing you entered was saved if the save did not say so. Whoever runs the app: the log says what "
        "failed; check that the database is running and that DATABASE_URL points at it, then retry."
    )
    st.button("Retry", type="primary", icon=":material/refresh:", on_click=cache.forget_ready)
    st.stop()


# Sign-in first: a broken set-up closes the app for everyone (never the open demo).
auth = auth_config()
if auth.mode == "error":
    misconfigured_page(auth)

try:
    check_connection()
    with st.spinner("Preparing the database (migrating)…"):
        status = cache.ready(demo_mode=False)  # the schema and defaults only
    has_data = cache.has_data()
    if auth.demo:
        # The demo portfolio (demo mode only) is made in the background: the page shell and its
        # progress are drawn at once, and this run stops until the portfolio is there.
        first_start.ensure_demo(has_data=has_data)
        has_data = has_data or cache.has_data()
except DB_ERRORS as exc:
    database_error(exc)

try:
    user = current_user(auth)
except DB_ERRORS as exc:
    database_error(exc)
st.session_state["_user"] = user
if not has_data and not user.is_admin:
    no_data_page(user)

# A CSM starts on My work (their tasks); everyone else on Portfolio. The start page answers
# on its own path too (/portfolio, /my-work), e.g. a link copied from the menu.
csm_start = user.role == "csm"


def start_page(script: str, title: str, icon: str, path: str, start: bool) -> list:
    if not start:
        return [st.Page(script, title=title, icon=icon, url_path=path)]
    return [
        st.Page(script, title=title, icon=icon, url_path="home", default=True),
        st.Page(script, title=title, icon=icon, url_path=path, visibility="hidden"),
    ]


pages = {
    "Analytics": [
        *start_page("app_pages/portfolio.py", "Portfolio", ":material/dashboard:", "portfolio", not csm_start),
        st.Page("app_pages/funnel.py", title="Funnel", icon=":material/filter_alt:", url_path="funnel"),
        st.Page("app_pages/cohorts.py", title="Cohorts", icon=":material/stacked_line_chart:", url_path="cohorts"),
        st.Page(
            "app_pages/health_model.py", title="Health model", icon=":material/monitor_heart:", url_path="health-model"
        ),
    ],
    "Customer success": [
        st.Page("app_pages/accounts.py", title="Accounts", icon=":material/apartment:", url_path="accounts"),
        st.Page(
            "app_pages/success_plans.py", title="Success plans", icon=":material/checklist:", url_path="success-plans"
        ),
        *start_page("app_pages/my_work.py", "My work", ":material/task_alt:", "my-work", csm_start),
    ],
    "Admin": [
        st.Page("app_pages/data.py", title="Data", icon=":material/database:", url_path="data", default=not has_data),
        st.Page("app_pages/settings.py", title="Settings", icon=":material/settings:", url_path="settings"),
    ],
}
if not has_data:
    # Before the first import there is nothing to analyse: an admin gets the pages that load data.
    pages = {"Admin": pages["Admin"]}
page = st.navigation(pages)
links.navigation_guard()  # Back returns to the view that was left, in one step

user_badge(user)
try:
    if auth.demo:
        demo_view_as(team_members())
except DB_ERRORS as exc:
    database_error(exc)
if not has_data:
    st.info("No data yet: import it on the Data page (or with `python manage.py import`).", icon=":material/info:")
try:
    data_banner()  # what is shown now: demo data, yours, or both (not the first start's state)
except DB_ERRORS as exc:
    database_error(exc)

try:
    if page.title in FILTERED:
        src = cache.facts()
        st.session_state["_filters"] = sidebar_filters(src.filter_options())
    page.run()
except DB_ERRORS as exc:
    database_error(exc)
first_start.page_drawn()  # the first page is up: the health history may start now
