"""Focused tests with hand-built data: risk triggers, early signals, the health backtest,
cohorts and the interval statistics."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from db.defaults import DEFAULT_RISK_RULES
from metrics import backtest as bt
from metrics import cohorts as coh
from metrics import signals as sg
from metrics import triggers as tr
from metrics.health import HealthModel
from metrics.stats import auc, auc_interval, newcombe_diff, wilson, wilson_arrays
from services.analytics import Facts, trigger_table

AS_OF_END = pd.Timestamp("2026-07-01")  # as of 2026-06-30
NAMES = {"training_completed": "Training completed", "kickoff_complete": "Kickoff complete"}

# ----------------------------------------------------------------------------- triggers

# An account that fires nothing: old enough for every rule, active, adopted, with a
# champion, first value reached, health steady.
QUIET = {
    "account_id": "quiet",
    "age_days": 60,
    "churned": False,
    "onboarding_done": False,
    "active_days": 6,
    "last_event": pd.Timestamp("2026-06-29 15:00"),
    "adoption_share": 0.9,
    "total": 70.0,
    "total_before": 72.0,
    "champion": "Ana Ruiz",
    "ttfv_target_days": 28,
    "csm_name": "Casey",
}


def fire(account: dict | None = None, milestones: list[tuple] = (), rules: dict | None = None) -> pd.DataFrame:
    """Evaluate one account (QUIET with changes) that has reached first value unless told otherwise."""
    acc = pd.DataFrame([{**QUIET, **(account or {})}])
    rows = list(milestones)
    if not any(m[0] == "first_value_achieved" for m in rows):
        rows.append(("first_value_achieved", "2026-05-20", "2026-05-18 10:00"))
    ms = pd.DataFrame(
        {
            "account_id": acc["account_id"].iloc[0],
            "milestone_key": [m[0] for m in rows],
            "due_date": pd.to_datetime([m[1] for m in rows]),
            "completed_at": pd.to_datetime([m[2] for m in rows]),
        }
    )
    return tr.evaluate(acc, ms, rules=rules or DEFAULT_RISK_RULES, as_of_end=AS_OF_END, milestone_names=NAMES)


def test_a_healthy_account_fires_nothing() -> None:
    assert fire().empty


def test_churned_accounts_fire_nothing() -> None:
    assert fire({"churned": True, "last_event": pd.NaT, "champion": None, "adoption_share": 0.0}).empty


@pytest.mark.parametrize(
    ("due", "completed", "fires"),
    [
        ("2026-06-22", None, True),  # 8 days overdue
        ("2026-06-23", None, False),  # 7 days: not more than 7
        ("2026-06-01", "2026-06-30 23:00", False),  # completed by the end of the as-of day
        ("2026-06-01", "2026-07-01 09:00", True),  # completed after the as-of date: still overdue then
    ],
)
def test_milestone_overdue(due: str, completed: str | None, fires: bool) -> None:
    t = fire(milestones=[("training_completed", due, completed)])
    assert t["rule"].tolist() == (["milestone_overdue"] if fires else [])
    if fires:
        r = t.iloc[0]
        days = (AS_OF_END - pd.Timedelta(days=1) - pd.Timestamp(due)).days
        assert r["reason"] == f"Training completed is {days} days overdue"
        assert r["days_overdue"] == days
        assert r["trigger"] == "Milestone overdue"
        assert r["intervention"] == "extra training"
        assert r["action"] == tr.INTERVENTIONS["extra training"]


def test_milestone_overdue_names_the_worst_and_counts_the_others() -> None:
    t = fire(
        milestones=[
            ("kickoff_complete", "2026-06-01", None),  # 29 days
            ("training_completed", "2026-06-10", None),  # 20 days
            ("technical_setup_done", "2026-06-23", None),  # 7 days: not past the threshold
        ]
    )
    assert len(t) == 1
    r = t.iloc[0]
    assert r["reason"] == "Kickoff complete is 29 days overdue (2 milestones overdue)"
    assert r["intervention"] == tr.MILESTONE_ACTION["kickoff_complete"] == "executive sponsorship"


def test_milestone_overdue_of_an_unknown_milestone_gets_enhanced_support() -> None:
    t = fire(milestones=[("custom_step", "2026-06-01", None)])
    assert t.iloc[0]["reason"] == "custom_step is 29 days overdue"
    assert t.iloc[0]["intervention"] == "enhanced support"


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        ({"last_event": pd.Timestamp("2026-06-16 10:00"), "active_days": 0}, "no product activity for 14 days"),
        ({"last_event": pd.Timestamp("2026-06-17 12:00"), "active_days": 0}, None),  # 13.5 days
        ({"last_event": pd.Timestamp("2026-05-01 12:00"), "active_days": 0}, "no product activity for 60 days"),
        ({"last_event": pd.NaT, "active_days": 0}, "no product activity in the last 14+ days (none recorded recently)"),
        ({"last_event": pd.NaT, "active_days": 0, "age_days": 13}, None),  # too young to say
    ],
)
def test_no_activity(account: dict, reason: str | None) -> None:
    t = fire(account)
    t = t[t["rule"] == "no_activity"]
    assert t["reason"].tolist() == ([reason] if reason else [])
    if reason:
        assert t.iloc[0]["intervention"] == "enhanced support"


@pytest.mark.parametrize(
    ("account", "fires"),
    [
        ({"adoption_share": 0.4, "age_days": 30}, True),
        ({"adoption_share": 0.4, "age_days": 29}, False),
        ({"adoption_share": 0.5, "age_days": 30}, False),
        ({"adoption_share": 0.4, "age_days": 30, "onboarding_done": True}, False),
        ({"adoption_share": np.nan, "age_days": 45}, True),  # seats unknown counts as no adoption
    ],
)
def test_low_adoption(account: dict, fires: bool) -> None:
    t = fire(account)
    assert t["rule"].tolist() == (["low_adoption"] if fires else [])
    if fires:
        share = 0 if math.isnan(account["adoption_share"]) else round(account["adoption_share"] * 100)
        assert t.iloc[0]["reason"] == f"adoption {share} % of seats after day 30 (threshold 50%)"
        assert t.iloc[0]["intervention"] == "extra training"


@pytest.mark.parametrize(
    ("before", "now", "fires"),
    [(80.0, 65.0, True), (80.0, 65.1, False), (90.0, 40.0, True), (np.nan, 20.0, False), (50.0, 70.0, False)],
)
def test_health_drop(before: float, now: float, fires: bool) -> None:
    t = fire({"total_before": before, "total": now})
    assert t["rule"].tolist() == (["health_drop"] if fires else [])
    if fires:
        assert (
            t.iloc[0]["reason"]
            == f"health fell {round(before - now)} points in 14 days ({round(before)} → {round(now)})"
        )
        assert t.iloc[0]["intervention"] == "executive sponsorship"


@pytest.mark.parametrize(
    ("champion", "age", "fires"),
    [("", 14, True), (None, 20, True), ("   ", 14, True), ("", 13, False), ("Ana Ruiz", 40, False)],
)
def test_no_champion(champion: str | None, age: int, fires: bool) -> None:
    t = fire({"champion": champion, "age_days": age, "ttfv_target_days": 60})
    assert t["rule"].tolist() == (["no_champion"] if fires else [])
    if fires:
        assert t.iloc[0]["reason"] == f"no champion named by day 14 (day {age})"
        assert t.iloc[0]["intervention"] == "executive sponsorship"


@pytest.mark.parametrize(
    ("age", "completed", "fires"),
    [
        (29, None, True),
        (28, None, False),  # on target
        (45, "2026-06-30 20:00", False),
        (45, "2026-07-01 08:00", True),  # reached after the as-of date: not yet then
    ],
)
def test_ttfv_overdue(age: int, completed: str | None, fires: bool) -> None:
    t = fire({"age_days": age}, milestones=[("first_value_achieved", "2027-01-01", completed)])
    assert t["rule"].tolist() == (["ttfv_overdue"] if fires else [])
    if fires:
        r = t.iloc[0]
        assert r["reason"] == f"first value not reached after {age} days (target 28)"
        assert r["days_overdue"] == age - 28
        assert r["intervention"] == "enhanced support"


def test_disabled_rules_do_not_fire() -> None:
    account = {"champion": "", "last_event": pd.NaT, "active_days": 0, "adoption_share": 0.1}
    assert set(fire(account)["rule"]) == {"no_champion", "no_activity", "low_adoption"}
    rules = {**DEFAULT_RISK_RULES, "no_champion": {"enabled": False, "day": 14}}
    assert set(fire(account, rules=rules)["rule"]) == {"no_activity", "low_adoption"}


def test_thresholds_come_from_the_rules() -> None:
    rules = {**DEFAULT_RISK_RULES, "milestone_overdue": {"enabled": True, "days": 2}}
    t = fire(milestones=[("training_completed", "2026-06-27", None)], rules=rules)
    assert t["reason"].tolist() == ["Training completed is 3 days overdue"]


def test_trigger_table_names_owner_reason_and_intervention(demo_db: str) -> None:
    src = Facts(demo_db)
    t = trigger_table(src, as_of=date(2026, 6, 30))
    assert len(t) > 0
    assert set(t["rule"]) <= set(tr.RULE_LABELS)
    assert len(set(t["rule"])) >= 4
    a = src.accounts().set_index("account_id")
    assert (t["owner"] == t["account_id"].map(a["csm_name"])).all()
    assert (t["owner_email"] == t["account_id"].map(a["csm_email"])).all()
    assert (t["external_id"] == t["account_id"].map(a["external_id"])).all()
    assert (t["action"] == t["intervention"].map(tr.INTERVENTIONS)).all()
    assert (t["trigger"] == t["rule"].map(tr.RULE_LABELS)).all()
    assert t["reason"].str.len().gt(10).all()
    assert not t.duplicated(["account_id", "rule"]).any()


# ----------------------------------------------------------------------------- signals


def test_outcome_labels_only_accounts_with_an_elapsed_window() -> None:
    acc = pd.DataFrame(
        {
            "account_id": ["old_ok", "old_churned", "late_churn", "expanded", "young"],
            "contract_start": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-01-01", "2025-06-30", "2025-07-01"]),
            "segment": "SMB",
        }
    )
    out = pd.DataFrame(
        {
            "account_id": ["old_churned", "late_churn", "expanded", "young"],
            "date": pd.to_datetime(["2025-10-01", "2026-01-02", "2026-06-30", "2025-08-01"]),
            "type": ["churned", "churned", "expanded", "churned"],
        }
    )
    labels = sg.outcome_labels(acc, out, AS_OF_END).set_index("account_id")
    # 2025-06-30 + 365 days = 2026-06-30, before the end of the as-of day; 2025-07-01 is not.
    assert labels.index.tolist() == ["old_ok", "old_churned", "late_churn", "expanded"]
    assert labels["retained"].to_dict() == {"old_ok": True, "old_churned": False, "late_churn": True, "expanded": True}
    assert labels["expanded"].to_dict() == {
        "old_ok": False,
        "old_churned": False,
        "late_churn": False,
        "expanded": True,
    }


def two_by_two(k1: int, n1: int, k0: int, n0: int, segment: str = "All") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labels and behaviours with n1 accounts that did it (k1 retained) and n0 that did not (k0)."""
    ids = [f"{segment}-{i}" for i in range(n1 + n0)]
    did = [True] * n1 + [False] * n0
    retained = [True] * k1 + [False] * (n1 - k1) + [True] * k0 + [False] * (n0 - k0)
    labels = pd.DataFrame({"account_id": ids, "segment": segment, "retained": retained, "expanded": False})
    beh = pd.DataFrame({"account_id": [i for i, d in zip(ids, did, strict=True) if d]})
    beh["report_shared"] = True
    return labels, beh


def test_signals_on_newcombes_example() -> None:
    """Newcombe (1998), Table II example (a): 56/70 vs 48/80, method 10 interval 0.0524 to 0.3339."""
    labels, beh = two_by_two(56, 70, 48, 80)
    r = sg.signals(labels, beh, outcome="retained").iloc[0]
    assert r["behaviour"] == "report_shared"
    assert (r["accounts"], r["support"]) == (150, 70)
    assert r["support_share"] == pytest.approx(70 / 150)
    assert r["rate_with"] == pytest.approx(0.8)
    assert r["rate_without"] == pytest.approx(0.6)
    assert r["lift"] == pytest.approx(0.8 / 0.6)
    assert r["difference"] == pytest.approx(0.2)
    assert r["difference_low"] == pytest.approx(0.0524, abs=5e-5)
    assert r["difference_high"] == pytest.approx(0.3339, abs=5e-5)
    assert (r["rate_with_low"], r["rate_with_high"]) == pytest.approx(wilson(56, 70)[1:])
    assert bool(r["significant"]) is True


def test_signals_min_support_and_significance() -> None:
    labels, beh = two_by_two(3, 4, 10, 20)  # only 4 accounts did it
    assert sg.signals(labels, beh, outcome="retained", min_support=5).empty
    labels, beh = two_by_two(5, 10, 10, 20)  # 50 % either way
    r = sg.signals(labels, beh, outcome="retained").iloc[0]
    assert r["difference"] == 0 and r["lift"] == 1
    assert bool(r["significant"]) is False


def test_signals_within_segment() -> None:
    l1, b1 = two_by_two(9, 10, 3, 10, segment="SMB")
    l2, b2 = two_by_two(5, 10, 5, 10, segment="Enterprise")
    t = sg.signals(pd.concat([l1, l2]), pd.concat([b1, b2]), outcome="retained", within_segment=True)
    by = t.set_index("segment")
    assert by.loc["SMB", "difference"] == pytest.approx(0.6)
    assert (by.loc["SMB", "difference_low"], by.loc["SMB", "difference_high"]) == pytest.approx(
        (0.1705, 0.8090), abs=5e-5
    )  # Newcombe (1998) Table II example (b)
    assert by.loc["Enterprise", "difference"] == 0


def test_behaviour_matrix_counts_at_least_k_times() -> None:
    counts = pd.DataFrame({"account_id": [1, 1, 2], "event": ["login", "export", "login"], "n": [3, 1, 1]})
    early_ms = pd.DataFrame({"account_id": [2], "milestone_key": ["kickoff_complete"]})
    m = sg.behaviour_matrix(counts, early_ms, min_count=2).set_index("account_id")
    assert m.to_dict("index") == {
        1: {"login": True, "milestone:kickoff_complete": False},
        2: {"login": False, "milestone:kickoff_complete": True},
    }


def test_unknown_outcome_is_refused() -> None:
    labels, beh = two_by_two(5, 10, 5, 10)
    with pytest.raises(ValueError, match="unknown outcome"):
        sg.signals(labels, beh, outcome="happiness")


def test_transitions() -> None:
    ms = pd.DataFrame(
        {
            "account_id": [1, 1, 2, 2, 3],
            "milestone_key": ["a", "b", "a", "b", "a"],
            "completed_at": pd.to_datetime(
                ["2026-01-01", "2026-01-11", "2026-01-01", "2026-07-05", "2026-02-01"]
            ),  # account 2 reaches b after the as-of date
        }
    )
    t = sg.transitions(ms, ["a", "b"], AS_OF_END).iloc[0]
    assert (t["from"], t["to"], t["reached_from"], t["reached_both"]) == ("a", "b", 3, 1)
    assert t["probability"] == pytest.approx(1 / 3)
    assert (t["low"], t["high"]) == pytest.approx(wilson(1, 3)[1:])
    assert t["median_days_between"] == 10


# ----------------------------------------------------------------------------- backtest


def fractions(values: list[float]) -> pd.DataFrame:
    v = np.asarray(values, dtype=float)
    return pd.DataFrame(
        {
            "account_id": range(len(v)),
            "milestone_frac": v,
            "adoption_frac": v,
            "engagement_frac": v,
            "value_frac": v,
        }
    )


def test_backtest_perfect_separation_is_auc_one() -> None:
    fr = fractions([0.1, 0.2, 0.3, 0.7, 0.8, 0.9, 0.95])
    churned = pd.Series([True, True, True, False, False, False, False], index=range(7))
    r = bt.backtest(fr, churned, HealthModel(), day=30)
    assert r.auc == 1.0
    assert (r.accounts, r.churned, r.day) == (7, 3, 30)
    inverse = bt.backtest(fr, ~churned, HealthModel(), day=30)
    assert inverse.auc == 0.0


def test_backtest_random_scores_are_about_half() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    fr = fractions(rng.random(n))
    churned = pd.Series(rng.random(n) < 0.25, index=range(n))
    r = bt.backtest(fr, churned, HealthModel(), day=30)
    assert 0.46 < r.auc < 0.54
    assert r.auc_low < 0.5 < r.auc_high


def test_backtest_churn_rate_per_band() -> None:
    # Totals 90, 70, 50, 20 (all components equal): one band each, 4 accounts per band.
    fr = fractions([0.9] * 4 + [0.7] * 4 + [0.5] * 4 + [0.2] * 4)
    churned = pd.Series([False] * 4 + [True] + [False] * 3 + [True] * 2 + [False] * 2 + [True] * 4, index=range(16))
    b = bt.backtest(fr, churned, HealthModel(), day=60).bands.set_index("band")
    assert b.index.tolist() == ["Excellent", "On Track", "At Risk", "Critical"]
    assert b["accounts"].tolist() == [4, 4, 4, 4]
    assert b["churned"].tolist() == [0, 1, 2, 4]
    assert b["churn_rate"].tolist() == [0.0, 0.25, 0.5, 1.0]
    assert (b.loc["On Track", "churn_rate_low"], b.loc["On Track", "churn_rate_high"]) == pytest.approx(
        wilson(1, 4)[1:]
    )


def test_backtest_empty_band_has_no_rate() -> None:
    fr = fractions([0.9, 0.2])
    b = bt.backtest(fr, pd.Series([False, True], index=[0, 1]), HealthModel(), day=30).bands.set_index("band")
    assert b.loc["On Track", "accounts"] == 0 and math.isnan(b.loc["On Track", "churn_rate"])


def test_backtest_what_if_weights_rescore_the_same_fractions() -> None:
    fr = pd.DataFrame(
        {
            "account_id": [0, 1, 2, 3],
            "milestone_frac": [1.0, 1.0, 0.0, 0.0],
            "adoption_frac": [0.0, 0.0, 1.0, 1.0],
            "engagement_frac": 0.5,
            "value_frac": 0.5,
        }
    )
    churned = pd.Series([False, False, True, True], index=range(4))
    seed = bt.backtest(fr, churned, HealthModel(), day=30)
    milestone_heavy = bt.backtest(
        fr,
        churned,
        HealthModel().with_weights({"milestone": 70, "adoption": 10, "engagement": 10, "value": 10}),
        day=30,
    )
    assert seed.auc == 1.0  # 30 vs 25 points
    assert milestone_heavy.auc == 1.0
    adoption_heavy = bt.backtest(
        fr,
        churned,
        HealthModel().with_weights({"milestone": 10, "adoption": 70, "engagement": 10, "value": 10}),
        day=30,
    )
    assert adoption_heavy.auc == 0.0


def test_churned_within_12_months() -> None:
    acc = pd.DataFrame({"account_id": [1, 2, 3], "contract_start": pd.to_datetime(["2025-01-01"] * 3)})
    out = pd.DataFrame(
        {
            "account_id": [1, 2, 3],
            "date": pd.to_datetime(["2026-01-01", "2026-01-02", "2025-05-01"]),
            "type": ["churned", "churned", "contracted"],
        }
    )
    assert bt.churned_within_12m(acc, out).to_dict() == {1: True, 2: False, 3: False}


# ----------------------------------------------------------------------------- cohorts


def cohort_inputs():
    """As of 2025-06-30. Cohort 2024-01: observed for a year; cohort 2025-06: young."""
    acc = pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a3", "a4", "a5"],
            "contract_start": pd.to_datetime(["2024-01-10", "2024-01-20", "2025-06-01", "2025-06-25", "2025-07-02"]),
            "segment": ["SMB", "SMB", "SMB", "SMB", "SMB"],
            "arr": [1000.0, 3000.0, 500.0, 700.0, 900.0],
        }
    )
    start = acc.set_index("account_id")["contract_start"]
    concluded = pd.Series(
        {
            "a1": start["a1"] + pd.Timedelta(days=10),  # within 14 days
            "a2": start["a2"] + pd.Timedelta(days=20),  # too late
            "a3": start["a3"] + pd.Timedelta(days=5),
            "a4": start["a4"] + pd.Timedelta(days=2),  # done, but not observed for 14 days yet
        }
    )
    first_value = pd.Series({"a1": start["a1"] + pd.Timedelta(days=4), "a2": start["a2"] + pd.Timedelta(days=8)})
    churn = pd.Series({"a1": start["a1"] + pd.Timedelta(days=200)})
    outcomes = pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a2"],
            "date": [churn["a1"], start["a2"] + pd.Timedelta(days=100), start["a2"] + pd.Timedelta(days=400)],
            "type": ["churned", "expanded", "contracted"],
            # The churn carries no ARR change (the data contract allows that): a churned
            # account keeps none of its revenue all the same.
            "arr_change": [np.nan, 600.0, -500.0],
        }
    )
    bands = pd.Series({"a2": "Excellent", "a3": "At Risk", "a4": "Critical"})
    return acc, concluded, first_value, churn, outcomes, bands


def test_cohort_table() -> None:
    acc, concluded, first_value, churn, outcomes, bands = cohort_inputs()
    t = coh.cohort_table(
        acc,
        by="month",
        as_of_end=pd.Timestamp("2025-07-01"),  # as of 2025-06-30
        concluded_at=concluded,
        first_value_at=first_value,
        churn_date=churn,
        outcomes=outcomes,
        bands=bands,
        within_days=14,
    ).set_index("cohort")
    assert t.index.tolist() == ["2024-01", "2025-06"]  # a5 has not started yet
    old, young = t.loc["2024-01"], t.loc["2025-06"]
    assert (old["accounts"], old["completion_eligible"], old["completed"]) == (2, 2, 1)
    assert old["completion_rate"] == 0.5 and not old["completion_incomplete"]
    assert (young["accounts"], young["completion_eligible"], young["completed"]) == (2, 1, 1)
    assert bool(young["completion_incomplete"]) is True
    assert (old["retention_eligible"], old["retained_12m"], old["logo_retention_12m"]) == (2, 1, 0.5)
    assert (old["logo_retention_low"], old["logo_retention_high"]) == pytest.approx(wilson(1, 2)[1:])
    assert young["retention_eligible"] == 0 and math.isnan(young["logo_retention_12m"])
    # NRR: a1 churned within 12 months (0), a2 expanded to 3600; its contraction is past month 12.
    assert old["nrr_12m"] == pytest.approx(3600 / 4000)
    assert math.isnan(young["nrr_12m"])
    assert old["ttfv_median_days"] == 4.0  # KM over 4 and 8 days: half reached on day 4
    # Band mix over accounts not churned by the as-of date (a1 churned).
    assert (old["band_Excellent"], young["band_At Risk"], young["band_Critical"]) == (1.0, 0.5, 0.5)


def test_cohort_completion_within_each_segment_target() -> None:
    acc, concluded, first_value, churn, outcomes, bands = cohort_inputs()
    within = pd.Series({"a1": 14, "a2": 30, "a3": 40, "a4": 3})  # per account (segment targets)
    t = coh.cohort_table(
        acc,
        by="month",
        as_of_end=pd.Timestamp("2025-07-01"),
        concluded_at=concluded,
        first_value_at=first_value,
        churn_date=churn,
        outcomes=outcomes,
        bands=bands,
        within_days=within,
    ).set_index("cohort")
    assert (t.loc["2024-01", "completion_eligible"], t.loc["2024-01", "completed"]) == (2, 2)
    # a3 is 30 days in with a 40-day target: not eligible yet; a4 (3 days) is.
    assert (t.loc["2025-06", "completion_eligible"], t.loc["2025-06", "completed"]) == (1, 1)


def test_cohort_by_attribute_and_unknown_attribute() -> None:
    acc, *_ = cohort_inputs()
    acc["plan"] = ["Pro", None, "Pro", "Basic", "Pro"]
    assert coh.cohort_key(acc, "plan").tolist() == ["Pro", "(none)", "Pro", "Basic", "Pro"]
    assert coh.cohort_key(acc, "quarter").tolist() == ["2024-Q1", "2024-Q1", "2025-Q2", "2025-Q2", "2025-Q3"]
    with pytest.raises(ValueError, match="cannot group cohorts"):
        coh.cohort_key(acc, "favourite_colour")


def test_week_matrix_denominators_are_accounts_observed() -> None:
    acc, _concluded, first_value, *_ = cohort_inputs()
    shares, observed = coh.week_matrix(
        acc, by="month", reached_at=first_value, as_of_end=pd.Timestamp("2025-07-01"), weeks=3
    )
    assert shares.loc["2024-01"].tolist() == [0.5, 1.0, 1.0, 1.0]  # a1 on day 4, a2 on day 8
    assert observed.loc["2025-06"].tolist() == [2, 1, 1, 1, 1]  # accounts, then a3 only (a4 is 6 days in)
    assert shares.loc["2025-06", "week 0"] == 0.0


# ----------------------------------------------------------------------------- stats


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        (0, 10, (0.0, 0.0, 0.2775)),
        (5, 10, (0.5, 0.2366, 0.7634)),
        (10, 10, (1.0, 0.7225, 1.0)),
        (81, 263, (0.3080, 0.2553, 0.3662)),  # Newcombe (1998), Table I
        (1, 29, (0.0345, 0.0061, 0.1718)),
    ],
)
def test_wilson_known_values(k: int, n: int, expected: tuple) -> None:
    assert wilson(k, n) == pytest.approx(expected, abs=5e-5)
    p, lo, hi = wilson_arrays(np.array([k]), np.array([n]))
    assert (p[0], lo[0], hi[0]) == pytest.approx(wilson(k, n))


def test_wilson_without_a_denominator_is_nan() -> None:
    assert all(math.isnan(x) for x in wilson(0, 0))
    p, lo, hi = wilson_arrays(np.array([0, 1]), np.array([0, 2]))
    assert math.isnan(p[0]) and math.isnan(lo[0]) and math.isnan(hi[0]) and p[1] == 0.5


def test_newcombe_known_values() -> None:
    assert newcombe_diff(56, 70, 48, 80) == pytest.approx((0.2, 0.0524, 0.3339), abs=5e-5)
    assert newcombe_diff(9, 10, 3, 10) == pytest.approx((0.6, 0.1705, 0.8090), abs=5e-5)
    assert all(math.isnan(x) for x in newcombe_diff(1, 0, 1, 2))


@pytest.mark.parametrize(
    ("scores", "positives", "expected"),
    [
        ([0.1, 0.4, 0.4, 0.8], [False, True, False, True], 3.5 / 4),  # one tied pair counts half
        ([1, 1, 1, 1], [True, False, True, False], 0.5),
        ([3, 2, 1], [True, False, False], 1.0),
        ([1, 2, 3], [True, False, False], 0.0),
        ([5, 5, 2, 9, 5], [True, False, False, True, True], 5 / 6),  # the positive 5s tie with a negative 5
        ([1, 2], [True, True], math.nan),
    ],
)
def test_auc_with_ties(scores, positives, expected) -> None:
    got = auc(np.array(scores), np.array(positives))
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_auc_interval() -> None:
    lo, hi = auc_interval(0.8, 20, 30)
    assert 0.0 <= lo < 0.8 < hi <= 1.0
    lo2, hi2 = auc_interval(0.8, 200, 300)
    assert lo < lo2 < 0.8 < hi2 < hi  # more accounts, narrower
    # Hanley & McNeil (1982): Q1 = A / (2 - A), Q2 = 2A^2 / (1 + A).
    q1, q2 = 0.8 / 1.2, 2 * 0.64 / 1.8
    se = math.sqrt((0.8 * 0.2 + 19 * (q1 - 0.64) + 29 * (q2 - 0.64)) / 600)
    assert (lo, hi) == pytest.approx((0.8 - 1.959964 * se, 0.8 + 1.959964 * se), abs=1e-6)
    assert all(math.isnan(x) for x in auc_interval(math.nan, 1, 1))


def test_signals_of_exactly_the_same_accounts_share_a_row() -> None:
    """An event that always completes a milestone gives two identical rows; grouped, one row
    carries both. Another behaviour with the same counts but other accounts stays apart."""
    labels, beh = two_by_two(8, 10, 6, 20)
    beh["milestone:report_ready"] = True  # the same 10 accounts as report_shared
    other = labels["account_id"].iloc[10:20].tolist()  # 10 of those without it: 6 retained too
    swapped = pd.DataFrame({"account_id": other, "exported": True})
    beh = beh.merge(swapped, on="account_id", how="outer")
    plain = sg.signals(labels, beh, outcome="retained")
    grouped = sg.signals(labels, beh, outcome="retained", group_identical=True)
    assert len(plain) == 3 and len(grouped) == 2
    row = grouped.set_index("behaviour").loc["report_shared"]
    assert row["also"] == ("milestone:report_ready",)
    same = plain.set_index("behaviour")
    assert same.loc["report_shared"].equals(same.loc["milestone:report_ready"])
    assert grouped.set_index("behaviour").loc["exported", "also"] == ()
    assert "also" not in plain.columns
    line = sg.reading(grouped, "retained")[0]
    assert "report shared (done by the same accounts as milestone report ready)" in line
