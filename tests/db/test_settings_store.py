"""Settings and milestone definitions read through SQLAlchemy Core: a plain connection (the
report's and the analytics loaders' way, no ORM) reads exactly what a session reads, a
session still sees its own unflushed writes, and init_db() puts back missing defaults while
at defaults it stays out of the ORM."""

from __future__ import annotations

import json

from sqlalchemy import text

from db.defaults import DEFAULT_MILESTONES, DEFAULT_SETTINGS
from db.session import get_engine, session_scope
from db.settings_store import defaults_missing, get_setting, init_db, milestone_definitions, store_setting
from tests.test_startup import run_python


def test_a_connection_reads_what_a_session_reads(empty_db: str) -> None:
    key = "health_model"
    changed = {**DEFAULT_SETTINGS[key], "version_note": "edited"}
    with session_scope(empty_db) as s:
        store_setting(s, key=key, value=changed, actor="test")
    with session_scope(empty_db) as s:
        by_session = {k: get_setting(s, k) for k in DEFAULT_SETTINGS}
        ms_session = milestone_definitions(s)
    with get_engine(empty_db).connect() as conn:
        by_conn = {k: get_setting(conn, k) for k in DEFAULT_SETTINGS}
        ms_conn = milestone_definitions(conn)
    assert by_conn == by_session
    assert by_conn[key].value == changed and by_conn[key].version == 2
    assert {k for k, st in by_conn.items() if st.version == 1} == set(DEFAULT_SETTINGS) - {key}
    assert ms_conn == ms_session
    assert [m["key"] for m in ms_conn] == [m["key"] for m in sorted(DEFAULT_MILESTONES, key=lambda m: m["order"])]
    for got, want in zip(ms_conn, sorted(DEFAULT_MILESTONES, key=lambda m: m["order"]), strict=True):
        assert got == {k: want[k] for k in ("key", "name", "phase", "order", "is_value", "target_days")}
        assert type(got["is_value"]) is bool and type(got["order"]) is int


def test_a_session_reads_its_own_unflushed_setting(empty_db: str) -> None:
    with session_scope(empty_db) as s:
        new = store_setting(s, key="risk_rules", value={"rules": []}, actor="test")
        st = get_setting(s, "risk_rules")
        assert (st.value, st.version) == ({"rules": []}, new.version) == ({"rules": []}, 2)
        s.rollback()
    with get_engine(empty_db).connect() as conn:
        assert get_setting(conn, "risk_rules").version == 1


def test_a_setting_never_stored_reads_as_its_default(empty_db: str) -> None:
    with get_engine(empty_db).begin() as conn:
        conn.execute(text("DELETE FROM setting_versions WHERE key = 'health_model'"))
    with get_engine(empty_db).connect() as conn:
        st = get_setting(conn, "health_model")
    assert (st.value, st.version) == (DEFAULT_SETTINGS["health_model"], 0)


def test_init_db_puts_back_missing_defaults(empty_db: str) -> None:
    first = DEFAULT_MILESTONES[0]["key"]
    with get_engine(empty_db).begin() as conn:
        assert not defaults_missing(conn)
        conn.execute(text("DELETE FROM milestone_definitions WHERE key = :k"), {"k": first})
        conn.execute(text("DELETE FROM setting_versions WHERE key = 'risk_rules'"))
    with get_engine(empty_db).connect() as conn:
        assert defaults_missing(conn)
    init_db(empty_db)
    with get_engine(empty_db).connect() as conn:
        assert not defaults_missing(conn)
        assert first in {m["key"] for m in milestone_definitions(conn)}
        assert get_setting(conn, "risk_rules").version == 1


def _init_db_in_a_new_process(url: str) -> list[str]:
    code = (
        "import json, sys; from db.settings_store import init_db; init_db(); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlmodel', 'pydantic', 'alembic'))))"
    )
    return json.loads(run_python(url, code).strip().splitlines()[-1])


def test_init_db_with_the_defaults_in_place_stays_out_of_the_orm(empty_db: str) -> None:
    assert _init_db_in_a_new_process(empty_db) == []


def test_init_db_on_a_new_database_migrates_and_stores_the_defaults(unmigrated_db: str) -> None:
    assert _init_db_in_a_new_process(unmigrated_db) != []  # Alembic and the ORM do the work
    with get_engine(unmigrated_db).connect() as conn:
        assert not defaults_missing(conn)
        assert len(milestone_definitions(conn)) == len(DEFAULT_MILESTONES)
