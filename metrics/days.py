"""The one definition of "day N" (PRODUCT.md §4): day 0 is the contract-start date, and
"by day N" means up to the end of the N-th day after the start, as a CSM reads a due date.

Cohort completion, the cohort x week matrix, "reached by day 30/60/90", due dates, the
health score's on-time test, Portfolio completion and the backtest's "score as of day N"
all decide it here. Dates are naive midnights, timestamps naive UTC.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)


def end_of(d: date | pd.Timestamp | pd.Series) -> pd.Timestamp | pd.Series:
    """The exclusive end of a date (midnight of the next day): "by date d" means before it."""
    if isinstance(d, pd.Series):
        return d + DAY
    return pd.Timestamp(d) + DAY


def day_n_end(start: pd.Timestamp | pd.Series, n: int | float | pd.Series) -> pd.Timestamp | pd.Series:
    """The exclusive end of day N after `start` (N = 0: the start date itself)."""
    return start + pd.to_timedelta(end_offset(n), unit="D")


def end_offset(n: int | float | pd.Series | np.ndarray) -> float | pd.Series | np.ndarray:
    """Day N ends this many days after the start (for durations measured in days, and SQL)."""
    return n + 1


def day_number(start: pd.Timestamp | pd.Series, ts: pd.Timestamp | pd.Series) -> float | pd.Series:
    """Which day after the start a timestamp falls on (0 = the start date; before it < 0)."""
    return np.floor((ts - start) / DAY)


def by_day(start: pd.Timestamp | pd.Series, ts: pd.Timestamp | pd.Series, n: int | float | pd.Series) -> np.ndarray:
    """Whether `ts` happened by (the end of) day N after `start`; a missing ts (NaT) is False."""
    return np.asarray(ts < day_n_end(start, n))


def by_date(d: pd.Timestamp | pd.Series, ts: pd.Timestamp | pd.Series) -> np.ndarray:
    """Whether `ts` happened by the end of date `d` (a due date is met on its own day)."""
    return np.asarray(ts < end_of(d))


def observed_through(
    start: pd.Timestamp | pd.Series, as_of_end: pd.Timestamp, n: int | float | pd.Series
) -> np.ndarray:
    """Whether day N after `start` has ended by `as_of_end` (so "by day N" is known)."""
    return np.asarray(day_n_end(start, n) <= as_of_end)


def first_days_end(start: pd.Timestamp | pd.Series, n: int) -> pd.Timestamp | pd.Series:
    """The exclusive end of an account's first N days (days 0 to N-1)."""
    return day_n_end(start, n - 1)


def day_after(d: date) -> date:
    """The calendar day after d (a snooze's earliest date: after the as-of day)."""
    return d + timedelta(days=1)
