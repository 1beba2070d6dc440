"""Time to value against lifelines: its shipped two-group datasets loaded as accounts and
run through `manage.py report time-to-value`, plus unit tests of the censoring rules and
of the fast KM median.

Each subject becomes an account starting on a fixed date with its group as the plan;
an event at T (E = 1) is `first_value_achieved` completed at start + T days, a censored
subject churned at start + T days (censored at churn).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter, datasets
from lifelines.statistics import logrank_test
from lifelines.utils import median_survival_times

from db.settings_store import init_db
from metrics.time_to_value import durations, kaplan_meier, km_median, km_median_ci
from tests.metrics.test_funnel_reference import import_contract

START = pd.Timestamp("2020-01-06")
AS_OF = "2029-12-31"


def waltons() -> pd.DataFrame:
    d = datasets.load_waltons()
    return pd.DataFrame({"T": d["T"], "E": d["E"], "group": d["group"]})


def lymphoma() -> pd.DataFrame:
    d = datasets.load_lymphoma()
    return pd.DataFrame({"T": d["Time"], "E": d["Censor"], "group": "stage " + d["Stage_group"].astype(str)})


def leukemia() -> pd.DataFrame:
    d = datasets.load_leukemia()
    return pd.DataFrame({"T": d["t"], "E": d["status"], "group": np.where(d["Rx"] == 1, "treated", "placebo")})


DATASETS = {"waltons": waltons, "lymphoma": lymphoma, "leukemia": leukemia}


def lifelines_reference(df: pd.DataFrame) -> tuple[dict[str, dict], float]:
    groups = sorted(df["group"].unique())
    assert len(groups) == 2
    out = {}
    for g in groups:
        part = df[df["group"] == g]
        kmf = KaplanMeierFitter().fit(part["T"], part["E"])
        out[g] = {
            "accounts": len(part),
            "reached": int(part["E"].sum()),
            "median": float(kmf.median_survival_time_),
            **{f"by_{t}": 1 - float(kmf.survival_function_at_times(t).iloc[0]) for t in (30, 60, 90)},
        }
    a, b = (df[df["group"] == g] for g in groups)
    p = logrank_test(a["T"], b["T"], event_observed_A=a["E"], event_observed_B=b["E"]).p_value
    return out, float(p)


def load_dataset(url: str, folder: Path, df: pd.DataFrame) -> None:
    accounts, milestones, outcomes = [], [], []
    for i, r in enumerate(df.itertuples()):
        acc = f"S{i:04d}"
        accounts.append(
            {
                "account_id": acc,
                "name": f"Subject {i}",
                "segment": "SMB",
                "contract_start": START.date(),
                "plan": r.group,
            }
        )
        at = START + pd.Timedelta(days=float(r.T))
        if r.E == 1:
            due = (START + pd.Timedelta(days=14)).date()  # the SMB target, given so nothing is defaulted
            milestones.append((acc, "first_value_achieved", due, at.strftime("%Y-%m-%dT%H:%M:%SZ")))
        else:
            assert at == at.normalize(), "a churn date is a whole day"
            outcomes.append((acc, at.date(), "churned", ""))
    import_contract(url, folder, accounts=accounts, milestones=milestones, outcomes=outcomes)


@pytest.mark.parametrize("name", list(DATASETS))
def test_cli_time_to_value_equals_lifelines(name: str, databases, tmp_path: Path, cli) -> None:
    df = DATASETS[name]()
    expected, p = lifelines_reference(df)
    url = databases.new()
    init_db(url)
    load_dataset(url, tmp_path / "import", df)
    res = cli(url, "report", "time-to-value", "--by", "plan", "--as-of", AS_OF)
    assert res.returncode == 0, res.stderr
    rows = {r["group"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert set(rows) == set(expected)
    for g, exp in expected.items():
        r = rows[g]
        assert int(r["accounts"]) == exp["accounts"]
        assert int(r["reached"]) == exp["reached"]
        assert int(r["censored"]) == exp["accounts"] - exp["reached"]
        if math.isinf(exp["median"]):  # lifelines: never falls to 0.5 -> no median (empty cell)
            assert r["median_days"] == ""
        else:
            assert float(r["median_days"]) == pytest.approx(exp["median"], rel=1e-6)
        for t in (30, 60, 90):
            assert float(r[f"reached_by_{t}d"]) == pytest.approx(exp[f"by_{t}"], rel=1e-6, abs=1e-12)
        assert float(r["logrank_p"]) == pytest.approx(p, rel=1e-6)


def test_datasets_exercise_both_median_cases() -> None:
    """Between them the datasets have finite medians and a group that never reaches 50 %."""
    medians = [g["median"] for name in DATASETS for g in lifelines_reference(DATASETS[name]())[0].values()]
    assert any(math.isinf(m) for m in medians)
    assert sum(math.isfinite(m) for m in medians) >= 4


# ----------------------------------------------------------------------------- durations


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s)


def frame(rows: list[tuple]) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """rows: (account_id, contract_start, completed_at or None, churn date or None)."""
    acc = pd.DataFrame({"account_id": [r[0] for r in rows], "contract_start": [ts(r[1]) for r in rows]})
    done = pd.Series([ts(r[2]) for r in rows if r[2]], index=[r[0] for r in rows if r[2]], dtype="datetime64[ns]")
    churn = pd.Series([ts(r[3]) for r in rows if r[3]], index=[r[0] for r in rows if r[3]], dtype="datetime64[ns]")
    return acc, done, churn


AS_OF_END = ts("2025-03-01")  # the end of the as-of day 2025-02-28


def by_account(rows: list[tuple]) -> dict[str, tuple[float, bool]]:
    acc, done, churn = frame(rows)
    d = durations(acc, done, churn, AS_OF_END)
    return {a: (round(float(x), 9), bool(r)) for a, x, r in zip(d["account_id"], d["days"], d["reached"], strict=True)}


def test_durations_reached_is_time_from_contract_start() -> None:
    got = by_account([("a", "2025-01-01", "2025-01-11 12:00", None)])
    assert got == {"a": (10.5, True)}


def test_durations_censored_at_the_end_of_the_as_of_day() -> None:
    got = by_account(
        [
            ("open", "2025-01-01", None, None),
            ("later", "2025-01-01", "2025-03-01 00:00", None),  # completed after the as-of day
            ("future_churn", "2025-01-01", None, "2025-03-15"),  # churn after the as-of date: not yet
        ]
    )
    assert got == {"open": (59.0, False), "later": (59.0, False), "future_churn": (59.0, False)}


def test_durations_censored_at_churn() -> None:
    got = by_account(
        [
            ("churned", "2025-01-01", None, "2025-01-21"),
            ("after_churn", "2025-01-01", "2025-01-25", "2025-01-21"),  # value after churn does not count
            ("churn_day", "2025-01-01", "2025-01-21 15:00", "2025-01-21"),  # reached on the day of churn
            ("before_churn", "2025-01-01", "2025-01-11", "2025-01-21"),
            ("churn_as_of", "2025-01-01", None, "2025-02-28"),
        ]
    )
    assert got == {
        "churned": (20.0, False),
        "after_churn": (20.0, False),
        "churn_day": (20.625, True),
        "before_churn": (10.0, True),
        "churn_as_of": (58.0, False),
    }


def test_durations_leave_out_accounts_not_started_by_the_as_of_date() -> None:
    got = by_account([("started", "2025-02-28", None, None), ("not_yet", "2025-03-01", None, None)])
    assert got == {"started": (1.0, False)}


def test_kaplan_meier_groups_and_naive_median() -> None:
    d = pd.DataFrame(
        {
            "account_id": range(6),
            "days": [5.0, 10.0, 15.0, 3.0, 20.0, 40.0],
            "reached": [True, True, False, True, False, False],
            "plan": ["x", "x", "x", "y", "y", "y"],
        }
    )
    res = kaplan_meier(d, "plan", "first_value_achieved")
    g = res.groups.set_index("group")
    assert g.loc["x", "median_days"] == 10.0  # S: 2/3 at 5, 1/3 at 10
    assert math.isnan(g.loc["y", "median_days"])  # S stays at 2/3
    assert g.loc["x", "naive_median_days"] == 7.5
    assert g.loc["y", "naive_median_days"] == 3.0  # biased: ignores the two still on the way
    assert (g["censored"] == [1, 2]).all()
    assert res.logrank_p == pytest.approx(
        logrank_test([5, 10, 15], [3, 20, 40], [1, 1, 0], [1, 0, 0]).p_value, rel=1e-9
    )


# ----------------------------------------------------------------------------- km_median


def lifelines_median(days: np.ndarray, reached: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = float(KaplanMeierFitter().fit(days, reached).median_survival_time_)
    return m if math.isfinite(m) else math.nan


def test_km_median_equals_lifelines_on_random_data() -> None:
    rng = np.random.default_rng(20260630)
    for i in range(400):
        n = int(rng.integers(1, 40))
        if i % 2:
            days = rng.integers(0, 20, size=n).astype(float)  # many ties, curves that land on 0.5
        else:
            days = rng.exponential(25, size=n).round(3)
        reached = rng.random(n) < rng.uniform(0.1, 1.0)
        got, exp = km_median(days, reached), lifelines_median(days, reached)
        assert (math.isnan(got) and math.isnan(exp)) or got == exp, (i, days.tolist(), reached.tolist(), got, exp)


@pytest.mark.parametrize(
    ("days", "reached", "expected"),
    [
        ([], [], math.nan),
        ([1.0, 2.0], [False, False], math.nan),
        ([4.0], [True], 4.0),
        # S is 0.5 at day 6 in exact arithmetic; lifelines forms it as exp(sum of logs) =
        # 0.5000000000000001 and so reports 7. km_median follows lifelines, so that the
        # cohort and portfolio medians agree with the time-to-value report's.
        ([0.0, 3.0, 6.0, 7.0, 7.0, 14.0], [True, True, True, True, True, False], 7.0),
        ([2.0, 3.0, 4.0, 5.0], [True, False, True, False], 4.0),
    ],
)
def test_km_median_edge_cases(days, reached, expected) -> None:
    got = km_median(np.array(days), np.array(reached, dtype=bool))
    assert (math.isnan(got) and math.isnan(expected)) or got == expected
    if len(days):
        assert (math.isnan(got) and math.isnan(lifelines_median(days, reached))) or got == lifelines_median(
            days, reached
        )


# ----------------------------------------------------------------------------- km_median_ci


def lifelines_median_ci(days, reached) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = median_survival_times(KaplanMeierFitter().fit(days, reached).confidence_interval_)
    return tuple(float(x) if math.isfinite(x) else math.nan for x in (ci.iloc[0, 0], ci.iloc[0, 1]))


def same(got: tuple[float, ...], exp: tuple[float, ...]) -> bool:
    return len(got) == len(exp) and all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(got, exp))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_km_median_ci_equals_lifelines_on_its_datasets(name: str) -> None:
    df = DATASETS[name]()
    for g, part in df.groupby("group"):
        days, reached = part["T"].to_numpy(float), part["E"].to_numpy(bool)
        got, exp = km_median_ci(days, reached), lifelines_median_ci(days, reached)
        assert same(got, exp), (name, g, got, exp)
    # the whole dataset too (ties across groups), and the interval holds the median
    days, reached = df["T"].to_numpy(float), df["E"].to_numpy(bool)
    lo, hi = km_median_ci(days, reached)
    assert same((lo, hi), lifelines_median_ci(days, reached))
    assert math.isnan(hi) or lo <= km_median(days, reached) <= hi


def test_km_median_ci_equals_lifelines_on_random_data() -> None:
    """Censoring from 0 to 95 %, many ties (integer days, curves that land on 0.5), durations
    of 0, groups that never reach 0.5 and bands that never do."""
    rng = np.random.default_rng(20261202)
    finite = 0
    for i in range(600):
        n = int(rng.integers(1, 60))
        if i % 3 == 0:
            days = rng.integers(0, 15, size=n).astype(float)
        elif i % 3 == 1:
            days = rng.exponential(25, size=n).round(3)
        else:
            days = rng.integers(1, 90, size=n).astype(float)  # no duration at 0
        reached = rng.random(n) < rng.uniform(0.05, 1.0)
        got, exp = km_median_ci(days, reached), lifelines_median_ci(days, reached)
        assert same(got, exp), (i, days.tolist(), reached.tolist(), got, exp)
        finite += all(math.isfinite(x) for x in got)
    assert 100 < finite < 600  # both kinds of answer were checked


@pytest.mark.parametrize(
    ("days", "reached", "expected"),
    [
        ([], [], (math.nan, math.nan)),
        ([1.0, 2.0], [False, False], (math.nan, math.nan)),  # nobody reached it
        ([4.0], [True], (4.0, 4.0)),  # S falls from 1 to 0 at day 4: both bands with it
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [True] * 8, (1.0, 7.0)),
        ([3.0] * 6 + [9.0] * 6, [True] * 12, (3.0, 9.0)),  # ties
    ],
)
def test_km_median_ci_edge_cases(days, reached, expected) -> None:
    got = km_median_ci(np.array(days), np.array(reached, dtype=bool))
    assert same(got, expected), got
    if days:
        assert same(got, lifelines_median_ci(days, reached))
