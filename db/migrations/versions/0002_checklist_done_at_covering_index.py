"""checklist done_at for point-in-time health; covering index for per-account windows

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

The first release had no record of when a checklist item became done, so the Value
Realization part of a past health score could not be computed honestly. Items already done
get the time of this migration (their real completion time is unknown; scores before it
do not count them, which is the honest reading). The per-account events index gains
`event` and `user_id` so first-N-days and day-30 windows read only the index.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checklist_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("done_at", sa.DateTime(timezone=True), nullable=True))
    items = sa.table("checklist_items", sa.column("status", sa.String), sa.column("done_at", sa.DateTime(timezone=True)))
    op.execute(items.update().where(items.c.status == "done").values(done_at=datetime.now(UTC)))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_account_ts")
        batch_op.create_index("ix_events_account_ts", ["account_id", "ts", "event", "user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_account_ts")
        batch_op.create_index("ix_events_account_ts", ["account_id", "ts"], unique=False)
    with op.batch_alter_table("checklist_items", schema=None) as batch_op:
        batch_op.drop_column("done_at")
