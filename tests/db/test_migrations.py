"""Migrations: an empty database reaches head with every table of the model; migrating
again is a no-op that keeps the data (PRODUCT.md §7)."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import db.models  # noqa: F401  (registers the tables)
from db.session import alembic_config, get_engine, migrate


def head_revision(url: str) -> str:
    heads = ScriptDirectory.from_config(alembic_config(url)).get_heads()
    assert len(heads) == 1, f"the migration history has several heads: {heads}"
    return heads[0]


def schema(url: str) -> dict[str, set[str]]:
    insp = inspect(get_engine(url))
    return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}


def version(url: str) -> list[str]:
    with get_engine(url).connect() as c:
        return list(c.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_empty_database_to_head(unmigrated_db: str) -> None:
    assert schema(unmigrated_db) == {}
    head = head_revision(unmigrated_db)
    assert migrate(unmigrated_db) == head
    assert version(unmigrated_db) == [head]

    got = schema(unmigrated_db)
    model = {name: {c.name for c in table.columns} for name, table in SQLModel.metadata.tables.items()}
    assert set(got) == set(model) | {"alembic_version"}
    for name, columns in model.items():
        assert got[name] == columns, f"table {name}: migrated columns differ from the model"


def test_migrating_again_is_a_no_op_that_keeps_data(unmigrated_db: str) -> None:
    head = migrate(unmigrated_db)
    engine = get_engine(unmigrated_db)
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO team_members (email, name, role, active) VALUES ('a@example.com', 'A', 'csm', true)")
        )
    before = schema(unmigrated_db)

    assert migrate(unmigrated_db) == head
    assert version(unmigrated_db) == [head]
    assert schema(unmigrated_db) == before
    with engine.connect() as c:
        assert c.execute(text("SELECT email, name, role FROM team_members")).all() == [("a@example.com", "A", "csm")]


def test_cli_migrate_twice(unmigrated_db: str, cli) -> None:
    head = head_revision(unmigrated_db)
    first = cli(unmigrated_db, "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"database at revision {head} (")
    assert version(unmigrated_db) == [head]
    with get_engine(unmigrated_db).connect() as c:
        # migrate also stores the default milestones and settings
        assert c.execute(text("SELECT COUNT(*) FROM milestone_definitions")).scalar_one() == 6
        settings = c.execute(text("SELECT COUNT(*) FROM setting_versions")).scalar_one()
    before = schema(unmigrated_db)

    second = cli(unmigrated_db, "migrate")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert version(unmigrated_db) == [head]
    assert schema(unmigrated_db) == before
    with get_engine(unmigrated_db).connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM milestone_definitions")).scalar_one() == 6
        assert c.execute(text("SELECT COUNT(*) FROM setting_versions")).scalar_one() == settings
