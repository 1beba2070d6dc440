"""Safe to deploy (issue 10, points 1-4): sign-in fails closed, the trusted header cannot be
forged by sending it twice or without the proxy's secret, nothing is seeded outside demo
mode, the first admin comes from the CLI (or BOOTSTRAP_ADMIN), and only admins export.

The app runs through AppTest where AppTest can express the set-up (st.user, [auth] secrets,
a secrets file named in Streamlit's config), and as a real `streamlit run` server spoken to
over its websocket where it cannot (request headers, a secrets file the server reads)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit import config as st_config
from streamlit.runtime.context import StreamlitHeaders
from streamlit.testing.v1 import AppTest

from components import auth
from components.auth import AuthConfig, SignInRefused, header_identity, resolve
from db.models import Account, ChangeLog, TeamMember
from db.session import DEFAULT_URL, session_scope
from services.access import PermissionDenied
from services.data import export_all
from services.plans import in_session
from services.settings import save_team_member
from services.setup import create_admin, is_demo_database
from tests.conftest import AS_OF, ROOT, run_cli
from tests.pages import APP, OIDC_SECRETS, assert_ok, open_page, texts
from tests.services import ADMIN, ALEX, member

QUERY = {"as_of": AS_OF.isoformat()}
GOOD_AUTH = dict(OIDC_SECRETS)
BROKEN_TOML = '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback\ncookie_secret = "x"\n'
MISCONFIGURED = "Sign-in is not set up correctly"


def count(url: str, model) -> int:
    with session_scope(url) as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _resolve(
    env: dict | None = None, *, secrets: dict | None = None, demo_db: bool = False, address=None, problem=None
):
    return resolve(
        secrets=secrets or {},
        secrets_problem=problem,
        env=env or {},
        database_is_demo=demo_db,
        server_address=address,
    )


# ----------------------------------------------------------------------------- what runs when


@pytest.mark.parametrize(
    ("env", "secrets", "demo_db", "address", "mode", "says"),
    [
        # The README's first start: nothing configured on the default SQLite file.
        ({}, None, True, None, "demo", ""),
        # Nothing configured on someone's database: closed, not the open demo.
        ({}, None, False, None, "error", "DEMO_MODE=1"),
        ({"DEMO_MODE": "1"}, None, False, None, "demo", ""),
        ({"DEMO_MODE": "true"}, None, False, None, "demo", ""),
        ({"DEMO_MODE": "0"}, None, True, None, "error", "DEMO_MODE=0"),
        ({"DEMO_MODE": "maybe"}, None, True, None, "error", "DEMO_MODE must be 1 or 0"),
        ({}, {"auth": GOOD_AUTH}, True, None, "oidc", ""),
        # Sign-in configured is never the demo, whatever DEMO_MODE says.
        ({"DEMO_MODE": "1"}, {"auth": GOOD_AUTH}, True, None, "oidc", ""),
        (
            {},
            {"auth": {k: v for k, v in GOOD_AUTH.items() if k != "client_secret"}},
            True,
            None,
            "error",
            "client_secret",
        ),
        ({}, {"auth": {**GOOD_AUTH, "cookie_secret": " "}}, True, None, "error", "cookie_secret"),
        ({}, {"auth": {"redirect_uri": "http://x/cb", "cookie_secret": "c"}}, True, None, "error", "client_id"),
        ({}, {"auth": "oidc"}, True, None, "error", "not a table"),
        (
            {},
            {
                "auth": {
                    "redirect_uri": "http://x/cb",
                    "cookie_secret": "c",
                    "default": {k: "v" for k in auth.PROVIDER_KEYS},
                }
            },
            False,
            None,
            "oidc",
            "",
        ),
        ({"AUTH_HEADER": "X-Forwarded-Email"}, {"auth": GOOD_AUTH}, True, None, "error", "configure one"),
        # The trusted header: a secret, or a server only the proxy on this host can reach.
        ({"AUTH_HEADER": "X-Forwarded-Email"}, None, False, None, "error", "AUTH_HEADER_SECRET"),
        ({"AUTH_HEADER": "X-Forwarded-Email"}, None, False, "0.0.0.0", "error", "every interface"),
        ({"AUTH_HEADER": "X-Forwarded-Email"}, None, False, "127.0.0.1", "header", ""),
        ({"AUTH_HEADER": "X-Forwarded-Email"}, None, False, "::1", "header", ""),
        ({"AUTH_HEADER": "X-Forwarded-Email", "AUTH_HEADER_SECRET": "s"}, None, False, "0.0.0.0", "header", ""),
        ({"AUTH_HEADER": "X-Forwarded-Email", "DEMO_MODE": "1"}, None, True, "127.0.0.1", "header", ""),
        ({"AUTH_HEADER_SECRET": "s"}, None, True, None, "error", "AUTH_HEADER is not"),
        ({"AUTH_HEADER": "X Email", "AUTH_HEADER_SECRET": "s"}, None, True, None, "error", "not a valid HTTP header"),
        (
            {"AUTH_HEADER": "X-Email", "AUTH_HEADER_SECRET": "s", "AUTH_HEADER_SECRET_HEADER": "x-email"},
            None,
            True,
            None,
            "error",
            "same header",
        ),
        ({"BOOTSTRAP_ADMIN": "a@x.com,b@x.com"}, {"auth": GOOD_AUTH}, True, None, "error", "one email address"),
    ],
)
def test_which_mode_runs(env, secrets, demo_db, address, mode, says) -> None:
    cfg = _resolve(env, secrets=secrets, demo_db=demo_db, address=address)
    assert cfg.mode == mode, cfg
    assert says in cfg.problem
    assert cfg.demo == (mode == "demo")


def test_a_secrets_file_that_does_not_parse_closes_the_app_even_in_demo_mode() -> None:
    cfg = _resolve({"DEMO_MODE": "1"}, demo_db=True, problem="/srv/.streamlit/secrets.toml: Illegal character")
    assert cfg.mode == "error"
    assert "cannot be read" in cfg.problem and "/srv" not in cfg.problem, "server paths stay in the log"
    assert "Illegal character" in cfg.detail


def test_the_default_sqlite_file_is_the_demo_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert is_demo_database()
    assert is_demo_database(DEFAULT_URL)
    assert is_demo_database(f"sqlite:///{ROOT / 'data' / 'onboarding.db'}")
    assert not is_demo_database(f"sqlite:///{tmp_path / 'onboarding.db'}")
    assert not is_demo_database("postgresql+psycopg://postgres@127.0.0.1:5432/onboarding")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    assert not is_demo_database()


def test_the_demo_file_stops_being_the_demo_once_data_is_imported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small_db: str
) -> None:
    """A default-path database into which someone imported their own data is no demo any
    more: with nothing configured the app closes instead of opening it to every visitor."""
    import services.setup as setup
    from db.importer import import_files

    demo_file = tmp_path / "onboarding.db"
    monkeypatch.setattr(setup, "DEFAULT_URL", f"sqlite:///{demo_file}")
    assert setup.is_demo_database(f"sqlite:///{demo_file}")  # first start: no file yet
    assert not demo_file.exists()  # and asking did not create it
    setup.ensure_ready(f"sqlite:///{demo_file}", demo_mode=True)
    assert setup.is_demo_database(f"sqlite:///{demo_file}")  # the seeded demo is the demo
    rejected = import_files(
        {"accounts.csv": b"account_id,name,segment,contract_start\nX-1,X,Nope,2026-01-05\n"},
        url=f"sqlite:///{demo_file}",
    )
    assert not rejected.ok and setup.is_demo_database(f"sqlite:///{demo_file}")  # nothing was imported
    ok = import_files(
        {"accounts.csv": b"account_id,name,segment,contract_start\nX-1,X,SMB,2026-01-05\n"},
        url=f"sqlite:///{demo_file}",
    )
    assert ok.ok and not setup.is_demo_database(f"sqlite:///{demo_file}")
    # The same rule holds on the test database (SQLite or PostgreSQL): seeded is not imported.
    assert not setup.holds_imported_data(small_db)
    assert import_files(
        {"accounts.csv": b"account_id,name,segment,contract_start\nX-1,X,SMB,2026-01-05\n"}, url=small_db
    ).ok
    assert setup.holds_imported_data(small_db)
    cfg = resolve(secrets={}, secrets_problem=None, env={}, database_is_demo=False, server_address=None)
    assert cfg.mode == "error" and "data was imported into the demo file" in cfg.problem


# ----------------------------------------------------------------------------- misconfiguration pages


@pytest.fixture
def secrets_file(tmp_path: Path) -> Iterator[Path]:
    """A secrets.toml the app reads (Streamlit's secrets.files option), restored afterwards."""
    import streamlit as st

    path = tmp_path / "secrets.toml"
    before = st_config.get_option("secrets.files")
    st_config.set_option("secrets.files", [str(path)])
    # Streamlit keeps the parsed file per process (a server's file watcher reloads it).
    st.secrets._reset()
    yield path
    st_config.set_option("secrets.files", before)
    st.secrets._reset()


def _run(query: dict | None = None, **kw) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in (query or QUERY).items():
        at.query_params[k] = v
    for k, v in kw.items():
        setattr(at, k, v)
    at.run()
    assert_ok(at)
    return at


def _closed(at: AppTest) -> None:
    assert texts(at.title) == [MISCONFIGURED], texts(at.title)
    assert len(at.metric) == 0 and "_user" not in at.session_state
    assert not [b for b in at.button if b.label == "Sign in"]


def test_an_unparseable_secrets_file_shows_the_error_page_to_everyone(
    secrets_file: Path, small_db: str, use_db, caplog: pytest.LogCaptureFixture
) -> None:
    use_db(small_db)
    secrets_file.write_text(BROKEN_TOML)
    with caplog.at_level(logging.ERROR, logger="components.auth"):
        at = _run()
    _closed(at)
    assert "secrets file" in at.error[0].value and str(secrets_file) not in at.error[0].value
    assert any(
        str(secrets_file) in r.getMessage() and "sign-in misconfigured" in r.getMessage() for r in caplog.records
    )
    # Fixed, it opens (no restart: the file is read on every run).
    secrets_file.write_text("[other]\nkey = 1\n")
    at.run()
    assert texts(at.title) == ["Portfolio"]


def test_an_auth_section_missing_keys_shows_the_error_page(secrets_file: Path, small_db: str, use_db) -> None:
    use_db(small_db)
    secrets_file.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "x"\n')
    at = _run()
    _closed(at)
    assert "client_id" in at.error[0].value and "client_secret" in at.error[0].value


def test_incomplete_auth_secrets_also_close_the_app_for_a_signed_in_user(small_db: str, use_db) -> None:
    use_db(small_db)
    incomplete = {k: v for k, v in OIDC_SECRETS.items() if k != "cookie_secret"}
    at = _run(secrets={"auth": incomplete}, user={"is_logged_in": True, "email": ADMIN, "name": "admin"})
    _closed(at)
    assert "cookie_secret" in at.error[0].value


def test_nothing_configured_on_a_non_demo_database_is_closed_and_writes_nothing(
    empty_db: str, use_db, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_db(empty_db)
    monkeypatch.delenv("DEMO_MODE")
    at = _run()
    _closed(at)
    assert "DEMO_MODE=1" in at.error[0].value
    assert count(empty_db, Account) == 0 and count(empty_db, TeamMember) == 0


# ----------------------------------------------------------------------------- the trusted header


def _headers(*pairs: tuple[str, str]) -> StreamlitHeaders:
    return StreamlitHeaders(pairs)


HEADER = AuthConfig(mode="header", header="X-Forwarded-Email")
WITH_SECRET = AuthConfig(mode="header", header="X-Forwarded-Email", secret="s3cret-from-the-proxy")


@pytest.mark.parametrize(
    ("cfg", "pairs", "result"),
    [
        (HEADER, [("X-Forwarded-Email", "alex.csm@example.com")], "alex.csm@example.com"),
        (HEADER, [("x-forwarded-email", " Alex.CSM@example.com ")], "Alex.CSM@example.com"),
        (HEADER, [], "did not send"),
        (HEADER, [("X-Forwarded-Email", "")], "did not send"),
        # A client's own copy first, the proxy's appended after it: refused, not the first.
        (HEADER, [("X-Forwarded-Email", ADMIN), ("X-Forwarded-Email", "alex.csm@example.com")], "2 times"),
        (HEADER, [("X-Forwarded-Email", f"{ADMIN}, alex.csm@example.com")], "one email address"),
        (HEADER, [("X-Forwarded-Email", "not an address")], "one email address"),
        (WITH_SECRET, [("X-Forwarded-Email", ALEX), ("X-Auth-Secret", "s3cret-from-the-proxy")], ALEX),
        (WITH_SECRET, [("X-Forwarded-Email", ALEX)], "X-Auth-Secret is missing or wrong"),
        (WITH_SECRET, [("X-Forwarded-Email", ALEX), ("X-Auth-Secret", "guess")], "missing or wrong"),
        (WITH_SECRET, [("X-Forwarded-Email", ALEX), ("X-Auth-Secret", "s3cret-from-the-proxy-and-more")], "wrong"),
        (
            WITH_SECRET,
            [("X-Forwarded-Email", ALEX), ("X-Auth-Secret", "guess"), ("X-Auth-Secret", "s3cret-from-the-proxy")],
            "missing or wrong",
        ),
        (
            AuthConfig(mode="header", header="X-Forwarded-Email", secret="k", secret_header="X-Proxy-Key"),
            [("X-Forwarded-Email", ALEX), ("X-Proxy-Key", "k")],
            ALEX,
        ),
        (
            WITH_SECRET,
            [("X-Forwarded-Email", ADMIN), ("X-Forwarded-Email", ALEX), ("X-Auth-Secret", "s3cret-from-the-proxy")],
            "2 times",
        ),
    ],
)
def test_header_identity(cfg: AuthConfig, pairs: list, result: str) -> None:
    if "@" in result and " " not in result:
        assert header_identity(_headers(*pairs), cfg) == result.strip()
    else:
        with pytest.raises(SignInRefused, match=result):
            header_identity(_headers(*pairs), cfg)


def test_the_secret_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    header_identity(_headers(("X-Forwarded-Email", ALEX), ("X-Auth-Secret", "s3cret-from-the-proxy")), WITH_SECRET)
    with pytest.raises(SignInRefused):
        header_identity(_headers(("X-Forwarded-Email", ALEX), ("X-Auth-Secret", "nope")), WITH_SECRET)
    assert calls == [(b"s3cret-from-the-proxy", b"s3cret-from-the-proxy"), (b"nope", b"s3cret-from-the-proxy")]


# ----------------------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`streamlit run app.py` on 127.0.0.1 with this environment and these options."""

    def __init__(self, log: Path, env: dict[str, str], *options: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        base_env = {k: v for k, v in os.environ.items() if k not in ("DEMO_MODE", "AUTH_HEADER", "AUTH_HEADER_SECRET")}
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port)),
                *("--server.headless", "true", "--server.address", "127.0.0.1", *options),
            ],
            cwd=ROOT,
            env={**base_env, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"streamlit did not start: {log.read_text()[-2000:]}")

    def visit(self, headers: list[tuple[str, str]], page: str = "") -> dict[str, list[str]]:
        """One page run over the websocket with exactly these handshake headers (repeats
        kept): the titles, alerts and markdown the server sent."""
        return asyncio.run(self._visit(headers, page))

    async def _visit(self, headers: list[tuple[str, str]], page: str) -> dict[str, list[str]]:
        import websockets
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        out: dict[str, list[str]] = {"heading": [], "alert": [], "markdown": [], "exception": []}
        async with websockets.connect(
            f"ws://127.0.0.1:{self.port}/_stcore/stream",
            subprotocols=["streamlit"],
            additional_headers=[*headers, ("Origin", self.base)],
            max_size=None,
            open_timeout=60,
        ) as ws:
            msg = BackMsg()
            msg.rerun_script.query_string = f"as_of={AS_OF.isoformat()}"
            msg.rerun_script.page_name = page
            await ws.send(msg.SerializeToString())
            while True:
                fm = ForwardMsg()
                fm.ParseFromString(await asyncio.wait_for(ws.recv(), timeout=120))
                kind = fm.WhichOneof("type")
                if kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                    el = fm.delta.new_element
                    t = el.WhichOneof("type")
                    if t in out:
                        out[t].append(getattr(el, t).body if t != "exception" else el.exception.message)
                if kind == "script_finished":
                    return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def test_real_server_with_a_broken_secrets_file_is_closed_to_everyone(tmp_path: Path, small_db: str) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(BROKEN_TOML)
    server = LiveServer(
        tmp_path / "server.log", {"DATABASE_URL": small_db, "DEMO_MODE": "1"}, "--secrets.files", str(secrets)
    )
    try:
        seen = server.visit([])
        seen_with_header = server.visit([("X-Forwarded-Email", ADMIN)])
    finally:
        server.stop()
    for s in (seen, seen_with_header):
        assert s["heading"] == [MISCONFIGURED], s
        assert not s["exception"]
        assert not any("Local demo" in a for a in s["alert"])
    log = (tmp_path / "server.log").read_text()
    assert "sign-in misconfigured" in log and str(secrets) in log


@pytest.fixture
def header_server(tmp_path: Path, small_db: str) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path / "server.log",
        {
            "DATABASE_URL": small_db,
            "AUTH_HEADER": "X-Forwarded-Email",
            "AUTH_HEADER_SECRET": "proxy-says-hello",
            "DEMO_MODE": "1",  # ignored: sign-in is configured
        },
    )
    yield server
    server.stop()


def test_real_server_refuses_a_doubled_header_and_a_missing_or_wrong_secret(header_server: LiveServer) -> None:
    secret = ("X-Auth-Secret", "proxy-says-hello")
    ok = header_server.visit([("X-Forwarded-Email", ALEX), secret])
    assert "My work" in ok["heading"], ok  # a CSM's start page
    assert not ok["exception"]

    doubled = header_server.visit([("X-Forwarded-Email", ADMIN), ("X-Forwarded-Email", ALEX), secret])
    no_secret = header_server.visit([("X-Forwarded-Email", ADMIN)])
    wrong_secret = header_server.visit([("X-Forwarded-Email", ADMIN), ("X-Auth-Secret", "proxy-says-hell0")])
    for seen, why in ((doubled, "2 times"), (no_secret, "missing or wrong"), (wrong_secret, "missing or wrong")):
        assert seen["heading"] == ["Not signed in"], seen
        assert any(why in a for a in seen["alert"]), seen["alert"]
        assert "My work" not in seen["heading"] and "Portfolio" not in seen["heading"] and not seen["exception"]


# ----------------------------------------------------------------------------- no demo seeding


def test_an_empty_database_is_not_seeded_for_a_visitor_not_in_the_team(empty_db: str, use_db, monkeypatch) -> None:
    use_db(empty_db)
    monkeypatch.delenv("DEMO_MODE")
    at = open_page("portfolio", query=QUERY, as_user="stranger@elsewhere.example")
    assert texts(at.title) == ["No access"]
    assert any("no admin yet" in i and "create-admin" in i for i in texts(at.info))
    assert len(at.metric) == 0
    assert count(empty_db, Account) == 0 and count(empty_db, TeamMember) == 0


def test_an_empty_database_shows_no_data_yet_and_the_admin_gets_the_data_page(empty_db: str, use_db) -> None:
    """DEMO_MODE=1 is set (conftest) and ignored: with sign-in configured, nothing is seeded."""
    use_db(empty_db)
    create_admin("ops@example.com", name="Ops Lead", actor="test", url=empty_db)
    admin = member(empty_db, "ops@example.com")
    in_session(
        save_team_member, admin, url=empty_db, email="casey.csm@example.com", name="Casey", role="csm", active=True
    )

    csm = open_page("portfolio", query=QUERY, as_user="casey.csm@example.com")
    assert texts(csm.title) == ["No data yet"]
    assert "an admin imports it" in csm.info[0].value
    assert len(csm.metric) == 0

    at = open_page("portfolio", query=QUERY, as_user="ops@example.com")
    assert texts(at.title) == ["Data"]
    assert any("No data yet" in i for i in texts(at.info))
    assert [b.label for b in at.button if b.label == "Import"] == ["Import"]
    assert count(empty_db, Account) == 0 and count(empty_db, TeamMember) == 2


def test_demo_mode_still_seeds_an_empty_database(empty_db: str, use_db) -> None:
    """The first-start promise, on a test database with DEMO_MODE=1 (the default SQLite file
    gets the same without any setting: test_which_mode_runs)."""
    from services.setup import ensure_ready

    status = ensure_ready(empty_db, demo_mode=False)
    assert not status["seeded_now"] and count(empty_db, Account) == 0
    status = ensure_ready(empty_db, demo_mode=True)
    assert status["seeded_now"] and count(empty_db, Account) == 600


# ----------------------------------------------------------------------------- the first admin


def test_create_admin_from_the_command_line(empty_db: str) -> None:
    r = run_cli(empty_db, "create-admin", "Ops@Example.com", "--name", "Ops Lead")
    assert r.returncode == 0, r.stderr
    assert "ops@example.com added to the team as admin" in r.stdout
    with session_scope(empty_db) as s:
        m = s.execute(select(TeamMember)).scalar_one()
        assert (m.email, m.name, m.role, m.active) == ("ops@example.com", "Ops Lead", "admin", True)
        logged = s.execute(select(ChangeLog.actor, ChangeLog.entity_id, ChangeLog.context)).all()
    assert logged == [("cli", "ops@example.com", "create-admin")]

    again = run_cli(empty_db, "create-admin", "ops@example.com")
    assert again.returncode == 0 and "already an active admin" in again.stdout
    assert count(empty_db, ChangeLog) == 1

    bad = run_cli(empty_db, "create-admin", "not-an-address")
    assert bad.returncode == 2 and "is not an email address" in bad.stderr and "Traceback" not in bad.stderr
    assert count(empty_db, TeamMember) == 1
    assert count(empty_db, Account) == 0


def test_create_admin_promotes_and_reactivates_a_member(small_db: str) -> None:
    in_session(
        save_team_member, member(small_db, ADMIN), url=small_db, email=ALEX, name="Alex", role="csm", active=False
    )
    r = run_cli(small_db, "create-admin", ALEX)
    assert r.returncode == 0 and "now an active admin" in r.stdout, r.stderr
    with session_scope(small_db) as s:
        m = s.execute(select(TeamMember).where(TeamMember.email == ALEX)).scalar_one()
        assert (m.role, m.active) == ("admin", True)


def test_bootstrap_admin_makes_only_the_named_first_user_admin(empty_db: str, use_db, monkeypatch) -> None:
    use_db(empty_db)
    monkeypatch.setenv("BOOTSTRAP_ADMIN", "Boss@Example.com")
    stranger = open_page("portfolio", query=QUERY, as_user="someone@example.com")
    assert texts(stranger.title) == ["No access"]
    assert count(empty_db, TeamMember) == 0

    boss = open_page("portfolio", query=QUERY, as_user="boss@example.com")
    assert texts(boss.title) == ["Data"]
    assert "(admin)" in " ".join(texts(boss.sidebar.caption))
    with session_scope(empty_db) as s:
        m = s.execute(select(TeamMember)).scalar_one()
        assert (m.email, m.role, m.active) == ("boss@example.com", "admin", True)
    assert count(empty_db, Account) == 0


def test_bootstrap_admin_does_nothing_once_there_is_an_admin(small_db: str, use_db, monkeypatch) -> None:
    use_db(small_db)
    monkeypatch.setenv("BOOTSTRAP_ADMIN", "late@example.com")
    before = count(small_db, TeamMember)
    at = open_page("portfolio", query=QUERY, as_user="late@example.com")
    assert texts(at.title) == ["No access"]
    assert count(small_db, TeamMember) == before


# ----------------------------------------------------------------------------- export


def test_export_is_for_admins_only(small_db: str) -> None:
    for who in (ALEX, "dana.leader@example.com", "riley.revops@example.com"):
        with pytest.raises(PermissionDenied, match="only admins can export the data"):
            export_all(member(small_db, who), url=small_db)
    data = export_all(member(small_db, ADMIN), url=small_db)
    assert "accounts.csv" in zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_the_data_page_offers_the_export_to_admins_only_and_makes_it_on_click(small_db: str, use_db) -> None:
    use_db(small_db)
    csm = open_page("data", query=QUERY, as_user=ALEX)
    assert texts(csm.title) == ["Data"]
    labels = [b.label for b in [*csm.button, *csm.download_button]]
    assert not [label for label in labels if "export" in label.lower()], labels
    assert any("Only admins can export" in c for c in texts(csm.caption))

    admin = open_page("data", query=QUERY, as_user=ADMIN)
    export = [b for b in admin.download_button if b.label == "Download export (zip)"]
    assert len(export) == 1
    # Nothing in the media store until the click: a deferred file, no /media URL.
    assert export[0].proto.deferred_file_id and not export[0].proto.url


def test_an_address_the_identity_provider_has_not_verified_is_refused(small_db: str, use_db) -> None:
    """OIDC sign-in matches the team by address: one the provider marks unverified could be
    anyone's, so it is refused (an admin's address typed into a self-service profile)."""
    use_db(small_db)
    at = AppTest.from_file(APP, default_timeout=90)
    at.secrets["auth"] = dict(OIDC_SECRETS)
    at.user = {"is_logged_in": True, "email": ADMIN, "name": "Mallory", "email_verified": False}
    at.run()
    assert texts(at.title) == ["Not signed in"]
    assert any("has not verified the address" in e for e in texts(at.error))
    assert "_user" not in at.session_state
    at.user = {"is_logged_in": True, "email": ADMIN, "name": "Admin", "email_verified": True}
    at.run()
    assert "_user" in at.session_state and at.session_state["_user"].is_admin
