"""One definition of "by day N" (metrics/days.py), everywhere: at the boundary (23:59 of
day N against 00:00 of day N + 1), as account journeys through the import and every
report that asks the question, plus a check that no other module computes it."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from db.settings_store import init_db
from metrics import cohorts as coh
from metrics.days import by_date, by_day, day_number, observed_through
from metrics.time_to_value import kaplan_meier
from services import analytics as an
from tests.conftest import ROOT
from tests.metrics.test_funnel_reference import import_contract

START = pd.Timestamp("2026-01-01")


@pytest.mark.parametrize(
    ("ts", "n", "expected"),
    [
        ("2026-01-31 23:59:59.999", 30, True),  # the last instant of day 30
        ("2026-02-01 00:00", 30, False),  # the first instant of day 31
        ("2026-01-01 00:00", 0, True),
        ("2026-01-01 23:59", 0, True),
        ("2026-01-02 00:00", 0, False),
        ("2025-12-20 10:00", 0, True),  # before the start: day 0 (clamped)
    ],
)
def test_by_day_at_the_boundary(ts: str, n: int, expected: bool) -> None:
    assert bool(by_day(START, pd.Timestamp(ts), n)) is expected
    assert bool(by_date(START + pd.Timedelta(days=n), pd.Timestamp(ts))) is expected


def test_day_number_and_observed_through() -> None:
    assert day_number(START, pd.Timestamp("2026-01-31 23:59")) == 30
    assert day_number(START, pd.Timestamp("2026-02-01 00:00")) == 31
    assert not bool(by_day(START, pd.NaT, 30))
    # Day 30 has ended by the end of 2026-01-31 (the as-of day), not by its start.
    assert bool(observed_through(START, pd.Timestamp("2026-02-01"), 30))
    assert not bool(observed_through(START, pd.Timestamp("2026-01-31"), 30))


def test_cohort_completion_counts_the_last_minute_of_day_n() -> None:
    acc = pd.DataFrame(
        {
            "account_id": ["last_minute", "next_day"],
            "contract_start": [START, START],
            "segment": "SMB",
            "arr": 1000.0,
        }
    )
    done = pd.Series({"last_minute": pd.Timestamp("2026-01-31 23:59"), "next_day": pd.Timestamp("2026-02-01 00:00")})
    empty = pd.Series(dtype="datetime64[ns]")
    t = coh.cohort_table(
        acc,
        by="month",
        as_of_end=pd.Timestamp("2026-03-01"),
        concluded_at=done,
        first_value_at=empty,
        churn_date=empty,
        outcomes=pd.DataFrame(columns=["account_id", "date", "type", "arr_change"]),
        bands=pd.Series(dtype=object),
        within_days=30,
    ).iloc[0]
    assert (t["completion_eligible"], t["completed"], t["completion_rate"]) == (2, 1, 0.5)


def test_cohort_completion_is_known_once_day_n_has_ended() -> None:
    acc = pd.DataFrame({"account_id": ["a"], "contract_start": [START], "segment": "SMB", "arr": 1.0})
    done = pd.Series({"a": pd.Timestamp("2026-01-10")})
    empty = pd.Series(dtype="datetime64[ns]")

    def row(as_of_end: str) -> pd.Series:
        return coh.cohort_table(
            acc,
            by="month",
            as_of_end=pd.Timestamp(as_of_end),
            concluded_at=done,
            first_value_at=empty,
            churn_date=empty,
            outcomes=pd.DataFrame(columns=["account_id", "date", "type", "arr_change"]),
            bands=pd.Series(dtype=object),
            within_days=30,
        ).iloc[0]

    assert row("2026-01-31")["completion_eligible"] == 0  # as of 30 Jan: day 30 not over
    assert row("2026-02-01")["completion_eligible"] == 1  # as of 31 Jan (day 30) it is


def test_week_matrix_week_0_is_days_0_to_6() -> None:
    acc = pd.DataFrame({"account_id": ["a", "b"], "contract_start": [START, START]})
    reached = pd.Series({"a": pd.Timestamp("2026-01-07 23:59"), "b": pd.Timestamp("2026-01-08 00:00")})
    shares, observed = coh.week_matrix(
        acc, by="month", reached_at=reached, as_of_end=pd.Timestamp("2026-01-08"), weeks=1
    )
    assert shares.loc["2026-01", "week 0"] == 0.5  # a on day 6, b on day 7 (week 1)
    assert observed.loc["2026-01", "week 0"] == 2 and np.isnan(shares.loc["2026-01", "week 1"])


def test_time_to_value_reached_by_day_30_counts_the_last_minute() -> None:
    d = pd.DataFrame(
        {
            "account_id": ["last_minute", "next_day", "open"],
            "days": [30 + 1439 / 1440, 31.0, 200.0],
            "reached": [True, True, False],
        }
    )
    g = kaplan_meier(d).groups.iloc[0]
    assert g["reached_by_30d"] == pytest.approx(1 / 3)
    assert g["reached_by_60d"] == pytest.approx(2 / 3)


def test_one_rule_for_every_report(databases, tmp_path: Path) -> None:
    """Two SMB accounts (onboarding target day 30, first value day 14): one concludes at
    23:59 of day 30, the other at 00:00 of day 31. Cohorts, Portfolio completion, the
    health score's on-time test and time to value agree: the first is on time, the second
    is late."""
    url = databases.new()
    init_db(url)
    due = (START + pd.Timedelta(days=30)).date().isoformat()
    import_contract(
        url,
        tmp_path / "import",
        accounts=[
            {"account_id": a, "name": a, "segment": "SMB", "contract_start": START.date().isoformat()}
            for a in ("ON-TIME", "LATE")
        ],
        milestones=[
            ("ON-TIME", "onboarding_concluded", due, "2026-01-31T23:59:00Z"),
            ("LATE", "onboarding_concluded", due, "2026-02-01T00:00:00Z"),
        ],
    )
    as_of = date(2026, 3, 1)
    src = an.Facts(url)
    c = an.cohort_report(src, by="month", as_of=as_of).iloc[0]
    assert (c["completion_eligible"], c["completed"]) == (2, 1)
    k = {x.key: x for x in an.kpis(src, as_of=as_of)}["completion"]
    assert (k.numerator, k.denominator) == (1, 2)
    h = an.health_table(src, as_of=as_of).set_index("external_id")
    assert (h.loc["ON-TIME", "n_on_time"], h.loc["ON-TIME", "n_late"]) == (1, 0)
    assert (h.loc["LATE", "n_on_time"], h.loc["LATE", "n_late"]) == (0, 1)
    g = an.ttv_report(src, milestone="onboarding_concluded", as_of=as_of).groups.iloc[0]
    assert g["reached_by_30d"] == 0.5
    src.engine.dispose()


# Day arithmetic that decides "by day N" outside metrics/days.py: adding one day to a
# date or a day count, or comparing elapsed days with N.
DAY_ARITHMETIC = re.compile(
    r"\+ ?(pd\.)?[Tt]imedelta\(days=1\)"
    r"|days=[a-z_]+ ?\+ ?1\b"
    r"|\b[a-z_]*days \+ 1\b"
    r"|/ ?86400 ?<="
    r"|timedelta64\(1, ?.D.\)"
)


def test_no_other_module_computes_day_n() -> None:
    files = [
        *ROOT.glob("metrics/*.py"),
        *ROOT.glob("services/*.py"),
        *ROOT.glob("app_pages/*.py"),
        *ROOT.glob("components/*.py"),
        ROOT / "db" / "facts.py",
    ]
    offenders = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in files
        if p.name not in {"days.py", "funnel.py", "retention.py"}  # funnel windows, retention periods
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if DAY_ARITHMETIC.search(line)
    ]
    assert offenders == []
