"""Stored health history: snapshots per date (idempotent) and the risk-trigger log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import delete, select

from db.models import HealthSnapshot, RiskTrigger
from db.session import bump_data_version, session_scope
from services.analytics import Facts, health_model, health_table, live_accounts, today, trigger_table
from services.plays import sync_plays


def snapshot(
    *, url: str | None = None, as_of: date | None = None, src: Facts | None = None, sync_triggers: bool = True
) -> int:
    """Store every live account's health as of a date (replacing that date's snapshot); with
    sync_triggers, also the risk-trigger log and the plays it opens or closes."""
    as_of = as_of or today()
    src = src or Facts(url)
    with session_scope(url) as s:
        n = _store_health(s, src, as_of)
        if sync_triggers:
            _triggers_and_plays(s, src, as_of)
        bump_data_version(s, copy=False)  # health history: nothing the columnar copy holds
    return n


def store_snapshot(session, src: Facts, *, as_of: date):
    """The snapshot, the trigger log and the plays as of a date, in the caller's transaction
    (manage.py notify). Returns what the plays did (services.plays.PlayRun)."""
    _store_health(session, src, as_of)
    run = _triggers_and_plays(session, src, as_of)
    bump_data_version(session, copy=False)  # health history, plays: not in the columnar copy
    return run


def _store_health(s, src: Facts, as_of: date) -> int:
    model = health_model(src)
    h = health_table(src, as_of=as_of, model=model)
    h = h[h["status"] != "churned"]
    rows = [
        {
            "account_id": int(r.account_id),
            "date": as_of,
            "total": float(r.total),
            "milestone": float(r.milestone),
            "adoption": float(r.adoption),
            "engagement": float(r.engagement),
            "value": float(r.value),
            "band": str(r.band),
            "model_version": model.version,
        }
        for r in h.itertuples()
    ]
    s.execute(delete(HealthSnapshot).where(HealthSnapshot.date == as_of))
    if rows:
        s.execute(HealthSnapshot.__table__.insert(), rows)
    return len(rows)


def _triggers_and_plays(s, src: Facts, as_of: date):
    full = health_table(src, as_of=as_of, model=health_model(src))
    fired = trigger_table(src, as_of=as_of, health=full)
    _sync_triggers(s, fired, as_of)
    return sync_plays(
        s, as_of=as_of, fired=fired, accounts=src.accounts(), live={int(a) for a in live_accounts(full)["account_id"]}
    )


def _sync_triggers(session, fired: pd.DataFrame, as_of: date) -> None:
    """Open a trigger the first day it fires; resolve it the first day it no longer does."""
    open_rows = session.execute(select(RiskTrigger).where(RiskTrigger.resolved.is_(None))).scalars().all()
    now = {(int(a), r): row for a, r, row in zip(fired["account_id"], fired["rule"], fired.itertuples(), strict=True)}
    seen = set()
    for t in open_rows:
        key = (t.account_id, t.rule)
        if key in now:
            seen.add(key)
            t.reason = now[key].reason
        elif t.opened <= as_of:
            t.resolved = as_of
    owners = {}
    for key, row in now.items():
        if key in seen:
            continue
        owners.setdefault(row.owner_email, None)
        session.add(RiskTrigger(account_id=key[0], rule=key[1], opened=as_of, reason=row.reason, action=row.action))


def backfill_snapshots(
    *,
    url: str | None = None,
    as_of: date | None = None,
    weeks: int = 26,
    progress: Callable[[float, str], None] | None = None,
    sync_triggers: bool = True,
) -> int:
    """Weekly snapshots for the past `weeks` weeks, each computed point-in-time (the last one
    also syncs the trigger log and the plays, unless sync_triggers is False)."""
    as_of = as_of or today()
    src = Facts(url)
    total = 0
    for i in range(weeks, -1, -1):
        d = as_of - timedelta(weeks=i)
        if progress:
            progress((weeks - i) / (weeks + 1), f"health history {d}")
        total += snapshot(url=url, as_of=d, src=src, sync_triggers=sync_triggers and i == 0)
    return total


def play_history(*, url: str | None = None, as_of: date, weeks_back: int = 2, src: Facts | None = None):
    """The trigger log and the plays as they would be had the health snapshot run weekly for
    the last `weeks_back` weeks and today (the demo's history of plays: some opened weeks ago,
    with tasks now overdue, some auto-resolved since)."""
    from sqlalchemy import update

    from db.models import Notification

    src = src or Facts(url)
    for i in range(weeks_back, -1, -1):
        with session_scope(url) as s:
            _triggers_and_plays(s, src, as_of - timedelta(weeks=i))
            # History, not news: the alerts these plays would have sent are not sent now.
            s.execute(update(Notification).where(Notification.status == "pending").values(status="history"))
            bump_data_version(s, copy=False)  # health history: nothing the columnar copy holds
            s.commit()
