"""Cohorts of accounts by contract-start period or by any attribute (PRODUCT.md §4).

Per cohort: size; onboarding completion by day N (metrics/days.py: up to the end of the
N-th day after the start), known only once every account of the cohort has been observed
through its day N: until then the cohort is marked incomplete and its rate is not yet
known (the counts observed so far are still given); median time to first
value by Kaplan-Meier; 12-month logo retention and net revenue retention (accounts
observed for 12 months); health band mix (accounts not churned). Plus a cohort x
week-since-start matrix of the share that reached a milestone.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from metrics.days import by_day, observed_through
from metrics.health import BANDS
from metrics.stats import wilson_arrays
from metrics.time_to_value import durations, km_median

COLUMNS = [
    "cohort",
    "accounts",
    "completion_eligible",
    "completed",
    "completion_rate",
    "completion_low",
    "completion_high",
    "completion_incomplete",
    "ttfv_median_days",
    "retention_eligible",
    "retained_12m",
    "logo_retention_12m",
    "logo_retention_low",
    "logo_retention_high",
    "nrr_12m",
    *[f"band_{b}" for b in BANDS],
]


def cohort_key(accounts: pd.DataFrame, by: str) -> pd.Series:
    """'month', 'quarter' or an account attribute -> the cohort label per account."""
    if by == "month":
        return accounts["contract_start"].dt.strftime("%Y-%m")
    if by == "quarter":
        s = accounts["contract_start"]
        return s.dt.year.astype(str) + "-Q" + s.dt.quarter.astype(str)
    if by not in accounts.columns:
        raise ValueError(f"cannot group cohorts by {by!r}: use month, quarter or an account attribute")
    return accounts[by].fillna("(none)").astype(str)


def cohort_table(
    accounts: pd.DataFrame,
    *,
    by: str,
    as_of_end: pd.Timestamp,
    concluded_at: pd.Series,
    first_value_at: pd.Series,
    churn_date: pd.Series,
    outcomes: pd.DataFrame,
    bands: pd.Series,
    within_days: int | pd.Series,
) -> pd.DataFrame:
    """One row per cohort. `within_days` is a number or a per-account Series (segment target)."""
    a = accounts[accounts["contract_start"] < as_of_end].copy()
    if a.empty:
        return pd.DataFrame(columns=COLUMNS)
    a["cohort"] = cohort_key(a, by).to_numpy()
    age = (as_of_end - a["contract_start"]).dt.total_seconds() / 86400
    n_days = (
        a["account_id"].map(within_days)
        if isinstance(within_days, pd.Series)
        else pd.Series(float(within_days), index=a.index)
    )
    done = a["account_id"].map(concluded_at)
    # Observed through the end of day N: only then is "completed by day N" known.
    a["eligible_completion"] = observed_through(a["contract_start"], as_of_end, n_days)
    a["completed_in_time"] = (done < as_of_end).to_numpy() & by_day(a["contract_start"], done, n_days)
    churn = a["account_id"].map(churn_date)
    a["eligible_12m"] = age >= 365
    a["churned_12m"] = churn.notna() & (churn <= a["contract_start"] + pd.Timedelta(days=365)) & (churn < as_of_end)
    a["churned_now"] = churn.notna() & (churn < as_of_end)
    # 12-month revenue: starting ARR plus every change dated within the first 12 months.
    o = outcomes.merge(a[["account_id", "contract_start"]], on="account_id")
    o = o[(o["date"] <= o["contract_start"] + pd.Timedelta(days=365)) & (o["date"] < as_of_end)]
    change = o.groupby("account_id")["arr_change"].sum()
    a["arr_12m"] = a["arr"].fillna(0) + a["account_id"].map(change).fillna(0)
    # A churned account keeps none of its revenue, whether or not its churn row carries the
    # lost ARR as arr_change (the data contract leaves it optional).
    a.loc[a["churned_12m"], "arr_12m"] = 0.0
    a["band"] = a["account_id"].map(bands)

    d = durations(a, first_value_at, churn_date, as_of_end)
    d["cohort"] = d["account_id"].map(a.set_index("account_id")["cohort"])
    ttv_median = {c: km_median(g["days"].to_numpy(), g["reached"].to_numpy()) for c, g in d.groupby("cohort")}

    rows = []
    for c, g in a.groupby("cohort", sort=True):
        elig = g[g["eligible_completion"]]
        elig12 = g[g["eligible_12m"]]
        alive = g[~g["churned_now"]]
        row = {
            "cohort": c,
            "accounts": len(g),
            "completion_eligible": len(elig),
            "completed": int(elig["completed_in_time"].sum()),
            "completion_incomplete": len(elig) < len(g),
            "ttfv_median_days": ttv_median.get(c, math.nan),
            "retention_eligible": len(elig12),
            "retained_12m": int((~elig12["churned_12m"]).sum()),
            "nrr_12m": float(elig12["arr_12m"].sum() / elig12["arr"].fillna(0).sum())
            if elig12["arr"].fillna(0).sum() > 0
            else math.nan,
        }
        for b in BANDS:
            row[f"band_{b}"] = float((alive["band"] == b).mean()) if len(alive) else math.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    p, lo, hi = wilson_arrays(df["completed"], df["completion_eligible"])
    # A cohort not yet observed through day N for every account has no completion rate:
    # the accounts observed so far are not a fair sample (the short-target segments finish
    # first), so the rate is "not yet known" rather than a rate over a biased subset.
    young = df["completion_incomplete"].to_numpy(bool)
    df["completion_rate"], df["completion_low"], df["completion_high"] = (
        np.where(young, np.nan, x) for x in (p, lo, hi)
    )
    p, lo, hi = wilson_arrays(df["retained_12m"], df["retention_eligible"])
    df["logo_retention_12m"], df["logo_retention_low"], df["logo_retention_high"] = p, lo, hi
    return df[COLUMNS]


def week_matrix(
    accounts: pd.DataFrame,
    *,
    by: str,
    reached_at: pd.Series,
    as_of_end: pd.Timestamp,
    weeks: int = 16,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Share of each cohort that reached a milestone by the end of week w since start
    (week w = days 7w to 7w + 6 after the start, so "by day 7w + 6" in metrics/days.py).

    Returns (shares, observed): a cell's denominator is the cohort's accounts observed
    through that week; `observed` < cohort size marks the cell incomplete, and a cell
    with nobody observed yet is empty.
    """
    a = accounts[accounts["contract_start"] < as_of_end].copy()
    a["cohort"] = cohort_key(a, by).to_numpy()
    t = a["account_id"].map(reached_at)
    t = t.where(t < as_of_end)
    shares, observed = {}, {}
    for w in range(weeks + 1):
        # Week w is days 7w to 7w + 6: a cell counts "by day 7w + 6", observed through it.
        last_day = 7 * w + 6
        obs = pd.Series(observed_through(a["contract_start"], as_of_end, last_day), index=a.index)
        hit = obs & by_day(a["contract_start"], t, last_day)
        grp = pd.DataFrame({"cohort": a["cohort"], "obs": obs, "hit": hit}).groupby("cohort")
        n_obs = grp["obs"].sum()
        shares[w] = grp["hit"].sum() / n_obs.replace(0, np.nan)
        observed[w] = n_obs
    shares_df = pd.DataFrame(shares)
    observed_df = pd.DataFrame(observed)
    shares_df.columns = [f"week {w}" for w in shares_df.columns]
    observed_df.columns = shares_df.columns
    size = a.groupby("cohort").size()
    observed_df.insert(0, "accounts", size)
    return shares_df.sort_index(), observed_df.sort_index()
