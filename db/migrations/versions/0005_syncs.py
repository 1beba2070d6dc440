"""configured syncs from SQL sources, their runs and their watermarks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

`manage.py sync` reads the contract's entities from a SQL source (db/sync.py). A configured
sync stores its source URL, mapping and schedule; every run is recorded; each entity query
with a watermark keeps the highest value the last committed run saw.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "syncs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("mapping_path", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("mapping_text", sa.Text(), nullable=False),
        sa.Column("schedule", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("sync_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_written", sa.Integer(), nullable=False),
        sa.Column("entities", sa.Text(), nullable=False),
        sa.Column("watermarks", sa.Text(), nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column("problem_list", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sync_runs_sync_key", "sync_runs", ["sync_key"])
    op.create_index("ix_sync_runs_sync_name", "sync_runs", ["sync_name"])
    op.create_table(
        "sync_watermarks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("entity", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("column", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sync_key", "entity"),
    )


def downgrade() -> None:
    op.drop_table("sync_watermarks")
    op.drop_index("ix_sync_runs_sync_name", table_name="sync_runs")
    op.drop_index("ix_sync_runs_sync_key", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_table("syncs")
