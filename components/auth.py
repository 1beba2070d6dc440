"""Who is signed in: Streamlit OIDC (st.login) when [auth] is configured in secrets, a
trusted reverse-proxy header when AUTH_HEADER is set, else the local demo as a demo admin."""

from __future__ import annotations

import os

import streamlit as st

from components.safe import md
from db.session import session_scope
from services.access import NotInTeam, User, demo_admin, user_for_email


def auth_mode() -> str:
    try:
        if "auth" in st.secrets:
            return "oidc"
    except Exception:  # noqa: BLE001 - no secrets file at all
        pass
    if os.environ.get("AUTH_HEADER"):
        return "header"
    return "demo"


def current_user() -> User:
    """The signed-in team member; renders the sign-in or no-access page and stops if none."""
    mode = auth_mode()
    if mode == "demo":
        return _demo_user()
    if mode == "oidc":
        if not getattr(st.user, "is_logged_in", False):
            st.title("Onboarding analytics")
            st.write("Sign in with your company account to continue.")
            st.button("Sign in", type="primary", on_click=st.login)
            st.stop()
        email = str(st.user.get("email") or "")
    else:
        header = os.environ["AUTH_HEADER"]
        email = str(st.context.headers.get(header) or "")
        if not email:
            st.title("Not signed in")
            st.error(
                f"The sign-in proxy did not send the {header} header, so we cannot tell who you are. Open the dashboard through the company sign-in."
            )
            st.stop()
    try:
        with session_scope() as s:
            return user_for_email(s, email, mode=mode)
    except NotInTeam:
        st.title("No access")
        st.error(
            f"You are signed in as {md(email)}, but that address is not a member of the customer-success team here. "
            "Ask an admin to add you on the Settings page (Team), then reload."
        )
        if mode == "oidc":
            st.button("Sign out", on_click=st.logout)
        st.stop()
    raise AssertionError("unreachable")


def _demo_user() -> User:
    """The demo admin, or the team member chosen under "View as" (local demo only: lets
    people try the other roles; sign-in modes never offer it)."""
    email = st.session_state.get("demo_view_as")
    if email:
        try:
            with session_scope() as s:
                u = user_for_email(s, email, mode="demo")
            return User(email=u.email, name=u.name, role=u.role, member_id=u.member_id, mode="demo")
        except NotInTeam:
            st.session_state["demo_view_as"] = None
    return demo_admin()


def demo_view_as(team: list[tuple[str, str, str]]) -> None:
    """Sidebar picker for the local demo: view the app as another team member."""
    options = [None] + [e for e, _, _ in team]
    labels = {e: f"{n} ({r})" for e, n, r in team}
    st.sidebar.selectbox(
        "View as (local demo)",
        options,
        key="demo_view_as",
        format_func=lambda e: "Demo admin (admin)" if e is None else labels.get(e, e),
        help="Try the app as a CSM, leader or RevOps member. Only in the local demo, where sign-in is off.",
    )


def user_badge(user: User) -> None:
    """Who is signed in, in the sidebar."""
    if user.mode == "demo":
        st.sidebar.info(
            f"**Local demo**: you are the *{user.name}* ({user.role}). Sign-in is off; configure OIDC or a trusted header to use real accounts.",
            icon=":material/person:",
        )
    else:
        st.sidebar.caption(f"Signed in as **{md(user.name)}** ({user.role}) · {md(user.email)}")
        if user.mode == "oidc":
            st.sidebar.button("Sign out", on_click=st.logout)
