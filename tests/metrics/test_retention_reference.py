"""PostHog's own retention test cases (tests/reference/, from shared/reference/posthog_retention_cases.json), each
person one account, through metrics.retention and through `manage.py report retention`.

PostHog pads its triangle to a square with zeros; our matrix leaves the cells that are not
observed yet empty, so empty cells compare as 0 and must be exactly the padded ones.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from db.settings_store import init_db
from metrics.retention import RetentionSpec, retention
from tests.metrics.test_funnel_reference import earliest_day, import_people

# Copied from shared/reference/ into the repository, so a clean clone has them.
REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "posthog_retention_cases.json"
CASES = json.loads(REFERENCE.read_text(encoding="utf-8"))["cases"]
BY_NAME = [pytest.param(c, id=c["name"]) for c in CASES]

# Day 0 of each case (the first cohort period), from the case notes / asserted dates.
FIRST_PERIOD = {"recurring_day": "2020-06-10", "first_time_day": "2020-06-09"}


def events_frame(case: dict) -> pd.DataFrame:
    rows = [(p, e, pd.Timestamp(ts)) for p, evs in case["people"].items() for e, ts in evs]
    return pd.DataFrame(rows, columns=["account_id", "event", "ts"])


def spec_of(case: dict) -> RetentionSpec:
    return RetentionSpec(
        period=case["period"].lower(),
        intervals=case["total_intervals"],
        date_to=pd.Timestamp(case["date_to"]).to_pydatetime(),
        first_time=case["retention_type"] == "first_time",
    )


def assert_matrix(cells: np.ndarray, cohorts: list, case: dict) -> None:
    """cells: n x n floats with NaN for the cells not observed yet."""
    n = case["total_intervals"]
    assert cells.shape == (n, n)
    observed = np.add.outer(np.arange(n), np.arange(n)) < n  # cohort i is observed for n - i periods
    assert (~np.isnan(cells) == observed).all(), "exactly the cells after the last period are empty"
    assert np.nan_to_num(cells).astype(int).tolist() == case["expected_matrix"]
    day0 = pd.Timestamp(FIRST_PERIOD[case["name"]]).date()
    assert [pd.Timestamp(c).date() for c in cohorts] == [day0 + timedelta(days=i) for i in range(n)]
    assert day0 == pd.Timestamp(case["date_to"]).date() - timedelta(days=n - 1)


@pytest.mark.parametrize("case", BY_NAME)
def test_engine_matches_posthog(case: dict) -> None:
    ev = events_frame(case)
    m = retention(ev[ev["event"] == case["target_event"]], ev[ev["event"] == case["returning_event"]], spec_of(case))
    n = case["total_intervals"]
    assert list(m.columns) == ["cohort", *[f"p{k}" for k in range(n)]]
    assert_matrix(m[[f"p{k}" for k in range(n)]].to_numpy(float), m["cohort"].tolist(), case)


def test_first_time_ignores_later_start_events_and_earlier_first_ones() -> None:
    """The same people as recurring retention would put person1 in five cohorts; first-time
    retention keeps one row per person, in the period of their first-ever start event."""
    case = next(c for c in CASES if c["retention_type"] == "first_time")
    ev = events_frame(case)
    starts, returns = ev[ev["event"] == case["target_event"]], ev[ev["event"] == case["returning_event"]]
    first = retention(starts, returns, spec_of(case))
    recurring = retention(starts, returns, RetentionSpec(**{**spec_of(case).__dict__, "first_time": False}))
    assert first["p0"].sum() == 4  # person1-4; shouldnt_include started before the range
    assert recurring["p0"].sum() > first["p0"].sum()


@pytest.mark.parametrize("case", BY_NAME)
def test_cli_matches_posthog(case: dict, databases, tmp_path: Path, cli) -> None:
    url = databases.new()
    init_db(url)
    import_people(url, tmp_path / "import", case["people"], earliest_day(case["people"]))
    n = case["total_intervals"]
    args = [
        "report",
        "retention",
        "--start-event",
        case["target_event"],
        "--return-event",
        case["returning_event"],
        "--period",
        case["period"].lower(),
        "--intervals",
        str(n),
        "--to",
        pd.Timestamp(case["date_to"]).date().isoformat(),
    ]
    if case["retention_type"] == "first_time":
        args.append("--first-time")
    res = cli(url, *args)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(rows[0]) == ["cohort", *[f"p{k}" for k in range(n)]]
    cells = np.array([[np.nan if r[f"p{k}"] == "" else float(r[f"p{k}"]) for k in range(n)] for r in rows])
    assert_matrix(cells, [r["cohort"] for r in rows], case)


@pytest.mark.parametrize(
    ("period", "week_start", "starts"),
    [
        ("week", "sunday", ["2026-06-14", "2026-06-21", "2026-06-28"]),
        ("week", "monday", ["2026-06-15", "2026-06-22", "2026-06-29"]),
        ("month", "sunday", ["2026-04-01", "2026-05-01", "2026-06-01"]),
    ],
)
def test_week_and_month_periods_and_the_whole_last_period(period: str, week_start: str, starts: list[str]) -> None:
    """Weeks start on Sunday unless told Monday; the end date (Tuesday 2026-06-30) picks the
    last period, which counts whole: a return later in it than the end date still counts."""
    ev = pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "b"],
            # a starts on Sunday 21 June, b on Saturday 20 June; both return in the last week.
            "ts": pd.to_datetime(["2026-06-21 10:00", "2026-07-01 09:00", "2026-06-20 08:00", "2026-06-30 12:00"]),
        }
    )
    if period == "month":  # same shape one level up: starts in April and May, returns in June
        ev["ts"] = pd.to_datetime(["2026-04-16 10:00", "2026-06-30 23:00", "2026-05-20 08:00", "2026-06-02 12:00"])
    spec = RetentionSpec(period=period, intervals=3, date_to=pd.Timestamp("2026-06-30"), week_start=week_start)
    m = retention(ev, ev, spec)
    assert [str(c) for c in m["cohort"]] == starts
    cells = m[["p0", "p1", "p2"]].to_numpy(float)
    if period == "month":
        # a: April -> June (k=2); b: May -> June (k=1).
        expected = [[1, 0, 1], [1, 1, np.nan], [2, np.nan, np.nan]]
    elif week_start == "sunday":
        # Weeks of 14, 21, 28 June: b starts in the first, a (a Sunday) in the second; both
        # are back in the last, a on 1 July, after the end date but in the same week.
        expected = [[1, 0, 1], [1, 1, np.nan], [2, np.nan, np.nan]]
    else:
        # Weeks of 15, 22, 29 June: the Sunday belongs to the week before; both start in it.
        expected = [[2, 0, 2], [0, 0, np.nan], [2, np.nan, np.nan]]
    np.testing.assert_array_equal(cells, np.array(expected, dtype=float))
