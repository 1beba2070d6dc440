"""Read side of the Settings page: current settings with versions, team, milestones, change log."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from db.models import SEGMENTS, ChangeLog, TeamMember
from db.session import session_scope
from db.settings_store import get_setting, milestone_definitions
from services.notify import preferences


def settings_snapshot(url: str | None = None) -> dict:
    with session_scope(url) as s:
        team = pd.DataFrame(
            [
                {
                    "email": m.email,
                    "name": m.name,
                    "role": m.role,
                    "active": m.active,
                    "digest": preferences(m)[0],
                    "digest_scope": preferences(m)[1],
                }
                for m in s.execute(select(TeamMember).order_by(TeamMember.role, TeamMember.email)).scalars()
            ],
            columns=["email", "name", "role", "active", "digest", "digest_scope"],
        )
        ms = pd.DataFrame(
            [
                {
                    "key": d["key"],
                    "name": d["name"],
                    "phase": d["phase"],
                    "order": d["order"],
                    "is_value": d["is_value"],
                    **{seg: d["target_days"].get(seg) for seg in SEGMENTS},
                }
                for d in milestone_definitions(s)
            ]
        )
        out = {"team": team, "milestones": ms}
        for key in ("health_model", "risk_rules", "checklist_templates", "playbooks", "alerts"):
            st = get_setting(s, key)
            out[key] = (st.value, st.version)
        out["log"] = pd.DataFrame(
            [
                {"at": c.at, "who": c.actor, "what": c.entity, "field": c.field, "old": c.old, "new": c.new}
                for c in s.execute(
                    select(ChangeLog)
                    .where(ChangeLog.context == "settings")
                    .order_by(ChangeLog.at.desc(), ChangeLog.id.desc())
                    .limit(500)
                ).scalars()
            ],
            columns=["at", "who", "what", "field", "old", "new"],
        )

        return out


def team_members(url: str | None = None) -> list[tuple[str, str, str]]:
    """(email, name, role) of active team members."""
    with session_scope(url) as s:
        return [
            (m.email, m.name, m.role)
            for m in s.execute(
                select(TeamMember).where(TeamMember.active).order_by(TeamMember.role, TeamMember.name)
            ).scalars()
        ]
