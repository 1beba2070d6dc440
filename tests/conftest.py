"""Shared fixtures. The suite runs against SQLite by default and against PostgreSQL when
DATABASE_URL points at a server: each test database is then its own schema, dropped
afterwards, so the server is left as it was found."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from db.session import database_url, dispose_engine  # noqa: E402

# The demo data used across tests: small, deterministic, with a fixed "today".
AS_OF = date(2026, 6, 30)
DEMO = {"accounts": 160, "seed": 7, "as_of": AS_OF, "events": 40_000, "history_weeks": 6}
SMALL = {"accounts": 30, "seed": 11, "as_of": AS_OF, "events": 6_000, "history_weeks": 0}

BASE_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = BASE_URL.startswith(("postgresql", "postgres:"))


def backend() -> str:
    return "postgresql" if ON_POSTGRES else "sqlite"


class Databases:
    """Creates throwaway databases (SQLite files or PostgreSQL schemas) and removes them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created: list[tuple[str, str]] = []
        if ON_POSTGRES:
            self.admin_url = database_url(BASE_URL)
            self.admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            try:
                with self.admin.connect() as c:
                    c.execute(text("SELECT 1"))
            except Exception as exc:  # noqa: BLE001
                pytest.exit(
                    f"DATABASE_URL={BASE_URL} is set but the PostgreSQL server cannot be reached: {exc}", returncode=3
                )

    def new(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        if ON_POSTGRES:
            with self.admin.connect() as c:
                c.execute(text(f'CREATE SCHEMA "{name}"'))
            u = make_url(self.admin_url).update_query_dict({"options": f"-csearch_path={name}"})
            url = u.render_as_string(hide_password=False)
        else:
            url = f"sqlite:///{self.tmp / (name + '.db')}"
        self.created.append((name, url))
        return url

    def drop(self, name: str, url: str) -> None:
        dispose_engine(url)
        if ON_POSTGRES:
            with self.admin.connect() as c:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        else:
            for suffix in ("", "-wal", "-shm"):
                p = Path(make_url(url).database + suffix)
                if p.exists():
                    p.unlink()

    def close(self) -> None:
        for name, url in self.created:
            self.drop(name, url)
        self.created.clear()
        if ON_POSTGRES:
            self.admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def demo_mode() -> Iterator[None]:
    """The app runs as the local demo on the test databases (which are not the default
    file, so without DEMO_MODE=1 it would rightly refuse to open). Tests of sign-in set
    OIDC or AUTH_HEADER (sign-in wins) or delete DEMO_MODE with their own monkeypatch.
    Session-wide, so module-scoped fixtures that open the app have it too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEMO_MODE", "1")
        yield


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("dbs"))
    yield dbs
    dbs.close()


@pytest.fixture
def empty_db(databases: Databases) -> Iterator[str]:
    """A fresh database migrated to head with the defaults (no accounts)."""
    from db.settings_store import init_db

    url = databases.new()
    init_db(url)
    yield url
    name, _ = next((n, u) for n, u in databases.created if u == url)
    databases.drop(name, url)
    databases.created.remove((name, url))


@pytest.fixture
def unmigrated_db(databases: Databases) -> Iterator[str]:
    url = databases.new()
    yield url
    name, _ = next((n, u) for n, u in databases.created if u == url)
    databases.drop(name, url)
    databases.created.remove((name, url))


def _seed(url: str, cfg: dict) -> None:
    from services.setup import seed_demo

    seed_demo(url=url, **cfg)


@pytest.fixture(scope="session")
def demo_db(databases: Databases) -> str:
    """The shared demo portfolio (read-only: tests must not write to it)."""
    url = databases.new()
    _seed(url, DEMO)
    return url


@pytest.fixture
def small_db(databases: Databases) -> Iterator[str]:
    """A small demo portfolio of its own, for tests that write."""
    url = databases.new()
    _seed(url, SMALL)
    yield url
    name, _ = next((n, u) for n, u in databases.created if u == url)
    databases.drop(name, url)
    databases.created.remove((name, url))


@pytest.fixture
def use_db(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Point DATABASE_URL (read by the app and the CLI) at a test database."""

    def use(url: str) -> str:
        monkeypatch.setenv("DATABASE_URL", url)
        return url

    return use


def run_cli(url: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run manage.py in a subprocess against a test database."""
    env = {**os.environ, "DATABASE_URL": url, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(ROOT),
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess]:
    return run_cli


def chromium_path() -> str | None:
    return shutil.which("chromium") or (("/usr/bin/chromium") if Path("/usr/bin/chromium").exists() else None)
