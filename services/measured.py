"""Manual against measured: checklist items bound to a metric whose manual status the
events contradict, for one account (Success plans, Accounts) or a set of accounts
(Portfolio), and accepting the measured value in one click (a checklist save like any
other: permission, version check, change log)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
from sqlmodel import Session

from db import facts as q
from db.models import Account, ChecklistItem
from db.session import get_engine
from metrics import checklist as mc
from services.access import User
from services.analytics import Facts, compact, day_end
from services.plans import CellProblem, ItemChange, SaveResult, ValidationFailed, item_values, save_checklist

ITEM_COLUMNS = ["account_id", "id", "version", "category", "criterion", "target", "actual", "status", "metric"]


def account_facts(conn, *, account_id: int, seats: int | None, as_of: date) -> pd.DataFrame:
    """One account's metric facts (the same numbers the checklist's measured column shows)."""
    f = q.account_metric_facts(conn, account_id=account_id, as_of_end=day_end(as_of).to_pydatetime())
    return pd.DataFrame([{"account_id": account_id, "seats": seats, **{k: f[k] for k in mc.FACTS}}])


def account_disagreements(
    checklist: pd.DataFrame, *, account_id: int, seats: int | None, as_of: date, url: str | None = None
) -> pd.DataFrame:
    """The account's bound checklist items (a checklist frame as the editor shows it) whose
    status contradicts the measurement, with measured, supported_status and reason."""
    if checklist.empty or checklist["metric"].isna().all():
        return mc.disagreements(pd.DataFrame(columns=ITEM_COLUMNS), pd.DataFrame())
    with get_engine(url).connect() as conn:
        facts = account_facts(conn, account_id=account_id, seats=seats, as_of=as_of)
    return mc.disagreements(checklist.assign(account_id=account_id), facts)


def all_facts(conn, *, as_of: date) -> pd.DataFrame:
    """account_metric_facts for every account with events, in three grouped queries (by
    event name on its index, the last 7 days on the ts index, distinct users ever). One
    pass over all accounts is several times faster than the same queries restricted to
    an IN list of thousands of ids."""
    end = day_end(as_of).to_pydatetime()
    if (cols := q.metric_facts_columns(conn, as_of_end=end)) is not None:
        return cols[["account_id", *mc.FACTS]]
    p_end = q._ts_param(conn, end)
    p_w0 = q._ts_param(conn, end - timedelta(days=7))
    role = q._json_field(conn, "properties", "role")
    named = q._read(
        conn,
        "SELECT account_id, "
        f"COUNT(DISTINCT CASE WHEN event = 'training_attended' AND {role} = 'admin' THEN user_id END) AS admins_trained, "
        f"COUNT(DISTINCT CASE WHEN event = 'training_attended' AND {role} = 'analyst' THEN user_id END) AS analysts_trained, "
        "SUM(CASE WHEN event = 'dashboard_created' THEN 1 ELSE 0 END) AS dashboards_created, "
        "SUM(CASE WHEN event = 'report_shared' THEN 1 ELSE 0 END) AS reports_shared "
        "FROM events WHERE event IN ('training_attended', 'dashboard_created', 'report_shared') "
        "AND ts < :end GROUP BY account_id",
        {"end": p_end},
    )
    weekly = q._read(
        conn,
        "SELECT account_id, COUNT(DISTINCT user_id) AS weekly_users FROM events "
        "WHERE ts >= :w0 AND ts < :end AND user_id != '' GROUP BY account_id",
        {"w0": p_w0, "end": p_end},
    )
    ever = q._read(
        conn,
        "SELECT account_id, COUNT(DISTINCT user_id) AS users_ever FROM events "
        "WHERE ts < :end AND user_id != '' GROUP BY account_id",
        {"end": p_end},
    )
    out = ever.merge(weekly, on="account_id", how="outer").merge(named, on="account_id", how="outer")
    out["account_id"] = out["account_id"].astype(int)
    for k in mc.FACTS:
        out[k] = pd.to_numeric(out[k], errors="coerce").fillna(0).astype(int)
    return out[["account_id", *mc.FACTS]]


def read_compact(conn, sql: str, *, chunk: int = 50_000) -> pd.DataFrame:
    """A query's rows as one frame (as db.facts._read gives), read `chunk` rows at a time
    with each chunk's text sharing its strings (services.analytics.compact). Six criteria
    over 600,000 bound items at 100,000 accounts: row tuples and a str per cell for all of
    them at once took about 270 MB, which the process kept after they were freed."""
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql)
        cols = [d[0] for d in cur.description]
        parts = []
        while rows := cur.fetchmany(chunk):
            parts.append(compact(pd.DataFrame.from_records(rows, columns=cols)))
    finally:
        cur.close()
    if len(parts) <= 1:
        return parts[0] if parts else pd.DataFrame.from_records([], columns=cols)
    return compact(pd.concat(parts, ignore_index=True))


def _metric_facts(src: Facts, as_of: date) -> pd.DataFrame:
    """Every account's metric facts and seats, kept per as-of date (events change only with
    an import, which gives a new loader)."""

    def load() -> pd.DataFrame:
        with src.engine.connect() as conn:
            f = all_facts(conn, as_of=as_of)
        acc = src.accounts().set_index("account_id")
        f = pd.DataFrame({"account_id": acc.index}).merge(f, on="account_id", how="left")
        for k in mc.FACTS:
            f[k] = f[k].fillna(0).astype(int)
        f["seats"] = f["account_id"].map(acc["licensed_seats"])
        return f

    return src.cached(("measured_facts", as_of), load)


def _bound_items(src: Facts) -> pd.DataFrame:
    """Every checklist item bound to a metric, kept per checklist version."""

    def load() -> pd.DataFrame:
        with src.engine.connect() as conn:
            return read_compact(
                conn,
                "SELECT account_id, id, version, category, criterion, target, actual, status, metric "
                "FROM checklist_items WHERE metric IS NOT NULL",
            )

    return src.cached(("measured_items", src.plans_version), load)


def _judged(src: Facts, as_of: date) -> pd.DataFrame:
    """Every bound item contradicting its account's measurement (per date and checklist version)."""
    return src.cached(
        ("measured_every", as_of, src.plans_version),
        lambda: judge(_bound_items(src), _metric_facts(src, as_of)),
    )


def judge(items: pd.DataFrame, facts: pd.DataFrame, *, chunk: int = 100_000) -> pd.DataFrame:
    """metrics.checklist.disagreements over the items `chunk` at a time (each item is judged
    on its own account's facts, so the rows and their order are the same), its text sharing
    strings: at 100,000 accounts the 600,000 items at once left about 130 MB behind."""
    if len(items) <= chunk:
        return compact(mc.disagreements(items, facts))
    parts = [compact(mc.disagreements(items.iloc[i : i + chunk], facts)) for i in range(0, len(items), chunk)]
    found = [p for p in parts if len(p)]
    return compact(pd.concat(found, ignore_index=True)) if found else parts[0]


def portfolio_prefetch(src: Facts, as_of: date) -> list:
    """The loads portfolio_disagreements starts with (for Facts.prefetch)."""
    return [lambda: _judged(src, as_of)]


def portfolio_disagreements(src: Facts, *, as_of: date, account_ids: list[int]) -> pd.DataFrame:
    """Bound checklist items contradicting the measurement on these accounts, with the
    account's external id, name and CSM."""
    ids = set(int(a) for a in account_ids)

    def load() -> pd.DataFrame:
        # Each item is judged on its own account's facts: judged once for every account
        # (kept per date and checklist version), a filter only selects rows.
        found = _judged(src, as_of)
        out = found[found["account_id"].isin(ids)].reset_index(drop=True)
        if out.empty:
            out = mc.disagreements(_bound_items(src).iloc[:0], _metric_facts(src, as_of))
        else:
            out = out.copy()
        acc = src.accounts().set_index("account_id")
        out["external_id"] = out["account_id"].map(acc["external_id"])
        out["name"] = out["account_id"].map(acc["name"])
        out["csm_name"] = out["account_id"].map(acc["csm_name"])
        return out

    # Not memoised: a selection of the judged rows kept above (tens of milliseconds at
    # 100,000 accounts), which would otherwise be kept again per set of accounts.
    return load()


def accept_measured(
    session: Session, user: User, *, account_id: int, item_id: int, version: int, as_of: date
) -> SaveResult:
    """Set a bound item's actual to the measured value and its status to what the
    measurement supports. Measured again here (never taken from the page); saved through
    save_checklist, so it is permission-checked, version-checked and change-logged."""
    it = session.get(ChecklistItem, item_id)
    if it is None or it.account_id != account_id or it.metric not in mc.METRICS:
        raise ValidationFailed([CellProblem(item_id, "item", item_id, "not a measured item of this account")])
    acc = session.get(Account, account_id)
    conn = session.connection()
    facts = account_facts(conn, account_id=account_id, seats=acc.licensed_seats if acc else None, as_of=as_of)
    value = mc.measured_value(it.metric, facts.iloc[0].to_dict(), acc.licensed_seats if acc else None)
    if value is None:
        raise ValidationFailed([CellProblem(item_id, "actual", None, "cannot be measured (licensed seats unknown)")])
    verdict = mc.assess(metric=it.metric, status=it.status, target=it.target, value=value)
    values = {"actual": mc.fmt_measured(it.metric, value)}
    if verdict is not None:
        values["status"] = verdict.status
    base = item_values(session, it)
    return save_checklist(
        session,
        user,
        account_id=account_id,
        changes=[ItemChange(item_id, version, values, base)],
        context="checklist accept measured",
    )
