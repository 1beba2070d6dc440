"""Checklist items bound to a metric: the value measured from events against the item's
target, and whether the manual status contradicts it (marked done while the measurement
is below target, or not done while it meets the target). Pure: no database, no streamlit."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

# metric -> (kind, the fact it is computed from); a "pct" metric is that fact over licensed seats.
METRICS: dict[str, tuple[str, str]] = {
    "users_provisioned_pct": ("pct", "users_ever"),
    "admins_trained": ("count", "admins_trained"),
    "analysts_trained": ("count", "analysts_trained"),
    "weekly_active_users_pct": ("pct", "weekly_users"),
    "dashboards_created": ("count", "dashboards_created"),
    "reports_shared": ("count", "reports_shared"),
}
FACTS = sorted({f for _, f in METRICS.values()})
# Statuses that claim the criterion is met, and those that claim it is not (n/a claims nothing).
DONE = "done"
OPEN = ("not started", "in progress", "blocked")

_TARGET = re.compile(r"^\s*(?:>=|≥)?\s*(\d+(?:[.,]\d+)?)\s*(%?)\s*\+?\s*$")


@dataclass(frozen=True)
class Target:
    threshold: float  # a share (0.8) for percentages, a count otherwise
    kind: str  # "pct" or "count"


def parse_target(text: object) -> Target | None:
    """'80%+' -> 0.8 pct, '100%' -> 1.0 pct, '3+' -> 3 count; None when it is no number."""
    if not isinstance(text, str):
        return None
    m = _TARGET.match(text)
    if not m:
        return None
    n = float(m.group(1).replace(",", "."))
    return Target(n / 100, "pct") if m.group(2) else Target(n, "count")


def measured_value(metric: object, facts: dict, seats: object) -> float | None:
    """The metric's value from an account's facts (a share for pct metrics); None when it
    cannot be measured (unknown metric, or seats unknown for a share)."""
    if not isinstance(metric, str) or metric not in METRICS:
        return None
    kind, fact = METRICS[metric]
    v = facts.get(fact)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if kind == "pct":
        if seats is None or (isinstance(seats, float) and math.isnan(seats)) or not seats:
            return None
        return float(v) / float(seats)
    return float(v)


def fmt_measured(metric: str, value: float) -> str:
    """As the checklist shows a measured value: '36%' or '1'."""
    return f"{value:.0%}" if METRICS[metric][0] == "pct" else f"{value:.0f}"


@dataclass(frozen=True)
class Verdict:
    measured: str  # formatted measured value
    met: bool
    status: str  # the status the measurement supports
    reason: str


def assess(*, metric: object, status: object, target: object, value: float | None) -> Verdict | None:
    """A Verdict when the manual status contradicts the measured value, else None."""
    t = parse_target(target)
    if value is None or t is None or not isinstance(metric, str) or metric not in METRICS:
        return None
    if METRICS[metric][0] != t.kind:
        return None
    met = value >= t.threshold - 1e-9
    shown = fmt_measured(metric, value)
    if status == DONE and not met:
        return Verdict(shown, False, "in progress", f"marked done, but measured {shown} is below the target {target}")
    if status in OPEN and met:
        return Verdict(shown, True, DONE, f"marked {status}, but measured {shown} meets the target {target}")
    return None


def disagreements(items: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    """Bound checklist items whose status contradicts the measurement (vectorised: the
    portfolio has one row per account and bound item).

    items: account_id, criterion, status, target, metric (other columns are kept);
    facts: account_id, seats and the FACTS columns (an account absent from it has no
    events: counts 0, shares unknown). Returns the contradicting items with measured,
    supported_status and reason."""
    cols = [*items.columns, "measured", "supported_status", "reason"]
    if items.empty:
        return pd.DataFrame(columns=cols)
    df = items[items["metric"].isin(list(METRICS))].reset_index(drop=True)
    f = facts.set_index("account_id")
    kind = df["metric"].map({m: k for m, (k, _) in METRICS.items()})
    fact = df["metric"].map({m: f for m, (_, f) in METRICS.items()})
    raw = pd.Series(float("nan"), index=df.index)
    for name in FACTS:
        sel = fact == name
        raw[sel] = df.loc[sel, "account_id"].map(f[name]).fillna(0).astype(float) if name in f else 0.0
    seats = pd.to_numeric(df["account_id"].map(f["seats"]) if "seats" in f else None, errors="coerce")
    value = raw.where(kind == "count", raw / seats.where(seats > 0))
    targets = {t: parse_target(t) for t in df["target"].dropna().unique()}
    thr = df["target"].map({t: p.threshold for t, p in targets.items() if p}).astype(float)
    tkind = df["target"].map({t: p.kind for t, p in targets.items() if p})
    ok = value.notna() & thr.notna() & (tkind == kind)
    met = value >= thr - 1e-9
    wrong_done = ok & (df["status"] == DONE) & ~met
    wrong_open = ok & df["status"].isin(OPEN) & met
    out = df[wrong_done | wrong_open].copy()
    if out.empty:
        return pd.DataFrame(columns=cols)
    v = value[out.index]
    out["measured"] = [f"{x:.0%}" if k == "pct" else f"{x:.0f}" for x, k in zip(v, kind[out.index], strict=True)]
    done = wrong_done[out.index]
    out["supported_status"] = done.map({True: "in progress", False: DONE})
    out["reason"] = [
        f"marked done, but measured {m} is below the target {t}"
        if d
        else f"marked {s}, but measured {m} meets the target {t}"
        for m, t, s, d in zip(out["measured"], out["target"], out["status"], done, strict=True)
    ]
    return out.reset_index(drop=True)[cols]
