"""db.session.use_reader: a process that only reads a SQLite file does so on read-only
connections of the standard library's sqlite3 (no SQLAlchemy). The numbers it reads are the
same (tests/engine/test_engines_agree.py runs every report through it); here, what it must
never do: write, create a missing file, or bind a value differently from SQLAlchemy."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text

from db import facts as q
from db.session import LiteEngine, fetch, get_engine, sqlalchemy_engine, stop_reader, use_reader
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="the reader is for SQLite files")


def test_the_reader_never_writes(demo_db: str) -> None:
    assert use_reader(demo_db)
    try:
        eng = get_engine(demo_db)
        assert isinstance(eng, LiteEngine)
        with eng.connect() as conn:
            n = fetch(conn, "SELECT COUNT(*) FROM accounts")[0][0]
            assert n > 0
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                fetch(conn, "DELETE FROM accounts")
            assert fetch(conn, "SELECT COUNT(*) FROM accounts")[0][0] == n
    finally:
        stop_reader(demo_db)
    assert not isinstance(get_engine(demo_db), LiteEngine)


def test_no_reader_for_a_missing_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nothing.db'}"
    assert not use_reader(url)
    assert not (tmp_path / "nothing.db").exists()
    assert not isinstance(get_engine(url), LiteEngine)


def test_parameters_are_bound_as_sqlalchemy_binds_them(demo_db: str) -> None:
    """Expanding lists and timestamps, dates, text and numbers: the same rows on both."""
    sql = (
        "SELECT account_id, COUNT(*) AS n, MAX(ts) AS last FROM events "
        "WHERE account_id IN :ids AND ts < :end AND ts >= :start AND event != :e AND :k > 0 GROUP BY account_id"
    )
    params = {
        "ids": [1, 2, 3, 5, 8],
        "end": datetime(2026, 5, 1, 12, 0, 0),  # microsecond 0: SQLAlchemy still writes ".000000"
        "start": date(2026, 1, 1),
        "e": "login",
        "k": 1.5,
    }
    stmt = text(sql).bindparams(bindparam("ids", expanding=True)).bindparams(**params)
    with sqlalchemy_engine(demo_db).connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        cur = conn.connection.dbapi_connection.cursor()
        cur.execute(str(compiled), tuple(compiled.params[n] for n in compiled.positiontup))
        want = cur.fetchall()
    assert want  # the comparison means something
    with LiteEngine(demo_db, Path(demo_db.split(":///", 1)[1])).connect() as conn:
        got = q._read(conn, sql, params, expanding=("ids",))
    assert [tuple(r) for r in got.itertuples(index=False)] == want
