"""Health model: does the score predict churn? The backtest (AUC, churn rate per band) for
the current weights, what-if weights recomputed at once, and the current settings."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from components import cache, charts, context
from components.safe import md
from components.ui import empty, reading, table
from metrics.health import COMPONENT_LABELS, COMPONENTS
from services.analytics import backtest_report, health_model

src = cache.facts()
flt = context.filters()
as_of = context.as_of()
model = health_model(src)

st.title("Health model")
st.caption(f"As of {as_of:%d %b %Y} · {md(flt.describe())} · model version {model.version}")

day = st.segmented_control(
    "Score as of day",
    [30, 60],
    default=30,
    key="day",
    bind="query-params",
    required=True,
    format_func=lambda d: f"Day {d} after contract start",
)
with cache.timed("health_model"):
    base = backtest_report(src, day=int(day), filters=flt, as_of=as_of)

if base.accounts == 0:
    empty(
        "No account has a known 12-month outcome yet with these filters.",
        "Clear filters or pick a later as-of date; the backtest needs accounts that started more than a year ago.",
    )
    st.stop()


def auc_words(a: float) -> str:
    if math.isnan(a):
        return "cannot be computed (no churn or no retention among these accounts)"
    if a >= 0.8:
        return "strong"
    if a >= 0.7:
        return "useful"
    if a >= 0.6:
        return "weak"
    return "no better than chance"


st.subheader("Backtest with the current weights")
c1, c2, c3 = st.columns(3)
c1.metric(
    "AUC for churn within 12 months",
    "–" if math.isnan(base.auc) else f"{base.auc:.2f}",
    help="Probability that a churned account scored lower than a retained one. 0.5 = chance, 1.0 = perfect.",
)
c1.caption(f"95 % CI {base.auc_low:.2f}–{base.auc_high:.2f}" if not math.isnan(base.auc) else "")
c2.metric(
    "Accounts scored",
    f"{base.accounts:,}",
    help="Accounts whose 12-month outcome is known (started more than a year before the as-of date)",
)
c3.metric(
    "Churned within 12 months",
    f"{base.churned:,}",
    help=f"{base.churned / max(base.accounts, 1):.0%} of scored accounts",
)
st.plotly_chart(
    charts.churn_by_band_chart(base.bands, f"Churn within 12 months by health band at day {day} (current weights)"),
    key="bt_chart",
)
exc = base.bands.set_index("band")
reading(
    f"The day-{day} score is {auc_words(base.auc)} at predicting churn (AUC {base.auc:.2f}): "
    f"{exc.at['Critical', 'churn_rate']:.0%} of accounts scored Critical churned, against {exc.at['Excellent', 'churn_rate']:.0%} of those scored Excellent."
    if not math.isnan(exc.at["Critical", "churn_rate"]) and not math.isnan(exc.at["Excellent", "churn_rate"])
    else f"The day-{day} score is {auc_words(base.auc)} at predicting churn."
)

st.subheader("What if the weights were different?")
st.caption(
    "Three sliders set their weights; the fourth takes what is left, so the weights always add up to 100. The backtest recomputes on the same accounts and day."
)
keys = ["w_milestone", "w_adoption", "w_engagement"]
defaults = [int(model.weights[c]) for c in COMPONENTS[:3]]
for k, d in zip(keys, defaults, strict=True):
    st.session_state.setdefault(k, d)
# Later sliders can only use what earlier ones leave (clamp before drawing them).
room = 100
for k in keys:
    st.session_state[k] = min(int(st.session_state[k]), room)
    room -= st.session_state[k]
w_cols = st.columns(4)
used = 0
weights = {}
for col, c, k in zip(w_cols[:3], COMPONENTS[:3], keys, strict=True):
    with col:
        weights[c] = st.slider(COMPONENT_LABELS[c], 0, max(100 - used, 1), key=k, disabled=(100 - used) <= 0)
    used += weights[c]
weights["value"] = 100 - used
with w_cols[3]:
    st.metric(
        COMPONENT_LABELS["value"], f"{weights['value']} pts", help="What the other three leave, so the total stays 100"
    )
if st.button("Reset to current weights", icon=":material/restart_alt:"):
    for k, d in zip(keys, defaults, strict=True):
        st.session_state[k] = d
    st.rerun()

what_if = backtest_report(src, day=int(day), weights=weights, filters=flt, as_of=as_of)
m1, m2 = st.columns(2)
delta = what_if.auc - base.auc
m1.metric(
    "AUC with these weights",
    f"{what_if.auc:.2f}",
    f"{delta:+.3f} vs current",
    help="Same accounts, same day, different weights",
)
m2.caption(f"95 % CI {what_if.auc_low:.2f}–{what_if.auc_high:.2f}")
compare = base.bands[["band", "accounts", "churned", "churn_rate"]].merge(
    what_if.bands[["band", "accounts", "churned", "churn_rate", "churn_rate_low", "churn_rate_high"]],
    on="band",
    suffixes=("_current", "_what_if"),
)
st.plotly_chart(
    charts.churn_by_band_chart(
        what_if.bands,
        f"Churn within 12 months by band at day {day} (what-if weights {weights['milestone']:g}/{weights['adoption']:g}/{weights['engagement']:g}/{weights['value']:g})",
    ),
    key="whatif_chart",
)
verdict = "better than" if delta > 0.005 else ("worse than" if delta < -0.005 else "about as well as")
reading(
    f"With weights {weights['milestone']:g}/{weights['adoption']:g}/{weights['engagement']:g}/{weights['value']:g} the score separates churners {verdict} today (AUC {what_if.auc:.2f} vs {base.auc:.2f})."
)
view = compare.copy()
for c in ("churn_rate_current", "churn_rate_what_if", "churn_rate_low", "churn_rate_high"):
    view[c] = view[c] * 100
table(
    view,
    key="compare_table",
    filename=f"backtest-day{day}",
    column_config={
        "band": "Band",
        "accounts_current": "Accounts (current)",
        "churned_current": "Churned (current)",
        "accounts_what_if": "Accounts (what-if)",
        "churned_what_if": "Churned (what-if)",
        "churn_rate_current": st.column_config.NumberColumn("Churn % (current)", format="%.1f %%"),
        "churn_rate_what_if": st.column_config.NumberColumn("Churn % (what-if)", format="%.1f %%"),
        "churn_rate_low": st.column_config.NumberColumn("What-if 95 % low", format="%.1f %%"),
        "churn_rate_high": st.column_config.NumberColumn("What-if 95 % high", format="%.1f %%"),
    },
    download_df=compare.assign(auc_current=base.auc, auc_what_if=what_if.auc),
)

st.subheader("Current settings")
s1, s2 = st.columns(2)
with s1:
    st.markdown("**Weights (points)**")
    st.dataframe(
        pd.DataFrame(
            {"component": [COMPONENT_LABELS[c] for c in COMPONENTS], "points": [model.weights[c] for c in COMPONENTS]}
        ),
        hide_index=True,
    )
with s2:
    st.markdown("**Bands (lower bound of the score)**")
    st.dataframe(
        pd.DataFrame(
            {
                "band": ["Excellent", "On Track", "At Risk", "Critical"],
                "from score": [model.bands["excellent"], model.bands["on_track"], model.bands["at_risk"], 0],
            }
        ),
        hide_index=True,
    )
st.markdown("**Scoring rules**")
st.dataframe(
    pd.DataFrame(
        {
            "rule": [
                "Late milestone (completed after its due day)",
                "Engagement: active days for full points",
                "Adoption: share of licensed seats active for full points",
            ],
            "setting": [
                f"earns {model.late_credit:.0%} of its points",
                f"{model.engagement_full_days:g} of the last {model.engagement_window_days} days",
                f"{model.adoption_full_share:.0%} (active in the last {model.adoption_window_days} days)",
            ],
        }
    ),
    hide_index=True,
    key="scoring_rules",
)
st.caption("Admins change these on the Settings page; changes apply from the next snapshot.")
