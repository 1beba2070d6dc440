"""The import's locks and timeouts (issue 10): one import at a time (an advisory lock on
PostgreSQL, the write lock on SQLite) with a "running" record naming who started it;
bounded lock waits and statement times; a read-only connection for a dry run; and the
message a user gets when the database refuses an import.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlmodel import Session

from db.models import ImportRun, utcnow
from db.session import BUSY_TIMEOUT_MS, is_sqlite

if TYPE_CHECKING:
    from db.importer import ImportReport

log = logging.getLogger("db.importer")  # one logger for everything an import logs

# How long an import waits for a lock (SQLite's write lock, a PostgreSQL row lock) and
# how long one of its statements may run on PostgreSQL.
LOCK_WAIT_MS = int(os.environ.get("IMPORT_LOCK_WAIT_MS", "5000"))
STATEMENT_TIMEOUT_MS = int(os.environ.get("IMPORT_STATEMENT_TIMEOUT_MS", "600000"))
# The PostgreSQL advisory lock class for imports (the second key is the schema's hash).
ADVISORY_CLASS = 0x1D0C


class ImportFailed(Exception):
    """The import could not run or the database refused it; nothing was written.

    The message is for the user (no SQL, no parameters, no server paths); the detail is logged."""


class ImportBusy(ImportFailed):
    """Another import holds the import lock."""


@contextmanager
def import_connection(engine: Engine, *, dry_run: bool) -> Iterator[Connection]:
    """One connection for the whole import, with the import's lock waits and timeouts (and,
    for a dry run, read-only): a user's save never waits minutes behind an import, and an
    import never waits long behind a user. The settings are undone before the connection
    goes back to the pool."""
    conn = engine.connect()
    sqlite = is_sqlite(engine)
    try:
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(LOCK_WAIT_MS)}")
            if dry_run:
                conn.exec_driver_sql("PRAGMA query_only = ON")  # a dry run cannot write, even by mistake
        else:
            conn.exec_driver_sql(f"SET lock_timeout = {int(LOCK_WAIT_MS)}")
            conn.exec_driver_sql(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
            if dry_run:
                conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.commit()
        yield conn
    finally:
        try:
            conn.rollback()
            if sqlite:
                conn.exec_driver_sql("PRAGMA query_only = OFF")
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
            else:
                conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
                conn.exec_driver_sql("RESET lock_timeout")
                conn.exec_driver_sql("RESET statement_timeout")
            conn.commit()
        except Exception:  # noqa: BLE001 - a broken connection must not go back to the pool
            conn.invalidate()
        conn.close()


def start_run(engine: Engine, *, actor: str, source: str) -> int:
    """Record the import as running (committed, so a second import can name who runs)."""
    try:
        with engine.connect() as conn:
            if is_sqlite(engine):
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(LOCK_WAIT_MS)}")
            try:
                run_id = conn.execute(
                    ImportRun.__table__.insert().values(
                        actor=actor[:254], source=source[:300], status="running", started_at=utcnow(), summary="{}"
                    )
                ).inserted_primary_key[0]
                conn.commit()
            finally:
                if is_sqlite(engine):
                    conn.rollback()
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
        return int(run_id)
    except OperationalError as exc:
        if is_sqlite(engine) and "locked" in str(exc.orig):
            # Another import (or a long write) holds SQLite's write lock.
            raise ImportBusy(_busy_message(engine, None)) from exc
        raise


def take_import_lock(session: Session, run_id: int) -> None:
    """The import lock, held until the import's transaction ends: BEGIN IMMEDIATE (SQLite's
    write lock) or a transaction-scoped advisory lock per schema (PostgreSQL)."""
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError as exc:
            if "locked" not in str(exc.orig):
                raise
            raise ImportBusy(_busy_message(conn.engine, run_id)) from exc
        return
    got = conn.execute(
        text("SELECT pg_try_advisory_xact_lock(:cls, hashtext(current_schema()))"), {"cls": ADVISORY_CLASS}
    ).scalar_one()
    if not got:
        raise ImportBusy(_busy_message(conn.engine, run_id))


def _busy_message(engine: Engine, run_id: int | None) -> str:
    """Who holds the import lock, from the newest other import marked running."""
    q = select(ImportRun.actor, ImportRun.started_at).where(ImportRun.status == "running")
    if run_id is not None:
        q = q.where(ImportRun.id != run_id)
    try:
        with engine.connect() as conn:
            row = conn.execute(q.order_by(ImportRun.started_at.desc(), ImportRun.id.desc()).limit(1)).first()
    except SQLAlchemyError:
        log.exception("could not read the running import")
        row = None
    if row is None:
        return (
            "Another import or a long write is running, so this import did not start; nothing was written. "
            "Try again in a minute."
        )
    at = row.started_at.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"Another import is running, started by {row.actor} at {at} UTC, so this import did not start; "
        "nothing was written. Try again when it has finished."
    )


def finish_run(session: Session, run_id: int | None, report: ImportReport, status: str) -> None:
    """Mark the import's run record finished (in the caller's transaction); any other import
    still marked running started before this one and no longer holds the lock."""
    if run_id is None:
        return
    table = ImportRun.__table__
    session.execute(
        table.update()
        .where(table.c.id == run_id)
        .values(
            status=status,
            finished_at=utcnow(),
            summary=json.dumps({k: vars(v) for k, v in report.files.items()}),
            duplicates_skipped=report.duplicates_skipped,
            problems=report.problem_count,
        )
    )
    session.execute(
        table.update()
        .where(table.c.status == "running", table.c.id < run_id)
        .values(status="interrupted", finished_at=utcnow())
    )


def end_run(engine: Engine, run_id: int, report: ImportReport, status: str) -> None:
    """Record a rejected, failed or refused import (a refused one leaves no trace)."""
    try:
        with Session(engine) as s:
            if status == "refused":
                s.execute(ImportRun.__table__.delete().where(ImportRun.__table__.c.id == run_id))
            else:
                finish_run(s, run_id, report, status)
            s.commit()
    except SQLAlchemyError:
        # The database is failing (full, gone): the run stays marked running; the next import marks it interrupted.
        log.exception("could not record the end of import run %s", run_id)


def db_error_message(exc: SQLAlchemyError, *, dry_run: bool) -> str:
    """What a user is told when the database refuses an import (never SQL, parameters or paths)."""
    orig = getattr(exc, "orig", None)
    detail = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else type(exc).__name__
    code = getattr(orig, "sqlstate", None) or ""
    low = detail.lower()
    what = "The validation" if dry_run else "The import"
    tail = "nothing was written." if not dry_run else "nothing was written (a validation never writes)."
    if "disk is full" in low or "no space left" in low or code.startswith("53"):
        return (
            f"{what} stopped because the database is out of space (the disk or its size limit is full); {tail} "
            "Free some space, or ask whoever runs the database, then try again."
        )
    if "locked" in low or code in ("55P03", "40P01"):
        return (
            f"{what} stopped because the database was busy (a lock was held for more than "
            f"{LOCK_WAIT_MS / 1000:g} s); {tail} Try again in a minute."
        )
    if code == "57014":
        return (
            f"{what} stopped because one step took longer than {STATEMENT_TIMEOUT_MS / 1000:g} s; {tail} "
            "Split the files and try again, or ask an admin to raise IMPORT_STATEMENT_TIMEOUT_MS."
        )
    if (isinstance(exc, DBAPIError) and exc.connection_invalidated) or "connection" in low:
        return f"{what} stopped because the connection to the database was lost; {tail} Try again."
    # Keep the database's own reason (it names no SQL and no parameters), but no file paths.
    reason = re.sub(r"(/[^\s'\"]+)+", "…", detail)[:200]
    return f"{what} was refused by the database ({reason}); {tail} The details are in the server log."
