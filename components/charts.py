"""Plotly figure builders. Every chart is titled and its axes carry units. Plotly renders
its text as HTML (links included), so every label that carries data goes through
`html_label`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.safe import html_label
from metrics.days import by_date
from metrics.health import BAND_COLORS, BANDS

PALETTE = ["#2f6fde", "#e4572e", "#17a398", "#f3a712", "#8e44ad", "#6c757d", "#c2185b", "#2e7d32", "#5d4037", "#0097a7"]


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
        # Below the plot: a long legend above it would run into the title.
        legend={"orientation": "h", "yanchor": "top", "y": -0.24, "xanchor": "left", "x": 0},
        hovermode="closest",
    )
    fig.update_xaxes(title_text=x, automargin=True)
    fig.update_yaxes(title_text=y, automargin=True)
    return fig


def funnel_chart(steps: pd.DataFrame, *, group_col: str | None = None) -> go.Figure:
    """Share of entering accounts that reached each step (with 95 % intervals); the part
    still inside its window is shown apart, lighter."""
    fig = go.Figure()
    groups = [None] if not group_col else list(dict.fromkeys(steps[group_col]))
    for i, g in enumerate(groups):
        d = steps if g is None else steps[steps[group_col] == g]
        first = d["accounts"].iloc[0] if len(d) else 0
        labels = [html_label(f"{s}. {n}") for s, n in zip(d["step"], d["name"], strict=True)]
        conv = d["conversion_from_first"] * 100
        color = PALETTE[i % len(PALETTE)]
        fig.add_bar(
            x=labels,
            y=conv,
            name=html_label(g) if g is not None else "Reached",
            marker_color=color,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (d["conversion_from_first_high"] * 100 - conv),
                "arrayminus": (conv - d["conversion_from_first_low"] * 100),
                "color": "#888",
            },
            customdata=d["accounts"],
            offsetgroup=str(i),
            hovertemplate="%{x}<br>%{customdata:,} accounts, %{y:.1f} % of entering accounts<extra></extra>",
        )
        top = d["conversion_from_first_high"] * 100
        if first and d["in_progress"].sum() > 0:
            progress = d["in_progress"] / first * 100
            top = np.maximum(top, conv + progress)
            fig.add_bar(
                x=labels,
                y=progress,
                base=conv,
                name=html_label(f"{g} in progress") if g is not None else "Still in window",
                marker={"color": color, "opacity": 0.35, "pattern": {"shape": "/"}},
                offsetgroup=str(i),
                hovertemplate="%{x}<br>%{y:.1f} % still inside their window<extra></extra>",
            )
        # The label sits above the bar's interval (and its in-progress part), never inside a
        # thin bar where it would shrink or under an error bar: an invisible bar from there.
        fig.add_bar(
            x=labels,
            y=[0.01] * len(d),
            base=top,
            text=[f"{c:.0f} %<br>{a:,}" for a, c in zip(d["accounts"], conv, strict=True)],
            textposition="outside",
            constraintext="none",
            cliponaxis=False,
            textfont={"size": 11, "color": color},
            marker={"color": "rgba(0,0,0,0)"},
            offsetgroup=str(i),
            showlegend=False,
            hoverinfo="skip",
            name="label",
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 125], ticksuffix=" %")
    return _layout(
        fig,
        "Conversion from step 1, with 95 % intervals",
        "Funnel step",
        "Accounts that reached the step (% of step 1)",
        420,
    )


def time_to_convert_chart(steps: pd.DataFrame, *, group_col: str | None = None) -> go.Figure:
    d = steps[steps["step"] > 1]
    fig = go.Figure()
    groups = [None] if not group_col else list(dict.fromkeys(d[group_col]))
    for i, g in enumerate(groups):
        part = d if g is None else d[d[group_col] == g]
        labels = [html_label(f"{s}. {n}") for s, n in zip(part["step"], part["name"], strict=True)]
        fig.add_bar(
            x=labels,
            y=part["median_seconds_from_previous"] / 86400,
            name=html_label(f"{g} median") if g is not None else "Median",
            marker_color=PALETTE[i % len(PALETTE)],
            offsetgroup=str(i),
            hovertemplate="%{x}<br>median %{y:.2f} days<extra></extra>",
        )
        fig.add_scatter(
            x=labels,
            y=part["p90_seconds_from_previous"] / 86400,
            mode="markers",
            name=html_label(f"{g} p90") if g is not None else "90th percentile",
            marker={"symbol": "line-ew-open", "size": 22, "color": PALETTE[i % len(PALETTE)], "line": {"width": 3}},
            hovertemplate="%{x}<br>p90 %{y:.2f} days<extra></extra>",
        )
    return _layout(fig, "Time to convert from the previous step", "Funnel step", "Days from the previous step", 340)


def per_day(c: pd.DataFrame) -> pd.DataFrame:
    """A Kaplan-Meier curve with one point per day: its value by the end of each day (the
    last step within the day), so the browser draws a few hundred points, not one per
    account. The curve's values are unchanged at every day's end."""
    if c.empty:
        return c
    day = np.ceil(c["day"].to_numpy(float))
    keep = np.r_[day[1:] != day[:-1], True]
    out = c[keep].copy()
    out["day"] = day[keep]
    return out


def km_chart(curves: pd.DataFrame, groups: pd.DataFrame, *, milestone: str, x_max: float | None = None) -> go.Figure:
    """Kaplan-Meier share that reached the milestone by day, with 95 % bands (one point a
    day); `x_max` ends the days axis there (else it runs to the end of follow-up)."""
    fig = go.Figure()
    for i, (g, c_all) in enumerate(curves.groupby("group", sort=True)):
        c = per_day(c_all.sort_values("day", kind="stable"))
        color = PALETTE[i % len(PALETTE)]
        r, gg, b = tuple(int(color[j : j + 2], 16) for j in (1, 3, 5))
        fig.add_scatter(
            x=c["day"],
            y=c["reached_high"] * 100,
            mode="lines",
            line={"width": 0, "shape": "hv"},
            showlegend=False,
            hoverinfo="skip",
        )
        fig.add_scatter(
            x=c["day"],
            y=c["reached_low"] * 100,
            mode="lines",
            line={"width": 0, "shape": "hv"},
            fill="tonexty",
            fillcolor=f"rgba({r},{gg},{b},0.15)",
            showlegend=False,
            hoverinfo="skip",
        )
        med = groups.loc[groups["group"] == g, "median_days"]
        label = (
            f"{g} (median {med.iloc[0]:.0f} d)"
            if len(med) and not math.isnan(med.iloc[0])
            else f"{g} (median not reached)"
        )
        fig.add_scatter(
            x=c["day"],
            y=c["reached"] * 100,
            mode="lines",
            name=html_label(label),
            line={"color": color, "width": 2, "shape": "hv"},
            # The group goes in as data (meta), not into the template, where it would be markup.
            meta=html_label(g),
            hovertemplate="day %{x:.0f}: %{y:.1f} % reached<extra>%{meta}</extra>",
        )
    fig.add_hline(
        y=50, line={"dash": "dot", "color": "#999"}, annotation_text="median", annotation_position="bottom right"
    )
    fig.update_yaxes(range=[0, 100], ticksuffix=" %")
    fig.update_xaxes(rangemode="tozero")
    if x_max is not None:
        fig.update_xaxes(range=[0, x_max])
    return _layout(
        fig,
        html_label(f"Share of accounts that reached {milestone.replace('_', ' ')} (Kaplan-Meier, 95 % bands)"),
        "Days since contract start",
        "Accounts that reached it (%)",
        420,
    )


def heatmap(shares: pd.DataFrame, observed: pd.DataFrame, *, milestone: str) -> go.Figure:
    """Cohort x week share; cells where part of the cohort is not yet observed carry '*'."""
    size = observed["accounts"]
    obs = observed.drop(columns="accounts")
    z = shares.to_numpy(float) * 100
    incomplete = obs.to_numpy() < size.to_numpy()[:, None]
    text = np.where(np.isnan(z), "", np.char.add(np.char.mod("%.0f", np.nan_to_num(z)), np.where(incomplete, "*", "")))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[html_label(c) for c in shares.columns],
            y=[html_label(f"{c} (n={int(n)})") for c, n in zip(shares.index, size.reindex(shares.index), strict=True)],
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=100,
            colorbar={"title": {"text": "% reached"}, "ticksuffix": " %"},
            customdata=obs.to_numpy(),
            hovertemplate="%{y}, %{x}: %{z:.1f} % of the %{customdata} accounts observed that long<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(
        fig,
        html_label(
            f"Share of each cohort that reached {milestone.replace('_', ' ')}, by week since start (* = cohort not fully observed yet)"
        ),
        "Weeks since contract start",
        "Cohort (accounts)",
        max(360, 26 * len(shares) + 120),
    )


def bands_chart(bands: pd.DataFrame) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=bands["band"],
            y=bands["accounts"],
            # Accounts too early to score have no band: grey.
            marker_color=[BAND_COLORS.get(b, "#9e9e9e") for b in bands["band"]],
            text=bands["accounts"],
            textposition="outside",
            hovertemplate="%{x}: %{y} accounts<extra></extra>",
        )
    )
    fig.update_yaxes(range=[0, max(bands["accounts"].max() * 1.2, 1)])
    return _layout(fig, "Live accounts by health band", "Health band", "Accounts", 320)


def trend_chart(trend: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for b in reversed(BANDS):
        fig.add_scatter(
            x=trend["date"],
            y=trend[b] * 100,
            name=b,
            stackgroup="bands",
            line={"width": 0.5, "color": BAND_COLORS[b]},
            hovertemplate="%{x|%d %b}: %{y:.1f} %<extra>" + b + "</extra>",
        )
    fig.add_scatter(
        x=trend["date"],
        y=trend["avg_health"],
        name="Average score",
        yaxis="y2",
        line={"color": "#3b7be8", "width": 3},  # visible on light and dark backgrounds
        hovertemplate="%{x|%d %b}: %{y:.1f}<extra>average</extra>",
    )
    fig = _layout(fig, "Health by week: band mix and average score", "Week", "Share of live accounts (%)", 380)
    fig.update_layout(
        yaxis={"range": [0, 100], "ticksuffix": " %", "tickvals": [0, 20, 40, 60, 80, 100]},
        yaxis2={
            "overlaying": "y",
            "side": "right",
            "range": [0, 100],
            "tickvals": [0, 20, 40, 60, 80, 100],
            "title": {"text": "Average score (0-100)"},
            "showgrid": False,
        },
        legend={"orientation": "h", "yanchor": "top", "y": -0.3, "xanchor": "left", "x": 0},
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return fig


def churn_by_band_chart(bands: pd.DataFrame, title: str) -> go.Figure:
    y = bands["churn_rate"] * 100
    fig = go.Figure(
        go.Bar(
            x=bands["band"],
            y=y,
            # Accounts too early to score have no band: grey.
            marker_color=[BAND_COLORS.get(b, "#9e9e9e") for b in bands["band"]],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": bands["churn_rate_high"] * 100 - y,
                "arrayminus": y - bands["churn_rate_low"] * 100,
                "color": "#888",
            },
            text=[
                f"{c:.0f} % of {n}" if n else "no accounts" for c, n in zip(y.fillna(0), bands["accounts"], strict=True)
            ],
            textposition="inside",
            insidetextanchor="start",
            hovertemplate="%{x}: %{y:.1f} % churned<extra></extra>",
        )
    )
    fig.update_yaxes(
        range=[0, max(100, float(np.nanmax((bands["churn_rate_high"] * 100).to_numpy(float), initial=0)) * 1.15)],
        ticksuffix=" %",
    )
    return _layout(fig, html_label(title), "Health band at scoring day", "Churned within 12 months (%)", 340)


def timeline_chart(ms: pd.DataFrame, *, as_of: pd.Timestamp, start: pd.Timestamp) -> go.Figure:
    """Milestones planned (contract start → due date) against actual (→ completion)."""
    fig = go.Figure()
    names = [html_label(n) for n in ms["name"]]
    planned_days = (ms["due_date"] - start).dt.days
    fig.add_bar(
        y=names,
        x=planned_days,
        base=0,
        orientation="h",
        name="Planned (to due date)",
        marker={"color": "rgba(120,120,120,0.35)"},
        hovertemplate="%{y}: due day %{x}<extra></extra>",
    )
    actual = (ms["completed_at"] - start).dt.total_seconds() / 86400
    done = ms["completed_at"].notna() & (ms["completed_at"] < as_of)
    late = done & ~by_date(ms["due_date"], ms["completed_at"])
    overdue = ~done & (ms["due_date"] < as_of)
    colors = np.where(late, "#ef6c00", "#2e7d32")
    fig.add_scatter(
        y=[n for n, d in zip(names, done, strict=True) if d],
        x=actual[done],
        mode="markers",
        name="Completed (green on time, orange late)",
        marker={"size": 13, "symbol": "diamond", "color": colors[done.to_numpy()]},
        hovertemplate="%{y}: done on day %{x:.0f}<extra></extra>",
    )
    today_day = (as_of - pd.Timedelta(days=1) - start).days
    if overdue.any():
        fig.add_scatter(
            y=[n for n, o in zip(names, overdue, strict=True) if o],
            x=[today_day] * int(overdue.sum()),
            mode="markers",
            name="Overdue (not done)",
            marker={"size": 13, "symbol": "x", "color": "#c62828"},
            hovertemplate="%{y}: overdue<extra></extra>",
        )
    fig.add_vline(
        x=today_day, line={"dash": "dot", "color": "#888"}, annotation_text="as of", annotation_position="top"
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Milestones: planned against actual", "Days since contract start", "Milestone", 320)


def score_history_chart(hist: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for b, lo, hi in (("Critical", 0, 40), ("At Risk", 40, 60), ("On Track", 60, 80), ("Excellent", 80, 100)):
        fig.add_hrect(y0=lo, y1=hi, fillcolor=BAND_COLORS[b], opacity=0.08, line_width=0)
    fig.add_scatter(
        x=hist["date"],
        y=hist["total"],
        mode="lines+markers",
        name="Health score",
        line={"color": "#2f6fde"},
        hovertemplate="%{x|%d %b %Y}: %{y:.1f}<extra></extra>",
    )
    changes = hist[hist["model_version"].diff().fillna(0) != 0]
    for _, r in changes.iterrows():
        fig.add_vline(
            x=r["date"],
            line={"dash": "dash", "color": "#8e44ad"},
            annotation_text=f"model v{int(r['model_version'])}",
            annotation_position="top left",
        )
    fig.update_yaxes(range=[0, 100])
    return _layout(
        fig, "Health score by week (dashed line: scoring model changed)", "Week", "Health score (0-100)", 300
    )


DAY_MS = 86_400_000


def daily_activity_chart(daily: pd.DataFrame, *, start: pd.Timestamp, end: pd.Timestamp) -> go.Figure:
    """Active users per calendar day from `start` to `end` (exclusive): a date axis with one
    bin per day, so a single active day is one narrow bar, not a full-width one with
    sub-second ticks."""
    fig = go.Figure(
        go.Bar(
            x=daily["day"],
            y=daily["users"],
            name="Active users",
            width=DAY_MS * 0.8,
            hovertemplate="%{x|%d %b %Y}: %{y} users<extra></extra>",
        )
    )
    fig.update_xaxes(
        type="date",
        range=[start - pd.Timedelta(hours=12), end - pd.Timedelta(hours=12)],
        tickformat="%d %b",
        dtick=7 * DAY_MS,
        tick0=start,
    )
    fig.update_yaxes(rangemode="tozero", tickformat=",d", dtick=None if daily["users"].max() > 5 else 1)
    return _layout(fig, "Active users per day, last 90 days", "Day", "Active users", 260)
