"""The floor for the browser benchmark (issue 16): a trivial Streamlit app with a title, one
metric, one small Plotly chart and one small table, measured the same way as the real pages
(bench/browser.py). Two identical pages so a page switch by the sidebar can be timed, and a
sidebar multiselect (bound to the URL like the app's filters) for the filter change."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

st.set_page_config(page_title="Trivial", layout="wide")

SEGMENTS = ["SMB", "Mid-Market", "Enterprise", "Strategic"]
DATA = pd.DataFrame(
    {
        "segment": [s for s in SEGMENTS for _ in range(5)],
        "week": list(range(1, 6)) * len(SEGMENTS),
        "accounts": [10 + 3 * i + j for i in range(len(SEGMENTS)) for j in range(5)],
    }
)


def body(title: str) -> None:
    chosen = st.sidebar.multiselect("Segment", SEGMENTS, key="segment", bind="query-params", placeholder="All")
    df = DATA[DATA["segment"].isin(chosen)] if chosen else DATA
    st.title(title)
    st.metric("Accounts", f"{int(df['accounts'].sum()):,}")
    st.plotly_chart(px.bar(df.groupby("week", as_index=False)["accounts"].sum(), x="week", y="accounts"), key="chart")
    st.dataframe(df, hide_index=True)


def trivial_a() -> None:
    body("Trivial A")


def trivial_b() -> None:
    body("Trivial B")


page = st.navigation(
    [
        st.Page(trivial_a, title="Trivial A", url_path="a", default=True),
        st.Page(trivial_b, title="Trivial B", url_path="b"),
    ]
)
page.run()
