"""Usage retention with PostHog's semantics (PRODUCT.md §4), per account.

recurring: a cohort row per period in which the account did the start event;
first_time: the period of the account's first-ever start event. Column k counts cohort
accounts that did the return event in period i+k (column 0 is the cohort size);
cumulative counts "in period i+k or later". The end date picks the last cohort period,
the one that contains it, and every period counts whole. Cells after the last period
are not observed yet and are left empty (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class RetentionSpec:
    period: str = "week"
    intervals: int = 8
    date_to: datetime | date | None = None
    first_time: bool = False
    cumulative: bool = False
    week_start: str = "sunday"

    def validate(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"unknown period {self.period!r}; use day, week or month")
        if not 1 <= self.intervals <= 400:
            raise ValueError("intervals must be between 1 and 400")
        if self.week_start not in ("sunday", "monday"):
            raise ValueError("week_start must be sunday or monday")


def period_index(ts: pd.Series | pd.DatetimeIndex, period: str, week_start: str = "sunday") -> np.ndarray:
    """Integer period number of each timestamp (days/weeks since the epoch, months since year 0)."""
    ts = pd.to_datetime(ts)
    if period == "month":
        return (
            (ts.year * 12 + (ts.month - 1)).to_numpy(np.int64)
            if isinstance(ts, pd.DatetimeIndex)
            else (ts.dt.year * 12 + ts.dt.month - 1).to_numpy(np.int64)
        )
    days = np.floor(pd.DatetimeIndex(ts).to_numpy("datetime64[ns]").astype("datetime64[D]").astype(np.int64)).astype(
        np.int64
    )
    if period == "day":
        return days
    # 1970-01-01 was a Thursday: shift so weeks start on Sunday (or Monday).
    shift = 4 if week_start == "sunday" else 3
    return (days + shift) // 7


def period_start(idx: int, period: str, week_start: str = "sunday") -> date:
    if period == "month":
        return date(idx // 12, idx % 12 + 1, 1)
    if period == "day":
        return (np.datetime64(0, "D") + np.timedelta64(int(idx), "D")).astype(object)
    shift = 4 if week_start == "sunday" else 3
    return (np.datetime64(0, "D") + np.timedelta64(int(idx) * 7 - shift, "D")).astype(object)


def retention(start_events: pd.DataFrame, return_events: pd.DataFrame, spec: RetentionSpec) -> pd.DataFrame:
    """The retention matrix: one row per cohort period with `cohort`, `p0` ... `p{N-1}`.

    `start_events` / `return_events`: columns account_id, ts (naive UTC). For first-time
    retention `start_events` must hold each account's first-ever start event (or all of
    them; the earliest is used).
    """
    spec.validate()
    n = spec.intervals
    date_to = pd.Timestamp(spec.date_to or pd.Timestamp.utcnow().tz_localize(None))
    last = int(period_index(pd.Series([date_to]), spec.period, spec.week_start)[0])
    first = last - (n - 1)

    s = start_events[["account_id", "ts"]].copy()
    if spec.first_time:
        s = s.sort_values("ts").drop_duplicates("account_id", keep="first")
    s["p"] = period_index(s["ts"], spec.period, spec.week_start) if len(s) else np.array([], np.int64)
    s = s[(s["p"] >= first) & (s["p"] <= last)][["account_id", "p"]].drop_duplicates()

    r = return_events[["account_id", "ts"]].copy()
    r["p"] = period_index(r["ts"], spec.period, spec.week_start) if len(r) else np.array([], np.int64)
    r = r[(r["p"] >= first) & (r["p"] <= last)][["account_id", "p"]].drop_duplicates()

    matrix = np.full((n, n), np.nan)
    if len(s):
        pairs = s.merge(r, on="account_id", suffixes=("_c", "_r"))
        pairs = pairs[pairs["p_r"] > pairs["p_c"]]
        pairs["k"] = pairs["p_r"] - pairs["p_c"]
        size = s.groupby("p").size()
        if spec.cumulative:
            # "on or after": an account counts in every column up to its furthest return.
            far = pairs.groupby(["p_c", "account_id"])["k"].max().reset_index()
        for i in range(n):
            p = first + i
            observed = n - i
            matrix[i, :observed] = 0
            matrix[i, 0] = size.get(p, 0)
            if spec.cumulative:
                ks = far.loc[far["p_c"] == p, "k"].to_numpy()
                for k in range(1, observed):
                    matrix[i, k] = int((ks >= k).sum())
            else:
                counts = pairs.loc[pairs["p_c"] == p].groupby("k")["account_id"].nunique()
                for k, v in counts.items():
                    if k < observed:
                        matrix[i, int(k)] = v
    else:
        for i in range(n):
            matrix[i, : n - i] = 0
    out = pd.DataFrame(matrix, columns=[f"p{k}" for k in range(n)])
    out.insert(0, "cohort", [period_start(first + i, spec.period, spec.week_start) for i in range(n)])
    return out


def as_rates(matrix: pd.DataFrame) -> pd.DataFrame:
    """Each cell as a share of its cohort size (p0)."""
    cols = [c for c in matrix.columns if c.startswith("p")]
    size = matrix["p0"].replace(0, np.nan)
    rates = matrix[cols].div(size, axis=0)
    return pd.concat([matrix[["cohort"]], rates], axis=1)


def next_period_start(start: date, period: str) -> date:
    """The first day of the period after the one that starts on `start`."""
    start = pd.Timestamp(start)
    if period == "month":
        return (start + pd.offsets.MonthBegin(1)).date()
    return (start + pd.Timedelta(days=1 if period == "day" else 7)).date()


def in_progress(
    matrix: pd.DataFrame, *, period: str, date_to: date | datetime, now: datetime | None = None
) -> pd.DataFrame:
    """Which cells fall in a period that is not over yet, as PostHog marks them: the last
    period (the one containing `date_to`) is in progress when it ends after the end of
    `date_to`'s day (or after `now`, for today). Its cells are the diagonal: cohort i's
    column n-1-i (the newest cohort's size included). In cumulative retention those cells
    are the ones the unfinished period alone fills; earlier columns are whole periods.

    Returns a boolean frame with the matrix's p-columns (and index)."""
    cols = [c for c in matrix.columns if c.startswith("p")]
    mask = pd.DataFrame(False, index=matrix.index, columns=cols)
    if matrix.empty:
        return mask
    observed_end = pd.Timestamp(date_to).normalize() + pd.Timedelta(days=1)
    if now is not None:
        observed_end = min(observed_end, pd.Timestamp(now))
    last_end = pd.Timestamp(next_period_start(matrix["cohort"].iloc[-1], period))
    if last_end > observed_end:
        n = len(cols)
        for i in range(min(len(matrix), n)):
            mask.iloc[len(matrix) - 1 - i, i] = True
    return mask


def in_progress_column(mask: pd.DataFrame) -> pd.Series:
    """Per cohort row, the name of its cell in the period still in progress (None if none)."""
    return mask.apply(lambda row: next((c for c, v in row.items() if v), None), axis=1)


def returned_next_period(matrix: pd.DataFrame, mask: pd.DataFrame, k: int = 1) -> pd.Series:
    """Share of each cohort back k periods later, over complete periods only: cells not
    observed yet and cells of the period still in progress are left out (index = cohort)."""
    col = f"p{k}"
    if col not in matrix:
        return pd.Series(dtype=float)
    rates = as_rates(matrix)[col].where(~mask[col])
    return pd.Series(rates.to_numpy(), index=matrix["cohort"]).dropna()
