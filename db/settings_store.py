"""Versioned settings and milestone definitions: read, defaults, first-start bootstrap.

Reads take an ORM session or a plain SQLAlchemy Core connection and run the same Core
query either way, so a process that only reads (`manage.py report`, the analytics loaders)
never imports the ORM; writes (store_setting, ensure_defaults) use the ORM models.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import column, select, table

from db.defaults import DEFAULT_MILESTONES, DEFAULT_SETTINGS
from db.session import bump_data_version, get_engine, migrate, session_scope

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlmodel import Session

    from db.models import SettingVersion

SYSTEM_ACTOR = "system"

# The columns the reads need (db.models.SettingVersion and MilestoneDefinition), as Core
# tables: no ORM mapping to import for a SELECT.
_SETTINGS = table("setting_versions", column("key"), column("version"), column("value"))
_MILESTONES = table(
    "milestone_definitions",
    column("key"),
    column("name"),
    column("phase"),
    column("sort_order"),
    column("is_value"),
    column("target_days"),
)


@dataclass(frozen=True)
class Setting:
    key: str
    value: Any
    version: int


def _connection(db: Session | Connection) -> Connection:
    """The Core connection a read runs on: a Connection as given; a session's own, in its
    transaction, after flushing its pending changes as one of its own queries would."""
    if not hasattr(db, "flush"):
        return db  # type: ignore[return-value]
    if db.autoflush:
        db.flush()
    return db.connection()


def get_setting(db: Session | Connection, key: str) -> Setting:
    """The current value of a setting (the default if it was never stored)."""
    row = (
        _connection(db)
        .execute(
            select(_SETTINGS.c.version, _SETTINGS.c.value)
            .where(_SETTINGS.c.key == key)
            .order_by(_SETTINGS.c.version.desc())
            .limit(1)
        )
        .first()
    )
    if row is None:
        return Setting(key, copy.deepcopy(DEFAULT_SETTINGS[key]), 0)
    return Setting(key, json.loads(row.value), int(row.version))


def setting_history(session: Session, key: str) -> list[SettingVersion]:
    from sqlmodel import select as orm_select

    from db.models import SettingVersion

    return list(
        session.exec(
            orm_select(SettingVersion).where(SettingVersion.key == key).order_by(SettingVersion.version.desc())  # type: ignore[attr-defined]
        )
    )


def store_setting(session: Session, *, key: str, value: Any, actor: str) -> Setting:
    """Append a new version of a setting (no permission check: see services.settings)."""
    from sqlalchemy import func
    from sqlmodel import select as orm_select

    from db.models import SettingVersion

    current = session.exec(orm_select(func.max(SettingVersion.version)).where(SettingVersion.key == key)).one()
    version = int(current or 0) + 1
    session.add(SettingVersion(key=key, version=version, value=json.dumps(value, sort_keys=True), changed_by=actor))
    bump_data_version(session)
    return Setting(key, value, version)


def milestone_definitions(db: Session | Connection) -> list[dict[str, Any]]:
    """Milestone definitions in order, with target days parsed."""
    m = _MILESTONES.c
    rows = _connection(db).execute(
        select(m.key, m.name, m.phase, m.sort_order, m.is_value, m.target_days).order_by(m.sort_order)
    )
    return [
        {
            "key": r.key,
            "name": r.name,
            "phase": int(r.phase),
            "order": int(r.sort_order),
            "is_value": bool(r.is_value),
            "target_days": json.loads(r.target_days),
        }
        for r in rows
    ]


def defaults_missing(conn: Connection) -> bool:
    """Whether any of the seed's milestone definitions or settings is not stored yet."""
    have = set(conn.execute(select(_MILESTONES.c.key)).scalars())
    stored = set(conn.execute(select(_SETTINGS.c.key).distinct()).scalars())
    return any(m["key"] not in have for m in DEFAULT_MILESTONES) or any(k not in stored for k in DEFAULT_SETTINGS)


def ensure_defaults(session: Session) -> None:
    """Insert the seed's milestone definitions and settings if they are missing."""
    from sqlmodel import select as orm_select

    from db.models import MilestoneDefinition, SettingVersion

    have = set(session.exec(orm_select(MilestoneDefinition.key)).all())
    for m in DEFAULT_MILESTONES:
        if m["key"] not in have:
            session.add(
                MilestoneDefinition(
                    key=m["key"],
                    name=m["name"],
                    phase=m["phase"],
                    order=m["order"],
                    is_value=m["is_value"],
                    target_days=json.dumps(m["target_days"]),
                )
            )
    stored = set(session.exec(orm_select(SettingVersion.key).distinct()).all())
    for key, value in DEFAULT_SETTINGS.items():
        if key not in stored:
            session.add(
                SettingVersion(key=key, version=1, value=json.dumps(value, sort_keys=True), changed_by=SYSTEM_ACTOR)
            )
    session.flush()


def init_db(url: str | None = None) -> None:
    """Migrate to head and make sure the defaults exist. When they do (every call after the
    first), this is two SELECTs besides migrate()'s one, and the ORM is not imported."""
    migrate(url)
    with get_engine(url).connect() as conn:
        missing = defaults_missing(conn)
    if missing:
        with session_scope(url) as session:
            ensure_defaults(session)
