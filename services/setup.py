"""First start and demo data: migrate, defaults, seed the demo portfolio if empty."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy import func, select, text

from db import demo
from db.models import Account, Meta
from db.session import session_scope
from db.settings_store import init_db

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
    """Generate and load a demo portfolio (one transaction) and back-fill health history."""
    from services.health import backfill_snapshots

    init_db(url)
    data = demo.generate(accounts=accounts, seed=seed, as_of=as_of, events=events)
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
        demo.load(s, data, progress=progress)
    if history_weeks > 0:
        backfill_snapshots(url=url, as_of=data.as_of, weeks=history_weeks, progress=progress)
    return data.meta


def ensure_ready(url: str | None = None) -> dict[str, Any]:
    """Migrate, make sure defaults exist, and seed the demo portfolio into an empty database."""
    init_db(url)
    seeded = False
    if account_count(url) == 0:
        seed_demo(url=url)
        seeded = True
    return {"seeded_now": seeded, "demo": demo_info(url)}
