"""Versioned settings and milestone definitions: read, defaults, first-start bootstrap."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from db.defaults import DEFAULT_MILESTONES, DEFAULT_SETTINGS
from db.models import MilestoneDefinition, SettingVersion
from db.session import bump_data_version, migrate, session_scope

SYSTEM_ACTOR = "system"


@dataclass(frozen=True)
class Setting:
    key: str
    value: Any
    version: int


def get_setting(session: Session, key: str) -> Setting:
    """The current value of a setting (the default if it was never stored)."""
    row = session.exec(
        select(SettingVersion)
        .where(SettingVersion.key == key)
        .order_by(SettingVersion.version.desc())  # type: ignore[attr-defined]
        .limit(1)
    ).first()
    if row is None:
        return Setting(key, copy.deepcopy(DEFAULT_SETTINGS[key]), 0)
    return Setting(key, json.loads(row.value), row.version)


def setting_history(session: Session, key: str) -> list[SettingVersion]:
    return list(
        session.exec(
            select(SettingVersion).where(SettingVersion.key == key).order_by(SettingVersion.version.desc())  # type: ignore[attr-defined]
        )
    )


def store_setting(session: Session, *, key: str, value: Any, actor: str) -> Setting:
    """Append a new version of a setting (no permission check: see services.settings)."""
    current = session.exec(select(func.max(SettingVersion.version)).where(SettingVersion.key == key)).one()
    version = int(current or 0) + 1
    session.add(SettingVersion(key=key, version=version, value=json.dumps(value, sort_keys=True), changed_by=actor))
    bump_data_version(session)
    return Setting(key, value, version)


def milestone_definitions(session: Session) -> list[dict[str, Any]]:
    """Milestone definitions in order, with target days parsed."""
    rows = session.exec(select(MilestoneDefinition).order_by(MilestoneDefinition.order)).all()
    return [
        {
            "key": r.key,
            "name": r.name,
            "phase": r.phase,
            "order": r.order,
            "is_value": r.is_value,
            "target_days": json.loads(r.target_days),
        }
        for r in rows
    ]


def ensure_defaults(session: Session) -> None:
    """Insert the seed's milestone definitions and settings if they are missing."""
    have = set(session.exec(select(MilestoneDefinition.key)).all())
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
    stored = set(session.exec(select(SettingVersion.key).distinct()).all())
    for key, value in DEFAULT_SETTINGS.items():
        if key not in stored:
            session.add(
                SettingVersion(key=key, version=1, value=json.dumps(value, sort_keys=True), changed_by=SYSTEM_ACTOR)
            )
    session.flush()


def init_db(url: str | None = None) -> None:
    """Migrate to head and make sure the defaults exist."""
    migrate(url)
    with session_scope(url) as session:
        ensure_defaults(session)
