"""plays and their tasks (playbooks acted on)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

A playbook (a versioned setting) opens a play on an account when its trigger fires, and the
play's tasks carry an owner and a due date. At most one play per account and playbook is
open at a time (a partial unique index, on SQLite and PostgreSQL alike).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plays",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("playbook", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("playbook_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("playbook_version", sa.Integer(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("episode", sa.Date(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("cleared_on", sa.Date(), nullable=True),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("close_note", sa.Text(), nullable=False),
        sa.Column("closed_by", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_plays_open",
        "plays",
        ["account_id", "playbook"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index("ix_plays_account_playbook_episode", "plays", ["account_id", "playbook", "episode"])
    op.create_index("ix_plays_status", "plays", ["status"])
    op.create_table(
        "play_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("play_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("deliver", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("snoozed_until", sa.Date(), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_by", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["team_members.id"]),
        sa.ForeignKeyConstraint(["play_id"], ["plays.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_play_tasks_account_id", "play_tasks", ["account_id"])
    op.create_index("ix_play_tasks_play_id", "play_tasks", ["play_id"])
    op.create_index("ix_play_tasks_owner_status_due", "play_tasks", ["owner_id", "status", "due"])


def downgrade() -> None:
    op.drop_table("play_tasks")
    op.drop_table("plays")
