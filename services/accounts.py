"""Read side for one account (Accounts and Success plans pages): everything about it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date

import pandas as pd
from sqlalchemy import select
from sqlmodel import Session

from db import facts as q
from db.models import (
    Account,
    ChangeLog,
    ChecklistItem,
    HealthSnapshot,
    Intervention,
    RiskTrigger,
    SuccessPlan,
    TeamMember,
)
from db.session import get_engine, session_scope
from services.access import User, can_edit_account
from services.analytics import Facts, day_end, explain_account, trigger_table


@dataclass
class AccountView:
    account: Account
    csm: TeamMember | None
    can_edit: bool
    status: str
    plan: SuccessPlan | None
    checklist: pd.DataFrame
    metric_values: dict
    milestones: pd.DataFrame
    health: dict
    history: pd.DataFrame
    triggers: pd.DataFrame
    interventions: pd.DataFrame
    recent: pd.DataFrame
    daily: pd.DataFrame
    changes: pd.DataFrame


def find_account(external_id: str, *, url: str | None = None) -> int | None:
    with session_scope(url) as s:
        return s.execute(select(Account.id).where(Account.external_id == external_id)).scalar_one_or_none()


def checklist_frame(session: Session, account_id: int) -> pd.DataFrame:
    """The checklist as the editor shows it (owner as email)."""
    rows = session.execute(
        select(ChecklistItem, TeamMember.email)
        .join(TeamMember, TeamMember.id == ChecklistItem.owner_id, isouter=True)
        .where(ChecklistItem.account_id == account_id)
        .order_by(ChecklistItem.position, ChecklistItem.id)
    ).all()
    return pd.DataFrame(
        [
            {
                "id": it.id,
                "version": it.version,
                "category": it.category,
                "criterion": it.criterion,
                "target": it.target,
                "actual": it.actual,
                "status": it.status,
                "owner": email,
                "due_date": it.due_date,
                "note": it.note,
                "metric": it.metric,
            }
            for it, email in rows
        ],
        columns=[
            "id",
            "version",
            "category",
            "criterion",
            "target",
            "actual",
            "status",
            "owner",
            "due_date",
            "note",
            "metric",
        ],
    )


METRIC_LABELS = {
    "users_provisioned_pct": ("Users seen / licensed seats", "pct"),
    "admins_trained": ("Admins who attended training", "count"),
    "analysts_trained": ("Analysts who attended training", "count"),
    "weekly_active_users_pct": ("Active users in the last 7 days / seats", "pct"),
    "dashboards_created": ("Dashboards created", "count"),
    "reports_shared": ("Reports shared", "count"),
}


def metric_values(conn, *, account_id: int, seats: int | None, as_of: date) -> dict[str, str]:
    """Event-derived values for checklist items bound to a metric."""
    f = q.account_metric_facts(conn, account_id=account_id, as_of_end=day_end(as_of).to_pydatetime())
    out = {}
    for key in METRIC_LABELS:
        if key == "users_provisioned_pct":
            out[key] = f"{f['users_ever'] / seats:.0%}" if seats else "seats unknown"
        elif key == "weekly_active_users_pct":
            out[key] = f"{f['weekly_users'] / seats:.0%}" if seats else "seats unknown"
        else:
            out[key] = str(f[key])
    return out


def account_view(src: Facts, user: User, *, account_id: int, as_of: date, full: bool = True) -> AccountView:
    """Everything about one account; with full=False only what the Success plans page needs
    (the account, its plan, checklist and measured values), which keeps saves fast."""
    base = _plan_view(src, user, account_id=account_id, as_of=as_of)
    if not full:
        return base
    with session_scope(src.url) as s:
        ivs = pd.DataFrame(
            [
                {
                    "date": i.date,
                    "type": i.type,
                    "note": i.note,
                    "outcome": i.outcome,
                    "rule": i.rule,
                    "by": i.created_by,
                }
                for i in s.execute(
                    select(Intervention)
                    .where(Intervention.account_id == account_id)
                    .order_by(Intervention.date.desc(), Intervention.id.desc())
                ).scalars()
            ],
            columns=["date", "type", "note", "outcome", "rule", "by"],
        )
        hist = pd.DataFrame(
            [
                {
                    "date": h.date,
                    "total": h.total,
                    "milestone": h.milestone,
                    "adoption": h.adoption,
                    "engagement": h.engagement,
                    "value": h.value,
                    "band": h.band,
                    "model_version": h.model_version,
                }
                for h in s.execute(
                    select(HealthSnapshot)
                    .where(HealthSnapshot.account_id == account_id, HealthSnapshot.date <= as_of)
                    .order_by(HealthSnapshot.date)
                ).scalars()
            ],
            columns=["date", "total", "milestone", "adoption", "engagement", "value", "band", "model_version"],
        )
        opened = {
            t.rule: t.opened
            for t in s.execute(
                select(RiskTrigger).where(RiskTrigger.account_id == account_id, RiskTrigger.resolved.is_(None))
            ).scalars()
        }
        changes = pd.DataFrame(
            [
                {"at": c.at, "who": c.actor, "what": c.entity, "field": c.field, "old": c.old, "new": c.new}
                for c in s.execute(
                    select(ChangeLog)
                    .where(ChangeLog.account_id == account_id)
                    .order_by(ChangeLog.at.desc(), ChangeLog.id.desc())
                    .limit(200)
                ).scalars()
            ],
            columns=["at", "who", "what", "field", "old", "new"],
        )
    end = day_end(as_of)
    with get_engine(src.url).connect() as conn:
        recent = q.recent_events(conn, account_id=account_id, limit=30)
        daily = q.daily_activity(
            conn, account_id=account_id, since=(pd.Timestamp(as_of) - pd.Timedelta(days=89)).to_pydatetime()
        )
    ms = src.milestones()
    ms = ms[ms["account_id"] == account_id].copy()
    names = {d["key"]: (d["name"], d["order"]) for d in src.milestone_defs()}
    ms["name"] = ms["milestone_key"].map(lambda k: names.get(k, (k, 99))[0])
    ms["order"] = ms["milestone_key"].map(lambda k: names.get(k, (k, 99))[1])
    ms = ms.sort_values("order")
    health = explain_account(src, account_id=account_id, as_of=as_of) if base.account.contract_start <= as_of else {}
    trig = trigger_table(src, as_of=as_of)
    trig = trig[trig["account_id"] == account_id].copy()
    trig["open_since"] = trig["rule"].map(opened)
    return dataclasses.replace(
        base,
        milestones=ms,
        health=health,
        history=hist,
        triggers=trig,
        interventions=ivs,
        recent=recent[recent["ts"] < end],
        daily=daily[daily["day"] < end],
        changes=changes,
    )


def _status(src: Facts, account_id: int, as_of: date) -> str:
    churn = src.churn_dates().get(account_id)
    done = src.completed("onboarding_concluded").get(account_id)
    end = day_end(as_of)
    if churn is not None and churn < end:
        return "churned"
    return "active" if done is not None and done < end else "onboarding"


def _plan_view(src: Facts, user: User, *, account_id: int, as_of: date) -> AccountView:
    with session_scope(src.url) as s:
        acc = s.get(Account, account_id)
        if acc is None:
            raise KeyError(account_id)
        csm = s.get(TeamMember, acc.csm_id) if acc.csm_id else None
        plan = s.execute(select(SuccessPlan).where(SuccessPlan.account_id == account_id)).scalar_one_or_none()
        cl = checklist_frame(s, account_id)
        can_edit = can_edit_account(user, acc)
    with get_engine(src.url).connect() as conn:
        mv = metric_values(conn, account_id=account_id, seats=acc.licensed_seats, as_of=as_of)
    empty = pd.DataFrame()
    return AccountView(
        acc,
        csm,
        can_edit,
        _status(src, account_id, as_of),
        plan,
        cl,
        mv,
        empty,
        {},
        empty,
        empty,
        empty,
        empty,
        empty,
        empty,
    )


def history_changes(hist: pd.DataFrame) -> pd.DataFrame:
    """What changed between consecutive snapshots: points per component."""
    if len(hist) < 2:
        return pd.DataFrame()
    h = hist.sort_values("date").reset_index(drop=True)
    rows = []
    for i in range(1, len(h)):
        a, b = h.iloc[i - 1], h.iloc[i]
        diffs = {c: b[c] - a[c] for c in ("milestone", "adoption", "engagement", "value")}
        moved = [f"{c} {d:+.1f}" for c, d in diffs.items() if abs(d) >= 0.05]
        if not moved and a["band"] == b["band"]:
            continue
        rows.append(
            {
                "from": a["date"],
                "to": b["date"],
                "score": f"{a['total']:.1f} → {b['total']:.1f}",
                "change": b["total"] - a["total"],
                "band": a["band"] if a["band"] == b["band"] else f"{a['band']} → {b['band']}",
                "what moved": ", ".join(moved) or "no component",
                "model": f"v{int(a['model_version'])}"
                if a["model_version"] == b["model_version"]
                else f"v{int(a['model_version'])} → v{int(b['model_version'])} (weights changed)",
            }
        )
    return pd.DataFrame(rows).iloc[::-1].reset_index(drop=True)


def account_list(src: Facts, *, as_of: date, filters) -> pd.DataFrame:
    """One row per account for the list: health, band, overdue milestones, triggers, checklist."""
    from services.analytics import health_table

    h = health_table(src, as_of=as_of, filters=filters)
    if h.empty:
        return h
    trig = trigger_table(src, as_of=as_of, filters=filters, health=h)
    tcount = trig.groupby("account_id").agg(triggers=("rule", "size"), top_trigger=("reason", "first"))
    ms = src.milestones()
    end = day_end(as_of)
    od = (
        ms[(ms["due_date"] < end) & ~(ms["completed_at"].notna() & (ms["completed_at"] < end))]
        .groupby("account_id")
        .size()
    )
    cl = src.checklist_overview().set_index("account_id")
    out = h[
        [
            "account_id",
            "external_id",
            "name",
            "segment",
            "csm_name",
            "csm_email",
            "status",
            "total",
            "band",
            "too_early",
            "at_risk",
            "contract_start",
        ]
    ].copy()
    out["overdue_milestones"] = out["account_id"].map(od).fillna(0).astype(int)
    out = out.merge(tcount, left_on="account_id", right_index=True, how="left")
    out["triggers"] = out["triggers"].fillna(0).astype(int)
    out["checklist_done"] = out["account_id"].map(cl["done"]).fillna(0).astype(int)
    out["checklist_items"] = out["account_id"].map(cl["items"]).fillna(0).astype(int)
    out["checklist_blocked"] = out["account_id"].map(cl["blocked"]).fillna(0).astype(int)
    return out.sort_values(["total"]).reset_index(drop=True)
