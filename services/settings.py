"""Admin changes: team and roles, milestones, health model, risk rules, checklist templates.

Each change is validated, stored as a new settings version (or row change) and written
to the change log with old and new values. Health model changes apply from the next
health snapshot (snapshots record the model version they were computed with).
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlmodel import Session, select

from db.models import CHECKLIST_CATEGORIES, ROLES, SEGMENTS, ChangeLog, MilestoneDefinition, TeamMember, utcnow
from db.session import bump_data_version
from db.settings_store import get_setting, store_setting
from services.access import User, require_admin
from services.plans import CellProblem, ValidationFailed


def _flatten(prefix: str, v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        out: dict[str, Any] = {}
        for k, x in v.items():
            out.update(_flatten(f"{prefix}.{k}" if prefix else str(k), x))
        return out
    return {prefix: v}


def _log_setting(session: Session, user: User, key: str, old: Any, new: Any, version: int) -> int:
    a, b = _flatten("", old), _flatten("", new)
    n = 0
    for f in sorted(set(a) | set(b)):
        if a.get(f) != b.get(f):
            session.add(
                ChangeLog(
                    actor=user.email,
                    entity="setting",
                    entity_id=f"{key}@v{version}",
                    field=f"{key}.{f}"[:100],
                    old=None if f not in a else json.dumps(a[f]),
                    new=None if f not in b else json.dumps(b[f]),
                    context="settings",
                )
            )
            n += 1
    return n


def validate_health_model(value: dict) -> list[CellProblem]:
    problems = []
    w = value.get("weights", {})
    for k in ("milestone", "adoption", "engagement", "value"):
        x = w.get(k)
        if not isinstance(x, int | float) or isinstance(x, bool) or math.isnan(x) or x < 0:
            problems.append(CellProblem("weights", k, x, "must be a number of points, 0 or more"))
    if not problems and abs(sum(float(w[k]) for k in ("milestone", "adoption", "engagement", "value")) - 100) > 1e-6:
        problems.append(
            CellProblem("weights", "total", sum(float(x) for x in w.values()), "the four weights must add up to 100")
        )
    b = value.get("bands", {})
    try:
        ok = 100 >= float(b["excellent"]) > float(b["on_track"]) > float(b["at_risk"]) > 0
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        problems.append(CellProblem("bands", "thresholds", b, "need 100 ≥ Excellent > On Track > At Risk > 0"))
    shares = [("adoption_full_share", 0.01, 1), ("late_credit", 0, 1)]
    if "engagement_full_days" not in value:  # a setting stored before it was a number of days
        shares.append(("engagement_full_share", 0.01, 1))
    for k, lo, hi in shares:
        x = value.get(k)
        if not isinstance(x, int | float) or not lo <= float(x) <= hi:
            problems.append(CellProblem("model", k, x, f"must be between {lo} and {hi}"))
    for k in ("adoption_window_days", "engagement_window_days"):
        x = value.get(k)
        if not isinstance(x, int) or not 1 <= x <= 90:
            problems.append(CellProblem("model", k, x, "must be a whole number of days from 1 to 90"))
    x = value.get("new_account_days", 14)
    if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x <= 90:
        problems.append(CellProblem("model", "new_account_days", x, "must be a whole number of days from 0 to 90"))
    if "engagement_full_days" in value:
        x, window = value["engagement_full_days"], value.get("engagement_window_days")
        top = window if isinstance(window, int) and 1 <= window <= 90 else 90
        if not isinstance(x, int) or isinstance(x, bool) or not 1 <= x <= top:
            problems.append(
                CellProblem("model", "engagement_full_days", x, f"must be a whole number of days from 1 to {top}")
            )
    return problems


def validate_risk_rules(value: dict) -> list[CellProblem]:
    problems = []
    limits = {
        ("milestone_overdue", "days"): (0, 365),
        ("no_activity", "days"): (1, 365),
        ("low_adoption", "day"): (1, 365),
        ("low_adoption", "threshold"): (0, 1),
        ("health_drop", "points"): (1, 100),
        ("health_drop", "days"): (1, 90),
        ("no_champion", "day"): (0, 365),
        ("ttfv_overdue", "grace_days"): (0, 365),
    }
    for (rule, k), (lo, hi) in limits.items():
        x = value.get(rule, {}).get(k)
        if not isinstance(x, int | float) or isinstance(x, bool) or not lo <= x <= hi:
            problems.append(CellProblem(rule, k, x, f"must be between {lo} and {hi}"))
        if not isinstance(value.get(rule, {}).get("enabled", True), bool):
            problems.append(CellProblem(rule, "enabled", value[rule].get("enabled"), "must be true or false"))
    return problems


def validate_templates(value: dict) -> list[CellProblem]:
    problems = []
    if "default" not in value:
        problems.append(CellProblem("templates", "default", None, "a default template is required"))
    for seg, items in value.items():
        if seg != "default" and seg not in SEGMENTS:
            problems.append(
                CellProblem("templates", seg, seg, f"unknown segment; use default or one of {', '.join(SEGMENTS)}")
            )
            continue
        seen = set()
        for i, it in enumerate(items or []):
            row = f"{seg} {i + 1}"
            if it.get("category") not in CHECKLIST_CATEGORIES:
                problems.append(
                    CellProblem(row, "category", it.get("category"), f"choose one of {', '.join(CHECKLIST_CATEGORIES)}")
                )
            crit = str(it.get("criterion") or "").strip()
            if not crit:
                problems.append(CellProblem(row, "criterion", it.get("criterion"), "a criterion is required"))
            elif (it.get("category"), crit.lower()) in seen:
                problems.append(CellProblem(row, "criterion", crit, "appears twice in this template"))
            seen.add((it.get("category"), crit.lower()))
    return problems


def validate_alerts(value: dict) -> list[CellProblem]:
    problems = []
    limits = {"completion_min": (0, 1), "at_risk_rise_points": (0, 100), "ttfv_over_target_days": (0, 365)}
    for k, (lo, hi) in limits.items():
        x = value.get(k)
        if not isinstance(x, int | float) or isinstance(x, bool) or not lo <= x <= hi:
            problems.append(CellProblem("alerts", k, x, f"must be between {lo} and {hi}"))
    return problems


VALIDATORS = {
    "alerts": validate_alerts,
    "health_model": validate_health_model,
    "risk_rules": validate_risk_rules,
    "checklist_templates": validate_templates,
}


def update_setting(session: Session, user: User, *, key: str, value: Any, expected_version: int | None = None) -> int:
    """Store a new version of a setting (admins only); returns the new version."""
    require_admin(user, "change settings")
    if key not in VALIDATORS and key not in ("analysis", "playbooks"):
        raise KeyError(f"unknown setting {key!r}")
    if key == "playbooks":
        from services.plays import validate_playbooks

        problems = validate_playbooks(value, {m.email.lower() for m in session.exec(select(TeamMember)).all()})
    else:
        problems = VALIDATORS[key](value) if key in VALIDATORS else []
    if key == "analysis" and value.get("week_start") not in ("sunday", "monday"):
        problems.append(CellProblem("analysis", "week_start", value.get("week_start"), "sunday or monday"))
    if problems:
        raise ValidationFailed(problems)
    current = get_setting(session, key)
    if expected_version is not None and current.version != expected_version:
        from services.plans import Conflict, StaleVersion

        raise StaleVersion([Conflict(None, key, "(version)", expected_version, current.version, "another admin", None)])
    if current.value == value:
        return current.version
    new = store_setting(session, key=key, value=value, actor=user.email)
    _log_setting(session, user, key, current.value, value, new.version)
    session.commit()
    return new.version


def save_team_member(
    session: Session, user: User, *, email: str, name: str, role: str, active: bool = True
) -> TeamMember:
    """Add a team member or change their name, role or active flag (admins only)."""
    require_admin(user, "manage the team")
    email = (email or "").strip().lower()
    problems = []
    if "@" not in email or len(email) > 254:
        problems.append(CellProblem(email or "new", "email", email, "not an email address"))
    if not (name or "").strip() or len(name) > 200:
        problems.append(CellProblem(email or "new", "name", name, "a name (up to 200 characters) is required"))
    if role not in ROLES:
        problems.append(CellProblem(email or "new", "role", role, f"choose one of {', '.join(ROLES)}"))
    if problems:
        raise ValidationFailed(problems)
    m = session.exec(select(TeamMember).where(TeamMember.email == email)).first()
    if m is not None and m.role == "admin" and m.active and (role != "admin" or not active):
        admins = session.exec(select(TeamMember).where(TeamMember.role == "admin", TeamMember.active)).all()
        if len(admins) <= 1:
            raise ValidationFailed(
                [CellProblem(email, "role", role, "this is the last active admin; make someone else admin first")]
            )
    now = utcnow()
    if m is None:
        m = TeamMember(email=email, name=name.strip(), role=role, active=active)
        session.add(m)
        session.flush()
        session.add(
            ChangeLog(
                at=now,
                actor=user.email,
                entity="team_member",
                entity_id=email,
                field="member",
                old=None,
                new=f"{name.strip()} ({role})",
                context="settings",
            )
        )
    else:
        for f, new in (("name", name.strip()), ("role", role), ("active", active)):
            old = getattr(m, f)
            if old != new:
                setattr(m, f, new)
                session.add(
                    ChangeLog(
                        at=now,
                        actor=user.email,
                        entity="team_member",
                        entity_id=email,
                        field=f,
                        old=str(old),
                        new=str(new),
                        context="settings",
                    )
                )
    bump_data_version(session)
    session.commit()
    return m


def _milestone_problems(m: MilestoneDefinition | None, row: dict) -> list[CellProblem]:
    key = row.get("key")
    problems = []
    if m is None:
        problems.append(CellProblem(key, "key", key, "unknown milestone"))
    name, phase, order = row.get("name"), row.get("phase"), row.get("order")
    if not (name or "").strip():
        problems.append(CellProblem(key, "name", name, "a name is required"))
    if not isinstance(phase, int) or isinstance(phase, bool) or not 1 <= phase <= 5:
        problems.append(CellProblem(key, "phase", phase, "a phase from 1 to 5"))
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        problems.append(CellProblem(key, "order", order, "a whole number from 1"))
    for seg in SEGMENTS:
        d = (row.get("target_days") or {}).get(seg)
        if not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 730:
            problems.append(CellProblem(key, f"target {seg}", d, "whole days from 0 to 730"))
    return problems


def save_milestones(session: Session, user: User, *, rows: list[dict]) -> int:
    """Change several milestone definitions at once: all are validated first, then all are
    written in one transaction (nothing is saved if any row is invalid). Returns rows changed."""
    require_admin(user, "change milestone definitions")
    current = {m.key: m for m in session.exec(select(MilestoneDefinition)).all()}
    problems = [p for row in rows for p in _milestone_problems(current.get(row.get("key")), row)]
    if problems:
        raise ValidationFailed(problems)
    now = utcnow()
    changed = 0
    for row in rows:
        m = current[row["key"]]
        new_targets = json.dumps({s: int(row["target_days"][s]) for s in SEGMENTS})
        fields = (
            ("name", row["name"].strip()),
            ("phase", row["phase"]),
            ("order", row["order"]),
            ("is_value", bool(row["is_value"])),
            ("target_days", new_targets),
        )
        diffs = [(f, getattr(m, f), new) for f, new in fields if getattr(m, f) != new]
        for f, old, new in diffs:
            setattr(m, f, new)
            session.add(
                ChangeLog(
                    at=now,
                    actor=user.email,
                    entity="milestone_definition",
                    entity_id=m.key,
                    field=f,
                    old=str(old),
                    new=str(new),
                    context="settings",
                )
            )
        changed += bool(diffs)
    if changed:
        bump_data_version(session)
    session.commit()
    return changed


def save_milestone(
    session: Session,
    user: User,
    *,
    key: str,
    name: str,
    phase: int,
    order: int,
    target_days: dict[str, int],
    is_value: bool,
) -> None:
    """Change one milestone definition's name, phase, order, value flag or target days."""
    save_milestones(
        session,
        user,
        rows=[
            {"key": key, "name": name, "phase": phase, "order": order, "target_days": target_days, "is_value": is_value}
        ],
    )
