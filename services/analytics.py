"""Every analysis the dashboard shows, computed once: the pages and `manage.py report` call
these functions with the same arguments and get the same numbers.

A `Facts` object loads per-account facts from the database (the pages use a cached
subclass, components/cache.py); the functions here filter accounts, assemble the facts
and call the pure metrics in metrics/.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from db import facts as q
from db.defaults import COMPLETION_MILESTONE, FIRST_VALUE_MILESTONE
from db.session import get_engine
from db.settings_store import get_setting, milestone_definitions
from metrics import backtest as bt
from metrics import cohorts as coh
from metrics import funnel as fn
from metrics import health as hl
from metrics import retention as rt
from metrics import signals as sg
from metrics import time_to_value as ttv
from metrics import triggers as tr
from metrics.days import by_day, day_n_end, end_of, end_offset, first_days_end, observed_through

ATTRIBUTES = ("segment", "industry", "plan", "channel", "region", "csm_name", "cohort_month", "cohort_quarter")


def today() -> date:
    return datetime.now(UTC).date()


def day_end(d: date) -> pd.Timestamp:
    """Exclusive end of a day (naive UTC)."""
    return end_of(d)


def _freeze(v: Any) -> Any:
    """A hashable stand-in for an argument (lists and dicts become tuples)."""
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, list | tuple | set):
        return tuple(_freeze(x) for x in v)
    return v


def memoized(*, plans: bool = False) -> Callable:
    """Keep an analysis' result in the loader's memo, keyed by its arguments (and by the
    plans version when it reads checklists or plans): the same view asked for by many
    sessions, or again after a page change, is computed once."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(src: Facts, **kwargs: Any) -> Any:
            key = (fn.__name__, _freeze(kwargs), src.plans_version if plans else None)
            return src.cached(key, lambda: fn(src, **kwargs), result=True)

        return inner

    return wrap


# ----------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Filters:
    """Account filters shared by every page (and the CLI's --segment etc.)."""

    start_from: date | None = None  # contract start on or after
    start_to: date | None = None  # contract start on or before
    segment: tuple[str, ...] = ()
    industry: tuple[str, ...] = ()
    plan: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    csm: tuple[str, ...] = ()  # CSM emails
    region: tuple[str, ...] = ()

    def apply(self, accounts: pd.DataFrame) -> pd.DataFrame:
        a = accounts
        if self.start_from:
            a = a[a["contract_start"] >= pd.Timestamp(self.start_from)]
        if self.start_to:
            a = a[a["contract_start"] <= pd.Timestamp(self.start_to)]
        for name, col in (
            ("segment", "segment"),
            ("industry", "industry"),
            ("plan", "plan"),
            ("channel", "channel"),
            ("csm", "csm_email"),
            ("region", "region"),
        ):
            vals = getattr(self, name)
            if vals:
                a = a[a[col].isin(vals)]
        return a

    def is_empty(self) -> bool:
        return all(not getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        parts = []
        if self.start_from or self.start_to:
            parts.append(f"contract start {self.start_from or '…'} to {self.start_to or '…'}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple) and v:
                parts.append(f"{f.name}: {', '.join(v)}")
        return "; ".join(parts) or "all accounts"


# ----------------------------------------------------------------------------- memory


def _shared_strings(values: np.ndarray) -> np.ndarray | None:
    """The same text column with equal strings as one object (None: nothing to gain).

    A database driver returns a new str per row: 10 milestone keys over a million rows are
    a million objects. Here each distinct string is kept once and the column points at it:
    same dtype (object), same values, same missing values (None stays None, NaN stays NaN)."""
    if len(values) < 64 or pd.api.types.infer_dtype(values, skipna=True) != "string":
        return None
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) > len(values) // 2:
        return None
    out = np.asarray(uniques, dtype=object).take(codes)
    missing = codes < 0
    if missing.any():
        out[missing] = values[missing]
    return out


def compact(df: pd.DataFrame) -> pd.DataFrame:
    """A frame with its repetitive text columns sharing their strings (in place, returned).
    Nothing else changes: dtypes, values, index and column order are the same."""
    if not isinstance(df, pd.DataFrame) or df.empty:
        return df
    for col in [c for c, t in df.dtypes.items() if pd.api.types.is_object_dtype(t)]:
        shared = _shared_strings(df[col].to_numpy())
        if shared is not None:
            df[col] = shared
    return df


def nbytes(value: Any) -> int:
    """What a memo entry holds, roughly: a frame's columns and index (text columns at one
    pointer a row, their strings are mostly shared), summed over containers."""
    if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
        try:
            n = value.memory_usage(index=True, deep=False)
        except TypeError:  # an Index
            n = value.memory_usage(deep=False)
        return int(n.sum()) if isinstance(n, pd.Series) else int(n)
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(nbytes(v) for v in value[:1000]) if len(value) else 0
    if hasattr(value, "__dataclass_fields__"):
        return sum(nbytes(getattr(value, f, None)) for f in value.__dataclass_fields__)
    return 0


# Memo budget (bytes) per loader: what the dashboard may keep between runs. At 100,000
# accounts the facts every page reads take about 150 MB; the rest is results, least
# recently used first out. ANALYTICS_MEMO_MB overrides it.
MEMO_BYTES = 400 * 2**20


# ----------------------------------------------------------------------------- facts


def _cohort_labels(start: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """ "2026-03" and "2026-Q1" for each contract start, formatted once per distinct month
    (strftime on every row was a tenth of a report process). A missing start: NaN."""
    codes, months = pd.factorize(start.to_numpy().astype("datetime64[M]"))
    month = np.array([str(m)[:7] for m in months] + [np.nan], dtype=object)
    quarter = np.array([f"{str(m)[:4]}-Q{(int(str(m)[5:7]) - 1) // 3 + 1}" for m in months] + [np.nan], dtype=object)
    return month[codes], quarter[codes]


# Stored snapshots held in memory for filtered trends, 15 bytes each: 100,000 accounts'
# 26 weekly snapshots are 2.6M rows (39 MB). Beyond this (daily snapshots of a large
# portfolio), a filtered trend is aggregated in SQL for each selection instead.
SNAPSHOT_ROWS_KEPT = 3_000_000


class Facts:
    """Loads per-account facts for one database and keeps them (and derived results) in a
    bounded in-process memo. One instance per data version: the pages share one across
    sessions (components/cache.py); the CLI makes a fresh one per command.

    Callers must not modify the frames they get back.
    """

    def __init__(self, url: str | None = None, *, memo_size: int = 256, memo_bytes: int | None = None) -> None:
        self.url = url
        self.engine = get_engine(url)
        self.memo_size = memo_size
        if memo_bytes is None:
            memo_bytes = int(float(os.environ.get("ANALYTICS_MEMO_MB", MEMO_BYTES / 2**20)) * 2**20)
        self.memo_bytes = memo_bytes
        self._sizes: dict = {}
        self._bytes = 0
        self.results_enabled = True
        # Version of checklists/plans: facts that depend on them are keyed by it.
        self.plans_version = 0
        self._memo: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict = {}

    def cached(self, key: tuple, fn: Callable[[], Any], *, result: bool = False) -> Any:
        """Memoise fn() under key; concurrent callers of the same key wait for one computation."""
        if result and not self.results_enabled:
            return fn()
        key = ("result" if result else "fact", *key)
        while True:
            with self._lock:
                if key in self._memo:
                    self._memo.move_to_end(key)
                    return self._memo[key]
                event = self._inflight.get(key)
                owner = event is None
                if owner:
                    event = self._inflight[key] = threading.Event()
            if not owner:
                event.wait()
                continue
            try:
                value = fn()
                self._keep(key, value)
                return value
            finally:
                with self._lock:
                    self._inflight.pop(key, None)
                event.set()

    def _keep(self, key: tuple, value: Any) -> None:
        """Store one computed entry (the full key), bounded by entries and by bytes, least
        recently used first; the entry just made stays (its caller holds it anyway)."""
        size = nbytes(value)
        with self._lock:
            self._memo[key] = value
            self._sizes[key] = size
            self._bytes += size
            while len(self._memo) > 1 and (len(self._memo) > self.memo_size or self._bytes > self.memo_bytes):
                self._forget(next(iter(self._memo)))

    def cached_many(self, keys: list[tuple], fn: Callable[[list[tuple]], list[Any]]) -> None:
        """Memoise several facts computed together: fn(the keys not held or being computed)
        returns their values in that order. A caller asking for one of them meanwhile (cached)
        waits for this computation instead of starting its own."""
        full = [("fact", *k) for k in keys]
        event = threading.Event()
        with self._lock:
            mine = [k for k in full if k not in self._memo and k not in self._inflight]
            for k in mine:
                self._inflight[k] = event
        try:
            if mine:
                for k, value in zip(mine, fn([k[1:] for k in mine]), strict=True):
                    self._keep(k, value)
        finally:
            with self._lock:
                for k in mine:
                    self._inflight.pop(k, None)
            event.set()

    def peek(self, key: tuple, *, result: bool = False) -> Any:
        """What the memo holds under key, or None (nothing is computed)."""
        with self._lock:
            return self._memo.get(("result" if result else "fact", *key))

    def _forget(self, key: tuple) -> None:
        """Drop one memo entry (under the lock)."""
        del self._memo[key]
        self._bytes -= self._sizes.pop(key, 0)

    @property
    def memo_nbytes(self) -> int:
        """What the memo holds now (nbytes of its entries)."""
        return self._bytes

    def prefetch(self, *loads: Callable[[], Any]) -> threading.Thread:
        """Run these loaders in a background thread, in order, while the caller computes:
        DuckDB and SQLite run their queries without the GIL, so reading facts overlaps the
        pandas work. A caller asking for the same fact meanwhile waits for this load
        (`cached`) instead of starting a second one; a load that fails is left to the
        caller, who then loads it again and sees the error."""

        def run() -> None:
            for load in loads:
                with contextlib.suppress(Exception):  # the caller's own load raises it
                    load()

        t = threading.Thread(target=run, name="facts-prefetch", daemon=True)
        t.start()
        return t

    def clear_results(self) -> None:
        """Forget derived results, keep the loaded facts (for timing the metrics alone)."""
        with self._lock:
            for k in [k for k in self._memo if k[0] == "result"]:
                self._forget(k)

    def _q(self, func, **kwargs):
        with self.engine.connect() as conn:
            out = func(conn, **kwargs)
        return compact(out) if isinstance(out, pd.DataFrame) else out

    def filter_options(self) -> dict[str, list]:
        """The values the sidebar filters offer."""

        def load() -> dict[str, list]:
            a = self.accounts()
            return {
                "segment": a["segment"].dropna().unique().tolist(),
                "industry": sorted(a["industry"].dropna().unique().tolist()),
                "plan": sorted(a["plan"].dropna().unique().tolist()),
                "channel": sorted(a["channel"].dropna().unique().tolist()),
                "csm": sorted(a["csm_email"].dropna().unique().tolist()),
                "region": sorted(a["region"].dropna().unique().tolist()),
                "csm_names": dict(zip(a["csm_email"], a["csm_name"], strict=False)),
                "start_range": (a["contract_start"].min(), a["contract_start"].max()),
            }

        return self.cached(("filter_options",), load)

    def accounts(self) -> pd.DataFrame:
        def load() -> pd.DataFrame:
            a = self._q(q.accounts)
            a["cohort_month"], a["cohort_quarter"] = _cohort_labels(a["contract_start"])
            return compact(a)

        return self.cached(("accounts",), load)

    def milestones(self) -> pd.DataFrame:
        return self.cached(("milestones",), lambda: self._q(q.milestones))

    def outcomes(self) -> pd.DataFrame:
        return self.cached(("outcomes",), lambda: self._q(q.outcomes))

    def plans(self) -> pd.DataFrame:
        return self.cached(("plans", self.plans_version), lambda: self._q(q.plans))

    def milestone_defs(self) -> list[dict]:
        return self.cached(("milestone_defs",), lambda: self._q(milestone_definitions))

    def setting(self, key: str) -> tuple[Any, int]:
        def load() -> tuple[Any, int]:
            st = self._q(get_setting, key=key)  # a Core read: no ORM session
            return st.value, st.version

        return self.cached(("setting", key), load)

    def completed(self, key: str) -> pd.Series:
        """When each account completed a milestone (account_id -> timestamp)."""

        def load() -> pd.Series:
            ms = self.milestones()
            return ms[(ms["milestone_key"] == key) & ms["completed_at"].notna()].set_index("account_id")["completed_at"]

        return self.cached(("completed", key), load)

    def churn_dates(self) -> pd.Series:
        """First churn date per account."""

        def load() -> pd.Series:
            o = self.outcomes()
            return o[o["type"] == "churned"].groupby("account_id")["date"].min()

        return self.cached(("churn_dates",), load)

    def checklist_value(self, as_of: date) -> pd.DataFrame:
        return self.cached(
            ("checklist_value", as_of, self.plans_version),
            lambda: self._q(q.checklist_value, as_of_end=day_end(as_of).to_pydatetime()),
        )

    def checklist_values(self, dates: list[date]) -> None:
        """Load `checklist_value` for these dates in one scan of the checklist (what a
        Portfolio run reads at three dates)."""

        def load(keys: list[tuple]) -> list[pd.DataFrame]:
            df = self._q(q.checklist_values, ends=[day_end(k[1]).to_pydatetime() for k in keys])
            return [
                compact(df[["account_id", "value_items", f"value_done_{i}"]].rename(columns={f"value_done_{i}": "value_done"}))
                for i in range(len(keys))
            ]

        self.cached_many([("checklist_value", d, self.plans_version) for d in dict.fromkeys(dates)], load)

    def checklist_overview(self) -> pd.DataFrame:
        return self.cached(("checklist_overview", self.plans_version), lambda: self._q(q.checklist_overview))

    def activity(self, as_of: date, users_days: int, active_days_window: int) -> pd.DataFrame:
        return self.cached(
            ("activity", as_of, users_days, active_days_window),
            lambda: self._q(
                q.activity,
                as_of_end=day_end(as_of).to_pydatetime(),
                users_days=users_days,
                active_days_window=active_days_window,
            ),
        )

    def last_events(self, as_of: date, account_ids: tuple[int, ...]) -> pd.DataFrame:
        return self.cached(
            ("last_events", as_of, hash(account_ids)),
            lambda: self._q(q.last_events, account_ids=list(account_ids), as_of_end=day_end(as_of).to_pydatetime()),
        )

    def activity_anchored(self, offset_days: int, users_days: int, active_days_window: int) -> pd.DataFrame:
        """Activity as of the end of each account's day `offset_days`."""
        return self.cached(
            ("activity_anchored", offset_days, users_days, active_days_window),
            lambda: self._q(
                q.activity_anchored,
                end_offset_days=int(end_offset(offset_days)),
                users_days=users_days,
                active_days_window=active_days_window,
            ),
        )

    def checklist_value_anchored(self, offset_days: int) -> pd.DataFrame:
        """Value Realization checklist as of the end of each account's day `offset_days`."""
        return self.cached(
            ("checklist_value_anchored", offset_days, self.plans_version),
            lambda: self._q(q.checklist_value_anchored, end_offset_days=int(end_offset(offset_days))),
        )

    def step_occurrences(
        self, names: tuple[str, ...], milestone_keys: tuple[str, ...], strict: bool, prop: str | None = None
    ) -> pd.DataFrame:
        return self.cached(
            ("step_occ", names, milestone_keys, strict, prop),
            lambda: self._q(
                q.step_occurrences, names=list(names), milestone_keys=list(milestone_keys), strict=strict, prop=prop
            ),
        )

    def event_property_keys(self) -> list[str]:
        return self.cached(("event_property_keys",), lambda: self._q(q.event_property_keys))

    def event_names(self) -> pd.DataFrame:
        return self.cached(("event_names",), lambda: self._q(q.event_names))

    def early_event_counts(self, days: int) -> pd.DataFrame:
        return self.cached(("early", days), lambda: self._q(q.early_event_counts, days=days))

    def event_periods(self, event: str, start: datetime | None, end: datetime, first_ever: bool) -> pd.DataFrame:
        return self.cached(
            ("event_periods", event, start, end, first_ever),
            lambda: self._q(q.event_periods, event=event, start=start, end=end, first_ever=first_ever),
        )

    def snapshot_rows(self, since: date, until: date) -> pd.DataFrame | None:
        return self.cached(
            ("snapshot_rows", since, until),
            lambda: self._q(q.snapshot_rows, since=since, until=until, limit=SNAPSHOT_ROWS_KEPT),
        )

    def snapshot_trend(self, since: date, until: date, account_ids: tuple[int, ...] | None) -> pd.DataFrame:
        """Per snapshot date and band: accounts and summed score, of these accounts (None:
        all). A selection of accounts is aggregated from the window's rows held in memory
        (one read for every filter) rather than by a query per selection."""
        if account_ids is not None:
            key = ("snapshot_trend", since, until, hash(account_ids))

            def select() -> pd.DataFrame:
                rows = self.snapshot_rows(since, until)
                if rows is None:  # too many to keep: one query for this selection
                    return self._q(q.snapshot_trend, since=since, until=until, account_ids=list(account_ids))
                part = rows[rows["account_id"].isin(account_ids)]
                out = (
                    part.groupby(["date", "band"], observed=True, sort=False)
                    .agg(accounts=("total", "size"), total=("total", "sum"))
                    .reset_index()
                )
                return out.assign(
                    date=out["date"].astype(rows["date"].cat.categories.dtype),
                    band=out["band"].astype(object),
                    accounts=out["accounts"].astype("int64"),
                )

            return self.cached(key, select)
        return self.cached(
            ("snapshot_trend", since, until, None if account_ids is None else hash(account_ids)),
            lambda: self._q(
                q.snapshot_trend,
                since=since,
                until=until,
                account_ids=None if account_ids is None else list(account_ids),
            ),
        )


# ----------------------------------------------------------------------------- helpers


def health_model(src: Facts) -> hl.HealthModel:
    value, version = src.setting("health_model")
    return hl.HealthModel.from_settings(value, version)


def _accounts(src: Facts, filters: Filters | None, as_of: date | None = None) -> pd.DataFrame:
    """The filtered accounts (shared: callers must not modify it; the metrics copy)."""

    def load() -> pd.DataFrame:
        a = src.accounts()
        if filters:
            a = filters.apply(a)
        if as_of is not None:
            started = (a["contract_start"] < day_end(as_of)).to_numpy()
            if not started.all():  # every account started: the same frame, not a copy of it
                a = a[started]
        return a

    return src.cached(("accounts_filtered", filters, as_of), load)


def _targets(src: Facts, key: str) -> dict[str, int]:
    for d in src.milestone_defs():
        if d["key"] == key:
            return {k: int(v) for k, v in d["target_days"].items()}
    return {}


LIVE_STATUSES = ("onboarding", "active")


def live_accounts(h: pd.DataFrame) -> pd.DataFrame:
    """The live accounts of a health table: started by the as-of date and not churned (the
    set Portfolio and the Accounts list count by default)."""
    return h[h["status"].isin(LIVE_STATUSES)]


def status_frame(src: Facts, accounts: pd.DataFrame, as_of: date) -> pd.Series:
    """Lifecycle status as of a date: churned, onboarding or active."""
    end = day_end(as_of)
    churn = accounts["account_id"].map(src.churn_dates())
    done = accounts["account_id"].map(src.completed(COMPLETION_MILESTONE))
    status = np.where(
        churn.notna() & (churn < end), "churned", np.where(done.notna() & (done < end), "active", "onboarding")
    )
    return pd.Series(status, index=accounts.index)


# ----------------------------------------------------------------------------- health


def health_facts(src: Facts, accounts: pd.DataFrame, *, as_of: date, model: hl.HealthModel) -> pd.DataFrame:
    """The facts the health score needs, as of a date, one row per account."""
    end = day_end(as_of)
    ids = accounts["account_id"]
    value_keys = {d["key"] for d in src.milestone_defs() if d["is_value"]}
    ms = src.milestones()
    ms = ms[ms["account_id"].isin(ids)]
    mf = hl.milestone_facts(ms, pd.Series(end, index=ids.to_numpy()), value_keys)
    act = src.activity(as_of, model.adoption_window_days, model.engagement_window_days)
    if model.adoption_window_days != model.engagement_window_days:
        act2 = src.activity(as_of, model.engagement_window_days, model.engagement_window_days)
        act = act.drop(columns="active_days").merge(act2[["account_id", "active_days"]], on="account_id", how="outer")
    cv = src.checklist_value(as_of)
    # As left merges on account_id would give (one row per account, in accounts' order),
    # by position and by index lookups: mf has the accounts' rows in their order.
    f = accounts[["account_id", "licensed_seats"]].reset_index(drop=True)
    for c in mf.columns.drop("account_id"):
        f[c] = mf[c].to_numpy()
    for right in (act, cv):
        r = right.set_index("account_id")
        for c in r.columns:
            f[c] = r[c].reindex(f["account_id"]).to_numpy()
    for c in ("active_users", "active_days", "weekly_users", "value_items", "value_done"):
        f[c] = pd.to_numeric(f[c], errors="coerce").fillna(0).astype(int)
    return f


def health_table(
    src: Facts, *, as_of: date, filters: Filters | None = None, model: hl.HealthModel | None = None
) -> pd.DataFrame:
    """Health of every account (that had started by as_of): points, total, band, status, facts."""
    model = model or health_model(src)

    def key(f: Filters | None) -> tuple:
        return (
            "health",
            as_of,
            f,
            src.plans_version,
            model.version,
            tuple(sorted(model.weights.items())),
            tuple(sorted(model.bands.items())),
        )

    def compute() -> pd.DataFrame:
        # An account's health does not depend on the filters (every step is per account):
        # with every account's table at hand, a filter selects its rows (the same frame the
        # filtered computation gives, in the same order; tests/pages/test_memo.py).
        cut = _cut_from_every_account(src, key, filters, as_of)
        return cut if cut is not None else _health_table(src, as_of=as_of, filters=filters, model=model)

    return src.cached(key(filters), compute, result=True)


def _health_table(src: Facts, *, as_of: date, filters: Filters | None, model: hl.HealthModel) -> pd.DataFrame:
    # An empty selection runs the same steps: its (empty) table has every column.
    a = _accounts(src, filters, as_of)
    res = hl.compute(health_facts(src, a, as_of=as_of, model=model), model)
    res = a[["account_id", "external_id", "name", "segment", "csm_name", "csm_email", "contract_start"]].merge(
        res, on="account_id"
    )
    res["status"] = status_frame(src, a, as_of).to_numpy()
    res["age_days"] = (day_end(as_of) - res["contract_start"]).dt.days
    res["too_early"] = hl.too_early_to_score(res["age_days"], res["status"], model.new_account_days)
    res["at_risk"] = hl.at_risk(res["band"], res["status"], res["too_early"])
    res["model_version"] = model.version
    return compact(res)


def explain_account(src: Facts, *, account_id: int, as_of: date) -> dict:
    """One account's health explained (components, facts, next action)."""
    model = health_model(src)
    a = src.accounts()
    a = a[a["account_id"] == account_id]
    if a.empty:
        raise KeyError(account_id)
    res = hl.compute(health_facts(src, a, as_of=as_of, model=model), model)
    names = {d["key"]: d["name"] for d in src.milestone_defs()}
    ms = src.milestones()
    row = res.iloc[0].to_dict()
    row["overdue_keys"] = hl.overdue_keys(ms[ms["account_id"] == account_id], day_end(as_of))
    out = hl.explain(row, model, names)
    age = (day_end(as_of) - a["contract_start"]).dt.days
    out["too_early"] = bool(hl.too_early_to_score(age, status_frame(src, a, as_of), model.new_account_days).iloc[0])
    out["new_account_days"] = model.new_account_days
    return out


# ----------------------------------------------------------------------------- triggers


TRIGGER_COLUMNS = [
    "account_id",
    "external_id",
    "name",
    "rule",
    "trigger",
    "reason",
    "intervention",
    "action",
    "owner",
    "owner_email",
    "health",
    "band",
    "days_overdue",
    "firing_days",
]


def trigger_table(
    src: Facts,
    *,
    as_of: date,
    filters: Filters | None = None,
    health: pd.DataFrame | None = None,
    health_at: Callable[[date], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Fired risk triggers as of a date, with account, owner, reason and intervention.
    `health`: the health table at as_of for these filters, if the caller has it;
    `health_at`: the caller's health tables by date (shared with the rest of its run).
    Memoised like the health table; callers must not modify the frame."""
    def key(f: Filters | None) -> tuple:
        return ("triggers", as_of, f, src.plans_version)

    def compute() -> pd.DataFrame:
        # Every rule judges one account at a time (metrics/triggers.py).
        cut = _cut_from_every_account(src, key, filters, as_of)
        if cut is not None:
            return cut
        return _trigger_table(src, as_of=as_of, filters=filters, health=health, health_at=health_at)

    return src.cached(key(filters), compute, result=True)


def _cut_from_every_account(
    src: Facts, key: Callable[[Filters | None], tuple], filters: Filters | None, as_of: date
) -> pd.DataFrame | None:
    """A per-account result for these filters as the selection of every account's result
    the memo holds under key(None) or key(Filters()) (the same rows, in the same order, as
    computing it for the filtered accounts); None if there are no filters or it is not held."""
    if filters is None or filters.is_empty():
        return None
    full = src.peek(key(None), result=True)
    if full is None:
        full = src.peek(key(Filters()), result=True)
    if full is None:
        return None
    ids = _accounts(src, filters, as_of)["account_id"]
    return full[full["account_id"].isin(ids)].reset_index(drop=True)


def _health_once(src: Facts, filters: Filters | None) -> Callable[[date], pd.DataFrame]:
    """Health tables by date for one run: each date computed once, whatever the memo keeps."""
    model = health_model(src)
    got: dict[date, pd.DataFrame] = {}

    def at(when: date) -> pd.DataFrame:
        if when not in got:
            got[when] = health_table(src, as_of=when, filters=filters, model=model)
        return got[when]

    return at


def _trigger_table(
    src: Facts,
    *,
    as_of: date,
    filters: Filters | None,
    health: pd.DataFrame | None,
    health_at: Callable[[date], pd.DataFrame] | None,
) -> pd.DataFrame:
    rules, _ = src.setting("risk_rules")
    model = health_model(src)
    health_at = health_at or _health_once(src, filters)
    h = health if health is not None else health_at(as_of)
    if h.empty:
        return pd.DataFrame(columns=TRIGGER_COLUMNS)
    days = int(rules.get("health_drop", {}).get("days", 14))
    before = health_at(as_of - timedelta(days=days))
    a = _accounts(src, filters, as_of)
    fv_targets = _targets(src, FIRST_VALUE_MILESTONE)
    plans = src.plans().set_index("account_id")["champion"]
    acc = h[["account_id", "total", "status", "age_days", "active_days", "adoption_share", "licensed_seats"]].copy()
    acc = acc.merge(a[["account_id", "segment"]], on="account_id")
    acc["churned"] = acc["status"] == "churned"
    acc["onboarding_done"] = acc["status"] == "active"
    # Last event: from the activity window; for accounts quiet in the whole window, one
    # index seek each finds how long they have been quiet.
    recent = src.activity(as_of, model.adoption_window_days, model.engagement_window_days).set_index("account_id")[
        "last_event"
    ]
    acc["last_event"] = acc["account_id"].map(recent)
    if acc["last_event"].isna().any():
        # Looked up for every quiet account at once (not per filter), so it is cached.
        every = src.accounts()
        every = every[every["contract_start"] < day_end(as_of)]
        quiet = tuple(sorted(int(x) for x in every.loc[~every["account_id"].isin(recent.index), "account_id"]))
        older = src.last_events(as_of, quiet).set_index("account_id")["last_event"]
        acc["last_event"] = acc["last_event"].fillna(acc["account_id"].map(older))
    acc["total_before"] = acc["account_id"].map(before.set_index("account_id")["total"]) if len(before) else np.nan
    acc["champion"] = acc["account_id"].map(plans)
    acc["ttfv_target_days"] = acc["segment"].map(fv_targets).fillna(30)
    ms = src.milestones()
    names = {d["key"]: d["name"] for d in src.milestone_defs()}
    fired = tr.evaluate(
        acc, ms[ms["account_id"].isin(acc["account_id"])], rules=rules, as_of_end=day_end(as_of), milestone_names=names
    )
    info = h.set_index("account_id")
    fired["external_id"] = fired["account_id"].map(info["external_id"])
    fired["name"] = fired["account_id"].map(info["name"])
    fired["owner"] = fired["account_id"].map(info["csm_name"])
    fired["owner_email"] = fired["account_id"].map(info["csm_email"])
    fired["health"] = fired["account_id"].map(info["total"])
    fired["band"] = fired["account_id"].map(info["band"])
    return compact(fired[TRIGGER_COLUMNS].copy())


# ----------------------------------------------------------------------------- funnel


@memoized(plans=False)
def funnel_report(
    src: Facts,
    *,
    steps: list[str],
    mode: str = "ordered",
    window: str | int | None = "14d",
    entry_from: date | None = None,
    entry_to: date | None = None,
    by: str | None = None,
    filters: Filters | None = None,
    as_of: date | None = None,
    exclude: list[str] | None = None,
    attribution: str | None = None,
) -> fn.FunnelResult:
    """A funnel over events and `milestone:<key>` steps for the filtered accounts.

    `by`: an account attribute or `prop:NAME` (an event property, valued per `attribution`:
    first, last or step:N); `exclude`: exclusion steps as EVENT:FROM:TO."""
    prop = None
    if by and by.startswith("prop:"):
        prop = by.split(":", 1)[1].strip()
        if not prop or '"' in prop or "\\" in prop:
            raise ValueError(f"cannot break down by {by!r}: name an event property, e.g. prop:source")
    elif by and by not in ATTRIBUTES:
        raise ValueError(f"cannot break down by {by!r}; use one of {', '.join(ATTRIBUTES)} or prop:<event property>")
    if attribution and not prop:
        raise ValueError(
            "attribution applies to an event-property breakdown (--by prop:NAME); an account attribute has one value"
        )
    spec = fn.FunnelSpec(
        steps=tuple(steps),
        mode=mode,
        window_seconds=fn.parse_window(window),
        entry_from=datetime.combine(entry_from, datetime.min.time()) if entry_from else None,
        entry_to=datetime.combine(entry_to, datetime.max.time()) if entry_to else None,
        as_of=day_end(as_of).to_pydatetime() if as_of else None,
        exclusions=tuple(fn.Exclusion.parse(x) for x in exclude or ()),
        attribution=attribution or "first",
    )
    spec.validate()
    wanted = [*steps, *(x.event for x in spec.exclusions)]
    names = tuple(sorted({s for s in wanted if not s.startswith("milestone:")}))
    keys = tuple(sorted({s.split(":", 1)[1] for s in wanted if s.startswith("milestone:")}))
    known = {d["key"] for d in src.milestone_defs()}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ValueError(f"unknown milestone {', '.join(unknown)}; defined: {', '.join(sorted(known))}")
    occ = src.step_occurrences(names, keys, mode == "strict", prop)
    a = _accounts(src, filters)
    occ = occ[occ["account_id"].isin(a["account_id"])]
    if as_of is not None:
        occ = occ[occ["ts"] < day_end(as_of)]
    res = fn.funnel(occ, spec, attributes=a, group_by=by)
    # Accounts (of the filtered ones, up to as_of) that ever did each step, in or out of the funnel.
    did = occ.groupby("name", sort=False)["account_id"].nunique()
    res.meta["ever_did"] = {s: int(did.get(s, 0)) for s in steps}
    info = a.set_index("account_id")
    res.accounts.insert(1, "external_id", res.accounts["account_id"].map(info["external_id"]))
    res.accounts.insert(2, "name", res.accounts["account_id"].map(info["name"]))
    res.accounts.insert(3, "owner", res.accounts["account_id"].map(info["csm_name"]))
    return res


# ----------------------------------------------------------------------------- time to value


@memoized(plans=False)
def ttv_report(
    src: Facts,
    *,
    milestone: str = FIRST_VALUE_MILESTONE,
    by: str | None = None,
    filters: Filters | None = None,
    as_of: date | None = None,
) -> ttv.TTVResult:
    """Kaplan-Meier time from contract start to a milestone, per group."""
    as_of = as_of or today()
    if milestone not in {d["key"] for d in src.milestone_defs()}:
        raise ValueError(f"unknown milestone {milestone!r}")
    if by and by not in ATTRIBUTES:
        raise ValueError(f"cannot group by {by!r}; use one of {', '.join(ATTRIBUTES)}")
    a = _accounts(src, filters, as_of)
    d = ttv.durations(a, src.completed(milestone), src.churn_dates(), day_end(as_of))
    if d.empty:
        return ttv.TTVResult(
            milestone,
            pd.DataFrame(columns=ttv.GROUP_COLUMNS + (["target_days"] if by == "segment" else [])),
            pd.DataFrame(),
            d,
        )
    if by:
        d = d.merge(a[["account_id", by]], on="account_id")
    res = ttv.kaplan_meier(d, by, milestone)
    targets = _targets(src, milestone)
    if by == "segment":
        res.groups["target_days"] = res.groups["group"].map(targets)
    return res


# ----------------------------------------------------------------------------- cohorts


@memoized(plans=True)
def cohort_report(
    src: Facts,
    *,
    by: str = "month",
    within_days: int | None = None,
    filters: Filters | None = None,
    as_of: date | None = None,
) -> pd.DataFrame:
    """The cohort table. within_days None = each account's segment target for onboarding."""
    as_of = as_of or today()
    a = _accounts(src, filters, as_of)
    if a.empty:
        return pd.DataFrame(columns=coh.COLUMNS)
    if within_days is None:
        targets = _targets(src, COMPLETION_MILESTONE)
        within: int | pd.Series = a.set_index("account_id")["segment"].map(targets).fillna(90)
    else:
        within = within_days
    h = health_table(src, as_of=as_of, filters=filters)
    by_col = {"csm": "csm_name"}.get(by, by)
    return coh.cohort_table(
        a,
        by=by_col,
        as_of_end=day_end(as_of),
        concluded_at=src.completed(COMPLETION_MILESTONE),
        first_value_at=src.completed(FIRST_VALUE_MILESTONE),
        churn_date=src.churn_dates(),
        outcomes=src.outcomes(),
        bands=h.set_index("account_id")["band"],
        within_days=within,
    )


@memoized(plans=False)
def cohort_week_report(
    src: Facts,
    *,
    milestone: str = FIRST_VALUE_MILESTONE,
    by: str = "month",
    weeks: int = 16,
    filters: Filters | None = None,
    as_of: date | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    as_of = as_of or today()
    if milestone not in {d["key"] for d in src.milestone_defs()}:
        raise ValueError(f"unknown milestone {milestone!r}")
    a = _accounts(src, filters, as_of)
    return coh.week_matrix(
        a,
        by={"csm": "csm_name"}.get(by, by),
        reached_at=src.completed(milestone),
        as_of_end=day_end(as_of),
        weeks=weeks,
    )


# ----------------------------------------------------------------------------- retention


@memoized(plans=False)
def retention_report(
    src: Facts,
    *,
    start_event: str,
    return_event: str,
    period: str = "week",
    intervals: int = 8,
    date_to: date | None = None,
    first_time: bool = False,
    cumulative: bool = False,
    filters: Filters | None = None,
) -> pd.DataFrame:
    """Usage retention matrix (PostHog semantics) for the filtered accounts."""
    date_to = date_to or today()
    week_start = src.setting("analysis")[0].get("week_start", "sunday")
    spec = rt.RetentionSpec(
        period=period,
        intervals=intervals,
        date_to=datetime.combine(date_to, datetime.min.time()),
        first_time=first_time,
        cumulative=cumulative,
        week_start=week_start,
    )
    spec.validate()
    last = int(rt.period_index(pd.Series([pd.Timestamp(date_to)]), period, week_start)[0])
    first_start = pd.Timestamp(rt.period_start(last - intervals + 1, period, week_start))
    end = pd.Timestamp(rt.period_start(last + 1, period, week_start))
    a = _accounts(src, filters)
    s = src.event_periods(start_event, first_start.to_pydatetime(), end.to_pydatetime(), first_time)
    r = src.event_periods(return_event, first_start.to_pydatetime(), end.to_pydatetime(), False)
    s = s[s["account_id"].isin(a["account_id"])]
    r = r[r["account_id"].isin(a["account_id"])]
    return rt.retention(s, r, spec)


# ----------------------------------------------------------------------------- early signals


@memoized(plans=False)
def signals_report(
    src: Facts,
    *,
    outcome: str = "retained",
    days: int = 14,
    min_count: int = 1,
    within_segment: bool = False,
    filters: Filters | None = None,
    as_of: date | None = None,
    min_support: int = 5,
    group_identical: bool = False,
) -> pd.DataFrame:
    """Early behaviours (first N days) vs retention at first renewal or expansion in 12 months.
    group_identical: behaviours of exactly the same accounts share a row (column `also`)."""
    as_of = as_of or today()
    a = _accounts(src, filters, as_of)
    labels = sg.outcome_labels(a, src.outcomes(), day_end(as_of))
    counts = src.early_event_counts(days)
    counts = counts[counts["account_id"].isin(labels["account_id"])]
    ms = src.milestones().merge(a[["account_id", "contract_start"]], on="account_id")
    # Before the contract start counts as day 0, for milestones as for events.
    early_ms = ms[ms["completed_at"].notna() & (ms["completed_at"] < first_days_end(ms["contract_start"], days))]
    early_ms = early_ms[early_ms["account_id"].isin(labels["account_id"])]
    beh = sg.behaviour_matrix(counts, early_ms[["account_id", "milestone_key"]], min_count)
    out = sg.signals(
        labels,
        beh,
        outcome=outcome,
        within_segment=within_segment,
        min_support=min_support,
        group_identical=group_identical,
    )
    out.insert(2, "outcome", outcome)
    return out


@memoized(plans=False)
def transitions_report(src: Facts, *, filters: Filters | None = None, as_of: date | None = None) -> pd.DataFrame:
    as_of = as_of or today()
    a = _accounts(src, filters, as_of)
    ms = src.milestones()
    order = [d["key"] for d in src.milestone_defs()]
    return sg.transitions(ms[ms["account_id"].isin(a["account_id"])], order, day_end(as_of))


# ----------------------------------------------------------------------------- backtest


@memoized(plans=False)
def backtest_report(
    src: Facts,
    *,
    day: int = 30,
    weights: dict | None = None,
    filters: Filters | None = None,
    as_of: date | None = None,
) -> bt.BacktestResult:
    """Score every account as of its day `day` (point-in-time) against churn within 12 months."""
    as_of = as_of or today()
    model = health_model(src)
    if weights:
        model = model.with_weights(weights)
        model.validate()
    a = _accounts(src, filters, as_of)
    # Known outcome: the 12-month window has elapsed.
    a = a[a["contract_start"] + pd.Timedelta(days=365) < day_end(as_of)]
    fr = backtest_fractions(src, a, day=day, model=model)
    churned = bt.churned_within_12m(a, src.outcomes())
    return bt.backtest(fr, churned, model, day=day)


def backtest_fractions(src: Facts, a: pd.DataFrame, *, day: int, model: hl.HealthModel) -> pd.DataFrame:
    """Component fractions for each account as of the end of its day `day`."""
    if a.empty:
        return pd.DataFrame(columns=["account_id", "milestone_frac", "adoption_frac", "engagement_frac", "value_frac"])
    ends = pd.Series(day_n_end(a["contract_start"], day).to_numpy(), index=a["account_id"].to_numpy())
    value_keys = {d["key"] for d in src.milestone_defs() if d["is_value"]}
    ms = src.milestones()
    mf = hl.milestone_facts(ms[ms["account_id"].isin(a["account_id"])], ends, value_keys)
    act = src.activity_anchored(day, model.adoption_window_days, model.engagement_window_days)
    if model.adoption_window_days != model.engagement_window_days:
        act2 = src.activity_anchored(day, model.engagement_window_days, model.engagement_window_days)
        act = act.drop(columns="active_days").merge(act2[["account_id", "active_days"]], on="account_id", how="outer")
    # The checklist's Value Realization criteria as the shown score counts them (done_at
    # before the end of the account's day N), so the backtest scores what the page shows.
    cv = src.checklist_value_anchored(day)
    f = (
        a[["account_id", "licensed_seats"]]
        .merge(mf, on="account_id", how="left")
        .merge(act, on="account_id", how="left")
        .merge(cv, on="account_id", how="left")
    )
    for c in ("active_users", "active_days", "value_items", "value_done"):
        f[c] = pd.to_numeric(f[c], errors="coerce").fillna(0).astype(int)
    return hl.fractions(f, model)


# ----------------------------------------------------------------------------- portfolio


@dataclass
class Kpi:
    key: str
    label: str
    value: float
    previous: float
    target: str
    unit: str
    numerator: int | None = None
    denominator: int | None = None
    low: float = math.nan
    high: float = math.nan
    help: str = ""
    # Which accounts the figure counts, said on the tile (figures with different populations
    # must not look comparable: the Time to value tab counts every account started).
    population: str = ""

    @property
    def delta(self) -> float:
        return self.value - self.previous if not (math.isnan(self.value) or math.isnan(self.previous)) else math.nan


@dataclass
class Portfolio:
    as_of: date
    previous: date
    kpis: list[Kpi]
    health: pd.DataFrame
    bands: pd.DataFrame
    at_risk: pd.DataFrame
    triggers: pd.DataFrame
    by_segment: pd.DataFrame
    by_csm: pd.DataFrame
    trend: pd.DataFrame
    summary: list[str] = field(default_factory=list)
    # Accounts in their first N days are too early to score (the health model's setting).
    new_account_days: int = 14


def _completion(src: Facts, a: pd.DataFrame, as_of: date, window_days: int) -> tuple[int, int]:
    """Accounts whose onboarding deadline (segment target) fell in the trailing window,
    and how many of them had completed onboarding by that deadline."""
    targets = _targets(src, COMPLETION_MILESTONE)
    end = day_end(as_of)
    target = a["segment"].map(targets).fillna(90)
    deadline = a["contract_start"] + pd.to_timedelta(target, unit="D")
    # The deadline day has ended by the as-of end (so whether it was met is known).
    in_window = (
        observed_through(a["contract_start"], end, target)
        & (deadline >= end - pd.Timedelta(days=window_days)).to_numpy()
    )
    churn = a["account_id"].map(src.churn_dates())
    in_window &= ~(churn.notna() & (churn < deadline)).to_numpy()
    done = a["account_id"].map(src.completed(COMPLETION_MILESTONE))
    ok = by_day(a["contract_start"], done, target)
    return int((in_window & ok).sum()), int(in_window.sum())


# Portfolio's time to first value (tile, breakdowns, summary) counts recent accounts only.
TTFV_POPULATION = "accounts started in the last 12 months"


def _ttfv_median(src: Facts, a: pd.DataFrame, as_of: date) -> tuple[float, float, float]:
    recent = a[a["contract_start"] >= pd.Timestamp(as_of) - pd.Timedelta(days=365)]
    d = ttv.durations(recent, src.completed(FIRST_VALUE_MILESTONE), src.churn_dates(), day_end(as_of))
    if d.empty:
        return (math.nan, math.nan, math.nan)
    # The median and its interval in NumPy (the same numbers as lifelines): no lifelines import.
    days, reached = d["days"].to_numpy(float), d["reached"].to_numpy(bool)
    lo, hi = ttv.km_median_ci(days, reached)
    return ttv.km_median(days, reached), lo, hi


def kpis(
    src: Facts,
    *,
    as_of: date,
    filters: Filters | None = None,
    period_days: int = 7,
    completion_window_days: int = 180,
    health_at: Callable[[date], pd.DataFrame] | None = None,
) -> list[Kpi]:
    """The Portfolio tiles, each with its value for the previous period. `health_at`: the
    caller's health tables by date (portfolio() shares one set per run)."""
    from metrics.stats import wilson

    health_at = health_at or _health_once(src, filters)
    prev = as_of - timedelta(days=period_days)
    out: dict[str, list] = {}
    for when in (as_of, prev):
        a = _accounts(src, filters, when)
        h = health_at(when)
        live = live_accounts(h)
        onboarding = int((h["status"] == "onboarding").sum())
        k, n = _completion(src, a, when, completion_window_days)
        med = _ttfv_median(src, a, when)
        risk = int(live["at_risk"].sum())
        out.setdefault("onboarding", []).append((onboarding, None, None))
        out.setdefault("completion", []).append((k, n, wilson(k, n)))
        out.setdefault("ttfv", []).append(med)
        out.setdefault("risk", []).append((risk, len(live), wilson(risk, len(live))))
    a = _accounts(src, filters, as_of)
    fv_t = _targets(src, FIRST_VALUE_MILESTONE)
    blended = float(a["segment"].map(fv_t).mean()) if len(a) else math.nan
    c_now, c_prev = out["completion"]
    r_now, r_prev = out["risk"]
    t_now, t_prev = out["ttfv"]
    return [
        Kpi(
            "onboarding",
            "Accounts onboarding",
            out["onboarding"][0][0],
            out["onboarding"][1][0],
            "",
            "accounts",
            help="Accounts that have started and not yet concluded onboarding (churned excluded).",
            population="accounts started by the as-of date",
        ),
        Kpi(
            "completion",
            "Onboarding completion rate",
            c_now[2][0],
            c_prev[2][0],
            "85-95 % (seed benchmark)",
            "%",
            c_now[0],
            c_now[1],
            c_now[2][1],
            c_now[2][2],
            help=f"Of the accounts whose onboarding deadline (segment target) fell in the last {completion_window_days} days, the share that had concluded onboarding by the end of that day.",
            population=f"onboarding deadlines in the last {completion_window_days} days",
        ),
        Kpi(
            "ttfv",
            "Median time to first value",
            t_now[0],
            t_prev[0],
            f"≤ {blended:.0f} days (blended segment target)" if not math.isnan(blended) else "segment target",
            "days",
            low=t_now[1],
            high=t_now[2],
            help="Kaplan-Meier median from contract start to first value, accounts started in the last 12 months; those not there yet are censored, not dropped.",
            population=TTFV_POPULATION,
        ),
        Kpi(
            "at_risk",
            "Share at risk",
            r_now[2][0],
            r_prev[2][0],
            "as low as possible",
            "%",
            r_now[0],
            r_now[1],
            r_now[2][1],
            r_now[2][2],
            help="Live accounts whose health is At Risk (40-59) or Critical (0-39); accounts too early to score "
            "(their first days) count as live, never as at risk.",
            population="live accounts",
        ),
    ]


def health_prefetch(src: Facts, dates: list[date]) -> list[Callable[[], Any]]:
    """The loads health tables at these dates start with (for Facts.prefetch): the app
    database's first, then the engine's. A SQLite read in a background thread gives up the
    GIL at every row and waits for it back while the caller's pandas work holds it: it
    runs first, while the caller is itself waiting on the engine's queries, which give
    the GIL up once for a whole query."""
    model = health_model(src)
    a, e = model.adoption_window_days, model.engagement_window_days
    loads: list[Callable[[], Any]] = [functools.partial(src.activity, d, a, e) for d in dates]
    if a != e:
        loads += [functools.partial(src.activity, d, e, e) for d in dates]
    return [
        functools.partial(src.checklist_values, dates),
        src.outcomes,
        src.plans,
        *loads,
        src.milestones,
    ]


def portfolio_dates(src: Facts, *, as_of: date, period_days: int = 7) -> list[date]:
    """The dates a Portfolio run computes health at: as of, the previous period, the
    health-drop rule's look-back."""
    rules, _ = src.setting("risk_rules")
    drop = int(rules.get("health_drop", {}).get("days", 14))
    return list(dict.fromkeys([as_of, as_of - timedelta(days=period_days), as_of - timedelta(days=drop)]))


@memoized(plans=True)
def portfolio(src: Facts, *, as_of: date, filters: Filters | None = None, period_days: int = 7) -> Portfolio:
    """Everything on the Portfolio page. Health as of each date it needs (as of, the previous
    period, the trigger rules' look-back) is computed once per run and shared."""
    health_at = _health_once(src, filters)
    h = health_at(as_of)
    live = live_accounts(h)
    k = kpis(src, as_of=as_of, filters=filters, period_days=period_days, health_at=health_at)
    bands = (
        live["band"]
        .where(~live["too_early"], hl.TOO_EARLY)
        .value_counts()
        .reindex([*hl.BANDS, hl.TOO_EARLY])
        .fillna(0)
        .astype(int)
        .rename_axis("band")
        .reset_index(name="accounts")
    )
    trig = trigger_table(src, as_of=as_of, filters=filters, health=h, health_at=health_at)
    trig = trig.assign(new=trig["firing_days"] < period_days)

    attention = attention_triggers(trig, h)
    risky = h[h["at_risk"]][["account_id"]]
    ids = pd.Index(attention["account_id"]).union(pd.Index(risky["account_id"]))
    ordered = attention.sort_values(["days_overdue", "rule"], ascending=[False, True])
    agg = ordered.groupby("account_id").agg(
        reason=("reason", "first"),
        intervention=("intervention", "first"),
        action=("action", "first"),
        days_overdue=("days_overdue", "max"),
        triggers=("rule", "size"),
    )
    at_risk = h[h["account_id"].isin(ids)][
        ["account_id", "external_id", "name", "segment", "csm_name", "total", "band", "status", "too_early"]
    ].merge(agg, left_on="account_id", right_index=True, how="left")
    at_risk["reason"] = at_risk["reason"].fillna("health " + at_risk["band"].str.lower())
    at_risk["triggers"] = at_risk["triggers"].fillna(0).astype(int)
    # Listed for its health alone: the intervention for a low score.
    at_risk["intervention"] = at_risk["intervention"].fillna("")
    at_risk = at_risk.sort_values(["total", "triggers"], ascending=[True, False]).rename(
        columns={"csm_name": "owner", "total": "health"}
    )

    by_segment = breakdown(src, h, "segment", as_of=as_of, filters=filters)
    by_csm = breakdown(src, h, "csm_name", as_of=as_of, filters=filters)
    trend = health_trend(src, as_of=as_of, filters=filters, current=h)
    p = Portfolio(as_of, as_of - timedelta(days=period_days), k, h, bands, at_risk, trig, by_segment, by_csm, trend)
    p.summary = summarise(p)
    p.new_account_days = health_model(src).new_account_days
    return p


def attention_triggers(trig: pd.DataFrame, h: pd.DataFrame) -> pd.DataFrame:
    """The fired triggers that put an account on the attention list: all of them, except
    that an account too early to score is listed only for a rule that applies to new
    accounts (metrics.triggers.NEW_ACCOUNT_RULES: e.g. no kickoff by its due day)."""
    early = h.loc[h["too_early"], "account_id"]
    return trig[~trig["account_id"].isin(early) | trig["rule"].isin(tr.NEW_ACCOUNT_RULES)]


def breakdown(src: Facts, h: pd.DataFrame, col: str, *, as_of: date, filters: Filters | None) -> pd.DataFrame:
    """Per segment or CSM: accounts, onboarding, completion, median TTFV, health, at risk."""
    a = _accounts(src, filters, as_of)
    rows = []
    fv_t = _targets(src, FIRST_VALUE_MILESTONE)
    for g, part in a.groupby(col if col in a else "segment", sort=True):
        hp = h[h["account_id"].isin(part["account_id"])]
        live = live_accounts(hp)
        k, n = _completion(src, part, as_of, 180)
        recent = part[part["contract_start"] >= pd.Timestamp(as_of) - pd.Timedelta(days=365)]
        d = ttv.durations(recent, src.completed(FIRST_VALUE_MILESTONE), src.churn_dates(), day_end(as_of))
        med = ttv.km_median(d["days"].to_numpy(), d["reached"].to_numpy())
        risk = int(live["at_risk"].sum())
        row = {
            col: g,
            "accounts": len(part),
            "onboarding": int((hp["status"] == "onboarding").sum()),
            "completion_rate": k / n if n else math.nan,
            "completion_denominator": n,
            "ttfv_median_days": med,
            "avg_health": float(live["total"].mean()) if len(live) else math.nan,
            "at_risk": risk,
            "at_risk_share": risk / len(live) if len(live) else math.nan,
        }
        if col == "segment":
            row["ttfv_target_days"] = fv_t.get(g, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def trend_window(as_of: date, weeks: int = 26) -> tuple[date, date]:
    """The stored snapshots a health trend as of this date reads (the last point is today's)."""
    return as_of - timedelta(weeks=weeks), as_of - timedelta(days=1)


def filter_prefetch(src: Facts, *, as_of: date) -> list[Callable[[], Any]]:
    """What a filtered Portfolio reads beyond every account's tables (for Facts.prefetch
    once the page is drawn): every account's snapshots in the trend's window."""
    return [functools.partial(src.snapshot_rows, *trend_window(as_of))]


def health_trend(
    src: Facts, *, as_of: date, filters: Filters | None, weeks: int = 26, current: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Weekly average health and band shares from stored snapshots, with today's scores as
    the last point (snapshots hold live accounts only)."""
    ids = None
    if filters and not filters.is_empty():
        ids = tuple(sorted(int(x) for x in _accounts(src, filters, as_of)["account_id"]))
    agg = src.snapshot_trend(*trend_window(as_of, weeks), ids)
    if current is not None and len(current):
        cur = current[current["status"] != "churned"]
        today_rows = (
            cur.groupby("band")
            .agg(accounts=("total", "size"), total=("total", "sum"))
            .reset_index()
            .assign(date=pd.Timestamp(as_of))
        )
        cols = ["date", "band", "accounts", "total"]
        parts = [p[cols].astype({"accounts": "int64", "total": "float64"}) for p in (agg, today_rows) if len(p)]
        agg = pd.concat(parts, ignore_index=True) if parts else agg
    if agg.empty:
        return pd.DataFrame(columns=["date", "accounts", "avg_health", *hl.BANDS])
    per_day = agg.groupby("date").agg(accounts=("accounts", "sum"), total=("total", "sum"))
    per_day["avg_health"] = per_day["total"] / per_day["accounts"]
    shares = (
        agg.pivot_table(index="date", columns="band", values="accounts", aggfunc="sum")
        .reindex(columns=list(hl.BANDS))
        .astype(float)
        .fillna(0.0)
    )
    shares = shares.div(per_day["accounts"], axis=0)
    return per_day[["accounts", "avg_health"]].join(shares).reset_index()


def summarise(p: Portfolio) -> list[str]:
    """A few plain-language sentences on what changed and where to look."""
    out = []
    k = {x.key: x for x in p.kpis}
    on = k["onboarding"]
    if not math.isnan(on.delta):
        out.append(f"{int(on.value):,} accounts are onboarding ({int(on.delta):+,d} since {p.previous:%d %b}).")
    c = k["completion"]
    if c.denominator:
        verdict = "below" if c.value < 0.85 else ("within" if c.value <= 0.95 else "above")
        out.append(
            f"Onboarding completion is {c.value:.0%} ({c.numerator:,} of {c.denominator:,} recent deadlines met), {verdict} the 85-95 % benchmark"
            + (f", {(c.value - c.previous) * 100:+.0f} points on last week." if not math.isnan(c.previous) else ".")
        )
    r = k["at_risk"]
    if r.denominator:
        out.append(
            f"{r.numerator:,} of {r.denominator:,} live accounts ({r.value:.0%}) are at risk or critical"
            + (f" ({(r.value - r.previous) * 100:+.0f} points)." if not math.isnan(r.previous) else ".")
        )
    new = p.triggers[p.triggers["new"]] if "new" in p.triggers else p.triggers.iloc[0:0]
    if len(new):
        top = new["trigger"].value_counts()
        out.append(f"{len(new):,} risk trigger(s) fired this week, mostly {top.index[0].lower()} ({top.iloc[0]:,}).")
    if len(p.by_csm) > 1 and p.by_csm["at_risk_share"].notna().any():
        worst = p.by_csm.sort_values("at_risk_share", ascending=False).iloc[0]
        out.append(
            f"Look first at {worst['csm_name']}'s book: {worst['at_risk_share']:.0%} of their live accounts are at risk."
        )
    if len(p.by_segment) > 1 and p.by_segment["ttfv_median_days"].notna().any():
        seg = (
            p.by_segment.assign(gap=p.by_segment["ttfv_median_days"] - p.by_segment["ttfv_target_days"])
            .sort_values("gap", ascending=False)
            .iloc[0]
        )
        if seg["gap"] > 0:
            out.append(
                f"{seg['segment']} reaches first value in {seg['ttfv_median_days']:.0f} days (median, {TTFV_POPULATION}), "
                f"{seg['gap']:.0f} over its {seg['ttfv_target_days']:.0f}-day target."
            )
    return out
