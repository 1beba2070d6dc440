"""First start: migrate, defaults, the demo portfolio (in demo mode only), the first admin."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from db import demo
from db.models import Account, ChangeLog, ImportRun, Meta, TeamMember
from db.session import DEFAULT_URL, bump_data_version, database_url, session_scope
from db.settings_store import init_db
from engine import sync_after_write

# Child tables first, so foreign keys hold while deleting.
PORTFOLIO_TABLES = [
    "events",
    "checklist_items",
    "account_milestones",
    "outcomes",
    "success_plans",
    "health_snapshots",
    "risk_triggers",
    "interventions",
    "deliveries",
    "notifications",
    "play_tasks",
    "plays",
    "change_log",
    "import_runs",
    "accounts",
    "team_members",
]


def account_count(url: str | None = None) -> int:
    with session_scope(url) as s:
        return int(s.execute(select(func.count()).select_from(Account)).scalar_one())


def demo_info(url: str | None = None) -> dict[str, Any] | None:
    """What the demo generator wrote, if the data is demo data."""
    with session_scope(url) as s:
        row = s.get(Meta, "demo")
        return json.loads(row.value) if row else None


def seed_demo(
    *,
    url: str | None = None,
    accounts: int = 600,
    seed: int = 42,
    as_of: date | None = None,
    events: int | None = None,
    replace: bool = False,
    history_weeks: int = 26,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Generate and load a demo portfolio (one transaction) and back-fill health history.
    The portfolio streams in chunks (db/demo.py): memory stays that of one chunk."""
    from services.health import backfill_snapshots, play_history
    from services.plays import demo_work

    init_db(url)
    as_of = as_of or datetime.now(UTC).date()
    chunks = demo.generate_chunks(accounts=accounts, seed=seed, as_of=as_of, events=events)
    with session_scope(url) as s:
        existing = int(s.execute(select(func.count()).select_from(Account)).scalar_one())
        if existing and not replace:
            raise ValueError(
                f"the database already holds {existing:,} accounts; pass --replace to delete them and seed anew"
            )
        if existing:
            for table in PORTFOLIO_TABLES:
                s.execute(text(f"DELETE FROM {table}"))
            s.execute(text("DELETE FROM meta WHERE key = 'demo'"))
        meta = demo.load_chunks(s, chunks, accounts=accounts, progress=progress)
    if history_weeks > 0:
        backfill_snapshots(url=url, as_of=as_of, weeks=history_weeks, progress=progress, sync_triggers=False)
    if progress:
        progress(0.99, "plays and tasks")
    play_history(url=url, as_of=as_of)
    demo_work(url=url, as_of=as_of, seed=seed)
    sync_after_write(url, rebuild=True)  # the demo replaced the events: rebuild the columnar copy
    return meta


def is_demo_database(url: str | None = None) -> bool:
    """True for the default SQLite file (data/onboarding.db), the database the local demo
    creates, as long as nobody has imported or restored data into it; any other
    DATABASE_URL holds someone's data until DEMO_MODE=1 says otherwise."""
    if database_url(url) != database_url(DEFAULT_URL):
        return False
    return not holds_imported_data(url)


def holds_imported_data(url: str | None = None) -> bool:
    """Whether an import or a restore ever succeeded here: then the data is someone's own,
    and an open demo over it would hand it to every visitor."""
    parsed = make_url(database_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        return False  # first start: nothing there yet (and connecting would create the file)
    try:
        with session_scope(url) as s:
            imported = s.execute(select(ImportRun.id).where(ImportRun.status == "imported").limit(1)).first()
            return imported is not None or s.get(Meta, "last_restore") is not None
    except SQLAlchemyError:
        # Not migrated yet (no tables: nothing imported), or unreadable: the database-error
        # page follows, which shows no data either way.
        return False


def has_accounts(url: str | None = None) -> bool:
    with session_scope(url) as s:
        return s.execute(select(Account.id).limit(1)).first() is not None


def _demo_removed(url: str | None) -> bool:
    """An admin removed the demo portfolio ("Remove demo data"): it is not seeded again."""
    with session_scope(url) as s:
        return s.get(Meta, "demo_removed") is not None


def ensure_ready(url: str | None = None, *, demo_mode: bool = False) -> dict[str, Any]:
    """Migrate and make sure defaults exist; in demo mode only, seed the demo portfolio into
    an empty database. Outside demo mode nothing else is written: no accounts, no team."""
    init_db(url)
    seeded = False
    if demo_mode and not has_accounts(url) and not _demo_removed(url):
        seed_demo(url=url)
        seeded = True
    return {"seeded_now": seeded, "demo": demo_info(url)}


def _email_problem(email: str) -> str | None:
    if not email or len(email) > 254 or email.count("@") != 1 or any(c.isspace() or c in ",;<>\"'" for c in email):
        return f"{email!r} is not an email address"
    local, _, domain = email.partition("@")
    if not local or not domain:
        return f"{email!r} is not an email address"
    return None


def active_admins(url: str | None = None) -> int:
    with session_scope(url) as s:
        return int(
            s.execute(
                select(func.count()).select_from(TeamMember).where(TeamMember.role == "admin", TeamMember.active)
            ).scalar_one()
        )


def create_admin(email: str, *, name: str | None = None, actor: str, url: str | None = None) -> str:
    """Make EMAIL an active admin: add them to the team or promote them; returns what was
    done ("created", "promoted" or "unchanged"). The change log records who did it.
    ValueError if the address is not an email."""
    email = (email or "").strip().lower()
    problem = _email_problem(email)
    if problem:
        raise ValueError(problem)
    name = (name or "").strip() or email.split("@")[0]
    if len(name) > 200:
        raise ValueError("the name is longer than 200 characters")
    init_db(url)
    with session_scope(url) as s:
        m = s.execute(select(TeamMember).where(TeamMember.email == email)).scalar_one_or_none()
        log = dict(actor=actor, entity="team_member", entity_id=email, context="create-admin")
        if m is None:
            s.add(TeamMember(email=email, name=name, role="admin", active=True))
            s.add(ChangeLog(field="member", old=None, new=f"{name} (admin)", **log))
            done = "created"
        elif m.role == "admin" and m.active:
            return "unchanged"
        else:
            for field, new in (("role", "admin"), ("active", True)):
                old = getattr(m, field)
                if old != new:
                    setattr(m, field, new)
                    s.add(ChangeLog(field=field, old=str(old), new=str(new), **log))
            done = "promoted"
        bump_data_version(s)
    return done


def bootstrap_admin(email: str, *, named: str, url: str | None = None) -> bool:
    """The first sign-in of the person BOOTSTRAP_ADMIN names makes them admin, as long as the
    team has no active admin yet (later sign-ins change nothing, so a demoted bootstrap
    admin stays demoted). True if they were made admin now."""
    email = (email or "").strip().lower()
    if not named or email != named.strip().lower() or active_admins(url) > 0:
        return False
    try:
        create_admin(email, actor=f"bootstrap (BOOTSTRAP_ADMIN={named.strip().lower()})", url=url)
    except IntegrityError:
        # Two first sign-ins at once: the other one created the row.
        return False
    return True
