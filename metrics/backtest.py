"""Health backtest: does the score at day 30 (or 60) predict churn within 12 months?

For accounts whose 12-month window has elapsed: AUC of the score for churn (1.0 = the
score ranks every churned account below every retained one, 0.5 = no better than a coin)
with a Hanley-McNeil interval, and the churn rate per band with Wilson intervals. What-if
weights re-score the same component fractions, so the comparison is like for like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from metrics.health import BANDS, HealthModel, score
from metrics.stats import auc, auc_interval, wilson_arrays


@dataclass
class BacktestResult:
    day: int
    accounts: int
    churned: int
    auc: float
    auc_low: float
    auc_high: float
    bands: pd.DataFrame
    scored: pd.DataFrame


def backtest(fractions: pd.DataFrame, churned: pd.Series, model: HealthModel, *, day: int) -> BacktestResult:
    """fractions: per account component fractions at `day`; churned: bool per account_id."""
    sc = score(fractions, model)
    sc["churned"] = sc["account_id"].map(churned).fillna(False).astype(bool)
    y = sc["churned"].to_numpy()
    a = auc(-sc["total"].to_numpy(float), y)
    lo, hi = auc_interval(a, int(y.sum()), int((~y).sum()))
    g = sc.groupby("band")["churned"].agg(["size", "sum"]).reindex(list(BANDS)).fillna(0)
    p, plo, phi = wilson_arrays(g["sum"].to_numpy(), g["size"].to_numpy())
    bands = pd.DataFrame(
        {
            "band": list(BANDS),
            "accounts": g["size"].astype(int).to_numpy(),
            "churned": g["sum"].astype(int).to_numpy(),
            "churn_rate": p,
            "churn_rate_low": plo,
            "churn_rate_high": phi,
        }
    )
    return BacktestResult(day, len(sc), int(y.sum()), a, lo, hi, bands, sc)


def churned_within_12m(accounts: pd.DataFrame, outcomes: pd.DataFrame) -> pd.Series:
    o = outcomes[outcomes["type"] == "churned"].merge(accounts[["account_id", "contract_start"]], on="account_id")
    hit = o.loc[o["date"] <= o["contract_start"] + pd.Timedelta(days=365), "account_id"].unique()
    return pd.Series(np.isin(accounts["account_id"], hit), index=accounts["account_id"].to_numpy())
