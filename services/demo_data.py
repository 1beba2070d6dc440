"""Your own data apart from the demo (issue 12, point 16).

What the database shows (the demo portfolio, your own accounts, or both), removing the demo
portfolio (admins only, in the change log), and removing it as the first step of an import,
inside the import's transaction, so a rejected import leaves the demo as it was.

The demo portfolio is what the generator wrote (meta row "demo"): its accounts (external ids
ACC-00001 ... ACC-<n>) with everything recorded on them, and its team members that no
remaining account, checklist item or trigger refers to. An account an import has since
changed (the change log says so) is no longer the demo's and stays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlmodel import Session

from db.demo import TEAM
from db.models import (
    Account,
    AccountMilestone,
    ChangeLog,
    ChecklistItem,
    Delivery,
    Event,
    HealthSnapshot,
    Intervention,
    Meta,
    Notification,
    Outcome,
    Play,
    PlayTask,
    RiskTrigger,
    SuccessPlan,
    TeamMember,
    utcnow,
)
from db.session import bump_data_version, session_scope
from services.access import User, require_admin

DEMO_KEY = "demo"
# Set once the demo portfolio was removed: a restart must not seed it again into the
# (now empty) database.
REMOVED_KEY = "demo_removed"
# Tables holding rows of one account, children before their account.
ACCOUNT_TABLES = (
    Event,
    ChecklistItem,
    AccountMilestone,
    Outcome,
    SuccessPlan,
    HealthSnapshot,
    RiskTrigger,
    Intervention,
    PlayTask,
    Play,
)


@dataclass(frozen=True)
class Portfolio:
    """What the database holds: all accounts, the demo's among them, the demo's description."""

    accounts: int
    demo_accounts: int
    demo: dict[str, Any] | None = None

    @property
    def own_accounts(self) -> int:
        return self.accounts - self.demo_accounts

    @property
    def has_demo(self) -> bool:
        return self.demo_accounts > 0

    def banner(self) -> str | None:
        """One line for the sidebar saying what is shown (markdown, only numbers and dates)."""
        if not self.accounts:
            return None
        if not self.has_demo:
            return f":material/database: Showing **your data**: {self.accounts:,} account(s)."
        d = self.demo or {}
        about = f"seed {d.get('seed')}, as of {d.get('as_of')}"
        if not self.own_accounts:
            return (
                f":material/science: Showing **demo data**: a generated portfolio of {self.demo_accounts:,} "
                f"account{'' if self.demo_accounts == 1 else 's'} "
                f"({about}). Import your own on the Data page."
            )
        return (
            f":material/science: Showing **your data and demo data together**: {self.own_accounts:,} imported "
            f"account(s) and {self.demo_accounts:,} generated demo accounts ({about}). "
            "Remove the demo data on the Data page."
        )


@dataclass
class DemoRows:
    """The demo portfolio's rows: account ids (and external ids) and team members to remove."""

    account_ids: list[int] = field(default_factory=list)
    external_ids: set[str] = field(default_factory=set)
    member_ids: list[int] = field(default_factory=list)
    emails: set[str] = field(default_factory=set)
    all_accounts: bool = False  # every account in the database is the demo's
    meta: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return not self.account_ids and not self.member_ids and self.meta is None

    def describe(self) -> str:
        m = self.meta or {}
        about = f" (seed {m.get('seed')}, as of {m.get('as_of')})" if m else ""
        return f"{len(self.account_ids):,} demo account(s) and {len(self.member_ids):,} demo team member(s){about}"


def demo_meta(session: Session) -> dict[str, Any] | None:
    row = session.get(Meta, DEMO_KEY)
    if row is None:
        return None
    try:
        return json.loads(row.value)
    except ValueError:
        return {}


def demo_rows(session: Session, *, keep_email: str | None = None, accounts_only: bool = False) -> DemoRows:
    """The demo portfolio's accounts and team members still in the database (none without
    the demo's meta row: then nothing here is the generator's). `accounts_only`: the
    accounts alone (what the sidebar's count needs; the members take several scans)."""
    meta = demo_meta(session)
    out = DemoRows(meta=meta)
    if meta is None:
        return out
    n = int(meta.get("accounts") or 0)
    generated = {f"ACC-{i + 1:05d}" for i in range(n)}
    changed_by_import = set(
        session.execute(
            select(ChangeLog.entity_id).where(ChangeLog.entity == "account", ChangeLog.context == "import").distinct()
        ).scalars()
    )
    for pk, ext in session.execute(select(Account.id, Account.external_id).where(Account.external_id.like("ACC-%"))):
        if ext in generated and ext not in changed_by_import:
            out.account_ids.append(int(pk))
            out.external_ids.add(ext)
    total = int(session.execute(select(func.count()).select_from(Account)).scalar_one())
    out.all_accounts = total == len(out.account_ids)
    if accounts_only:
        return out

    demo_emails = {e for e, _, _ in TEAM} - {(keep_email or "").lower()}
    imported_members = set(
        session.execute(
            select(ChangeLog.entity_id).where(ChangeLog.entity == "team_member", ChangeLog.context == "import")
        ).scalars()
    )
    demo_set = set(out.account_ids)
    candidates = {
        int(pk): e
        for pk, e in session.execute(
            select(TeamMember.id, TeamMember.email).where(TeamMember.email.in_(sorted(demo_emails)))
        )
        if e not in imported_members
    }
    if candidates:
        # A member still referred to by an account, checklist item or trigger that stays is kept.
        used: set[int] = set()
        for table, owner in (
            (Account, Account.csm_id),
            (ChecklistItem, ChecklistItem.owner_id),
            (RiskTrigger, RiskTrigger.owner_id),
            (PlayTask, PlayTask.owner_id),
        ):
            acct = Account.id if table is Account else table.account_id
            rows = session.execute(select(owner, acct).where(owner.in_(list(candidates))).distinct())
            used.update(int(o) for o, a in rows if int(a) not in demo_set)
        for pk, e in sorted(candidates.items()):
            if pk not in used:
                out.member_ids.append(pk)
                out.emails.add(e)
    return out


def portfolio(url: str | None = None) -> Portfolio:
    """How many accounts the database holds and how many of them are the demo's."""
    with session_scope(url) as s:
        total = int(s.execute(select(func.count()).select_from(Account)).scalar_one())
        meta = demo_meta(s)
        if meta is None or not total:
            return Portfolio(accounts=total, demo_accounts=0, demo=meta)
        return Portfolio(accounts=total, demo_accounts=len(demo_rows(s, accounts_only=True).account_ids), demo=meta)


def _chunks(ids: list[int], n: int = 500):
    for i in range(0, len(ids), n):
        yield ids[i : i + n]


def _remove_notifications(session: Session, ids: list[int], member_ids: list[int], *, everything: bool) -> None:
    """The outbox rows about the removed accounts or addressed to removed members, with
    their deliveries (children first)."""
    n = Notification.__table__
    if everything:
        session.execute(delete(Delivery.__table__))
        session.execute(delete(n))
        return
    doomed: set[int] = set()
    for chunk in _chunks(ids):
        doomed.update(session.execute(select(n.c.id).where(n.c.account_id.in_(chunk))).scalars())
    for chunk in _chunks(member_ids):
        doomed.update(session.execute(select(n.c.id).where(n.c.recipient_id.in_(chunk))).scalars())
    for chunk in _chunks(sorted(doomed)):
        session.execute(delete(Delivery.__table__).where(Delivery.notification_id.in_(chunk)))
        session.execute(delete(n).where(n.c.id.in_(chunk)))


def remove_demo_in(session: Session, *, actor: str, context: str) -> DemoRows:
    """Delete the demo portfolio within the caller's transaction (no commit) and record it
    in the change log; returns what was removed."""
    rows = demo_rows(session, keep_email=actor)
    if rows.empty:
        return rows
    ids = rows.account_ids
    _remove_notifications(session, ids, rows.member_ids, everything=rows.all_accounts)
    for model in ACCOUNT_TABLES:
        table = model.__table__
        if rows.all_accounts:  # nothing of anyone else's: whole tables (fast on 2M events)
            session.execute(delete(table))
        else:
            for chunk in _chunks(ids):
                session.execute(delete(table).where(table.c.account_id.in_(chunk)))
    for chunk in _chunks(ids):
        session.execute(delete(ChangeLog.__table__).where(ChangeLog.account_id.in_(chunk)))
        session.execute(delete(Account.__table__).where(Account.id.in_(chunk)))
    if rows.member_ids:
        # Interventions name their author by email; triggers and checklist items of kept
        # accounts never point at a removed member (those members are kept).
        session.execute(delete(TeamMember.__table__).where(TeamMember.id.in_(rows.member_ids)))
    session.execute(delete(Meta.__table__).where(Meta.key == DEMO_KEY))
    removed = json.dumps({"at": utcnow().isoformat(timespec="seconds"), "by": actor[:120]})[:200]
    marker = session.get(Meta, REMOVED_KEY)
    if marker is None:
        session.add(Meta(key=REMOVED_KEY, value=removed))
    else:
        marker.value = removed
    session.add(
        ChangeLog(
            actor=actor,
            entity="portfolio",
            entity_id="demo",
            field="demo data",
            old=rows.describe(),
            new="removed",
            context=context,
        )
    )
    bump_data_version(session)
    session.flush()
    return rows


def remove_demo(user: User, *, url: str | None = None) -> DemoRows:
    """The Data page's "Remove demo data": admins only, one transaction, in the change log."""
    require_admin(user, "remove the demo data")
    with session_scope(url) as s:
        return remove_demo_in(s, actor=user.email, context="remove demo data")


@dataclass(frozen=True)
class Forget:
    """For a dry run of an import that replaces the demo: the demo's keys the validation
    must treat as absent (a dry run only reads, so nothing is deleted)."""

    accounts: set[str]
    team: set[str]


class ReplaceDemo:
    """The importer's first step for "remove the demo portfolio first": a real import deletes
    it in its own transaction (rolled back with the import if a row is invalid); a dry run
    validates as if it were gone (it only reads). `note(report)` says what was done."""

    def __init__(self, actor: str) -> None:
        self.actor = actor
        self.rows: DemoRows | None = None

    def __call__(self, session: Session, dry_run: bool) -> Forget | None:
        if dry_run:
            self.rows = demo_rows(session, keep_email=self.actor)
            return Forget(accounts=self.rows.external_ids, team=self.rows.emails)
        self.rows = remove_demo_in(session, actor=self.actor, context="import --replace-demo")
        return None

    def note(self, report: Any) -> str | None:
        """A line for the import's report (None when there was no demo data)."""
        if self.rows is None or self.rows.empty:
            return None
        if report.dry_run:
            return f"Validated as if the demo portfolio were removed first ({self.rows.describe()})."
        if report.written:
            return f"The demo portfolio was removed first, in the same transaction: {self.rows.describe()}."
        return "Nothing was written: the demo portfolio is still there."


def demo_removed(session: Session) -> bool:
    return session.get(Meta, REMOVED_KEY) is not None
