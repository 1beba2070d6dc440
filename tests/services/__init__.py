"""Helpers shared by the service-layer tests (and the page tests): who is who in the demo
team, which accounts a CSM owns, what a checklist item looks like in the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from db.models import Account, ChangeLog, ChecklistItem, TeamMember
from db.session import session_scope
from services.access import User, user_for_email

LEADER = "dana.leader@example.com"
ALEX = "alex.csm@example.com"
PRIYA = "priya.csm@example.com"
REVOPS = "riley.revops@example.com"
ADMIN = "admin@example.com"


def member(url: str, email: str) -> User:
    """The team member as the header sign-in would resolve them."""
    with session_scope(url) as s:
        return user_for_email(s, email, mode="header")


def owned_accounts(url: str, email: str) -> list[int]:
    """Ids of the accounts whose CSM has this email, in id order."""
    with session_scope(url) as s:
        return list(
            s.execute(
                select(Account.id)
                .join(TeamMember, TeamMember.id == Account.csm_id)
                .where(TeamMember.email == email)
                .order_by(Account.id)
            ).scalars()
        )


def external_id(url: str, account_id: int) -> str:
    with session_scope(url) as s:
        return s.get(Account, account_id).external_id


def items(url: str, account_id: int) -> list[ChecklistItem]:
    """The account's checklist items in editor order."""
    with session_scope(url) as s:
        return list(
            s.execute(
                select(ChecklistItem)
                .where(ChecklistItem.account_id == account_id)
                .order_by(ChecklistItem.position, ChecklistItem.id)
            ).scalars()
        )


def item(url: str, item_id: int) -> ChecklistItem | None:
    with session_scope(url) as s:
        return s.get(ChecklistItem, item_id)


def base_of(url: str, it: ChecklistItem) -> dict[str, Any]:
    """What the editor shows for an item (owner as email), as the page passes it as `base`."""
    from services.plans import item_values

    with session_scope(url) as s:
        return item_values(s, s.get(ChecklistItem, it.id))


def log_rows(url: str, **where: Any) -> list[ChangeLog]:
    """Change-log rows matching column=value conditions, oldest first."""
    with session_scope(url) as s:
        q = select(ChangeLog)
        for col, value in where.items():
            q = q.where(getattr(ChangeLog, col) == value)
        return list(s.execute(q.order_by(ChangeLog.id)).scalars())


def count(url: str, model: type) -> int:
    with session_scope(url) as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def clear_plays(url: str) -> None:
    """Forget the demo's plays, tasks, trigger log and outbox (tests that start from none)."""
    from sqlalchemy import delete

    from db.models import Delivery, Notification, Play, PlayTask, RiskTrigger

    with session_scope(url) as s:
        for model in (Delivery, Notification, PlayTask, Play, RiskTrigger):
            s.execute(delete(model))
        s.execute(delete(ChangeLog).where(ChangeLog.entity.in_(["play", "task"])))
        s.commit()
