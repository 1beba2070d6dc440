"""Time to value: Kaplan-Meier from contract start to a milestone, censoring-aware.

Accounts that have not reached the milestone are censored at the as-of date or at churn,
whichever comes first. Per group: KM curve with 95 % bands, median with its interval,
share reached by day 30/60/90 (by the end of that day, metrics/days.py) with an interval
that does not collapse at 0 or 100 % (see `reached_by`), the log-rank test across
groups, and the naive median over completers only (biased: it ignores everyone still on
the way). A milestone completed before the contract start counts as day 0.

lifelines (and with it SciPy) is imported only inside `kaplan_meier`, where a curve and the
log-rank test are computed: the medians and their intervals (`km_median`, `km_median_ci`)
are NumPy, so the reports and pages that need only those start without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from metrics.days import end_of, end_offset
from metrics.stats import Z95, wilson

if TYPE_CHECKING:
    from lifelines import KaplanMeierFitter

CHECKPOINTS = (30, 60, 90)
GROUP_COLUMNS = [
    "group",
    "accounts",
    "reached",
    "censored",
    "median_days",
    "median_low",
    "median_high",
    "naive_median_days",
    *[f"reached_by_{t}d{s}" for t in CHECKPOINTS for s in ("", "_low", "_high")],
    "logrank_p",
]


@dataclass
class TTVResult:
    milestone: str
    groups: pd.DataFrame  # one row per group
    curves: pd.DataFrame  # group, day, reached, reached_low, reached_high
    durations: pd.DataFrame  # account_id, group, days, reached
    logrank_p: float = math.nan
    meta: dict = field(default_factory=dict)


def durations(
    accounts: pd.DataFrame, completed_at: pd.Series, churn_date: pd.Series, as_of_end: pd.Timestamp
) -> pd.DataFrame:
    """Per account: days from contract start to the milestone, or to censoring.

    accounts: account_id, contract_start; completed_at / churn_date indexed by account_id.
    Accounts that start after the as-of date are left out.
    """
    a = accounts[["account_id", "contract_start"]].copy()
    a = a[a["contract_start"] < as_of_end]
    done = a["account_id"].map(completed_at)
    churn = a["account_id"].map(churn_date)
    churned = churn.notna() & (churn < as_of_end)
    # Observed through the end of the as-of day, or of the churn day: a milestone reached
    # on the day of churn still counts.
    observed_end = end_of(churn).where(churned, as_of_end).clip(upper=as_of_end)
    reached = done.notna() & (done < observed_end)
    # Censored at the churn date, or at the end of the as-of day.
    censor = churn.where(churned, as_of_end)
    end = done.where(reached, censor)
    days = (end - a["contract_start"]).dt.total_seconds() / 86400
    return pd.DataFrame(
        {
            "account_id": a["account_id"].to_numpy(),
            "days": np.maximum(days.to_numpy(), 0.0),
            "reached": reached.to_numpy(),
        }
    )


def km_median(days: np.ndarray, reached: np.ndarray) -> float:
    """Kaplan-Meier median (first time the survival falls to 0.5 or below), as lifelines'
    median_survival_time_ but without building the fitter: for many small groups."""
    days = np.asarray(days, dtype=float)
    reached = np.asarray(reached, dtype=bool)
    if len(days) == 0 or not reached.any():
        return math.nan
    times, inv = np.unique(days, return_inverse=True)
    deaths = np.bincount(inv, weights=reached, minlength=len(times))
    removed = np.bincount(inv, minlength=len(times))
    at_risk = (len(days) - np.concatenate([[0], np.cumsum(removed)[:-1]])).astype(float)
    # The product of (1 - d/n) the way lifelines forms it (exp of summed logs), so that a
    # curve landing on 0.5 exactly gives the same median as KaplanMeierFitter.
    with np.errstate(divide="ignore"):
        surv = np.exp(np.cumsum(np.log(at_risk - deaths) - np.log(at_risk)))
    hit = np.flatnonzero(surv <= 0.5)
    return float(times[hit[0]]) if len(hit) else math.nan


def _km_steps(days: np.ndarray, reached: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Kaplan-Meier table as lifelines' KaplanMeierFitter builds it: its timeline (the
    distinct durations, plus time 0 where everyone enters if no duration is 0), log S(t) as
    the cumulative sum of log(n - d) - log(n), and Greenwood's sum of d / (n (n - d)) with
    the terms where everyone left (n == d) taken as 0."""
    times, inv = np.unique(days, return_inverse=True)
    deaths = np.bincount(inv, weights=reached, minlength=len(times))
    removed = np.bincount(inv, minlength=len(times)).astype(float)
    if times[0] > 0:  # lifelines' births at min(0, first duration)
        times = np.concatenate([[0.0], times])
        deaths = np.concatenate([[0.0], deaths])
        removed = np.concatenate([[0.0], removed])
    at_risk = len(days) - np.concatenate([[0.0], np.cumsum(removed)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.cumsum(np.log(at_risk - deaths) - np.log(at_risk))
        var = deaths / (at_risk * (at_risk - deaths))
    var[np.isposinf(var)] = 0.0
    return times, log_s, np.cumsum(var)


def _first_at_or_below(times: np.ndarray, curve: np.ndarray, q: float) -> float:
    """lifelines' qth_survival_time: the first time the curve is at or below q (a binary
    search over the curve as lifelines does it), NaN where it never gets there."""
    if curve[-1] > q:
        return math.nan
    return float(times[np.searchsorted(-curve, -q, side="left")])


def km_median_ci(days: np.ndarray, reached: np.ndarray, z: float = Z95) -> tuple[float, float]:
    """The 95 % interval of the Kaplan-Meier median, as lifelines reports it with
    median_survival_times(kmf.confidence_interval_): the times at which the lower and the
    upper band of the exponential Greenwood (log(-log)) interval of S(t) fall to 0.5 or
    below. NaN for a bound that never does (or with no accounts)."""
    days = np.asarray(days, dtype=float)
    reached = np.asarray(reached, dtype=bool)
    if len(days) == 0:
        return (math.nan, math.nan)
    times, log_s, var = _km_steps(days, reached)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.log(np.exp(log_s))  # as lifelines: the log of the survival function it stored
        spread = z * np.sqrt(var) / v
        lower = np.exp(-np.exp(np.log(-v) - spread))
        upper = np.exp(-np.exp(np.log(-v) + spread))
    lower[np.isnan(lower)] = 1.0
    upper[np.isnan(upper)] = 1.0
    return (_first_at_or_below(times, lower, 0.5), _first_at_or_below(times, upper, 0.5))


def reached_by(kmf: KaplanMeierFitter, days: np.ndarray, reached: np.ndarray, n: int) -> tuple[float, float, float]:
    """Share that reached the milestone by (the end of) day N, with a 95 % interval that
    does not collapse to a point at 0 % or 100 %.

    Nobody censored before the end of day N: the share is a plain proportion k of n, so
    the Wilson interval. Otherwise the Kaplan-Meier estimate with lifelines' exponential
    Greenwood (log(-log)) interval, which has zero width where the estimate is 0 or 1;
    there the Wilson interval over the accounts whose state at day N is known (not
    censored before it) takes its place.
    """
    end = end_offset(n)  # durations in days: day N ends at N + 1
    censored_early = (~reached) & (days < end)
    if not censored_early.any():
        return wilson(int((reached & (days < end)).sum()), len(days))
    before = np.nextafter(end, 0.0)  # just before day N + 1 begins
    p = 1 - float(kmf.survival_function_at_times(before).iloc[0])
    cil = kmf.confidence_interval_
    band = cil.loc[:before].iloc[-1] if (cil.index <= before).any() else pd.Series([1.0, 1.0])
    lo, hi = 1 - float(band.iloc[1]), 1 - float(band.iloc[0])
    if hi - lo <= 1e-12:
        known = len(days) - int(censored_early.sum())
        _, lo, hi = wilson(p * known, known)
    return p, lo, hi


def kaplan_meier(
    d: pd.DataFrame, group_col: str | None = None, milestone: str = "", *, logrank: bool = True
) -> TTVResult:
    """KM per group (or one group 'All') from a durations frame."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test
    from lifelines.utils import median_survival_times

    d = d.copy()
    d["group"] = d[group_col].fillna("(none)").astype(str) if group_col else "All"
    rows, curves = [], []
    for g, part in d.groupby("group", sort=True):
        kmf = KaplanMeierFitter(label=str(g))
        kmf.fit(part["days"], event_observed=part["reached"])
        med = float(kmf.median_survival_time_)
        ci = median_survival_times(kmf.confidence_interval_)
        lo, hi = (float(ci.iloc[0, 0]), float(ci.iloc[0, 1])) if len(ci) else (math.nan, math.nan)
        row = {
            "group": g,
            "accounts": len(part),
            "reached": int(part["reached"].sum()),
            "censored": int((~part["reached"]).sum()),
            "median_days": med if np.isfinite(med) else math.nan,
            "median_low": lo if np.isfinite(lo) else math.nan,
            "median_high": hi if np.isfinite(hi) else math.nan,
            "naive_median_days": float(part.loc[part["reached"], "days"].median())
            if part["reached"].any()
            else math.nan,
        }
        sf = kmf.survival_function_
        cil = kmf.confidence_interval_
        for t in CHECKPOINTS:
            p, lo, hi = reached_by(kmf, part["days"].to_numpy(float), part["reached"].to_numpy(bool), t)
            row[f"reached_by_{t}d"], row[f"reached_by_{t}d_low"], row[f"reached_by_{t}d_high"] = p, lo, hi
        rows.append(row)
        curves.append(
            pd.DataFrame(
                {
                    "group": g,
                    "day": sf.index.to_numpy(),
                    "reached": 1 - sf.iloc[:, 0].to_numpy(),
                    "reached_low": 1 - cil.iloc[:, 1].to_numpy(),
                    "reached_high": 1 - cil.iloc[:, 0].to_numpy(),
                }
            )
        )
    groups = pd.DataFrame(rows)
    p = math.nan
    if logrank and len(groups) > 1:
        p = float(multivariate_logrank_test(d["days"], d["group"], d["reached"]).p_value)
    groups["logrank_p"] = p
    return TTVResult(
        milestone=milestone,
        groups=groups,
        curves=pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        durations=d[["account_id", "group", "days", "reached"]],
        logrank_p=p,
    )
