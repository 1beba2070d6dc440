"""The period in progress (PostHog's RetentionTable: the latest period, when `date_to` falls
in it, is "period in progress"): which cells are partial, and summaries without them."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from metrics.retention import (
    RetentionSpec,
    in_progress,
    in_progress_column,
    next_period_start,
    retention,
    returned_next_period,
)

# a: starts Sun 7 June and comes back every week; b: starts 14 June, back the week after.
EVENTS = pd.DataFrame(
    {
        "account_id": ["a", "a", "a", "a", "b", "b"],
        "ts": pd.to_datetime(
            [
                "2026-06-07 09:00",
                "2026-06-15 09:00",
                "2026-06-22 09:00",
                "2026-06-29 09:00",
                "2026-06-14 10:00",
                "2026-06-23 10:00",
            ]
        ),
    }
)


def matrix(date_to: date, period: str = "week", n: int = 4) -> pd.DataFrame:
    return retention(EVENTS, EVENTS, RetentionSpec(period=period, intervals=n, date_to=date_to))


@pytest.mark.parametrize(
    ("period", "date_to", "now", "partial"),
    [
        ("week", date(2026, 6, 30), None, True),  # Tuesday: the week of 28 June runs to Saturday 4 July
        ("week", date(2026, 7, 4), None, False),  # Saturday, its last day: the week is over by the end of it
        ("week", date(2026, 7, 4), datetime(2026, 7, 4, 15, 0), True),  # ... but not while that Saturday runs
        ("week", date(2026, 6, 28), None, True),  # Sunday, its first day
        ("day", date(2026, 6, 30), None, False),  # a day is over at the end of the day
        ("day", date(2026, 6, 30), datetime(2026, 6, 30, 8, 0), True),  # today, before midnight
        ("month", date(2026, 6, 30), None, False),  # the month's last day
        ("month", date(2026, 6, 29), None, True),
    ],
)
def test_the_last_period_is_in_progress_until_it_ends(
    period: str, date_to: date, now: datetime | None, partial: bool
) -> None:
    m = matrix(date_to, period)
    mask = in_progress(m, period=period, date_to=date_to, now=now)
    assert list(mask.columns) == ["p0", "p1", "p2", "p3"]
    n = len(m)
    diagonal = np.fliplr(np.eye(n, dtype=bool))  # cohort i's cell in the last period: column n-1-i
    assert (mask.to_numpy() == (diagonal if partial else np.zeros((n, n), bool))).all()
    # Only observed cells are ever marked (the ones after the diagonal are empty, not partial).
    assert not (mask.to_numpy() & m[mask.columns].isna().to_numpy()).any()


def test_the_in_progress_column_names_each_cohorts_partial_cell() -> None:
    m = matrix(date(2026, 6, 30))
    assert in_progress_column(in_progress(m, period="week", date_to=date(2026, 6, 30))).tolist() == [
        "p3",
        "p2",
        "p1",
        "p0",
    ]
    assert in_progress_column(in_progress(m, period="week", date_to=date(2026, 7, 4))).isna().all()


def test_the_summary_leaves_the_partial_period_out() -> None:
    """Cohorts of 7 and 14 June are back in full the week after. The cohort of 21 June (a and
    b) has half of it back in the week of 28 June, the week still in progress: that cell
    stays out until the week is over."""
    d = date(2026, 6, 30)
    m = matrix(d)
    assert m["p1"].tolist()[:3] == [1, 2, 1]
    complete = returned_next_period(m, in_progress(m, period="week", date_to=d))
    assert complete.to_dict() == {date(2026, 6, 7): 1.0, date(2026, 6, 14): 1.0}
    everything = returned_next_period(m, in_progress(m, period="week", date_to=date(2026, 7, 4)))
    assert everything.to_dict() == {date(2026, 6, 7): 1.0, date(2026, 6, 14): 1.0, date(2026, 6, 21): 0.5}


@pytest.mark.parametrize(
    ("start", "period", "end"),
    [
        (date(2026, 6, 28), "week", date(2026, 7, 5)),
        (date(2026, 6, 30), "day", date(2026, 7, 1)),
        (date(2026, 12, 1), "month", date(2027, 1, 1)),
    ],
)
def test_next_period_start(start: date, period: str, end: date) -> None:
    assert next_period_start(start, period) == end
