"""Real SQL sources for the sync tests: a schema of its own in PostgreSQL's database test, a
database of its own in MariaDB (reached as a user of its own with a password), and a DuckDB
file; each with its own table and column names, dropped afterwards. Every events query
counts the rows it returns on the source's side (a sequence advanced per row returned)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIA_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"

TEAM = [
    ("alex.src@example.com", "Alex Source", "csm"),
    ("sam.src@example.com", "Sam Source", "csm"),
]
ACCOUNTS = [
    ("SRC-1", "Acme Source", "SMB", date(2026, 1, 5), "alex.src@example.com", 10),
    ("SRC-2", "O'Brien & Co", "Enterprise", date(2026, 2, 1), "sam.src@example.com", 50),
    ("SRC-3", "'Quoted Ltd", "Mid-Market", date(2026, 3, 1), None, None),
]
EVENT_NAMES = ["workspace_created", "login", "report_viewed", "invite_sent"]
T0 = datetime(2026, 3, 2, 9, 0, 0)


def events(first: int, n: int) -> list[dict[str, Any]]:
    """Events number first .. first+n-1, an hour apart, over the three accounts."""
    return [
        {
            "acct": ACCOUNTS[i % 3][0],
            "action": EVENT_NAMES[i % 4],
            "at": T0 + timedelta(hours=i, microseconds=i),
            "who": f"u{i % 5}",
            "props": json.dumps({"i": i, "plan": "pro"}),
        }
        for i in range(first, first + n)
    ]


@dataclass
class Source:
    kind: str  # postgresql | mariadb | duckdb
    url: str  # as a user gives it (MariaDB's holds a password)
    mapping: str  # TOML
    admin_url: str
    where: str  # the schema or database (qualifies table names)
    password: str = ""
    user: str = ""

    def run(self, sql: str, params: Any = None) -> None:
        """Statements (separated by ;) on the source, as its owner."""
        eng = create_engine(self.admin_url, poolclass=NullPool)
        with eng.begin() as c:
            for stmt in [x for x in sql.split(";") if x.strip()] if params is None else [sql]:
                c.execute(text(stmt), params if params is not None else {})
        eng.dispose()

    def scalar(self, sql: str) -> Any:
        eng = create_engine(self.admin_url, poolclass=NullPool)
        with eng.connect() as c:
            v = c.execute(text(sql)).scalar()
        eng.dispose()
        return v

    def reads(self) -> int:
        """Rows the events queries have returned so far, counted by the source (a sequence
        each returned row advances)."""
        sql = {
            "postgresql": f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {self.where}.reads",
            "mariadb": f"SELECT next_not_cached_value - 1 FROM {self.where}.reads",  # NOCACHE: exact
            "duckdb": "SELECT COALESCE(last_value, 0) FROM duckdb_sequences() WHERE sequence_name = 'reads'",
        }[self.kind]
        return int(self.scalar(sql))

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        t = self.table("usage")
        self.run(
            f"INSERT INTO {t} (acct, action, at_time, who, props) VALUES (:acct, :action, :at, :who, :props)",
            [{**r, "at": self._ts(r["at"])} for r in rows],
        )

    def table(self, name: str) -> str:
        return name if self.kind == "duckdb" else f"{self.where}.{name}"

    def _ts(self, t: datetime) -> datetime:
        return t.replace(tzinfo=UTC) if self.kind == "postgresql" else t


def _mapping(q: str, counter: str) -> str:
    return f"""
[team]
query = "SELECT mail AS email, full_name AS name, job AS role FROM {q}staff"

[accounts]
query = "SELECT code AS account_id, company AS name, tier AS segment, signed_on AS contract_start, owner AS csm_email, seats AS licensed_seats FROM {q}crm ORDER BY code"

[events]
query = "SELECT acct AS account_id, action AS event, at_time AS timestamp, who AS user_id, props AS properties, {counter} AS n FROM {q}usage WHERE at_time > :watermark ORDER BY at_time"
watermark = "timestamp"
"""


def _fill(src: Source, n_events: int) -> None:
    src.run(
        f"INSERT INTO {src.table('staff')} (mail, full_name, job) VALUES (:m, :n, :j)",
        [{"m": m, "n": n, "j": j} for m, n, j in TEAM],
    )
    src.run(
        f"INSERT INTO {src.table('crm')} (code, company, tier, signed_on, owner, seats) VALUES (:c, :n, :t, :d, :o, :s)",
        [{"c": c, "n": n, "t": t, "d": d, "o": o, "s": s} for c, n, t, d, o, s in ACCOUNTS],
    )
    src.add_events(events(0, n_events))


@contextmanager
def postgres_source(n_events: int = 60) -> Iterator[Source]:
    where = f"src_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+psycopg://postgres:pg-Secret-{where}@127.0.0.1:5432/test?application_name={where}"
    src = Source("postgresql", url, _mapping(f"{where}.", f"nextval('{where}.reads')"), PG_ADMIN, where)
    src.password = f"pg-Secret-{where}"
    src.run(f"CREATE SCHEMA {where}")
    try:
        src.run(
            f"CREATE TABLE {where}.staff (mail text, full_name text, job text);"
            f"CREATE TABLE {where}.crm (code text, company text, tier text, signed_on date, owner text, seats int);"
            f"CREATE TABLE {where}.usage (id bigserial, acct text, action text, at_time timestamptz, who text, props jsonb);"
            f"CREATE SEQUENCE {where}.reads"
        )
        _fill(src, n_events)
        yield src
    finally:
        src.run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{where}'")
        src.run(f"DROP SCHEMA IF EXISTS {where} CASCADE")


@contextmanager
def mariadb_source(n_events: int = 60) -> Iterator[Source]:
    where = f"src_{uuid.uuid4().hex[:10]}"
    user, password = f"u_{where[4:]}", f"Maria-Secret-{uuid.uuid4().hex[:8]}"
    url = f"mysql+pymysql://{user}:{password}@127.0.0.1:3306/{where}?charset=utf8mb4"
    src = Source("mariadb", url, _mapping(f"{where}.", f"NEXTVAL({where}.reads)"), MARIA_ADMIN, where, password, user)
    src.run(f"CREATE DATABASE {where}")
    try:
        for host in ("%", "localhost", "127.0.0.1"):
            src.run(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
            src.run(f"GRANT ALL ON {where}.* TO '{user}'@'{host}'")
        src.run(f"CREATE TABLE {where}.staff (mail VARCHAR(254), full_name VARCHAR(200), job VARCHAR(20))")
        src.run(
            f"CREATE TABLE {where}.crm (code VARCHAR(100), company VARCHAR(300), tier VARCHAR(20), signed_on DATE, "
            "owner VARCHAR(254), seats INT)"
        )
        src.run(
            f"CREATE TABLE {where}.usage (id BIGINT AUTO_INCREMENT PRIMARY KEY, acct VARCHAR(100), action VARCHAR(200), "
            "at_time DATETIME(6), who VARCHAR(200), props JSON)"
        )
        src.run(f"CREATE SEQUENCE {where}.reads START WITH 1 MINVALUE 0 NOCACHE")
        _fill(src, n_events)
        yield src
    finally:
        for host in ("%", "localhost", "127.0.0.1"):
            src.run(f"DROP USER IF EXISTS '{user}'@'{host}'")
        src.run(f"DROP DATABASE IF EXISTS {where}")


@contextmanager
def duckdb_source(tmp: Path, n_events: int = 60) -> Iterator[Source]:
    path = tmp / f"src_{uuid.uuid4().hex[:10]}.duckdb"
    url = f"duckdb:///{path}"
    src = Source("duckdb", url, _mapping("", "nextval('reads')"), url, "")
    src.run(
        "CREATE TABLE staff (mail VARCHAR, full_name VARCHAR, job VARCHAR);"
        "CREATE TABLE crm (code VARCHAR, company VARCHAR, tier VARCHAR, signed_on DATE, owner VARCHAR, seats INTEGER);"
        "CREATE SEQUENCE usage_id; CREATE SEQUENCE reads;"
        "CREATE TABLE usage (id BIGINT DEFAULT nextval('usage_id'), acct VARCHAR, action VARCHAR, at_time TIMESTAMP, "
        "who VARCHAR, props JSON)"
    )
    _fill(src, n_events)
    try:
        yield src
    finally:
        for suffix in ("", ".wal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
