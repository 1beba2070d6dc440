"""Cohorts: cohort table and cohort x week heatmap, time to value (Kaplan-Meier, log-rank),
usage retention (PostHog semantics) and the early signals that go with retention and
expansion, with their intervals and the caveat that they are correlations."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from components import cache, charts, context
from components.safe import html_label, md
from components.ui import blank_column, blank_missing, empty, reading, table
from metrics.retention import as_rates, in_progress, in_progress_column, returned_next_period
from metrics.signals import OUTCOMES, behaviour_label
from metrics.signals import reading as signal_reading
from services.analytics import (
    cohort_report,
    cohort_week_report,
    retention_report,
    signals_report,
    transitions_report,
    ttv_report,
)

src = cache.facts()
flt = context.filters()
as_of = context.as_of()
defs = src.milestone_defs()
ms_names = {d["key"]: d["name"] for d in defs}
ms_keys = list(ms_names)
GROUPS = ["month", "quarter", "segment", "industry", "plan", "channel", "region", "csm_name"]
group_label = {"month": "Start month", "quarter": "Start quarter", "csm_name": "CSM"}
MAX_CURVES = 4  # Kaplan-Meier curves drawn together by default; more overlap

st.title("Cohorts")
st.caption(f"As of {as_of:%d %b %Y} · {md(flt.describe())}")
t_coh, t_ttv, t_ret, t_sig = st.tabs(
    ["Cohorts", "Time to value", "Usage retention", "Early signals"], key="view", bind="query-params"
)
pct = "%.0f %%"

with t_coh:
    if t_coh.open is not False:
        c1, c2 = st.columns(2)
        with c1:
            by = st.selectbox(
                "Group accounts by",
                GROUPS,
                key="cohort_by",
                bind="query-params",
                format_func=lambda g: group_label.get(g, g.capitalize()),
            )
        with c2:
            within = st.number_input(
                "Onboarding completed within N days (0 = each segment's target)",
                min_value=0,
                max_value=730,
                value=0,
                step=5,
                key="within",
                bind="query-params",
            )
        with cache.timed("cohorts"):
            coh = cohort_report(src, by=by, within_days=within or None, filters=flt, as_of=as_of)
        if coh.empty:
            empty("No accounts match these filters.", "Clear the sidebar filters or pick a later as-of date.")
        else:
            view = coh.copy()
            for c in [
                c
                for c in view.columns
                if c.startswith(
                    ("completion_rate", "completion_low", "completion_high", "logo_retention", "band_", "nrr")
                )
            ]:
                view[c] = view[c] * 100
            # A young cohort's rate is not yet known (metrics/cohorts.py): say so, with how
            # many of its accounts have been observed through their day N.
            view["completion_rate_label"] = [
                f"not yet known ({int(e)} of {int(n)} observed)" if inc else ("–" if math.isnan(r) else f"{r:.0f} %")
                for r, inc, e, n in zip(
                    view["completion_rate"],
                    view["completion_incomplete"],
                    view["completion_eligible"],
                    view["accounts"],
                    strict=True,
                )
            ]
            cols = [
                "cohort",
                "accounts",
                "completion_rate_label",
                "completed",
                "completion_eligible",
                "completion_low",
                "completion_high",
                "ttfv_median_days",
                "logo_retention_12m",
                "logo_retention_low",
                "logo_retention_high",
                "retention_eligible",
                "nrr_12m",
                "band_Excellent",
                "band_On Track",
                "band_At Risk",
                "band_Critical",
            ]
            table(
                view[cols],
                key="cohort_table",
                filename=f"cohorts-by-{by}",
                column_config={
                    "cohort": group_label.get(by, by.capitalize()),
                    "accounts": "Accounts",
                    "completion_rate_label": st.column_config.TextColumn(
                        "Completed by day N",
                        help="Completed by the end of day N after the contract start. Not yet known while some accounts of the cohort have not reached the end of their day N: those observed so far are not a fair sample.",
                    ),
                    "completed": "Completed",
                    "completion_eligible": st.column_config.NumberColumn(
                        "of observed", help="Accounts observed through the end of their day N (so far)"
                    ),
                    "completion_low": st.column_config.NumberColumn("95 % low", format=pct),
                    "completion_high": st.column_config.NumberColumn("95 % high", format=pct),
                    "ttfv_median_days": st.column_config.NumberColumn("Median TTFV (KM)", format="%.0f d"),
                    "logo_retention_12m": st.column_config.NumberColumn("12-mo logo retention", format=pct),
                    "logo_retention_low": st.column_config.NumberColumn("95 % low ", format=pct),
                    "logo_retention_high": st.column_config.NumberColumn("95 % high ", format=pct),
                    "retention_eligible": st.column_config.NumberColumn("of 12-mo observed"),
                    "nrr_12m": st.column_config.NumberColumn("12-mo NRR", format=pct),
                    "band_Excellent": st.column_config.NumberColumn("Excellent", format=pct),
                    "band_On Track": st.column_config.NumberColumn("On Track", format=pct),
                    "band_At Risk": st.column_config.NumberColumn("At Risk", format=pct),
                    "band_Critical": st.column_config.NumberColumn("Critical", format=pct),
                },
                download_df=coh,
            )
            done = coh[~coh["completion_incomplete"] & (coh["completion_eligible"] > 0)]
            if len(done):
                hi, lo = done.sort_values("completion_rate").iloc[-1], done.sort_values("completion_rate").iloc[0]
                reading(
                    f"Among fully observed cohorts, on-time onboarding completion ranges from {lo['completion_rate']:.0%} ({md(lo['cohort'])}) to {hi['completion_rate']:.0%} ({md(hi['cohort'])}); "
                    "younger cohorts' completion is not yet known."
                )
            st.markdown("**Cohort × week since start**")
            h1, h2 = st.columns(2)
            with h1:
                hm_ms = st.selectbox(
                    "Milestone",
                    ms_keys,
                    index=ms_keys.index("first_value_achieved") if "first_value_achieved" in ms_keys else 0,
                    key="heat_ms",
                    bind="query-params",
                    format_func=ms_names.get,
                )
            with h2:
                weeks = st.slider("Weeks since start", 4, 26, 12, key="weeks", bind="query-params")
            shares, observed = cohort_week_report(src, milestone=hm_ms, by=by, weeks=weeks, filters=flt, as_of=as_of)
            if len(shares):
                st.plotly_chart(charts.heatmap(shares, observed, milestone=ms_names[hm_ms]), key="heatmap")
                wk = f"week {min(4, weeks)}"
                col = shares[wk].dropna()
                if len(col):
                    reading(
                        f"By the end of {wk}, between {col.min():.0%} ({md(col.idxmin())}) and {col.max():.0%} ({md(col.idxmax())}) of a cohort had reached {md(ms_names[hm_ms].lower())}."
                    )
                heat = shares.mul(100).round(1).reset_index()
                table(
                    # Blank (not "None") where a cohort has not been observed that long.
                    blank_missing(heat, dict.fromkeys(shares.columns, "{:.0f} %")),
                    key="heat_table",
                    filename=f"cohort-weeks-{hm_ms}",
                    column_config={
                        heat.columns[0]: group_label.get(by, by.capitalize()),
                        **{c: blank_column(c.capitalize()) for c in shares.columns},
                    },
                    download_df=heat,
                )

with t_ttv:
    if t_ttv.open:
        c1, c2 = st.columns(2)
        with c1:
            ttv_ms = st.selectbox(
                "Milestone",
                ms_keys,
                index=ms_keys.index("first_value_achieved") if "first_value_achieved" in ms_keys else 0,
                key="ttv_ms",
                bind="query-params",
                format_func=ms_names.get,
            )
        with c2:
            ttv_by = st.selectbox(
                "Compare",
                ["segment", None, "industry", "plan", "channel", "region", "csm_name", "cohort_quarter"],
                key="ttv_by",
                bind="query-params",
                format_func=lambda g: (
                    "All accounts together"
                    if g is None
                    else {"csm_name": "CSM", "cohort_quarter": "Start quarter"}.get(g, g.capitalize())
                ),
            )
        res = ttv_report(src, milestone=ttv_ms, by=ttv_by, filters=flt, as_of=as_of)
        if res.groups.empty:
            empty("No accounts to analyse.", "Clear the filters or pick a later as-of date.")
        else:
            g = res.groups
            curves = res.curves
            names = g["group"].astype(str).tolist()
            if len(names) > MAX_CURVES:
                # Quarters: the latest ones; any other attribute: the largest groups.
                default = (
                    sorted(names)[-MAX_CURVES:]
                    if ttv_by == "cohort_quarter"
                    else g.sort_values("accounts", ascending=False)["group"].astype(str).head(MAX_CURVES).tolist()
                )
                picked = st.multiselect(
                    "Curves to compare",
                    sorted(names),
                    default=sorted(default),
                    key="ttv_groups",
                    bind="query-params",
                    help=f"More than {MAX_CURVES} curves overlap; the table below lists every group.",
                )
                curves = curves[curves["group"].astype(str).isin(picked or default)]
            reached_days = res.durations.loc[res.durations["reached"], "days"]
            # The axis ends where 99 % of the observed times are (the last of them run to the
            # end of follow-up and squeeze the useful range).
            cut = float(np.ceil(np.percentile(reached_days, 99))) if len(reached_days) else None
            whole = st.toggle(
                "Show all days",
                key="ttv_all",
                bind="query-params",
                help=f"The axis ends at the 99th percentile of observed times to {ms_names[ttv_ms].lower()}"
                + (f" ({cut:.0f} days)" if cut else "")
                + "; on: to the end of follow-up.",
            )
            x_max = None if whole or cut is None else cut
            st.plotly_chart(charts.km_chart(curves, g, milestone=ttv_ms, x_max=x_max), key="km_chart")
            notes = []
            if curves["group"].nunique() < len(names):
                notes.append(f"The chart compares {curves['group'].nunique()} of {len(names)} groups.")
            if x_max is not None and float(curves["day"].max()) > x_max:
                notes.append(
                    f"Days axis cut at {x_max:.0f}: 99 % of the accounts that reached it did so by then "
                    "(“Show all days” for the rest)."
                )
            if notes:
                st.caption(" ".join(notes))
            p = res.logrank_p
            if len(g) > 1:
                fast, slow = g.sort_values("median_days").iloc[0], g.sort_values("median_days").iloc[-1]
                reading(
                    f"Median time to {md(ms_names[ttv_ms].lower())} ranges from {fast['median_days']:.0f} days ({md(fast['group'])}) to {slow['median_days']:.0f} days ({md(slow['group'])}); "
                    f"log-rank p = {p:.2g} ({'the groups differ' if p < 0.05 else 'no evidence the groups differ'})."
                )
            else:
                r0 = g.iloc[0]
                reading(
                    f"Half the accounts reach {md(ms_names[ttv_ms].lower())} within {r0['median_days']:.0f} days (95 % CI {r0['median_low']:.0f}–{r0['median_high']:.0f}); {r0['censored']:,} not there yet are censored, not dropped."
                )
            view = g.copy()
            for c in [c for c in view.columns if c.startswith("reached_by")]:
                view[c] = view[c] * 100
            table(
                view,
                key="ttv_table",
                filename=f"time-to-value-{ttv_ms}",
                column_config={
                    "group": "Group",
                    "accounts": "Accounts",
                    "reached": "Reached",
                    "censored": st.column_config.NumberColumn(
                        "Censored", help="Not reached yet at the as-of date, or churned first"
                    ),
                    "median_days": st.column_config.NumberColumn("Median (KM)", format="%.1f d"),
                    "median_low": st.column_config.NumberColumn("95 % low", format="%.1f d"),
                    "median_high": st.column_config.NumberColumn("95 % high", format="%.1f d"),
                    "naive_median_days": st.column_config.NumberColumn(
                        "Naive median (biased)",
                        format="%.1f d",
                        help="Completers only: ignores everyone still on the way, so it looks better than the truth",
                    ),
                    **{
                        f"reached_by_{t}d{s}": st.column_config.NumberColumn(
                            f"By day {t}{' ' + s.strip('_') if s else ''}", format=pct
                        )
                        for t in (30, 60, 90)
                        for s in ("", "_low", "_high")
                    },
                    "logrank_p": st.column_config.NumberColumn("Log-rank p", format="%.3g"),
                    "target_days": st.column_config.NumberColumn("Target", format="%d d"),
                },
                download_df=g,
            )
            st.caption(
                "The naive median counts only accounts that got there; it is shown for comparison and is biased low. "
                "By day N = by the end of the N-th day after the contract start. Its interval is Wilson when nobody was "
                "censored before then, else the Kaplan-Meier log(-log) band (Wilson over the accounts known at day N "
                "where that band has no width, at 0 or 100 %)."
            )

with t_ret:
    if t_ret.open:
        ev = src.event_names()["event"].tolist()
        c1, c2, c3, c4 = st.columns(4)
        with c1:
            start_ev = st.selectbox(
                "Start event", ev, index=ev.index("login") if "login" in ev else 0, key="ret_start", bind="query-params"
            )
        with c2:
            ret_ev = st.selectbox(
                "Return event",
                ev,
                index=ev.index("login") if "login" in ev else 0,
                key="ret_return",
                bind="query-params",
            )
        with c3:
            period = st.segmented_control(
                "Period", ["day", "week", "month"], default="week", key="ret_period", bind="query-params", required=True
            )
        with c4:
            intervals = st.number_input("Periods", 2, 36, 8, key="ret_n", bind="query-params")
        o1, o2 = st.columns(2)
        first_time = o1.toggle(
            "First time only (cohort = first-ever start event)", key="ret_first", bind="query-params"
        )
        cumulative = o2.toggle("Cumulative (returned in that period or later)", key="ret_cum", bind="query-params")
        m = retention_report(
            src,
            start_event=start_ev,
            return_event=ret_ev,
            period=period,
            intervals=int(intervals),
            date_to=as_of,
            first_time=first_time,
            cumulative=cumulative,
            filters=flt,
        )
        rates = as_rates(m)
        # The period containing the as-of date is not over: its cells are partial (PostHog's
        # "period in progress"), drawn lighter with *, and left out of the summary.
        partial = in_progress(m, period=period, date_to=as_of, now=datetime.now(UTC).replace(tzinfo=None))
        unit = period.capitalize()
        cols = [f"p{k}" for k in range(1, int(intervals))]
        z = rates[cols].to_numpy(float) * 100
        counts = m[cols].to_numpy(float)
        size = m["p0"].fillna(0).to_numpy(float)
        part = partial[cols].to_numpy(bool)
        x = [f"{unit} {k}" for k in range(1, int(intervals))]
        y = [f"{c} (n={int(n)})" for c, n in zip(m["cohort"], size, strict=True)]
        custom = np.dstack(
            [
                np.where(np.isnan(counts), 0, counts),
                np.broadcast_to(size[:, None], counts.shape),
                np.where(part, f" · {period} still in progress", ""),
            ]
        )
        fig = go.Figure()
        for sel, opacity in ((~part, 1.0), (part, 0.45)):
            fig.add_heatmap(
                z=np.where(sel, z, np.nan),
                x=x,
                y=y,
                colorscale="Greens",
                zmin=0,
                zmax=100,
                opacity=opacity,
                showscale=opacity == 1.0,
                text=[
                    [
                        "" if (v != v or not ok) else f"{v:.0f}{'*' if p else ''}"
                        for v, ok, p in zip(row, srow, prow, strict=True)
                    ]
                    for row, srow, prow in zip(z, sel, part, strict=True)
                ],
                texttemplate="%{text}",
                customdata=custom,
                colorbar={"title": {"text": "% of cohort"}, "ticksuffix": " %"},
                hovertemplate="%{y} · %{x}: %{z:.1f} % (%{customdata[0]:,.0f} of %{customdata[1]:,.0f} accounts)"
                "%{customdata[2]}<extra></extra>",
            )
        fig.update_yaxes(autorange="reversed")
        fig.update_layout(
            title={
                "text": f"Accounts that did {html_label(ret_ev)} after {html_label(start_ev)}, by {period} (% of cohort; "
                f"blank = not observed yet; lighter with * = {period} still in progress)",
                "x": 0,
            },
            height=max(320, 30 * len(m) + 140),
            margin={"l": 10, "r": 10, "t": 60, "b": 10},
        )
        fig.update_xaxes(title_text=f"{unit}s since the cohort's {period}", type="category")
        fig.update_yaxes(title_text=f"Cohort ({period} starting)", type="category")
        st.plotly_chart(fig, key="ret_chart")
        if part.any() or partial["p0"].any():
            last_start = m["cohort"].iloc[-1]
            st.caption(
                f"\\* The {period} starting {last_start:%d %b %Y} contains the as-of date and is not over: its cells "
                f"(lighter, marked \\*) are partial and left out of the summary."
            )
        p1 = returned_next_period(m, partial)
        if len(p1):
            reading(
                f"On average {p1.mean():.0%} of a cohort came back the next {period} (range {p1.min():.0%}–{p1.max():.0%}, "
                f"over {len(p1)} cohort{'s' if len(p1) != 1 else ''} whose next {period} is over)."
            )
        view = pd.concat([m[["cohort", "p0"]], rates[cols] * 100], axis=1)
        text = blank_missing(view, {"p0": "{:.0f}", **dict.fromkeys(cols, "{:.0f} %")})
        marked = partial[["p0", *cols]].to_numpy(bool)  # the newest cohort's size too: still forming
        text[["p0", *cols]] = np.where(marked, text[["p0", *cols]] + " *", text[["p0", *cols]])
        shown = text.style.apply(
            lambda _: np.where(marked, "background-color: rgba(128,128,128,0.18)", ""), axis=None, subset=["p0", *cols]
        )
        table(
            shown,
            key="ret_table",
            filename=f"retention-{start_ev}-{ret_ev}-{period}",
            column_config={
                "cohort": st.column_config.DateColumn("Cohort", format="YYYY-MM-DD"),
                "p0": blank_column("Size", help="Accounts in the cohort"),
                **{
                    c: blank_column(
                        f"{unit} {k}", help=f"% of the cohort back {k} {period}{'s' if k > 1 else ''} later"
                    )
                    for k, c in enumerate(cols, 1)
                },
            },
            # Counts, with the cell of each cohort that is still in progress (as the CLI's --mark-in-progress).
            download_df=m.assign(in_progress=in_progress_column(partial)),
        )

with t_sig:
    if t_sig.open:
        c1, c2, c3, c4 = st.columns(4)
        with c1:
            outcome = st.selectbox(
                "Outcome", list(OUTCOMES), format_func=OUTCOMES.get, key="sig_outcome", bind="query-params"
            )
        with c2:
            days = st.number_input(
                "In the first N days",
                1,
                180,
                14,
                key="sig_days",
                bind="query-params",
                help="Days 0 to N - 1 after the contract start; an event or milestone before the start counts as day 0",
            )
        with c3:
            k = st.number_input("At least k times", 1, 100, 1, key="sig_k", bind="query-params")
        with c4:
            within = st.toggle("Within each segment", key="sig_seg", bind="query-params")
        sig = signals_report(
            src,
            outcome=outcome,
            days=int(days),
            min_count=int(k),
            within_segment=within,
            filters=flt,
            as_of=as_of,
            # Behaviours of exactly the same accounts (an event that always completes a milestone) share a row.
            group_identical=True,
        )
        if sig.empty:
            empty(
                "Not enough accounts with a known outcome yet (the 12-month window must have elapsed, and each behaviour needs 5+ accounts with and without it).",
                "Clear filters or pick a later as-of date.",
            )
        else:
            for line in signal_reading(sig, outcome):
                st.markdown(f"- {md(line)}")
            st.warning(
                "These are correlations, not causes: accounts that do these things early may differ in other ways (size, motivation, CSM). "
                "Use them to choose what to test in onboarding, not as proof.",
                icon=":material/warning:",
            )
            view = sig.copy()
            view["behaviour"] = [
                " · ".join(behaviour_label(x) for x in (b, *also))
                for b, also in zip(sig["behaviour"], sig["also"], strict=True)
            ]
            for c in (
                "support_share",
                "rate_with",
                "rate_with_low",
                "rate_with_high",
                "rate_without",
                "difference",
                "difference_low",
                "difference_high",
            ):
                view[c] = view[c] * 100
            table(
                view.drop(columns=["outcome", "also"]),
                key="sig_table",
                filename=f"early-signals-{outcome}",
                height=420,
                column_config={
                    "segment": "Segment",
                    "behaviour": st.column_config.TextColumn(
                        "Behaviour in the first days",
                        width="large",  # grouped behaviours run long
                        help="Behaviours joined by · were done by exactly the same accounts (such as an event that "
                        "completes a milestone) and share one row",
                    ),
                    "accounts": st.column_config.NumberColumn("Accounts with known outcome"),
                    "support": st.column_config.NumberColumn("Did it (support)"),
                    "support_share": st.column_config.NumberColumn("Support %", format=pct),
                    "rate_with": st.column_config.NumberColumn("Rate with", format=pct),
                    "rate_with_low": st.column_config.NumberColumn("95 % low", format=pct),
                    "rate_with_high": st.column_config.NumberColumn("95 % high", format=pct),
                    "rate_without": st.column_config.NumberColumn("Rate without", format=pct),
                    "lift": st.column_config.NumberColumn("Lift", format="%.2f×"),
                    "difference": st.column_config.NumberColumn("Difference", format="%+.1f pts"),
                    "difference_low": st.column_config.NumberColumn("95 % low ", format="%+.1f pts"),
                    "difference_high": st.column_config.NumberColumn("95 % high ", format="%+.1f pts"),
                    "significant": st.column_config.CheckboxColumn("Interval excludes 0"),
                },
                download_df=sig.assign(also=sig["also"].map(" ".join)),
            )
        st.markdown("**Milestone to milestone**")
        tr = transitions_report(src, filters=flt, as_of=as_of)
        if len(tr):
            nxt = tr[tr["next"]].copy()
            nxt["from"] = nxt["from"].map(ms_names)
            nxt["to"] = nxt["to"].map(ms_names)
            for c in ("probability", "low", "high"):
                nxt[c] = nxt[c] * 100
            table(
                nxt.drop(columns="next"),
                key="transitions",
                filename="milestone-transitions",
                column_config={
                    "from": "From milestone",
                    "to": "To the next",
                    "reached_from": st.column_config.NumberColumn(
                        "Reached the first", help="Accounts that reached the first milestone"
                    ),
                    "reached_both": st.column_config.NumberColumn(
                        "Reached both", help="Of those, accounts that also reached the next one"
                    ),
                    "probability": st.column_config.NumberColumn("P(next | this)", format=pct),
                    "low": st.column_config.NumberColumn("95 % low", format=pct),
                    "high": st.column_config.NumberColumn("95 % high", format=pct),
                    "median_days_between": st.column_config.NumberColumn("Median days between", format="%.1f"),
                },
                download_df=tr,
            )
            weakest = nxt.sort_values("probability").iloc[0]
            reading(
                f"The weakest hand-off is {md(weakest['from'])} → {md(weakest['to'])}: {weakest['probability']:.0f} % of accounts that reach the first go on to the next."
            )
