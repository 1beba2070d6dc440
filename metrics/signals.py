"""Early signals: which behaviours in an account's first N days go with retention and expansion.

For each event and milestone: did the account do it (at least k times) in its first N
days (days 0 to N - 1 after the contract start; anything before the start counts as day
0, for events and milestones alike, as time to value clamps it)? Outcome: retained at the first renewal, or expanded within 12 months; only accounts
whose 12-month outcome window has elapsed count. Report support, the rate with and
without, lift, and the difference with a 95 % Newcombe interval, optionally within each
segment. These are correlations, not causes. Plus milestone-to-milestone transitions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from metrics.stats import newcombe_diff, wilson

SIGNAL_COLUMNS = [
    "segment",
    "behaviour",
    "accounts",
    "support",
    "support_share",
    "rate_with",
    "rate_with_low",
    "rate_with_high",
    "rate_without",
    "lift",
    "difference",
    "difference_low",
    "difference_high",
    "significant",
]
TRANSITION_COLUMNS = [
    "from",
    "to",
    "reached_from",
    "reached_both",
    "probability",
    "low",
    "high",
    "median_days_between",
    "next",
]
OUTCOMES = {"retained": "Retained at first renewal", "expanded": "Expanded within 12 months"}


def outcome_labels(accounts: pd.DataFrame, outcomes: pd.DataFrame, as_of_end: pd.Timestamp) -> pd.DataFrame:
    """Per account with an elapsed 12-month window: retained (no churn by the first
    renewal) and expanded (an expansion within 12 months of the start)."""
    a = accounts[["account_id", "contract_start", "segment"]].copy()
    renewal = a["contract_start"] + pd.Timedelta(days=365)
    a = a[renewal < as_of_end]
    renewal = renewal.loc[a.index]
    o = outcomes.merge(a[["account_id", "contract_start"]], on="account_id")
    in12 = o[o["date"] <= o["contract_start"] + pd.Timedelta(days=365)]
    churned = set(in12.loc[in12["type"] == "churned", "account_id"])
    expanded = set(in12.loc[in12["type"] == "expanded", "account_id"])
    a["retained"] = ~a["account_id"].isin(churned)
    a["expanded"] = a["account_id"].isin(expanded)
    return a.drop(columns="contract_start")


def behaviour_matrix(early_counts: pd.DataFrame, early_milestones: pd.DataFrame, min_count: int) -> pd.DataFrame:
    """Wide boolean frame: account_id x behaviour (event names, 'milestone:<key>')."""
    ev = early_counts[early_counts["n"] >= min_count].assign(behaviour=lambda d: d["event"])
    ms = early_milestones.assign(behaviour=lambda d: "milestone:" + d["milestone_key"])
    long = pd.concat([ev[["account_id", "behaviour"]], ms[["account_id", "behaviour"]]], ignore_index=True)
    if long.empty:
        return pd.DataFrame({"account_id": []})
    wide = pd.crosstab(long["account_id"], long["behaviour"]).astype(bool)
    return wide.reset_index()


def signals(
    labels: pd.DataFrame,
    behaviours: pd.DataFrame,
    *,
    outcome: str,
    within_segment: bool = False,
    min_support: int = 5,
    group_identical: bool = False,
) -> pd.DataFrame:
    """One row per behaviour (per segment with within_segment), strongest first.

    group_identical: behaviours done by exactly the same accounts (an event that always
    completes a milestone) share the row of the first, whose `also` lists the others."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
    d = labels.merge(behaviours, on="account_id", how="left")
    cols = [c for c in behaviours.columns if c != "account_id"]
    d[cols] = d[cols].astype("boolean").fillna(False).astype(bool)
    groups = d.groupby("segment") if within_segment else [("All", d)]
    rows = []
    for seg, g in groups:
        y = g[outcome].to_numpy(bool)
        seen: dict[bytes, dict] = {}
        for c in cols:
            x = g[c].to_numpy(bool)
            n1, n0 = int(x.sum()), int((~x).sum())
            if n1 < min_support or n0 < min_support:
                continue
            same = np.packbits(x).tobytes()
            if group_identical and same in seen:
                seen[same]["also"] = (*seen[same]["also"], c)
                continue
            k1, k0 = int(y[x].sum()), int(y[~x].sum())
            r1, r1lo, r1hi = wilson(k1, n1)
            r0, _, _ = wilson(k0, n0)
            diff, lo, hi = newcombe_diff(k1, n1, k0, n0)
            rows.append(
                {
                    "segment": seg,
                    "behaviour": c,
                    "accounts": len(g),
                    "support": n1,
                    "support_share": n1 / len(g),
                    "rate_with": r1,
                    "rate_with_low": r1lo,
                    "rate_with_high": r1hi,
                    "rate_without": r0,
                    "lift": r1 / r0 if r0 > 0 else math.nan,
                    "difference": diff,
                    "difference_low": lo,
                    "difference_high": hi,
                    "significant": bool(lo > 0 or hi < 0),
                    **({"also": ()} if group_identical else {}),
                }
            )
            seen[same] = rows[-1]
    out = pd.DataFrame(rows, columns=SIGNAL_COLUMNS + (["also"] if group_identical else []))
    if out.empty:
        return out
    return out.sort_values(["segment", "difference_low"], ascending=[True, False]).reset_index(drop=True)


def transitions(milestones: pd.DataFrame, order: list[str], as_of_end: pd.Timestamp) -> pd.DataFrame:
    """P(reach B | reached A) for milestone pairs in the configured order, with intervals,
    plus the median days from A to B among accounts that reached both."""
    done = milestones[milestones["completed_at"].notna() & (milestones["completed_at"] < as_of_end)]
    wide = done.pivot_table(index="account_id", columns="milestone_key", values="completed_at", aggfunc="min")
    rows = []
    for i, a in enumerate(order):
        if a not in wide:
            continue
        has_a = wide[a].notna()
        for b in order[i + 1 :]:
            if b not in wide:
                continue
            n = int(has_a.sum())
            k = int((has_a & wide[b].notna()).sum())
            p, lo, hi = wilson(k, n)
            both = wide.loc[has_a & wide[b].notna()]
            days = ((both[b] - both[a]).dt.total_seconds() / 86400).median() if len(both) else math.nan
            rows.append(
                {
                    "from": a,
                    "to": b,
                    "reached_from": n,
                    "reached_both": k,
                    "probability": p,
                    "low": lo,
                    "high": hi,
                    "median_days_between": days,
                    "next": b == order[i + 1],
                }
            )
    return pd.DataFrame(rows, columns=TRANSITION_COLUMNS)


def behaviour_label(b: str) -> str:
    """'milestone:first_value' -> 'milestone first value'; 'user_invited' -> 'user invited'."""
    return f"milestone {b.split(':', 1)[1].replace('_', ' ')}" if b.startswith("milestone:") else b.replace("_", " ")


def reading(table: pd.DataFrame, outcome: str, top: int = 3) -> list[str]:
    """Plain-language sentences about the strongest significant signals."""
    if table.empty:
        return []
    sig = table[table["significant"]]
    sig = sig.reindex(sig["difference"].abs().sort_values(ascending=False).index).head(top)
    label = OUTCOMES[outcome].lower()
    out = []
    for _, r in sig.iterrows():
        b = r["behaviour"]
        who = (
            f"that reached {b.split(':', 1)[1].replace('_', ' ')}"
            if b.startswith("milestone:")
            else f"with {b.replace('_', ' ')}"
        )
        also = r.get("also") or ()
        if len(also):
            who += f" (done by the same accounts as {', '.join(behaviour_label(x) for x in also)})"
        direction = "more" if r["difference"] > 0 else "less"
        where = "" if r["segment"] == "All" else f" ({r['segment']})"
        out.append(
            f"Accounts {who} early{where} were {abs(r['difference']) * 100:.0f} points {direction} likely to be "
            f"{label} ({r['rate_with']:.0%} of {r['support']} vs {r['rate_without']:.0%}; "
            f"95 % interval {r['difference_low'] * 100:+.0f} to {r['difference_high'] * 100:+.0f} points)."
        )
    return out
