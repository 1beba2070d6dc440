"""Versioned settings and milestone definitions: read, defaults, first-start bootstrap.

Reads take an ORM session, a plain SQLAlchemy Core connection or a db.session.LiteConnection
and run the same SQL either way (db.session.fetch), so a process that only reads
(`manage.py report`, the analytics loaders) never imports the ORM, and with a reader not even
SQLAlchemy; writes (store_setting, ensure_defaults) use the ORM models.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from db.defaults import DEFAULT_MILESTONES, DEFAULT_SETTINGS
from db.session import bump_data_version, fetch, get_engine, migrate, session_scope

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlmodel import Session

    from db.models import SettingVersion
    from db.session import LiteConnection

SYSTEM_ACTOR = "system"

# The reads (tables of db.models.SettingVersion and MilestoneDefinition) as plain SQL: no
# ORM mapping, nor SQLAlchemy itself, to import for a SELECT.
_SETTING_SQL = "SELECT version, value FROM setting_versions WHERE key = :key ORDER BY version DESC LIMIT 1"
_MILESTONES_SQL = (
    "SELECT key, name, phase, sort_order, is_value, target_days FROM milestone_definitions ORDER BY sort_order"
)


@dataclass(frozen=True)
class Setting:
    key: str
    value: Any
    version: int


def _connection(db: Session | Connection | LiteConnection) -> Connection | LiteConnection:
    """The Core connection a read runs on: a Connection as given; a session's own, in its
    transaction, after flushing its pending changes as one of its own queries would."""
    if not hasattr(db, "flush"):
        return db  # type: ignore[return-value]
    if db.autoflush:
        db.flush()
    return db.connection()


def get_setting(db: Session | Connection | LiteConnection, key: str) -> Setting:
    """The current value of a setting (the default if it was never stored)."""
    rows = fetch(_connection(db), _SETTING_SQL, {"key": key})
    if not rows:
        return Setting(key, copy.deepcopy(DEFAULT_SETTINGS[key]), 0)
    version, value = rows[0]
    return Setting(key, json.loads(value), int(version))


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


def milestone_definitions(db: Session | Connection | LiteConnection) -> list[dict[str, Any]]:
    """Milestone definitions in order, with target days parsed."""
    return [
        {
            "key": key,
            "name": name,
            "phase": int(phase),
            "order": int(sort_order),
            "is_value": bool(is_value),
            "target_days": json.loads(target_days),
        }
        for key, name, phase, sort_order, is_value, target_days in fetch(_connection(db), _MILESTONES_SQL)
    ]


def defaults_missing(conn: Connection | LiteConnection) -> bool:
    """Whether any of the seed's milestone definitions or settings is not stored yet."""
    have = {r[0] for r in fetch(conn, "SELECT key FROM milestone_definitions")}
    stored = {r[0] for r in fetch(conn, "SELECT DISTINCT key FROM setting_versions")}
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
