"""Portfolio: the CS leader's weekly review. KPIs against targets with their change on the
previous week, health bands, the at-risk accounts and why, breakdowns by segment and CSM,
health by week, and a plain-language summary of what changed."""

from __future__ import annotations

import streamlit as st

from components import cache, charts, context, measured
from components.links import ATTENTION_WIDTHS, account_column, follow_click
from components.safe import md
from components.ui import blank_missing, empty, kpi_tile, page_of, reading, table
from db.session import session_scope
from metrics.health import TOO_EARLY
from services.analytics import TTFV_POPULATION, filter_prefetch, health_prefetch, portfolio, portfolio_dates
from services.measured import portfolio_prefetch
from services.plays import overdue_by_owner

WIDTHS = ATTENTION_WIDTHS

src = cache.facts()
flt = context.filters()
as_of = context.as_of()

st.title("Portfolio")
with cache.timed("portfolio"):
    # The facts the run reads (health at three dates, the manual-against-measured block)
    # load in the background while the first health table is computed.
    src.prefetch(*health_prefetch(src, portfolio_dates(src, as_of=as_of)))
    src.prefetch(*portfolio_prefetch(src, as_of))
    p = portfolio(src, as_of=as_of, filters=flt)

if p.health.empty:
    empty(
        f"No accounts match these filters as of {as_of:%d %b %Y} ({md(flt.describe())}).",
        "Clear the filters in the sidebar, pick a later as-of date, or import accounts on the Data page.",
    )
    st.stop()

st.caption(f"As of **{as_of:%d %b %Y}** · {md(flt.describe())} · changes are against {p.previous:%d %b %Y}")

with st.container(border=True):
    st.markdown("**What changed and where to look**")
    for line in p.summary:
        st.markdown(f"- {md(line)}")
measured_slot = st.container()  # filled last: see the end of the page

cols = st.columns(4)
for col, k in zip(cols, p.kpis, strict=True):
    with col:
        kpi_tile(k, key=k.key)

left, right = st.columns([2, 3])
with left:
    st.plotly_chart(charts.bands_chart(p.bands), key="bands_chart")
    live = int(p.bands["accounts"].sum())
    scored = p.bands[p.bands["band"] != TOO_EARLY]
    early = live - int(scored["accounts"].sum())
    top = scored.sort_values("accounts", ascending=False).iloc[0]
    reading(
        f"Of {live:,} live accounts, the largest group is {top['band']} ({top['accounts']:,}, {top['accounts'] / max(live, 1):.0%})."
        + (
            f" {early:,} {'is' if early == 1 else 'are'} too early to score (in their first {p.new_account_days} days)."
            if early
            else ""
        )
    )
with right:
    if len(p.trend) > 1:
        st.plotly_chart(charts.trend_chart(p.trend), key="trend_chart")
        first, last = p.trend.iloc[0], p.trend.iloc[-1]
        reading(
            f"Average health went from {first['avg_health']:.1f} on {first['date']:%d %b} to {last['avg_health']:.1f} on {last['date']:%d %b}; "
            f"at-risk or critical share from {(first['At Risk'] + first['Critical']):.0%} to {(last['At Risk'] + last['Critical']):.0%}."
        )
    else:
        empty(
            "No health history yet.",
            "Run `python manage.py snapshot-health` daily or weekly (e.g. from cron) to build the trend.",
        )

st.subheader(f"Accounts needing attention ({len(p.at_risk):,})")
st.caption(
    "At Risk or Critical health, or a risk trigger firing; lowest health first. Accounts too early to score are "
    "listed only for a trigger for new accounts. Click an account to open it here, as of the same date."
)
if p.at_risk.empty:
    st.success("No account is at risk and no risk trigger fired.", icon=":material/check_circle:")
else:
    # 100 rows a page: the browser draws one page; the download has them all.
    shown = page_of(p.at_risk, key="at_risk")
    # What the review reads first fits at 1400 px (WIDTHS): the account (its name opens it),
    # health, why, what to do, how late, how many triggers; then id, owner, band, segment.
    view = shown.assign(link=shown["name"])
    view = view[
        [
            "link",
            "health",
            "reason",
            "intervention",
            "days_overdue",
            "triggers",
            "external_id",
            "owner",
            "band",
            "segment",
        ]
    ]
    table(
        blank_missing(view, {"days_overdue": "{:.0f}"}),  # blank, not "None", when nothing is overdue
        key="at_risk",
        filename=f"at-risk-{as_of}",
        height=400,
        column_config={
            "link": account_column("open_at_risk", width=WIDTHS["link"]),
            "external_id": "Id",
            "segment": "Segment",
            "band": "Band",
            "owner": st.column_config.TextColumn("Owner (CSM)"),
            "health": st.column_config.ProgressColumn(
                "Health", min_value=0, max_value=100, format="%.0f", width=WIDTHS["health"]
            ),
            "reason": st.column_config.TextColumn("Why", width=WIDTHS["reason"]),
            "intervention": st.column_config.TextColumn(
                "Intervention",
                width=WIDTHS["intervention"],
                help="The recommended intervention (the seed's protocol); the download has its full description",
            ),
            "days_overdue": st.column_config.TextColumn(
                "Days overdue", width=WIDTHS["days_overdue"], alignment="right"
            ),
            "triggers": st.column_config.NumberColumn(
                "Triggers", format="%d", width=WIDTHS["triggers"], help="Risk triggers firing"
            ),
        },
        download_df=p.at_risk,
    )
    follow_click("open_at_risk", shown["external_id"], labels=view["link"])
    new = int(p.triggers["new"].sum()) if "new" in p.triggers else 0
    reading(
        f"{len(p.triggers):,} risk triggers are firing on {p.triggers['account_id'].nunique():,} accounts; {new:,} fired since {p.previous:%d %b}."
    )

st.subheader("Breakdowns")
st.caption(
    f"Accounts, onboarding, health and at risk: the accounts started by {as_of:%d %b %Y}. Completion on time: "
    f"onboarding deadlines in the last 180 days. Median time to first value: {TTFV_POPULATION}, so it differs from "
    "the Time to value tab on Cohorts, which counts every account started."
)
# Only the chosen tab's body runs (and is sent to the browser); the choice is in the URL.
tab_seg, tab_csm = st.tabs(["By segment", "By CSM"], key="breakdown", bind="query-params")
pct = {"format": "%.0f %%"}
with tab_seg:
    if tab_seg.open is not False:
        seg = p.by_segment.copy()
        seg["completion_rate"] *= 100
        seg["at_risk_share"] *= 100
        table(
            seg,
            key="by_segment",
            filename=f"by-segment-{as_of}",
            column_config={
                "segment": "Segment",
                "accounts": "Accounts",
                "onboarding": "Onboarding",
                "completion_rate": st.column_config.NumberColumn(
                    "Completion on time", **pct, help="Recent onboarding deadlines met (denominator next column)"
                ),
                "completion_denominator": st.column_config.NumberColumn("of deadlines", format="%d"),
                "ttfv_median_days": st.column_config.NumberColumn(
                    "Median TTFV, last 12 months (KM)", format="%.0f d", help=f"Kaplan-Meier median, {TTFV_POPULATION}"
                ),
                "ttfv_target_days": st.column_config.NumberColumn("TTFV target", format="%.0f d"),
                "avg_health": st.column_config.NumberColumn("Avg health", format="%.1f"),
                "at_risk": "At risk",
                "at_risk_share": st.column_config.NumberColumn("At risk %", **pct),
            },
            download_df=p.by_segment,
        )
        late = p.by_segment[p.by_segment["ttfv_median_days"] > p.by_segment["ttfv_target_days"]]
        reading(
            (
                "Median time to first value is over target in "
                + md(", ".join(late["segment"]))
                + f" ({TTFV_POPULATION})."
            )
            if len(late)
            else f"Every segment reaches first value within its target (median, Kaplan-Meier, {TTFV_POPULATION})."
        )
with tab_csm:
    if tab_csm.open:
        csm = p.by_csm.copy()
        csm["completion_rate"] *= 100
        csm["at_risk_share"] *= 100
        # Play tasks past due (not snoozed) that each CSM owns, on the accounts shown.
        with session_scope() as s:
            overdue = overdue_by_owner(s, today=as_of, account_ids=p.health["account_id"])
        csm["overdue_tasks"] = csm["csm_name"].map(overdue.set_index("owner")["overdue"]).fillna(0).astype(int)
        table(
            csm,
            key="by_csm",
            filename=f"by-csm-{as_of}",
            column_config={
                "csm_name": "CSM",
                "accounts": "Accounts",
                "onboarding": "Onboarding",
                "completion_rate": st.column_config.NumberColumn("Completion on time", **pct),
                "completion_denominator": st.column_config.NumberColumn("of deadlines", format="%d"),
                "ttfv_median_days": st.column_config.NumberColumn(
                    "Median TTFV, last 12 months (KM)", format="%.0f d", help=f"Kaplan-Meier median, {TTFV_POPULATION}"
                ),
                "avg_health": st.column_config.NumberColumn("Avg health", format="%.1f"),
                "at_risk": "At risk",
                "at_risk_share": st.column_config.NumberColumn("At risk %", **pct),
                "overdue_tasks": st.column_config.NumberColumn(
                    "Overdue tasks", format="%d", help="Open play tasks past their due date (My work)"
                ),
            },
            download_df=p.by_csm.assign(overdue_tasks=csm["overdue_tasks"].to_numpy()),
        )
        if len(p.by_csm):
            worst = p.by_csm.sort_values("at_risk_share", ascending=False).iloc[0]
            best = p.by_csm.sort_values("at_risk_share").iloc[0]
            reading(
                f"At-risk share ranges from {best['at_risk_share']:.0%} ({md(best['csm_name'])}) to {worst['at_risk_share']:.0%} ({md(worst['csm_name'])})."
            )

measured.portfolio_block(src, as_of=as_of, health=p.health, into=measured_slot)

if flt.is_empty():
    # The first filter change reads every account's stored snapshots for the trend: read
    # them now, while the page is looked at.
    src.prefetch(*filter_prefetch(src, as_of=as_of))
