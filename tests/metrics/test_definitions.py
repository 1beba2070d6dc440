"""Definitions a CS leader can defend (issue 11, points 7-11), as account journeys: a
young cohort's completion is not yet known; the backtest scores exactly what the page
shows, the checklist's Value Realization included, with `done_at` imported; events and
milestones before the contract start both count as day 0 in early signals; and the
"reached by day N" intervals never collapse to a point."""

from __future__ import annotations

import csv
import io
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from db.exporter import export_dir
from db.importer import import_dir
from db.settings_store import init_db
from metrics import cohorts as coh
from metrics.stats import wilson
from metrics.time_to_value import kaplan_meier
from services import analytics as an
from tests.conftest import AS_OF
from tests.metrics.test_funnel_reference import CSM, import_contract, write_csv

START = pd.Timestamp("2026-01-01")

# ----------------------------------------------------------------------------- young cohorts


def test_a_young_cohorts_completion_is_not_yet_known() -> None:
    """Three SMB accounts (target 30) done by day 10, one Enterprise account (target 90)
    only 60 days in: the rate over the three observed would read 100 %."""
    acc = pd.DataFrame(
        {
            "account_id": ["s1", "s2", "s3", "e1"],
            "contract_start": [START] * 4,
            "segment": ["SMB", "SMB", "SMB", "Enterprise"],
            "arr": 1000.0,
        }
    )
    done = pd.Series({k: START + pd.Timedelta(days=10) for k in ("s1", "s2", "s3")})
    empty = pd.Series(dtype="datetime64[ns]")
    t = coh.cohort_table(
        acc,
        by="month",
        as_of_end=START + pd.Timedelta(days=61),
        concluded_at=done,
        first_value_at=empty,
        churn_date=empty,
        outcomes=pd.DataFrame(columns=["account_id", "date", "type", "arr_change"]),
        bands=pd.Series(dtype=object),
        within_days=pd.Series({"s1": 30, "s2": 30, "s3": 30, "e1": 90}),
    ).iloc[0]
    assert (t["accounts"], t["completion_eligible"], t["completed"]) == (4, 3, 3)
    assert bool(t["completion_incomplete"]) is True
    assert math.isnan(t["completion_rate"])
    assert math.isnan(t["completion_low"]) and math.isnan(t["completion_high"])


# ----------------------------------------------------------------------------- reached by day N


def test_nobody_by_day_30_reads_as_about_0_to_10_percent() -> None:
    """36 accounts, none there by day 30, nobody censored before it: 0 of 36, Wilson."""
    d = pd.DataFrame({"account_id": range(36), "days": np.linspace(40, 100, 36), "reached": True})
    g = kaplan_meier(d).groups.iloc[0]
    assert g["reached_by_30d"] == 0.0
    assert (g["reached_by_30d_low"], g["reached_by_30d_high"]) == pytest.approx(wilson(0, 36)[1:])
    assert 0.09 < g["reached_by_30d_high"] < 0.10


def test_nobody_by_day_30_with_censoring_before_it_keeps_a_width() -> None:
    """6 accounts censored on day 10 (too young), 30 not there by day 30: Kaplan-Meier says
    0 % with a zero-width log(-log) band; the interval is Wilson over the 30 known."""
    days = [10.0] * 6 + list(np.linspace(40, 100, 30))
    d = pd.DataFrame({"account_id": range(36), "days": days, "reached": [False] * 6 + [True] * 30})
    g = kaplan_meier(d).groups.iloc[0]
    assert g["reached_by_30d"] == 0.0
    assert (g["reached_by_30d_low"], g["reached_by_30d_high"]) == pytest.approx(wilson(0, 30)[1:])


def test_everybody_by_day_30_keeps_a_width_too() -> None:
    d = pd.DataFrame({"account_id": range(20), "days": [5.0] * 20, "reached": True})
    g = kaplan_meier(d).groups.iloc[0]
    assert g["reached_by_30d"] == 1.0
    assert g["reached_by_30d_low"] == pytest.approx(wilson(20, 20)[1]) and g["reached_by_30d_high"] == 1.0


def test_with_censoring_and_events_the_km_log_log_band_stays() -> None:
    from lifelines import KaplanMeierFitter

    days = [3.0, 5.0, 8.0, 12.0, 20.0, 25.0, 40.0, 50.0]
    reached = [True, False, True, True, False, True, True, False]
    g = kaplan_meier(pd.DataFrame({"account_id": range(8), "days": days, "reached": reached})).groups.iloc[0]
    kmf = KaplanMeierFitter().fit(days, reached)
    ci = kmf.confidence_interval_.loc[:30].iloc[-1]
    assert g["reached_by_30d"] == pytest.approx(1 - float(kmf.survival_function_at_times(30).iloc[0]))
    assert (g["reached_by_30d_low"], g["reached_by_30d_high"]) == pytest.approx((1 - ci.iloc[1], 1 - ci.iloc[0]))


def test_no_time_to_value_interval_on_the_demo_has_zero_width(demo_db: str) -> None:
    src = an.Facts(demo_db)
    for by in (None, "segment", "plan", "cohort_quarter"):
        g = an.ttv_report(src, by=by, as_of=AS_OF).groups
        for t in (30, 60, 90):
            width = g[f"reached_by_{t}d_high"] - g[f"reached_by_{t}d_low"]
            assert (width > 0.01).all(), (by, t, g[["group", f"reached_by_{t}d", f"reached_by_{t}d_low"]])


# ----------------------------------------------------------------------------- early signals


def test_events_and_milestones_before_the_start_both_count_as_day_0(databases, tmp_path: Path) -> None:
    """Ten accounts started two years ago; five had a kickoff call (an event) and completed
    kickoff (a milestone) the week before their contract start. Both behaviours count."""
    url = databases.new()
    init_db(url)
    start = date(2024, 1, 15)
    before = "2024-01-10T10:00:00Z"
    ids = [f"A{i}" for i in range(10)]
    import_contract(
        url,
        tmp_path / "import",
        accounts=[{"account_id": a, "name": a, "segment": "SMB", "contract_start": start.isoformat()} for a in ids],
        events=[(a, "kickoff_call", before, "u1") for a in ids[:5]],
        milestones=[(a, "kickoff_complete", "2024-01-18", before) for a in ids[:5]],
        outcomes=[(a, "2024-06-01", "churned", "") for a in ids[3:7]],
    )
    src = an.Facts(url)
    sig = an.signals_report(src, days=14, as_of=date(2026, 6, 30)).set_index("behaviour")
    assert set(sig.index) == {"kickoff_call", "milestone:kickoff_complete"}
    for b in sig.index:
        assert (sig.loc[b, "support"], sig.loc[b, "rate_with"], sig.loc[b, "rate_without"]) == (5, 0.6, 0.6)
    src.engine.dispose()


# ----------------------------------------------------------------------------- backtest and done_at


def test_the_backtest_scores_what_the_page_shows(demo_db: str) -> None:
    """Each backtested account's day-30 score equals its health score as of that day, the
    checklist's Value Realization criteria included."""
    src = an.Facts(demo_db)
    r = an.backtest_report(src, day=30, as_of=AS_OF)
    a = src.accounts().set_index("account_id")
    scored = r.scored.set_index("account_id")
    # Accounts whose day-30 score includes checklist criteria met by then.
    fr = an.backtest_fractions(src, a.loc[scored.index].reset_index(), day=30, model=an.health_model(src))
    with_criteria = scored.index[(fr.set_index("account_id")["value_frac"] > 0).to_numpy()]
    picked = [int(x) for x in with_criteria[:6]]
    assert len(picked) >= 3
    checked_criteria = 0
    for acc in picked:
        day30 = (a.loc[acc, "contract_start"] + pd.Timedelta(days=30)).date()
        h = an.health_table(src, as_of=day30).set_index("account_id").loc[acc]
        assert scored.loc[acc, "total"] == h["total"], acc
        checked_criteria += int(h["value_done"] > 0)
    assert checked_criteria > 0, "compare accounts whose checklist counts at day 30"


def _checklist(path: Path, rows: list[tuple]) -> None:
    write_csv(path / "checklist.csv", ["account_id", "category", "criterion", "status", "done_at"], rows)


def test_checklist_done_at_is_imported_kept_and_exported(databases, tmp_path: Path) -> None:
    """A criterion met on 5 Jan (done_at given) counts in a score as of 10 Jan; one
    imported as done without done_at counts only from the import on."""
    url = databases.new()
    init_db(url)
    folder = tmp_path / "import"
    import_contract(
        url,
        folder,
        accounts=[{"account_id": "ACC", "name": "Acc", "segment": "SMB", "contract_start": "2026-01-01"}],
    )
    for f in folder.glob("*.csv"):
        f.unlink()
    write_csv(folder / "team.csv", ["email", "name", "role"], [CSM])
    _checklist(
        folder,
        [
            ("ACC", "Value Realization", "Custom dashboards created", "done", "2026-01-05T10:00:00Z"),
            ("ACC", "Value Realization", "Insights shared with leadership", "done", ""),
            ("ACC", "Value Realization", "Data-driven decisions influenced", "in progress", ""),
        ],
    )
    report = import_dir(folder, url=url)
    assert report.ok, [str(p) for p in report.problems]

    def value_done(as_of: date) -> tuple[int, int]:
        h = an.health_table(an.Facts(url), as_of=as_of).iloc[0]
        return int(h["value_done"]), int(h["value_items"])

    assert value_done(date(2026, 1, 4)) == (0, 3)
    assert value_done(date(2026, 1, 5)) == (1, 3)
    assert value_done(an.today() + timedelta(days=1)) == (2, 3)

    out = tmp_path / "export"
    export_dir(out, url=url)
    rows = {r["criterion"]: r for r in csv.DictReader(io.StringIO((out / "checklist.csv").read_text()))}
    assert rows["Custom dashboards created"]["done_at"] == "2026-01-05T10:00:00Z"
    assert rows["Insights shared with leadership"]["done_at"] != ""
    assert rows["Data-driven decisions influenced"]["done_at"] == ""

    # Re-importing with an empty done_at keeps the stored one.
    _checklist(folder, [("ACC", "Value Realization", "Custom dashboards created", "done", "")])
    assert import_dir(folder, url=url).ok
    assert value_done(date(2026, 1, 5)) == (1, 3)


@pytest.mark.parametrize("n", [1, 2, 7, 36, 250])
def test_wilson_equals_statsmodels(n: int) -> None:
    from statsmodels.stats.proportion import proportion_confint

    for k in range(0, n + 1, max(1, n // 9)):
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert wilson(k, n)[1:] == pytest.approx((lo, hi), abs=1e-12), (k, n)


def test_reached_by_without_early_censoring_is_statsmodels_wilson() -> None:
    from statsmodels.stats.proportion import proportion_confint

    days = [3.0, 12.0, 29.5, 30.99, 31.0, 45.0, 80.0, 95.0]  # 4 by the end of day 30
    d = pd.DataFrame({"account_id": range(8), "days": days, "reached": [True] * 5 + [False] * 3})
    g = kaplan_meier(d).groups.iloc[0]
    assert g["reached_by_30d"] == 0.5
    assert (g["reached_by_30d_low"], g["reached_by_30d_high"]) == pytest.approx(
        proportion_confint(4, 8, alpha=0.05, method="wilson"), abs=1e-12
    )
