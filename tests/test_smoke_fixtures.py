"""The fixtures themselves: migrations reach head, the demo has the documented shape."""

from sqlalchemy import inspect, text

from db.session import get_engine, migrate


def test_migrations_bring_an_empty_database_to_head(unmigrated_db: str) -> None:
    head = migrate(unmigrated_db)
    assert head
    tables = set(inspect(get_engine(unmigrated_db)).get_table_names())
    assert {"accounts", "events", "checklist_items", "change_log", "health_snapshots", "alembic_version"} <= tables
    with get_engine(unmigrated_db).connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
    # Idempotent: running again changes nothing.
    assert migrate(unmigrated_db) == head


def test_demo_db_has_accounts_and_events(demo_db: str) -> None:
    with get_engine(demo_db).connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM accounts")).scalar_one() == 160
        n = c.execute(text("SELECT COUNT(*) FROM events")).scalar_one()
        assert 30_000 < n < 50_000
