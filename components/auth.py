"""Who is signed in, and whether anyone may be: Streamlit OIDC (st.login) when [auth] is
configured in secrets, a trusted reverse-proxy header when AUTH_HEADER is set, the local demo
(everyone a demo admin) only in demo mode. Any misconfiguration fails closed: an error page
for everyone, the reason in the server log.

Demo mode: no sign-in is configured, and either DEMO_MODE=1 or DEMO_MODE is unset and the
database is the default SQLite file (data/onboarding.db). Sign-in configured is never demo
mode (DEMO_MODE=1 is then ignored, with a warning in the log)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import streamlit as st

from components.safe import md
from db.session import session_scope
from services.access import NotInTeam, User, demo_admin, user_for_email
from services.setup import active_admins, bootstrap_admin, is_demo_database

log = logging.getLogger(__name__)

SECRET_HEADER_DEFAULT = "X-Auth-Secret"
OIDC_KEYS = ("redirect_uri", "cookie_secret")
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
# RFC 9110 token: what a header name may be made of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class AuthConfig:
    """The sign-in set-up as resolved from secrets and the environment."""

    mode: str  # "oidc" | "header" | "demo" | "error"
    problem: str = ""  # mode "error": what is wrong, safe to show to anyone
    detail: str = ""  # mode "error": the full reason (paths, parser message), for the log only
    header: str = ""
    secret: str = field(default="", repr=False)
    secret_header: str = SECRET_HEADER_DEFAULT
    bootstrap_admin: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def demo(self) -> bool:
        return self.mode == "demo"


class SignInRefused(Exception):
    """The request's identity cannot be trusted; the message says why (safe to show)."""


class Headers(Protocol):
    def get_all(self, key: str) -> list[str]: ...


def _flag(name: str, env: Mapping[str, str]) -> bool | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{name} must be 1 or 0 (true/false), not {raw.strip()[:40]!r}")


def _is_local_address(address: str | None) -> bool:
    """Whether Streamlit listens on loopback only (unset means every interface)."""
    if not address:
        return False
    a = address.strip().strip("[]")
    if a == "localhost" or a.startswith("unix:"):
        return True
    try:
        return ipaddress.ip_address(a).is_loopback
    except ValueError:
        return False


def _oidc_problems(section: Any) -> list[str]:
    """Missing or empty keys of the [auth] section, as Streamlit's st.login needs them for
    the default provider (keys at the top of [auth], or in [auth.default])."""
    if not isinstance(section, Mapping):
        return ["[auth] is not a table"]
    provider = section.get("default")
    provider = provider if isinstance(provider, Mapping) else section

    def empty(m: Mapping, k: str) -> bool:
        return not isinstance(m.get(k), str) or not m.get(k).strip()

    missing = [k for k in OIDC_KEYS if empty(section, k)] + [k for k in PROVIDER_KEYS if empty(provider, k)]
    return [f"missing or empty: {', '.join(missing)}"] if missing else []


def resolve(
    *,
    secrets: Mapping[str, Any],
    secrets_problem: str | None,
    env: Mapping[str, str],
    database_is_demo: bool,
    server_address: str | None,
) -> AuthConfig:
    """The sign-in mode for these settings; mode "error" (fail closed) on any misconfiguration."""

    def error(problem: str, detail: str = "") -> AuthConfig:
        return AuthConfig(mode="error", problem=problem, detail=detail or problem)

    if secrets_problem:
        return error("The secrets file (.streamlit/secrets.toml) cannot be read.", secrets_problem)
    try:
        demo_flag = _flag("DEMO_MODE", env)
    except ValueError as exc:
        return error(str(exc))
    oidc = "auth" in secrets
    header = (env.get("AUTH_HEADER") or "").strip()
    secret = env.get("AUTH_HEADER_SECRET") or ""
    secret_header = (env.get("AUTH_HEADER_SECRET_HEADER") or "").strip() or SECRET_HEADER_DEFAULT
    bootstrap = (env.get("BOOTSTRAP_ADMIN") or "").strip().lower()
    warnings: list[str] = []

    if oidc:
        problems = _oidc_problems(secrets["auth"])
        if problems:
            return error(
                "The [auth] section of .streamlit/secrets.toml is incomplete: " + "; ".join(problems) + ".",
            )
    if oidc and header:
        return error("Both OIDC ([auth] in secrets.toml) and AUTH_HEADER are configured: configure one sign-in method.")
    if secret and not header:
        return error("AUTH_HEADER_SECRET is set but AUTH_HEADER is not: say which header carries the identity.")
    for name, value in (("AUTH_HEADER", header), ("AUTH_HEADER_SECRET_HEADER", secret_header)):
        if value and not _HEADER_NAME.match(value):
            return error(f"{name} is not a valid HTTP header name: {value[:60]!r}.")
    if header and header.lower() == secret_header.lower():
        return error("AUTH_HEADER and AUTH_HEADER_SECRET_HEADER name the same header.")
    if header and not secret and not _is_local_address(server_address):
        return error(
            "AUTH_HEADER is set without AUTH_HEADER_SECRET while the server listens on every interface: anyone who "
            "reaches the port could send the header. Set AUTH_HEADER_SECRET (the proxy sends it) or run with "
            "--server.address 127.0.0.1 behind the proxy.",
            f"server.address={server_address!r}",
        )
    if bootstrap and (bootstrap.count("@") != 1 or any(c.isspace() or c == "," for c in bootstrap)):
        return error("BOOTSTRAP_ADMIN must be one email address.", f"BOOTSTRAP_ADMIN={bootstrap[:200]!r}")

    if oidc or header:
        if demo_flag:
            warnings.append("DEMO_MODE=1 is ignored: sign-in is configured, so this is not the local demo")
        return AuthConfig(
            mode="oidc" if oidc else "header",
            header=header,
            secret=secret,
            secret_header=secret_header,
            bootstrap_admin=bootstrap,
            warnings=tuple(warnings),
        )
    if demo_flag or (demo_flag is None and database_is_demo):
        if bootstrap:
            warnings.append("BOOTSTRAP_ADMIN is ignored in the local demo (everyone is the demo admin)")
        return AuthConfig(mode="demo", warnings=tuple(warnings))
    if demo_flag is False:
        return error(
            "Sign-in is not configured and DEMO_MODE=0 turns the open local demo off: configure OIDC "
            "([auth] in .streamlit/secrets.toml) or a trusted header (AUTH_HEADER)."
        )
    return error(
        "Sign-in is not configured, and the database is not the local demo's (DATABASE_URL points elsewhere, or "
        "data was imported into the demo file): configure OIDC ([auth] in .streamlit/secrets.toml) or a trusted "
        "header (AUTH_HEADER), or set DEMO_MODE=1 to run the open local demo on it."
    )


def read_secrets() -> tuple[dict[str, Any], str | None]:
    """(the secrets, None), or ({}, why) when a secrets file exists but cannot be read.

    Streamlit treats a secrets.toml that does not parse like a missing one, which would
    turn sign-in off; every existing file is parsed here first so that cannot happen."""
    from streamlit import config
    from streamlit.errors import StreamlitSecretNotFoundError

    found = []
    for path in config.get_option("secrets.files") or []:
        if os.path.isfile(path):
            found.append(path)
            try:
                with open(path, "rb") as f:
                    tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                return {}, f"{path}: {exc}"
        elif os.path.isdir(path):
            found.append(path)
    try:
        return st.secrets.to_dict(), None
    except StreamlitSecretNotFoundError as exc:
        if found:
            return {}, f"{', '.join(found)}: {exc}"
        return {}, None
    except Exception as exc:  # noqa: BLE001 - any unreadable secrets fail closed
        return {}, f"{type(exc).__name__}: {exc}"


_logged: set[str] = set()


def _log_once(level: int, message: str) -> None:
    """Each distinct problem once per process, not once per rerun of every session."""
    if message not in _logged:
        _logged.add(message)
        log.log(level, message)


def auth_config() -> AuthConfig:
    """The sign-in set-up for this run (read afresh: a fixed secrets file takes effect at once)."""
    from streamlit import config

    secrets, problem = read_secrets()
    cfg = resolve(
        secrets=secrets,
        secrets_problem=problem,
        env=os.environ,
        database_is_demo=is_demo_database(),
        server_address=config.get_option("server.address"),
    )
    if cfg.mode == "error":
        _log_once(logging.ERROR, f"sign-in misconfigured, the app is closed: {cfg.problem} ({cfg.detail})")
    for w in cfg.warnings:
        _log_once(logging.WARNING, w)
    return cfg


def auth_mode() -> str:
    return auth_config().mode


def misconfigured_page(cfg: AuthConfig) -> None:
    """The page everyone gets while the sign-in set-up is broken; stops the run."""
    st.title("Sign-in is not set up correctly")
    st.error(
        f"{cfg.problem} The dashboard stays closed until whoever runs it fixes the configuration "
        "(the server log has the details).",
        icon=":material/lock:",
    )
    st.stop()


def header_identity(headers: Headers, cfg: AuthConfig) -> str:
    """The email the trusted proxy sent, or SignInRefused: a missing or wrong shared secret,
    a header sent more than once (a client's own copy ahead of the proxy's), or a value
    that is not one address."""
    if cfg.secret:
        sent = headers.get_all(cfg.secret_header)
        if len(sent) != 1 or not hmac.compare_digest(sent[0].encode("utf-8"), cfg.secret.encode("utf-8")):
            raise SignInRefused(
                f"This request did not come through the sign-in proxy ({cfg.secret_header} is missing or wrong), "
                f"so its {cfg.header} header cannot be trusted. Open the dashboard through the company sign-in."
            )
    values = headers.get_all(cfg.header)
    if not values or not values[0].strip():
        raise SignInRefused(
            f"The sign-in proxy did not send the {cfg.header} header, so we cannot tell who you are. "
            "Open the dashboard through the company sign-in."
        )
    if len(values) > 1:
        raise SignInRefused(
            f"The request carries the {cfg.header} header {len(values)} times, so we cannot tell who you are; "
            "it is refused. The sign-in proxy must replace the header, not add to it."
        )
    email = values[0].strip()
    if "," in email or email.count("@") != 1 or any(c.isspace() for c in email):
        raise SignInRefused(f"The {cfg.header} header does not hold one email address, so it is refused.")
    return email


def current_user(cfg: AuthConfig) -> User:
    """The signed-in team member; renders the sign-in or no-access page and stops if none."""
    if cfg.mode == "error":
        misconfigured_page(cfg)
    if cfg.mode == "demo":
        return _demo_user()
    if cfg.mode == "oidc":
        if not getattr(st.user, "is_logged_in", False):
            st.title("Onboarding analytics")
            st.write("Sign in with your company account to continue.")
            st.button("Sign in", type="primary", on_click=st.login)
            st.stop()
        email = str(st.user.get("email") or "")
        if st.user.get("email_verified") is False:
            # A provider that lets people set an address they do not own says so here; the
            # team is matched by address, so an unverified one could be anyone's.
            log.warning("OIDC sign-in refused: %s is not verified by the identity provider", email)
            st.title("Not signed in")
            st.error(
                f"Your identity provider has not verified the address {md(email)}, so it cannot be matched to "
                "the team. Verify it with the provider, then sign in again."
            )
            st.button("Sign out", on_click=st.logout)
            st.stop()
    else:
        try:
            email = header_identity(st.context.headers, cfg)
        except SignInRefused as exc:
            log.warning("trusted-header sign-in refused: %s", exc)
            st.title("Not signed in")
            st.error(str(exc))
            st.stop()
    if cfg.bootstrap_admin and bootstrap_admin(email, named=cfg.bootstrap_admin):
        log.warning("%s signed in for the first time and was made admin (BOOTSTRAP_ADMIN)", email.lower())
    try:
        with session_scope() as s:
            return user_for_email(s, email, mode=cfg.mode)
    except NotInTeam:
        _no_access(email, cfg.mode)
    raise AssertionError("unreachable")


def _no_access(email: str, mode: str) -> None:
    st.title("No access")
    st.error(
        f"You are signed in as {md(email)}, but that address is not a member of the customer-success team here. "
        "Ask an admin to add you on the Settings page (Team), then reload."
    )
    if active_admins() == 0:
        st.info(
            "No data yet, and no admin yet: whoever runs the server creates the first admin with "
            "`python manage.py create-admin EMAIL` (or sets BOOTSTRAP_ADMIN to that address), and the admin imports "
            "the data on the Data page.",
            icon=":material/info:",
        )
    if mode == "oidc":
        st.button("Sign out", on_click=st.logout)
    st.stop()


def no_data_page(user: User) -> None:
    """Outside demo mode, before the first import: nothing to analyse yet (non-admins); stops."""
    st.title("No data yet")
    st.info(
        "There is no data here yet: an admin imports it on the Data page (or with `python manage.py import`). "
        f"You are signed in as {md(user.name)} ({user.role}).",
        icon=":material/info:",
    )
    if user.mode == "oidc":
        st.button("Sign out", on_click=st.logout)
    st.stop()


VIEW_AS = "view_as"  # session key and URL parameter of the local demo's "View as"


def _demo_user() -> User:
    """The demo admin, or the team member chosen under "View as" (local demo only: lets
    people try the other roles; sign-in modes never offer it). The choice is kept in the
    URL (?view_as=...), so a reload or a shared link keeps it."""
    if VIEW_AS in st.session_state:
        email = st.session_state[VIEW_AS]
    else:
        # A fresh session (a reload): the picker has not run yet, so read its URL value.
        email = _view_as_from_url(st.query_params.get(VIEW_AS))
    if email:
        try:
            with session_scope() as s:
                u = user_for_email(s, email, mode="demo")
            return User(email=u.email, name=u.name, role=u.role, member_id=u.member_id, mode="demo")
        except NotInTeam:
            st.session_state[VIEW_AS] = None
    return demo_admin()


def _label(name: str, role: str) -> str:
    return f"{name} ({role})"


def _view_as_from_url(raw: str | None) -> str | None:
    """The team member a ?view_as= value names (the picker's label, or an email)."""
    if not raw:
        return None
    from services.admin_read import team_members

    for email, name, role in team_members():
        if raw == _label(name, role) or raw.strip().lower() == email.lower():
            return email
    return None


def demo_view_as(team: list[tuple[str, str, str]]) -> None:
    """Sidebar picker for the local demo: view the app as another team member."""
    options = [None] + [e for e, _, _ in team]
    labels = {e: _label(n, r) for e, n, r in team}
    st.sidebar.selectbox(
        "View as (local demo)",
        options,
        key=VIEW_AS,
        bind="query-params",
        format_func=lambda e: "Demo admin (admin)" if e is None else labels.get(e, e),
        help="Try the app as a CSM, leader or RevOps member. Only in the local demo, where sign-in is off. "
        "Kept in the address (view_as), so a reload keeps it.",
    )


def user_badge(user: User) -> None:
    """Who is signed in, in the sidebar."""
    if user.mode == "demo":
        st.sidebar.info(
            f"**Local demo**: you are the *{md(user.name)}* ({user.role}). Sign-in is off; configure OIDC or a trusted header to use real accounts.",
            icon=":material/person:",
        )
    else:
        st.sidebar.caption(f"Signed in as **{md(user.name)}** ({user.role}) · {md(user.email)}")
        if user.mode == "oidc":
            st.sidebar.button("Sign out", on_click=st.logout)
