"""The seed's onboarding health score, configurable, point-in-time and explained.

Milestone Progress 30: milestones due by the as-of date, completed on time (late ones
earn `late_credit` of their share); nothing due yet earns full points.
User Adoption 25: active end-users in the last 14 days over licensed seats; 80 %+ = full.
Engagement Quality 25: days with activity in the last 14; daily use (every working day,
`engagement_full_days` = 10 of 14) = full.
Value Realization 20: value milestones reached and Value Realization checklist
criteria met (half each when the checklist has such criteria).
Bands (lower bounds): Excellent 80, On Track 60, At Risk 40, else Critical.
New accounts (the first `new_account_days` days since contract start, default 14) are
"too early to score": little is due and there is no history, so their band is not judged
(too_early_to_score) and they count neither as at risk nor on the attention list.

Input is one row per account with the facts as of that account's as-of date, so the
same function scores today, any past date, or each account's day 30.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metrics.days import by_date, end_of

COMPONENTS = ("milestone", "adoption", "engagement", "value")
COMPONENT_LABELS = {
    "milestone": "Milestone progress",
    "adoption": "User adoption",
    "engagement": "Engagement quality",
    "value": "Value realization",
}
BANDS = ("Excellent", "On Track", "At Risk", "Critical")
BAND_COLORS = {"Excellent": "#2e7d32", "On Track": "#f9a825", "At Risk": "#ef6c00", "Critical": "#c62828"}


@dataclass(frozen=True)
class HealthModel:
    weights: dict = field(default_factory=lambda: {"milestone": 30, "adoption": 25, "engagement": 25, "value": 20})
    bands: dict = field(default_factory=lambda: {"excellent": 80, "on_track": 60, "at_risk": 40})
    adoption_window_days: int = 14
    adoption_full_share: float = 0.8
    engagement_window_days: int = 14
    engagement_full_days: float = 10
    late_credit: float = 0.5
    new_account_days: int = 14
    version: int = 1

    @classmethod
    def from_settings(cls, value: dict, version: int = 1) -> HealthModel:
        return cls(
            weights={k: float(value["weights"][k]) for k in COMPONENTS},
            bands={k: float(v) for k, v in value["bands"].items()},
            adoption_window_days=int(value.get("adoption_window_days", 14)),
            adoption_full_share=float(value.get("adoption_full_share", 0.8)),
            engagement_window_days=int(value.get("engagement_window_days", 14)),
            engagement_full_days=engagement_full_days(value),
            late_credit=float(value.get("late_credit", 0.5)),
            new_account_days=int(value.get("new_account_days", 14)),
            version=version,
        )

    def with_weights(self, weights: dict) -> HealthModel:
        if set(weights) != set(COMPONENTS):
            raise ValueError(
                f"health weights must be given for exactly {', '.join(COMPONENTS)}; got {', '.join(weights) or 'none'}"
            )
        return HealthModel(**{**self.__dict__, "weights": {k: float(weights[k]) for k in COMPONENTS}})

    def validate(self) -> None:
        total = sum(self.weights.values())
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("health weights must not be negative")
        if not math.isclose(total, 100, abs_tol=1e-6):
            raise ValueError(f"health weights must add up to 100, they add up to {total:g}")
        b = self.bands
        if not (100 >= b["excellent"] > b["on_track"] > b["at_risk"] > 0):
            raise ValueError("band thresholds must satisfy 100 >= Excellent > On Track > At Risk > 0")


def engagement_full_days(value: dict) -> float:
    """Active days for full engagement points; settings stored before it was a number of
    days gave a share of the window instead."""
    if "engagement_full_days" in value:
        return float(value["engagement_full_days"])
    window = int(value.get("engagement_window_days", 14))
    return float(round(float(value.get("engagement_full_share", 5 / 7)) * window, 6))


TOO_EARLY = "Too early to score"
AT_RISK_BANDS = ("At Risk", "Critical")


def too_early_to_score(age_days: pd.Series, status: pd.Series, days: int) -> pd.Series:
    """New accounts: live and within their first `days` days since contract start (day 0 on)."""
    age = pd.to_numeric(age_days, errors="coerce")
    return (age >= 0) & (age < days) & (status != "churned")


def at_risk(band: pd.Series, status: pd.Series, too_early: pd.Series) -> pd.Series:
    """Live accounts old enough to score whose band is At Risk or Critical."""
    return band.isin(AT_RISK_BANDS) & (status != "churned") & ~too_early


def band_of(total: pd.Series | np.ndarray | float, bands: dict) -> np.ndarray:
    t = np.asarray(total, dtype=float)
    return np.select(
        [t >= bands["excellent"], t >= bands["on_track"], t >= bands["at_risk"]],
        ["Excellent", "On Track", "At Risk"],
        default="Critical",
    )


def fractions(facts: pd.DataFrame, model: HealthModel) -> pd.DataFrame:
    """Share (0-1) of each component earned, per account.

    facts columns: n_due, n_on_time, n_late, active_users, licensed_seats, active_days,
    value_ms_total, value_ms_done, value_items, value_done.
    """
    f = facts
    n_due = f["n_due"].to_numpy(float)
    earned = f["n_on_time"].to_numpy(float) + model.late_credit * f["n_late"].to_numpy(float)
    milestone = np.where(n_due > 0, earned / np.where(n_due > 0, n_due, 1), 1.0)

    seats = pd.to_numeric(f["licensed_seats"], errors="coerce").to_numpy(float)
    users = f["active_users"].fillna(0).to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        adoption_share = np.where(seats > 0, users / seats, np.nan)
    adoption = np.clip(np.nan_to_num(adoption_share, nan=0.0) / model.adoption_full_share, 0, 1)

    days = f["active_days"].fillna(0).to_numpy(float)
    engagement = np.clip(days / model.engagement_full_days, 0, 1)

    vt = f["value_ms_total"].to_numpy(float)
    vd = f["value_ms_done"].to_numpy(float)
    ms_part = np.where(vt > 0, vd / np.where(vt > 0, vt, 1), 0.0)
    it = f["value_items"].fillna(0).to_numpy(float)
    idone = f["value_done"].fillna(0).to_numpy(float)
    item_part = np.where(it > 0, idone / np.where(it > 0, it, 1), np.nan)
    value = np.where(np.isnan(item_part), ms_part, 0.5 * ms_part + 0.5 * np.nan_to_num(item_part))

    return pd.DataFrame(
        {
            "account_id": f["account_id"].to_numpy(),
            "milestone_frac": milestone,
            "adoption_frac": adoption,
            "engagement_frac": engagement,
            "value_frac": value,
            "adoption_share": adoption_share,
        }
    )


def score(fr: pd.DataFrame, model: HealthModel) -> pd.DataFrame:
    """Points per component, total and band from the component fractions."""
    out = fr[["account_id"]].copy()
    total = np.zeros(len(fr))
    for c in COMPONENTS:
        pts = np.round(fr[f"{c}_frac"].to_numpy(float) * model.weights[c], 1)
        out[c] = pts
        total += pts
    out["total"] = np.round(total, 1)
    out["band"] = band_of(out["total"], model.bands)
    return out


def compute(facts: pd.DataFrame, model: HealthModel) -> pd.DataFrame:
    """Scores with the fractions and the facts behind them, one row per account."""
    fr = fractions(facts, model)
    sc = score(fr, model)
    return sc.merge(fr, on="account_id").merge(
        facts.drop(columns=[c for c in ("total", "band") if c in facts.columns]), on="account_id", how="left"
    )


def explain(row: pd.Series | dict, model: HealthModel, milestone_names: dict[str, str] | None = None) -> dict:
    """Component points, the facts behind them, and the next action that would raise it most."""
    r = dict(row)
    names = milestone_names or {}
    seats = r.get("licensed_seats")
    seats_known = seats is not None and not (isinstance(seats, float) and math.isnan(seats)) and seats > 0
    overdue = [names.get(k, k) for k in (r.get("overdue_keys") or [])]
    comps = []
    facts = {
        "milestone": (
            f"{int(r['n_on_time'])} of {int(r['n_due'])} milestones due by now completed on time"
            + (
                f", {int(r['n_late'])} late (a late milestone earns {model.late_credit:.0%} of its points)"
                if r["n_late"]
                else ""
            )
            + (f"; overdue: {', '.join(overdue)}" if overdue else "")
            if r["n_due"]
            else "no milestone is due yet"
        ),
        "adoption": (
            f"{int(r['active_users'] or 0)} active users in the last {model.adoption_window_days} days of "
            f"{int(seats)} licensed seats ({(r['active_users'] or 0) / seats:.0%}; full points at {model.adoption_full_share:.0%})"
            if seats_known
            else "licensed seats unknown: adoption cannot be measured"
        ),
        "engagement": (
            f"active on {int(r['active_days'] or 0)} of the last {model.engagement_window_days} days "
            f"(full points at {model.engagement_full_days:g} active days)"
        ),
        "value": (
            f"{int(r['value_ms_done'])} of {int(r['value_ms_total'])} value milestones reached"
            + (
                f"; {int(r['value_done'] or 0)} of {int(r['value_items'])} Value Realization criteria met"
                if (r.get("value_items") or 0) > 0
                else ""
            )
        ),
    }
    for c in COMPONENTS:
        comps.append(
            {
                "component": COMPONENT_LABELS[c],
                "key": c,
                "points": float(r[c]),
                "max": float(model.weights[c]),
                "facts": facts[c],
            }
        )
    gains = {c: model.weights[c] * (1 - float(r[f"{c}_frac"])) for c in COMPONENTS}
    best = max(gains, key=lambda c: gains[c])
    action = _action(best, r, model, overdue, seats_known)
    return {
        "total": float(r["total"]),
        "band": r["band"],
        "components": comps,
        "rules": rules(model),
        "next_action": action,
        "next_action_gain": round(gains[best], 1),
        "next_action_component": COMPONENT_LABELS[best],
    }


def rules(model: HealthModel) -> list[str]:
    """The model's scoring rules in words (shown with every score explanation)."""
    return [
        f"A milestone completed by the end of its due day earns its full share; a late one earns {model.late_credit:.0%} of it.",
        f"User adoption: active users in the last {model.adoption_window_days} days over licensed seats; full points at {model.adoption_full_share:.0%}.",
        f"Engagement: days with activity in the last {model.engagement_window_days}; full points at {model.engagement_full_days:g} active days.",
    ]


def _action(c: str, r: dict, model: HealthModel, overdue: list[str], seats_known: bool) -> str:
    if c == "milestone":
        if overdue:
            return f"Complete the overdue milestone{'s' if len(overdue) > 1 else ''} {', '.join(overdue)}"
        return "Keep the next milestones on schedule"
    if c == "adoption":
        if not seats_known:
            return "Record the licensed seats so adoption can be measured"
        need = max(math.ceil(model.adoption_full_share * r["licensed_seats"]) - int(r["active_users"] or 0), 0)
        return f"Activate {need} more user{'s' if need != 1 else ''} (role-based training, invite the remaining seats)"
    if c == "engagement":
        target = math.ceil(model.engagement_full_days)
        need = max(target - int(r["active_days"] or 0), 0)
        return f"Create a habit: activity on {need} more day{'s' if need != 1 else ''} in {model.engagement_window_days} (e.g. a weekly team review in the product)"
    if r["value_ms_done"] < r["value_ms_total"]:
        return "Reach first value: agree the first win with the champion and book a value review"
    return "Document the value criteria met in the success plan (dashboards, insights shared, decisions)"


def milestone_facts(ms: pd.DataFrame, as_of_end: pd.Series, value_keys: set[str]) -> pd.DataFrame:
    """Point-in-time milestone facts per account.

    ms: account_id, milestone_key, due_date (midnight), completed_at (naive UTC).
    as_of_end: per account_id, the exclusive end of its as-of day.
    A milestone is due if its due date is on or before the as-of day; on time if it was
    completed by the end of its due day (metrics/days.py); only completions before
    as_of_end count.
    """
    m = ms[ms["account_id"].isin(as_of_end.index)]
    end = m["account_id"].map(as_of_end).to_numpy()
    # Due once its due day has ended by the as-of end (the end of the as-of day).
    due = end_of(m["due_date"]).to_numpy() <= end
    done = (m["completed_at"].notna() & (m["completed_at"] < end)).to_numpy()
    on_time = due & done & by_date(m["due_date"], m["completed_at"])
    is_value = m["milestone_key"].isin(value_keys).to_numpy()
    agg = (
        pd.DataFrame(
            {
                "account_id": m["account_id"].to_numpy(),
                "n_due": due.astype(int),
                "n_on_time": on_time.astype(int),
                "n_late": (due & done & ~on_time).astype(int),
                "value_ms_total": is_value.astype(int),
                "value_ms_done": (is_value & done).astype(int),
            }
        )
        .groupby("account_id")
        .sum()
    )
    # One row per account of as_of_end, in its order; none due or done where it has no milestone.
    out = agg.reindex(as_of_end.index, fill_value=0).astype(int).rename_axis("account_id").reset_index()
    return out


def overdue_keys(ms: pd.DataFrame, as_of_end: pd.Timestamp) -> list[str]:
    """Milestones of one account due by the as-of day and not completed by then."""
    due = end_of(ms["due_date"]) <= as_of_end
    done = ms["completed_at"].notna() & (ms["completed_at"] < as_of_end)
    return ms.loc[due & ~done].sort_values("due_date")["milestone_key"].tolist()
