"""Funnel: RevOps self-service funnels over milestones and product events (PostHog
semantics), with conversion intervals, time to convert, in-progress accounts apart from
drop-offs, side-by-side groups and a drill-down to the accounts at each step."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import cache, charts, context
from components.links import account_column, follow_click, open_account
from components.safe import md
from components.ui import blank_column, blank_missing, empty, page_of, reading, table
from metrics import funnel as fn
from services.analytics import funnel_report

src = cache.facts()
flt = context.filters()
as_of = context.as_of()

st.title("Funnel")

defs = src.milestone_defs()
events = src.event_names()
options = [f"milestone:{d['key']}" for d in defs] + events["event"].tolist()
labels = {f"milestone:{d['key']}": f"Milestone · {d['name']}" for d in defs}
volume = dict(zip(events["event"], events["accounts"], strict=True))
MAX_GROUPS = 6  # groups drawn side by side by default; more would not fit the chart
DEFAULT_STEPS = [
    s for s in ("workspace_created", "integration_connected", "user_invited", "dashboard_created") if s in volume
] or options[:3]

c1, c2 = st.columns([3, 2])
with c1:
    steps = st.multiselect(
        "Steps, in order (2-10; type to search milestones and events)",
        options,
        default=DEFAULT_STEPS,
        key="steps",
        bind="query-params",
        max_selections=10,
        wrap=True,  # in a column the chips would scroll sideways, hiding the later steps
        # Labels go into the URL, so they must not change with the data (no live counts).
        format_func=lambda s: labels.get(s) or s,
        help="Milestones are listed first, then events from the most common. The URL keeps your steps.",
    )
with c2:
    mode = st.segmented_control(
        "Order",
        ["ordered", "strict", "unordered"],
        default="ordered",
        key="mode",
        bind="query-params",
        required=True,
        help="ordered: each step at or after the previous one; strict: nothing else in between; unordered: any order (completed N steps).",
    )
c3, c4, c5, c6 = st.columns([1, 1, 2, 2])
with c3:
    window_n = st.number_input(
        "Window",
        min_value=1,
        max_value=1000,
        value=14,
        step=1,
        key="window",
        bind="query-params",
        help="Conversion window, measured from step 1 (end inclusive).",
    )
with c4:
    unit = st.selectbox(
        "Unit",
        ["d", "w", "h", "m", "s"],
        key="unit",
        bind="query-params",
        format_func={"d": "days", "w": "weeks", "h": "hours", "m": "minutes", "s": "seconds"}.get,
    )
with c5:
    entry = st.date_input(
        "Step 1 between (optional)",
        value=(),
        key="entry",
        bind="query-params",
        format="YYYY-MM-DD",
        help="Only accounts whose step 1 falls in this range enter the funnel.",
    )
with c6:
    by = st.selectbox(
        "Break down by",
        [None, "segment", "industry", "plan", "channel", "region", "csm_name", "cohort_quarter"]
        + [f"prop:{k}" for k in src.event_property_keys()],
        key="by",
        bind="query-params",
        format_func=lambda v: (
            "No breakdown"
            if v is None
            else f"Event property · {v[5:]}"
            if v.startswith("prop:")
            else {"csm_name": "CSM", "cohort_quarter": "Start quarter"}.get(v, v.capitalize())
        ),
        help="An account attribute puts each account in one group; an event property takes its value from "
        "the account's events, per the attribution.",
    )
c7, c8 = st.columns([3, 2])
with c7:
    exclude_text = st.text_input(
        "Exclusion steps (optional)",
        key="exclude",
        bind="query-params",
        placeholder="EVENT:FROM:TO, e.g. support_ticket_opened:1:3",
        help="An account that does EVENT between step FROM and step TO leaves the funnel (PostHog's exclusion "
        "steps). Separate several with commas.",
    )
with c8:
    by_prop = bool(by) and by.startswith("prop:")
    attribution = st.selectbox(
        "Attribution",
        ["first", "last", *[f"step:{k}" for k in range(1, 11)]],
        key="attribution",
        bind="query-params",
        disabled=not by_prop,
        format_func=lambda v: {"first": "First touch", "last": "Last touch"}.get(v) or f"Step {v[5:]}",
        help="Which event gives an account its value of the event property: the first that has it, the last, "
        "or the event that fills step N (an account can then appear under several values).",
    )
exclude = [x.strip() for x in (exclude_text or "").split(",") if x.strip()]

if len(steps) < 2:
    empty(
        "Pick at least two steps.",
        "Start with a milestone or an event that every new account does, then add the next ones in order.",
    )
    st.stop()

entry = tuple(entry) if isinstance(entry, list | tuple) else ()
try:
    with cache.timed("funnel"):
        res = funnel_report(
            src,
            steps=list(steps),
            mode=mode or "ordered",
            window=f"{window_n}{unit}",
            entry_from=entry[0] if len(entry) > 0 else None,
            entry_to=entry[1] if len(entry) > 1 else None,
            by=by,
            filters=flt,
            as_of=as_of,
            exclude=exclude,
            attribution=attribution if by_prop else None,
        )
except ValueError as exc:
    st.error(md(exc))
    st.stop()

steps_df = res.steps
# Of the accounts in the sidebar filters, up to the as-of date.
ever = res.meta.get("ever_did", {})
st.caption(
    "Accounts that ever did each step: " + " · ".join(f"{md(labels.get(x) or x)}: {ever.get(x, 0):,}" for x in steps)
)
if res.accounts.empty:
    empty(
        "No account did step 1 in the chosen range with these filters.",
        "Widen the entry dates, clear filters, or start the funnel with a more common step.",
    )
    st.stop()

group_col = None
if by:
    sizes = steps_df[steps_df["step"] == 1].set_index("group")["accounts"].sort_values(ascending=False)
    shown = st.multiselect(
        "Groups side by side",
        sizes.index.tolist(),
        default=sizes.index[:MAX_GROUPS].tolist(),
        key="groups",
        bind="query-params",
        wrap=True,
        help=f"Groups in the breakdown to compare (by default every group, or the {MAX_GROUPS} largest). "
        "The steps table's CSV has every group.",
    )
    steps_df = steps_df[steps_df["group"].isin(shown)] if shown else steps_df
    group_col = "group"
    n_shown = steps_df["group"].nunique()
    if n_shown < len(sizes):
        st.caption(
            f"Showing {n_shown} of {len(sizes)} groups ({md(', '.join(map(str, dict.fromkeys(steps_df['group']))))}); "
            "the steps table's CSV has all of them."
        )

st.caption(f"As of {as_of:%d %b %Y} · {md(flt.describe())} · window {window_n} {unit} from step 1 · {mode}")
if exclude:
    st.caption(
        f"Exclusion steps {md(', '.join(str(x) for x in res.spec.exclusions))}: "
        f"{res.meta['excluded_accounts']:,} accounts left the funnel."
    )
if by_prop:
    prop = md(by[5:])
    st.caption(
        {
            "first": f"First touch: each account under the first {prop} its step events carry",
            "last": f"Last touch: each account under the last {prop} its step events carry",
        }.get(res.spec.attribution)
        or f"Step {res.spec.attribution_step} attribution: an account appears under each {prop} its step-"
        f"{res.spec.attribution_step} events carry; one without a step-{res.spec.attribution_step} event under none"
    )
st.plotly_chart(charts.funnel_chart(steps_df, group_col=group_col), key="funnel_chart")
last = steps_df[steps_df["step"] == steps_df["step"].max()]
if not by:
    r = last.iloc[0]
    worst = steps_df[steps_df["step"] > 1].sort_values("conversion_from_previous").iloc[0]
    reading(
        f"{r['accounts']:,} of {steps_df.iloc[0]['accounts']:,} accounts ({r['conversion_from_first']:.0%}, 95 % CI {r['conversion_from_first_low']:.0%}–{r['conversion_from_first_high']:.0%}) "
        f"went all the way; the biggest drop is into step {worst['step']} ({md(worst['name'])}), {worst['conversion_from_previous']:.0%} conversion. "
        f"{int(steps_df['in_progress'].sum()):,} accounts are still inside their window and are not counted as drop-offs."
    )
else:
    # Conversion over each group's own step-1 base (never the last step's previous count).
    summary = fn.conversion_summary(steps_df)
    reading(
        "Went all the way: "
        + " · ".join(
            f"{md(g)}: {k:,} of {n:,} entered ({c * 100:.0f} %)"
            for g, k, n, c in zip(
                summary["group"], summary["converted"], summary["entered"], summary["rate"], strict=True
            )
        )
    )
blocked = fn.strict_blocked_step(steps_df, res.spec)
if blocked:
    st.info(
        f"No account reached step {blocked} ({md(labels.get(steps[blocked - 1]) or steps[blocked - 1])}) in strict mode: "
        f"strict means step {blocked} must come right after step {blocked - 1}, with no other event in between. "
        "A milestone is completed in the middle of other product events, so next to a milestone that almost never "
        "holds. Choose *ordered* to allow other events in between.",
        icon=":material/info:",
    )

if steps_df.loc[steps_df["step"] > 1, "median_seconds_from_previous"].notna().any():
    st.plotly_chart(charts.time_to_convert_chart(steps_df, group_col=group_col), key="ttc_chart")
    slow = steps_df[steps_df["step"] > 1].sort_values("median_seconds_from_previous", ascending=False).iloc[0]
    if pd.notna(slow["median_seconds_from_previous"]):
        reading(
            f"The slowest step is {md(slow['name'])}: a median of {slow['median_seconds_from_previous'] / 86400:.1f} days after the previous one (90 % within {slow['p90_seconds_from_previous'] / 86400:.1f} days)."
        )

st.subheader("Steps")
view = steps_df.copy()
for c in (
    "conversion_from_previous",
    "conversion_from_previous_low",
    "conversion_from_previous_high",
    "conversion_from_first",
    "conversion_decided",
):
    view[c] = view[c] * 100
for c in ("mean_seconds_from_previous", "median_seconds_from_previous", "p90_seconds_from_previous"):
    view[c.replace("seconds", "days")] = view[c] / 86400
cols = (["group"] if by else []) + [
    "step",
    "name",
    "accounts",
    "dropped",
    "in_progress",
    "conversion_from_previous",
    "conversion_from_previous_low",
    "conversion_from_previous_high",
    "conversion_from_first",
    "conversion_decided",
    "median_days_from_previous",
    "mean_days_from_previous",
    "p90_days_from_previous",
]
table(
    # Blank, not "None", where a value does not exist (step 1 has no previous step).
    blank_missing(
        view[cols],
        {
            c: "{:.1f} %" if c.startswith("conversion") else "{:.2f}"
            for c in cols
            if c.startswith(("conversion", "median", "mean", "p90"))
        },
    ),
    key="steps_table",
    filename="funnel-steps",
    column_config={
        "group": "Group",
        "step": "Step",
        "name": "Name",
        "accounts": "Accounts",
        "dropped": st.column_config.NumberColumn(
            "Dropped off", help="Reached the previous step, not this one, and their window has closed"
        ),
        "in_progress": st.column_config.NumberColumn(
            "In progress", help="Reached the previous step and are still inside their window"
        ),
        "conversion_from_previous": blank_column("Conv. from previous"),
        "conversion_from_previous_low": blank_column("95 % low"),
        "conversion_from_previous_high": blank_column("95 % high"),
        "conversion_from_first": blank_column("Conv. from step 1"),
        "conversion_decided": blank_column("Conv. excl. in progress"),
        "median_days_from_previous": blank_column("Median days"),
        "mean_days_from_previous": blank_column("Mean days"),
        "p90_days_from_previous": blank_column("p90 days"),
    },
    # Every group, also those not drawn side by side.
    download_df=res.steps,
)

st.subheader("Accounts behind a step")
d1, d2 = st.columns([2, 2])
step_names = [f"{i + 1}. {labels.get(s, s)}" for i, s in enumerate(steps)]
with d1:
    pick = st.selectbox(
        "Step",
        range(1, len(steps) + 1),
        index=1,  # step 2: the first step with drop-offs
        format_func=lambda k: step_names[k - 1],
        key="drill_step",
        bind="query-params",
    )
with d2:
    who = st.segmented_control(
        "Accounts",
        ["reached", "dropped", "in progress"],
        default="dropped",
        key="drill_who",
        required=True,
        format_func={
            "reached": "Reached this step",
            "dropped": "Dropped off before it",
            "in progress": "Still in progress",
        }.get,
    )
acc = res.accounts
if who == "reached":
    sel = acc[acc["furthest"] >= pick]
else:
    sel = acc[(acc["furthest"] == pick - 1) & (acc["status"] == who)]
if group_col:
    sel = sel[sel["group"].isin(shown)] if shown else sel
sel = sel.sort_values(["furthest", "entered_at"], ascending=[False, True])
st.caption(f"{len(sel):,} accounts")
if len(sel):
    # 100 rows a page: the browser draws one page; the download has them all.
    page = page_of(sel, key="drill_table")
    sv = page.assign(link=page["external_id"])
    tcols = (
        ["link", "name", "owner", "furthest", "status"]
        + [f"t{k}" for k in range(len(steps))]
        + (["group"] if group_col else [])
    )
    table(
        blank_missing(sv[tcols], {f"t{k}": "%Y-%m-%d %H:%M" for k in range(len(steps))}),  # blank: not reached
        key="drill_table",
        filename=f"funnel-step{pick}-{who.replace(' ', '-')}",
        height=320,
        column_config={
            "link": account_column("open_drill"),
            "name": "Name",
            "owner": "Owner",
            "furthest": st.column_config.NumberColumn("Furthest step", format="%d"),
            "status": "Status",
            "group": "Group",
            **{f"t{k}": st.column_config.TextColumn(f"Step {k + 1} at") for k in range(len(steps))},
        },
        download_df=sel.drop(columns=["account_id"]),
    )
    follow_click("open_drill", sv["link"])
    o1, o2 = st.columns([3, 1])
    names = dict(zip(sel["external_id"], sel["name"], strict=True))
    with o1:
        target = st.selectbox(
            "Open an account",
            sel["external_id"].tolist()[:500],
            format_func=lambda e: f"{e} · {names[e]}",
            key="drill_open",
        )
    with o2:
        st.space("small")  # the button level with the box, under its label
        if st.button("Open account", icon=":material/open_in_new:", key="drill_go"):
            open_account(target)
else:
    empty("No account in this group.", "Pick another step or group.")
