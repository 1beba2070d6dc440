"""Risk triggers evaluated as of a date, each with the seed's intervention.

Rules (thresholds from settings): milestone overdue by more than N days; no activity for
N days; adoption under X % at day D while onboarding; health fell P+ points in D days;
no champion by day D; first value not reached by the segment's target.

Each fired trigger also says about how many days its condition has held (`firing_days`),
so "fired this week" needs no second evaluation; a health drop counts as new (it is
measured over the last D days).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The seed's intervention protocols.
INTERVENTIONS = {
    "extra training": "Extra training: role-based sessions for users who have not activated",
    "executive sponsorship": "Executive sponsorship: escalate to the sponsor and reset goals",
    "enhanced support": "Enhanced support: implementation specialist and a weekly check-in",
}

RULE_LABELS = {
    "milestone_overdue": "Milestone overdue",
    "no_activity": "No activity",
    "low_adoption": "Low adoption",
    "health_drop": "Health dropped",
    "no_champion": "No champion",
    "ttfv_overdue": "First value late",
}

# Rules that put an account still too early to score (metrics.health.too_early_to_score)
# on the attention list: each checks something due by a day since contract start (a
# milestone such as the kickoff, any activity, a champion, first value). A health drop
# or low adoption judges a score and its history, which a new account does not have yet.
NEW_ACCOUNT_RULES = frozenset({"milestone_overdue", "no_activity", "no_champion", "ttfv_overdue"})

# The intervention protocol for each rule (and, for overdue milestones, by milestone).
MILESTONE_ACTION = {
    "kickoff_complete": "executive sponsorship",
    "technical_setup_done": "enhanced support",
    "training_completed": "extra training",
    "first_value_achieved": "executive sponsorship",
    "adoption_confirmed": "extra training",
    "onboarding_concluded": "enhanced support",
}
RULE_ACTION = {
    "no_activity": "enhanced support",
    "low_adoption": "extra training",
    "health_drop": "executive sponsorship",
    "no_champion": "executive sponsorship",
    "ttfv_overdue": "enhanced support",
}


def evaluate(
    acc: pd.DataFrame,
    ms: pd.DataFrame,
    *,
    rules: dict,
    as_of_end: pd.Timestamp,
    milestone_names: dict[str, str],
    first_value_key: str = "first_value_achieved",
) -> pd.DataFrame:
    """Fired triggers, one row per (account, rule).

    acc columns: account_id, age_days, churned, onboarding_done, active_days, last_event,
    adoption_share, total, total_before, champion, ttfv_target_days, csm_name.
    ms: account_id, milestone_key, due_date, completed_at.
    """
    live = acc[~acc["churned"] & (acc["age_days"] >= 0)]
    out: list[pd.DataFrame] = []
    as_of_day = as_of_end - pd.Timedelta(days=1)

    def emit(
        frame: pd.DataFrame,
        rule: str,
        reason: pd.Series,
        action_key: pd.Series | str,
        days_overdue: pd.Series | None = None,
        firing_days: pd.Series | float = 0.0,
    ) -> None:
        if frame.empty:
            return
        firing = firing_days.to_numpy(float) if isinstance(firing_days, pd.Series) else np.full(len(frame), firing_days)
        keys = action_key if isinstance(action_key, pd.Series) else pd.Series(action_key, index=frame.index)
        out.append(
            pd.DataFrame(
                {
                    "account_id": frame["account_id"].to_numpy(),
                    "rule": rule,
                    "trigger": RULE_LABELS[rule],
                    "reason": reason.to_numpy(),
                    "intervention": keys.to_numpy(),
                    "action": keys.map(INTERVENTIONS).to_numpy(),
                    "days_overdue": (
                        days_overdue.to_numpy() if days_overdue is not None else np.full(len(frame), np.nan)
                    ),
                    # How long the condition has held (about): "new this week" = under 7.
                    "firing_days": np.maximum(firing, 0.0),
                }
            )
        )

    r = rules.get("milestone_overdue", {})
    if r.get("enabled", True):
        n = int(r.get("days", 7))
        m = ms[ms["account_id"].isin(live["account_id"])]
        late = m[(m["due_date"] < as_of_end) & ~(m["completed_at"].notna() & (m["completed_at"] < as_of_end))].copy()
        late["days"] = (as_of_day - late["due_date"]).dt.days
        late = late[late["days"] > n].sort_values("days", ascending=False).drop_duplicates("account_id")
        if len(late):
            cnt = (
                m[
                    (m["due_date"] < as_of_day - pd.Timedelta(days=n))  # overdue by more than n days
                    & ~(m["completed_at"].notna() & (m["completed_at"] < as_of_end))
                ]
                .groupby("account_id")
                .size()
            )
            names = late["milestone_key"].map(lambda k: milestone_names.get(k, k)).astype(str)
            many = late["account_id"].map(cnt).fillna(1).astype(int)
            reason = (
                names
                + " is "
                + late["days"].astype(int).astype(str)
                + " days overdue"
                + pd.Series(np.where(many > 1, " (" + many.astype(str) + " milestones overdue)", ""), index=late.index)
            )
            emit(
                late,
                "milestone_overdue",
                reason,
                late["milestone_key"].map(MILESTONE_ACTION).fillna("enhanced support"),
                late["days"],
                late["days"] - n,
            )

    r = rules.get("no_activity", {})
    if r.get("enabled", True):
        n = int(r.get("days", 14))
        since = (as_of_end - live["last_event"]).dt.total_seconds() / 86400
        hit = live[(live["age_days"] >= n) & (live["last_event"].isna() | (since >= n))]
        days = ((as_of_end - hit["last_event"]).dt.days).astype("float")
        reason = pd.Series(
            np.where(
                hit["last_event"].isna(),
                f"no product activity in the last {n}+ days (none recorded recently)",
                "no product activity for " + days.fillna(0).astype(int).astype(str) + " days",
            ),
            index=hit.index,
        )
        emit(hit, "no_activity", reason, RULE_ACTION["no_activity"], firing_days=(days - n).fillna(float("inf")))

    r = rules.get("low_adoption", {})
    if r.get("enabled", True):
        day, thr = int(r.get("day", 30)), float(r.get("threshold", 0.5))
        hit = live[(live["age_days"] >= day) & ~live["onboarding_done"] & (live["adoption_share"].fillna(0) < thr)]
        reason = (
            "adoption "
            + (hit["adoption_share"].fillna(0) * 100).round().astype(int).astype(str)
            + f" % of seats after day {day} (threshold {thr:.0%})"
        )
        emit(hit, "low_adoption", reason, RULE_ACTION["low_adoption"], firing_days=hit["age_days"] - day)

    r = rules.get("health_drop", {})
    if r.get("enabled", True) and "total_before" in live:
        pts, days = float(r.get("points", 15)), int(r.get("days", 14))
        drop = live["total_before"] - live["total"]
        hit = live[drop >= pts]
        reason = (
            "health fell "
            + drop[hit.index].round().astype(int).astype(str)
            + f" points in {days} days ("
            + hit["total_before"].round().astype(int).astype(str)
            + " → "
            + hit["total"].round().astype(int).astype(str)
            + ")"
        )
        emit(hit, "health_drop", reason, RULE_ACTION["health_drop"])

    r = rules.get("no_champion", {})
    if r.get("enabled", True):
        day = int(r.get("day", 14))
        hit = live[(live["age_days"] >= day) & (live["champion"].fillna("").str.strip() == "")]
        reason = (
            pd.Series(f"no champion named by day {day}", index=hit.index)
            + " (day "
            + hit["age_days"].astype(int).astype(str)
            + ")"
        )
        emit(hit, "no_champion", reason, RULE_ACTION["no_champion"], firing_days=hit["age_days"] - day)

    r = rules.get("ttfv_overdue", {})
    if r.get("enabled", True):
        grace = int(r.get("grace_days", 0))
        fv = ms[
            (ms["milestone_key"] == first_value_key) & ms["completed_at"].notna() & (ms["completed_at"] < as_of_end)
        ]["account_id"]
        hit = live[~live["account_id"].isin(fv) & (live["age_days"] > live["ttfv_target_days"] + grace)]
        late_by = (hit["age_days"] - hit["ttfv_target_days"]).astype(int)
        reason = (
            "first value not reached after "
            + hit["age_days"].astype(int).astype(str)
            + " days (target "
            + hit["ttfv_target_days"].astype(int).astype(str)
            + ")"
        )
        emit(hit, "ttfv_overdue", reason, RULE_ACTION["ttfv_overdue"], late_by, late_by - grace)

    cols = ["account_id", "rule", "trigger", "reason", "intervention", "action", "days_overdue", "firing_days"]
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols]
