"""Interventions as the account page lists them (with their author's name), and their
author's edits and deletions, each written to the change log. Logging one is
services.plans.add_intervention."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import delete, select
from sqlmodel import Session

from db.models import ChangeLog, Intervention, TeamMember
from db.session import bump_data_version
from services.access import PermissionDenied, User
from services.plans import check_intervention

COLUMNS = ["id", "date", "type", "note", "outcome", "rule", "author", "author_email"]
FIELDS = ("type", "date", "note", "outcome")


def list_interventions(session: Session, *, account_id: int) -> pd.DataFrame:
    """An account's interventions, newest first, with the author's name (their email if
    they are no longer in the team)."""
    rows = session.execute(
        select(Intervention, TeamMember.name)
        .join(TeamMember, TeamMember.email == Intervention.created_by, isouter=True)
        .where(Intervention.account_id == account_id)
        .order_by(Intervention.date.desc(), Intervention.id.desc())
    ).all()
    return pd.DataFrame(
        [
            {
                "id": i.id,
                "date": i.date,
                "type": i.type,
                "note": i.note,
                "outcome": i.outcome,
                "rule": i.rule,
                "author": name or i.created_by,
                "author_email": i.created_by,
            }
            for i, name in rows
        ],
        columns=COLUMNS,
    )


def _own(session: Session, user: User, intervention_id: int) -> Intervention:
    iv = session.get(Intervention, intervention_id)
    if iv is None:
        raise PermissionDenied("This intervention no longer exists (it was deleted).")
    if iv.created_by.lower() != user.email.lower():
        raise PermissionDenied("Only the author of an intervention can change or delete it.")
    return iv


def _log(user: User, iv: Intervention, fld: str, old: Any, new: Any, context: str) -> ChangeLog:
    return ChangeLog(
        actor=user.email,
        entity="intervention",
        entity_id=str(iv.id),
        account_id=iv.account_id,
        field=fld,
        old=None if old is None else str(old),
        new=None if new is None else str(new),
        context=context,
    )


def update_intervention(
    session: Session,
    user: User,
    *,
    intervention_id: int,
    type: str,
    on: date,
    note: str,
    outcome: str = "",
) -> int:
    """Change one's own intervention; returns the number of fields changed (each logged)."""
    iv = _own(session, user, intervention_id)
    check_intervention(type=type, on=on, note=note, outcome=outcome)
    new = {"type": type, "date": on, "note": note or "", "outcome": outcome or ""}
    changed = {f: (getattr(iv, f), v) for f, v in new.items() if getattr(iv, f) != v}
    for f, (old, v) in changed.items():
        setattr(iv, f, v)
        session.add(_log(user, iv, f, old, v, "intervention edit"))
    if changed:
        bump_data_version(session, scope="notes")
    session.commit()
    return len(changed)


def delete_intervention(session: Session, user: User, *, intervention_id: int) -> None:
    """Delete one's own intervention; the change log keeps what it said."""
    iv = _own(session, user, intervention_id)
    session.add(
        _log(
            user,
            iv,
            "intervention",
            f"{iv.type} on {iv.date.isoformat()}: {iv.note}"[:5000],
            None,
            "intervention delete",
        )
    )
    session.execute(delete(Intervention).where(Intervention.id == iv.id))
    bump_data_version(session, scope="notes")
    session.commit()
