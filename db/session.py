"""Engine and sessions from DATABASE_URL; migrations to head; the data version.

Reads need only SQLAlchemy Core: the ORM (sqlmodel, its pydantic models) is imported when a
session is opened, so a report process that never writes does not pay for it. A process that
only reads a SQLite file (`manage.py report`) can go further with `use_reader`: its reads then
run on read-only connections of the standard library's sqlite3, and SQLAlchemy is imported
only if something has to be written (a migration, missing defaults).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "sqlite:///data/onboarding.db"
# How timestamps are stored as text in SQLite (what the importer writes and the facts parse).
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLite stores timestamps

# How long a write waits for a lock before it fails with a clear error, instead of hanging:
# SQLite's busy timeout, PostgreSQL's lock_timeout (a user's save; imports set their own).
BUSY_TIMEOUT_MS = int(os.environ.get("DB_BUSY_TIMEOUT_MS", "5000"))
LOCK_TIMEOUT_MS = int(os.environ.get("DB_LOCK_TIMEOUT_MS", "5000"))

_engines: dict[str, Engine] = {}
_readers: dict[str, LiteEngine] = {}
_lock = threading.Lock()


PUBLIC_REASON = "The database cannot be reached or read right now."


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or read. str() has the detail (for the log and the CLI);
    `public` says what happened without host, port, path, database or user names, for
    anyone who sees the page."""

    def __init__(self, message: str, *, public: str = PUBLIC_REASON) -> None:
        super().__init__(message)
        self.public = public


class _FileGuard:
    """Stops a SQLite engine from using a database file that was deleted or replaced under the
    running app. Open connections keep the old file: without this, saves are acknowledged
    but land in a file no one will read again, and a new connection would silently create
    an empty database at the path. The file's (st_dev, st_ino) is recorded on the first
    connection and checked before every connection, transaction and commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def check(self, *_args: object) -> None:
        if self.identity is None:
            return
        now = self._stat()
        if now == self.identity:
            return
        what = "deleted" if now is None else "replaced by another file"
        raise DatabaseUnavailable(
            f"the SQLite database file {self.path} was {what} while the app was running; nothing is read or "
            "saved until the app is restarted (restore the file first if it was lost)",
            public=f"The database file was {what} while the app was running. The app stopped reading and saving, "
            "so that no change is confirmed and then lost: a change not confirmed as saved was not saved. "
            "Whoever runs the app must restore the file and restart the app.",
        )

    def connected(self, _dbapi_connection: object, _record: object) -> None:
        if self.identity is None:
            self.identity = self._stat()
        else:
            self.check()

    def install(self, engine: Engine) -> None:
        from sqlalchemy import event

        # do_connect: before sqlite3 would create a new, empty file at a vanished path.
        event.listen(engine, "do_connect", lambda *a: self.check())
        event.listen(engine, "connect", self.connected)
        event.listen(engine, "begin", self.check)
        # commit: a file deleted during the transaction must not be acknowledged either.
        event.listen(engine, "commit", self.check)


# A SQLite URL that is a plain file path (no query, no %-escapes): parsed without SQLAlchemy,
# to the same result as make_url (its database is the text after "sqlite:///").
_PLAIN_SQLITE = re.compile(r"^(sqlite(?:\+pysqlite)?):///([^?#%]+)$")


def sqlite_file(url: str) -> str | None:
    """The file path of a plain SQLite file URL (as make_url(url).database), else None
    (memory, `file:` URIs, URLs with a query or escapes, other databases)."""
    m = _PLAIN_SQLITE.match(url)
    if m is None or m.group(2) == ":memory:" or m.group(2).startswith("file:"):
        return None
    return m.group(2)


def database_url(url: str | None = None) -> str:
    """The SQLAlchemy URL in use: the argument, else DATABASE_URL, else the SQLite default."""
    url = url or os.environ.get("DATABASE_URL") or DEFAULT_URL
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if (plain := sqlite_file(url)) is not None:
        path = Path(plain)
        if not path.is_absolute():
            path = ROOT / path
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
        return f"{url.split(':', 1)[0]}:///{path}"
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.is_absolute():
            # Relative SQLite paths are relative to the project, not the working directory.
            path = ROOT / path
        # If the folder cannot be made, connecting fails with "unable to open database file".
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
        url = parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def is_sqlite(engine: Engine | LiteEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def get_engine(url: str | None = None) -> Engine | LiteEngine:
    """One engine per URL for the process (pooled connections); the reader of `use_reader`
    where the process registered one (reads only)."""
    url = database_url(url)
    reader = _readers.get(url)
    return reader if reader is not None else sqlalchemy_engine(url)


def sqlalchemy_engine(url: str | None = None) -> Engine:
    """The SQLAlchemy engine of a URL (writes, the ORM and Alembic always use this one)."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url

    url = database_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
                )
                event.listen(engine, "connect", _sqlite_pragmas)
                path = make_url(url).database
                if path and path != ":memory:" and not path.startswith("file:"):
                    _FileGuard(Path(path)).install(engine)
            else:
                # Sessions run in UTC; keep any options (e.g. search_path) given in the URL.
                options = " ".join(
                    filter(
                        None,
                        [
                            make_url(url).query.get("options", ""),
                            "-c timezone=UTC",
                            f"-c lock_timeout={LOCK_TIMEOUT_MS}",
                        ],
                    )
                )
                engine = create_engine(
                    make_url(url).difference_update_query(["options"]),
                    pool_size=int(os.environ.get("DB_POOL_SIZE", "10")),
                    max_overflow=int(os.environ.get("DB_MAX_OVERFLOW", "20")),
                    pool_pre_ping=True,
                    pool_recycle=1800,
                    connect_args={"connect_timeout": 5, "options": options},
                )
            _engines[url] = engine
        return engine


def dispose_engine(url: str | None = None) -> None:
    """Close one URL's pooled connections and forget its engine."""
    url = database_url(url)
    with _lock:
        _readers.pop(url, None)
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def dispose_engines() -> None:
    with _lock:
        _readers.clear()
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    from sqlmodel import Session

    with Session(sqlalchemy_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "db" / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    return cfg


MIGRATIONS = ROOT / "db" / "migrations" / "versions"
_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(?:None|['\"]([^'\"]+)['\"])\s*$", re.M)


@functools.cache
def head_revision() -> str | None:
    """The head revision id read from the migration files' `revision` / `down_revision`
    lines, without importing Alembic; None where that is not one clear answer (a file it
    cannot read, a merge, several heads): migrate() then asks Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in MIGRATIONS.glob("*.py"):
        text_ = path.read_text(encoding="utf-8")
        rev, down = _REVISION.findall(text_), _DOWN.findall(text_)
        if len(rev) != 1 or len(down) != 1:
            return None
        revisions.add(rev[0])
        if down[0]:
            parents.add(down[0])
    heads = revisions - parents
    return next(iter(heads)) if len(heads) == 1 and parents <= revisions else None


def current_revision(url: str | None = None) -> str | None:
    """The revision recorded in the database's alembic_version table (None: no table yet,
    or not exactly one row)."""
    try:
        with get_engine(url).connect() as conn:
            rows = fetch(conn, "SELECT version_num FROM alembic_version")
    except DatabaseUnavailable:
        raise
    except Exception:  # noqa: BLE001 - no table (a new database): Alembic decides
        return None
    return rows[0][0] if len(rows) == 1 else None


def migrate(url: str | None = None) -> str:
    """Bring the database to the latest revision; return that revision.

    At head (the usual case: every CLI call and app start) this is one SELECT and Alembic is
    not imported; a database behind, new, or with a revision the files do not name goes
    through Alembic, which upgrades it or fails with its own message."""
    head = head_revision()
    if head is not None and current_revision(url) == head:
        return head
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config(url)
    engine = sqlalchemy_engine(url)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    return head or ""


def check_connection(url: str | None = None) -> None:
    """Raise DatabaseUnavailable with a readable reason if the database cannot be reached."""
    try:
        with get_engine(url).connect() as conn:
            fetch(conn, "SELECT 1")
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        raise DatabaseUnavailable(describe_db_error(exc, url)) from exc


def public_reason(exc: BaseException) -> str:
    """What went wrong, safe to show anyone: no host, port, path, database or user name."""
    return exc.public if isinstance(exc, DatabaseUnavailable) else PUBLIC_REASON


def describe_db_error(exc: BaseException, url: str | None = None) -> str:
    """The detail, for the log and the CLI (the URL without its password, and the reason)."""
    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    from sqlalchemy.engine import make_url

    target = make_url(database_url(url)).render_as_string(hide_password=True)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
    return f"The database at {target} cannot be reached or read: {reason}"


def data_version(session: Session) -> int:
    """A counter bumped on every write; caches key on it."""
    from sqlalchemy import text

    row = session.execute(text("SELECT value FROM meta WHERE key = 'data_version'")).first()
    return int(row[0]) if row else 0


def versions(session: Session) -> dict[str, int]:
    """All change counters: data_version (any write), core_version (imports, settings,
    snapshots, team) and plans_version (checklists, plans, interventions)."""
    from sqlalchemy import text

    rows = session.execute(
        text("SELECT key, value FROM meta WHERE key IN ('data_version', 'core_version', 'plans_version')")
    ).all()
    out = {"data_version": 0, "core_version": 0, "plans_version": 0}
    out.update({k: int(v) for k, v in rows})
    return out


def bump_data_version(session: Session, scope: str = "core", *, copy: bool = True) -> None:
    """Mark the data as changed (within the caller's transaction). `scope` is "core"
    (imports, settings, snapshots), "plans" (checklist and plan changes that analyses read)
    or "notes" (text nothing aggregates): a checklist save must not throw away every
    cached analysis. A core change also moves `copy_version`, which the columnar copy of
    events, accounts and milestones (engine/copy.py) is checked against, unless copy=False:
    a write that touches none of those (a health snapshot) must not make it sync again."""
    from sqlalchemy import text

    keys = ["data_version", f"{scope}_version"]
    if scope == "core" and copy:
        keys.append("copy_version")
    for key in keys:
        updated = session.execute(
            text("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS VARCHAR(200)) WHERE key = :k"), {"k": key}
        )
        if updated.rowcount == 0:
            session.execute(text("INSERT INTO meta (key, value) VALUES (:k, '1')"), {"k": key})


# ----------------------------------------------------------------------------- reading without SQLAlchemy


class _LiteDialect:
    name = "sqlite"


class _Raw:
    def __init__(self, dbapi_connection: sqlite3.Connection) -> None:
        self.dbapi_connection = dbapi_connection


class LiteConnection:
    """A read-only connection of the standard library's sqlite3 with the few attributes the
    readers use (`dialect.name`, `connection.dbapi_connection`, `engine`); statements are
    run with `fetch` (and db.facts._read), never `execute`."""

    dialect = _LiteDialect()

    def __init__(self, raw: sqlite3.Connection, engine: LiteEngine) -> None:
        self.connection = _Raw(raw)
        self.engine = engine


class LiteEngine:
    """Read-only connections to one SQLite file through the standard library, for a process
    that only reads (`use_reader`). Opened with mode=ro: the file is never created or
    written through it; a vanished file is an error, not a new empty database."""

    dialect = _LiteDialect()

    def __init__(self, url: str, path: Path) -> None:
        self.url_string = url
        self.path = path

    @contextmanager
    def connect(self) -> Iterator[LiteConnection]:
        from urllib.parse import quote

        raw = sqlite3.connect(
            f"file:{quote(str(self.path))}?mode=ro", uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            raw.execute("PRAGMA cache_size=-65536")
            yield LiteConnection(raw, self)
        finally:
            raw.close()


def use_reader(url: str | None = None) -> bool:
    """Make this process's reads of a SQLite file go through `LiteEngine` (no SQLAlchemy
    import; writes still use the SQLAlchemy engine). For processes that only read, such as
    `manage.py report`. Only for an existing plain file; returns whether it was registered."""
    url = database_url(url)
    path = sqlite_file(url)
    if path is None or not Path(path).is_file():
        return False
    with _lock:
        _readers.setdefault(url, LiteEngine(url, Path(path)))
    return True


def stop_reader(url: str | None = None) -> None:
    """Reads of this URL go through the SQLAlchemy engine again."""
    with _lock:
        _readers.pop(database_url(url), None)


def engine_url(conn: Any) -> str:
    """The URL (with password) of the database a connection is bound to."""
    engine = conn.engine
    url = getattr(engine, "url_string", None)
    return url if url is not None else engine.url.render_as_string(hide_password=False)


def sqlite_param(value: Any) -> Any:
    """A bound value as SQLAlchemy's SQLite dialect binds it to a text() parameter (whose
    type it infers from the value): timestamps and dates as its storage text."""
    if isinstance(value, datetime):
        return (
            f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
        )
    if isinstance(value, date):
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    return value


def fetch(conn: Any, sql: str, params: dict | None = None) -> list[tuple]:
    """Rows of one statement with `:name` parameters, on a SQLAlchemy connection (or a
    session's) or a LiteConnection."""
    if isinstance(conn, LiteConnection):
        cur = conn.connection.dbapi_connection.execute(sql, {k: sqlite_param(v) for k, v in (params or {}).items()})
        try:
            return cur.fetchall()
        finally:
            cur.close()
    from sqlalchemy import text

    return [tuple(r) for r in conn.execute(text(sql), params or {})]
