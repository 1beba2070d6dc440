"""What a new account starts with: milestones due per its segment, the checklist template, a plan."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlmodel import Session

from db.models import Account, AccountMilestone, ChecklistItem, SuccessPlan
from db.settings_store import get_setting, milestone_definitions

# Template items are due when the milestone their category leads to is due.
CATEGORY_MILESTONE = {
    "Technical Setup": "technical_setup_done",
    "User Adoption": "adoption_confirmed",
    "Value Realization": "first_value_achieved",
    "Engagement": "onboarding_concluded",
}


def checklist_template(session: Session, segment: str) -> list[dict]:
    """The checklist template for a segment (its own, else the default)."""
    templates = get_setting(session, "checklist_templates").value
    return templates.get(segment) or templates["default"]


def apply_new_account_defaults(
    session: Session,
    *,
    milestones_for: list[int],
    checklist_for: list[int],
    plan_for: list[int],
) -> None:
    """Create missing milestone rows, template checklist items and empty success plans."""
    ids = sorted(set(milestones_for) | set(checklist_for) | set(plan_for))
    if not ids:
        return
    defs = milestone_definitions(session)
    info: dict[int, tuple] = {}
    for i in range(0, len(ids), 500):
        for pk, seg, start, csm in session.execute(
            select(Account.id, Account.segment, Account.contract_start, Account.csm_id).where(
                Account.id.in_(ids[i : i + 500])
            )
        ):
            info[pk] = (seg, start, csm)

    def due(seg: str, start, key: str):
        for d in defs:
            if d["key"] == key and seg in d["target_days"]:
                return start + timedelta(days=int(d["target_days"][seg]))
        return None

    ms_rows = [
        {
            "account_id": pk,
            "milestone_key": d["key"],
            "due_date": due(info[pk][0], info[pk][1], d["key"]),
            "completed_at": None,
        }
        for pk in milestones_for
        for d in defs
    ]
    if ms_rows:
        existing = (
            set(
                session.execute(
                    select(AccountMilestone.account_id, AccountMilestone.milestone_key).where(
                        AccountMilestone.account_id.in_(milestones_for)
                    )
                ).all()
            )
            if len(milestones_for) < 1000
            else set(session.execute(select(AccountMilestone.account_id, AccountMilestone.milestone_key)).all())
        )
        ms_rows = [r for r in ms_rows if (r["account_id"], r["milestone_key"]) not in existing]
        if ms_rows:
            session.execute(AccountMilestone.__table__.insert(), ms_rows)

    cl_rows = []
    templates: dict[str, list[dict]] = {}
    for pk in checklist_for:
        seg, start, csm = info[pk]
        if seg not in templates:
            templates[seg] = checklist_template(session, seg)
        for pos, item in enumerate(templates[seg]):
            cl_rows.append(
                {
                    "account_id": pk,
                    "category": item["category"],
                    "criterion": item["criterion"],
                    "target": item.get("target", ""),
                    "actual": "",
                    "status": "not started",
                    "owner_id": csm,
                    "due_date": due(seg, start, CATEGORY_MILESTONE.get(item["category"], "onboarding_concluded")),
                    "note": "",
                    "metric": item.get("metric"),
                    "position": pos,
                    "done_at": None,
                    "version": 1,
                }
            )
    if cl_rows:
        session.execute(ChecklistItem.__table__.insert(), cl_rows)

    if plan_for:
        have = (
            set(session.execute(select(SuccessPlan.account_id).where(SuccessPlan.account_id.in_(plan_for))).scalars())
            if len(plan_for) < 1000
            else set(session.execute(select(SuccessPlan.account_id)).scalars())
        )
        rows = [
            {
                "account_id": pk,
                "goals": "",
                "success_30": "",
                "success_60": "",
                "success_90": "",
                "champion": "",
                "admin_contact": "",
                "executive_sponsor": "",
                "version": 1,
            }
            for pk in plan_for
            if pk not in have
        ]
        if rows:
            session.execute(SuccessPlan.__table__.insert(), rows)
