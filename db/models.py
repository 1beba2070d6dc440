"""The data model (PRODUCT.md §2) as SQLModel tables.

Timestamps are timezone-aware UTC (`timestamptz` on PostgreSQL, ISO text in UTC
on SQLite, as SQLModel's UTCDateTime stores them); dates are plain dates.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

SEGMENTS = ("SMB", "Mid-Market", "Enterprise", "Strategic")
ROLES = ("leader", "csm", "revops", "admin")
CHANNELS = ("self-serve", "sales", "partner")
OUTCOME_TYPES = ("renewed", "churned", "expanded", "contracted")
CHECKLIST_CATEGORIES = ("Technical Setup", "User Adoption", "Value Realization", "Engagement")
CHECKLIST_STATUSES = ("not started", "in progress", "done", "blocked", "n/a")


def utcnow() -> datetime:
    """Now, timezone-aware UTC (SQLModel stores datetimes as UTC-aware)."""
    return datetime.now(UTC)


INTERVENTION_TYPES = (
    "extra training",
    "executive sponsorship",
    "enhanced support",
    "check-in call",
    "other",
)


class TeamMember(SQLModel, table=True):
    __tablename__ = "team_members"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)
    name: str = Field(max_length=200)
    role: str = Field(max_length=20)
    active: bool = Field(default=True)
    # Alerts addressed to them: at once ("immediate") or gathered in a "daily" or "weekly"
    # digest; about their own accounts ("mine") or all. None: the role's default
    # (services/notify.py: CSMs daily and mine, leaders weekly and all).
    digest: str | None = Field(default=None, max_length=20)
    digest_scope: str | None = Field(default=None, max_length=20)


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=100, unique=True, index=True)
    name: str = Field(max_length=300)
    segment: str = Field(max_length=20, index=True)
    industry: str | None = Field(default=None, max_length=100)
    employees: int | None = None
    plan: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=20)
    region: str | None = Field(default=None, max_length=100)
    arr: float | None = None
    contract_start: date = Field(index=True)
    licensed_seats: int | None = None
    csm_id: int | None = Field(default=None, foreign_key="team_members.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)


class MilestoneDefinition(SQLModel, table=True):
    __tablename__ = "milestone_definitions"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=100, unique=True)
    name: str = Field(max_length=200)
    phase: int
    order: int = Field(sa_column_kwargs={"name": "sort_order"})
    # Target day (days after contract start) per segment, e.g. {"SMB": 14, ...}.
    target_days: str = Field(sa_column=Column(Text, nullable=False))
    is_value: bool = Field(default=False)


class AccountMilestone(SQLModel, table=True):
    __tablename__ = "account_milestones"
    __table_args__ = (UniqueConstraint("account_id", "milestone_key"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    milestone_key: str = Field(max_length=100, foreign_key="milestone_definitions.key")
    due_date: date | None = None
    completed_at: datetime | None = None


# Indexes of the events table that only analytics read. On SQLite the columnar copy beside
# the file answers analytics, so these are PostgreSQL-only: every import would otherwise pay
# for them on each row (migration 0003). `include_object` keeps autogenerate consistent.
ANALYTICS_ONLY_DIALECT = "postgresql"
EVENTS_ANALYTICS_INDEXES = ("ix_events_event_account_ts", "ix_events_ts_account_user")


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        # Natural key: makes re-imports idempotent (ON CONFLICT DO NOTHING).
        UniqueConstraint("account_id", "event", "ts", "user_id", name="uq_events_natural"),
        # Covering for per-account time ranges (first N days, day-30 windows).
        Index("ix_events_account_ts", "account_id", "ts", "event", "user_id"),
        Index("ix_events_event_account_ts", "event", "account_id", "ts").ddl_if(dialect=ANALYTICS_ONLY_DIALECT),
        # Point-in-time windows (active users / days in the last N days).
        Index("ix_events_ts_account_user", "ts", "account_id", "user_id").ddl_if(dialect=ANALYTICS_ONLY_DIALECT),
    )

    # BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    account_id: int = Field(foreign_key="accounts.id")
    event: str = Field(max_length=200)
    ts: datetime
    # '' when the source has no end-user id, so the natural key has no NULLs.
    user_id: str = Field(default="", max_length=200)
    properties: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Outcome(SQLModel, table=True):
    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("account_id", "date", "type"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    date: date
    type: str = Field(max_length=20)
    arr_change: float | None = None


class SuccessPlan(SQLModel, table=True):
    __tablename__ = "success_plans"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", unique=True)
    goals: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    success_30: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    success_60: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    success_90: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    champion: str = Field(default="", max_length=200)
    admin_contact: str = Field(default="", max_length=200)
    executive_sponsor: str = Field(default="", max_length=200)
    version: int = Field(default=1)
    updated_at: datetime = Field(default_factory=utcnow)


class ChecklistItem(SQLModel, table=True):
    __tablename__ = "checklist_items"
    __table_args__ = (UniqueConstraint("account_id", "category", "criterion"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    category: str = Field(max_length=40)
    criterion: str = Field(max_length=300)
    target: str = Field(default="", max_length=100)
    actual: str = Field(default="", max_length=100)
    status: str = Field(default="not started", max_length=20)
    owner_id: int | None = Field(default=None, foreign_key="team_members.id")
    due_date: date | None = None
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # Optional binding to a metric computed from events (see metrics/checklist.py).
    metric: str | None = Field(default=None, max_length=60)
    position: int = Field(default=0)
    # When the item became done: lets health be computed point-in-time.
    done_at: datetime | None = None
    # Optimistic locking: a save must name the version it edited.
    version: int = Field(default=1)


class ChangeLog(SQLModel, table=True):
    __tablename__ = "change_log"
    __table_args__ = (Index("ix_change_log_entity", "entity", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=254)
    entity: str = Field(max_length=40)
    entity_id: str = Field(max_length=100)
    account_id: int | None = Field(default=None, index=True)
    field: str = Field(max_length=100)
    old: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    new: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    context: str = Field(default="", max_length=100)


class HealthSnapshot(SQLModel, table=True):
    __tablename__ = "health_snapshots"
    __table_args__ = (UniqueConstraint("account_id", "date"), Index("ix_health_date", "date"))

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")
    date: date
    total: float
    milestone: float
    adoption: float
    engagement: float
    value: float
    band: str = Field(max_length=20)
    model_version: int = Field(default=1)


class RiskTrigger(SQLModel, table=True):
    __tablename__ = "risk_triggers"
    __table_args__ = (Index("ix_risk_account_rule", "account_id", "rule"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")
    rule: str = Field(max_length=60)
    opened: date
    resolved: date | None = None
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    action: str = Field(default="", max_length=300)
    owner_id: int | None = Field(default=None, foreign_key="team_members.id")


class Intervention(SQLModel, table=True):
    __tablename__ = "interventions"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    type: str = Field(max_length=40)
    date: date
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    outcome: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    rule: str | None = Field(default=None, max_length=60)
    created_by: str = Field(max_length=254)
    created_at: datetime = Field(default_factory=utcnow)


# How a play ends: every task done, or a person closes it (with a note), or its trigger
# has not fired for the playbook's auto-resolve days.
PLAY_OUTCOMES = ("completed", "resolved", "not resolved", "not needed", "auto-resolved")
PERSON_OUTCOMES = ("resolved", "not resolved", "not needed")
TASK_STATUSES = ("open", "done", "cancelled")  # cancelled: its play was closed first


class Play(SQLModel, table=True):
    """A playbook run on one account: opened when its trigger fired, with its tasks.

    `episode` is the day the trigger's current firing began (a risk rule's opened date, the
    contract start for the kickoff play): a play is opened once per account, playbook and
    episode, and at most one is open per account and playbook (the partial unique index)."""

    __tablename__ = "plays"
    __table_args__ = (
        Index(
            "ux_plays_open",
            "account_id",
            "playbook",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_plays_account_playbook_episode", "account_id", "playbook", "episode"),
        Index("ix_plays_status", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id")
    playbook: str = Field(max_length=60)
    playbook_name: str = Field(max_length=200)
    playbook_version: int = Field(default=0)
    rule: str | None = Field(default=None, max_length=60)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    episode: date
    opened_on: date
    opened_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="open", max_length=20)
    # The first day the trigger no longer fired (None while it fires).
    cleared_on: date | None = None
    closed_on: date | None = None
    closed_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=20)
    close_note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    closed_by: str | None = Field(default=None, max_length=254)
    version: int = Field(default=1)


class PlayTask(SQLModel, table=True):
    """One step of a play: what to deliver, who, by when."""

    __tablename__ = "play_tasks"
    __table_args__ = (Index("ix_play_tasks_owner_status_due", "owner_id", "status", "due"),)

    id: int | None = Field(default=None, primary_key=True)
    play_id: int = Field(foreign_key="plays.id", index=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    step: int
    title: str = Field(max_length=200)
    deliver: str = Field(default="", max_length=300)
    owner_id: int | None = Field(default=None, foreign_key="team_members.id")
    due: date
    status: str = Field(default="open", max_length=20)
    snoozed_until: date | None = None
    done_at: datetime | None = None
    done_by: str | None = Field(default=None, max_length=254)
    version: int = Field(default=1)


class Notification(SQLModel, table=True):
    """The outbox: one message to send, written in the transaction of what caused it. The
    dedupe key makes a second run that would say the same thing write nothing."""

    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=300, unique=True)
    kind: str = Field(max_length=30)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    as_of: date
    account_id: int | None = Field(default=None, foreign_key="accounts.id", index=True)
    # The member it is addressed to (None: the team's channels only).
    recipient_id: int | None = Field(default=None, foreign_key="team_members.id")
    title: str = Field(max_length=300)
    text: str = Field(sa_column=Column(Text, nullable=False))
    html: str = Field(sa_column=Column(Text, nullable=False))
    markdown: str = Field(sa_column=Column(Text, nullable=False))
    # pending until every delivery is sent or has failed for good: sent | failed | partly sent;
    # undeliverable (no destination), expired (none for two days), history (the demo's past)
    status: str = Field(default="pending", max_length=20, index=True)


class Delivery(SQLModel, table=True):
    """One message to one destination, with its retries."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "target_key"),
        Index("ix_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(foreign_key="notifications.id", index=True)
    target_key: str = Field(max_length=64)  # a hash of the destination URL
    target: str = Field(max_length=300)  # the destination with its secrets masked
    status: str = Field(default="pending", max_length=20)  # pending | sent | failed
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    sent_at: datetime | None = None


class Destination(SQLModel, table=True):
    """A channel the team's alerts go to (an apprise URL), set by an admin in Settings. The
    URL holds secrets: the change log and the page show it masked."""

    __tablename__ = "destinations"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    url: str = Field(sa_column=Column(Text, nullable=False))
    # JSON list of the kinds it receives; empty: every alert.
    kinds: str = Field(default="[]", max_length=300)
    enabled: bool = Field(default=True)
    created_by: str = Field(max_length=254)
    created_at: datetime = Field(default_factory=utcnow)


class SettingVersion(SQLModel, table=True):
    """Every settings change is a new row; the current value is the highest version."""

    __tablename__ = "setting_versions"
    __table_args__ = (UniqueConstraint("key", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=60)
    version: int
    value: str = Field(sa_column=Column(Text, nullable=False))
    changed_by: str = Field(max_length=254)
    changed_at: datetime = Field(default_factory=utcnow)


class ImportRun(SQLModel, table=True):
    __tablename__ = "import_runs"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    actor: str = Field(max_length=254)
    source: str = Field(default="", max_length=300)
    status: str = Field(max_length=20)  # imported | rejected | failed
    # JSON: per-file counts (rows, inserted, updated, unchanged, duplicates).
    summary: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    duplicates_skipped: int = Field(default=0)
    problems: int = Field(default=0)


class SyncConfig(SQLModel, table=True):
    """A configured sync from a SQL source (db/sync.py): its source URL (which may hold a
    password or ${VAR} references to the environment: shown masked only), its mapping (the
    TOML text, copied when saved) and its schedule (a crontab line, UTC; empty: by hand)."""

    __tablename__ = "syncs"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    source_url: str = Field(sa_column=Column(Text, nullable=False))
    mapping_path: str = Field(default="", max_length=1000)  # where the mapping was read from (shown only)
    mapping_text: str = Field(sa_column=Column(Text, nullable=False))
    schedule: str = Field(default="", max_length=100)
    created_by: str = Field(max_length=254)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = Field(default=1)


class SyncRun(SQLModel, table=True):
    """One run of a sync (configured or given on the command line): what it read and wrote."""

    __tablename__ = "sync_runs"

    id: int | None = Field(default=None, primary_key=True)
    sync_key: str = Field(max_length=300, index=True)  # as SyncWatermark.sync_key
    sync_name: str | None = Field(default=None, max_length=100, index=True)
    source: str = Field(default="", max_length=500)  # the URL with its password hidden
    actor: str = Field(max_length=254)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    status: str = Field(max_length=20)  # running | synced | rejected | failed | dry run
    dry_run: bool = Field(default=False)
    full: bool = Field(default=False)
    rows_read: int = Field(default=0)
    rows_written: int = Field(default=0)
    # JSON: per entity {rows_read, inserted, updated, unchanged, duplicates_skipped, problems}.
    entities: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    # JSON: per entity {column, kind, value} after the run (the stored ones if it wrote nothing).
    watermarks: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    problems: int = Field(default=0)
    # JSON list of the first problems, as the import reports them (entity, row, column, value, reason).
    problem_list: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class SyncWatermark(SQLModel, table=True):
    """The highest watermark value a sync's entity query has seen in a run that committed."""

    __tablename__ = "sync_watermarks"
    __table_args__ = (UniqueConstraint("sync_key", "entity"),)

    id: int | None = Field(default=None, primary_key=True)
    # "sync:NAME" for a configured sync, "source:URL" (password hidden) for one given on the command line
    sync_key: str = Field(max_length=300)
    entity: str = Field(max_length=20)
    column: str = Field(max_length=100)
    kind: str = Field(max_length=20)  # datetime | date | int | float | decimal | str
    value: str = Field(max_length=100)  # ISO 8601 for dates and times, else the number or text
    updated_at: datetime = Field(default_factory=utcnow)


class Meta(SQLModel, table=True):
    """Small key/value facts about the database (data version for cache invalidation)."""

    __tablename__ = "meta"

    key: str = Field(primary_key=True, max_length=60)
    value: str = Field(max_length=200)


def include_object(dialect: str) -> Callable[..., bool]:
    """Alembic's include_object for a database of this dialect: an index that exists only on
    another dialect (`Index(...).ddl_if(dialect=...)`) is not part of its schema."""

    def include(obj: Any, _name: str | None, type_: str, _reflected: bool, _compare_to: Any) -> bool:
        if type_ != "index":
            return True
        cond = getattr(obj, "_ddl_if", None)
        return cond is None or cond.dialect is None or cond.dialect == dialect

    return include


def _python_defaults_for_core_inserts() -> None:
    """Give table columns the models' defaults, so bulk Core inserts (importer, demo
    loader) get the same values as ORM inserts without repeating them."""
    from pydantic_core import PydanticUndefined
    from sqlalchemy import ColumnDefault

    for model in SQLModel.__subclasses__():
        table = getattr(model, "__table__", None)
        if table is None:
            continue
        for name, info in model.model_fields.items():
            col = table.c.get(name) if name in table.c else None
            if col is None or col.default is not None or col.primary_key:
                continue
            if info.default_factory is not None:
                col.default = ColumnDefault(info.default_factory)
            elif info.default is not PydanticUndefined and info.default is not None:
                col.default = ColumnDefault(info.default)


_python_defaults_for_core_inserts()
