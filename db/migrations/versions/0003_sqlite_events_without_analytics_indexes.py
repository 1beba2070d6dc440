"""SQLite events lose the indexes only analytics read

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

On SQLite the columnar copy beside the database file answers analytics, so the events
indexes by (event, account, ts) and (ts, account, user) only slow every import down (each
inserted row updated four B-trees). The natural-key unique index (dedup) and the covering
per-account index stay. PostgreSQL keeps all of them: its own SQL answers analytics there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYTICS_INDEXES = {
    "ix_events_event_account_ts": ["event", "account_id", "ts"],
    "ix_events_ts_account_user": ["ts", "account_id", "user_id"],
}


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if not _sqlite():
        return
    for name in ANALYTICS_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")


def downgrade() -> None:
    if not _sqlite():
        return
    for name, cols in ANALYTICS_INDEXES.items():
        op.create_index(name, "events", cols, unique=False, if_not_exists=True)
