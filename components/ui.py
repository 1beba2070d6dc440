"""Small UI pieces: KPI tiles, tables with CSV download, readings, empty states."""

from __future__ import annotations

import math
import re
from urllib.parse import quote

import pandas as pd
import streamlit as st

from db.exporter import neutralise
from services.analytics import Kpi

ACCOUNT_PAGE = "accounts"


def fmt_pct(x: float, digits: int = 0) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.{digits}f} %"


def fmt_num(x: float, digits: int = 0, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}{(' ' + unit) if unit else ''}"


def kpi_tile(k: Kpi, *, key: str) -> None:
    """A KPI with its change on the previous period, target and denominator."""
    if k.unit == "%":
        value = fmt_pct(k.value)
        delta = None if math.isnan(k.delta) else f"{k.delta * 100:+.1f} pts"
    elif k.unit == "days":
        value = fmt_num(k.value, 0, "days")
        delta = None if math.isnan(k.delta) else f"{k.delta:+.1f} days"
    else:
        value = fmt_num(k.value)
        delta = None if math.isnan(k.delta) else f"{k.delta:+.0f}"
    # Lower is better for time to value and risk.
    color = "inverse" if k.key in ("ttfv", "at_risk") else ("off" if k.key == "onboarding" else "normal")
    with st.container(border=True, key=f"kpi_{key}"):
        st.metric(k.label, value, delta, delta_color=color, help=k.help)
        bits = []
        if k.denominator is not None:
            bits.append(f"{k.numerator:,} of {k.denominator:,}")
        if not math.isnan(k.low):
            if k.unit == "%":
                bits.append(f"95 % CI {fmt_pct(k.low)}–{fmt_pct(k.high)}")
            else:
                bits.append(f"95 % CI {fmt_num(k.low)}–{fmt_num(k.high)} days")
        if k.target:
            bits.append(f"target {k.target}")
        if k.population:
            bits.append(k.population)
        st.caption(" · ".join(bits) or "vs previous week")


def csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV for download, with spreadsheet formulas neutralised in text cells."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = neutralise(out[c])
    return out.to_csv(index=False).encode("utf-8")


def table(
    df: pd.DataFrame,
    *,
    key: str,
    filename: str,
    column_config: dict | None = None,
    height: int | str = "auto",
    hide_index: bool = True,
    selectable: bool = False,
    download_df: pd.DataFrame | None = None,
):
    """A dataframe with a CSV download of the same rows."""
    kwargs = {}
    if selectable:
        kwargs = {"on_select": "rerun", "selection_mode": "single-row"}
    event = st.dataframe(
        df, key=key, column_config=column_config, hide_index=hide_index, height=height, width="stretch", **kwargs
    )
    source = download_df if download_df is not None else df
    st.download_button(
        "Download CSV",
        # Made when clicked, not on every run (tables can hold 20,000 accounts).
        lambda: csv_bytes(source),
        file_name=f"{filename}.csv",
        mime="text/csv",
        key=f"{key}_csv",
        icon=":material/download:",
    )
    return event


def reading(text: str) -> None:
    """The one plain-language sentence next to a chart."""
    st.caption(f":material/lightbulb: {text}")


def empty(message: str, what_next: str) -> None:
    st.info(f"{message} {what_next}", icon=":material/info:")


def account_link(external_id: str) -> str:
    """Relative link to one account's page (opens the Accounts page on it). The id is
    URL-encoded: an id with & or # in it must not add parameters or cut the link."""
    return f"/{ACCOUNT_PAGE}?account={quote(str(external_id), safe='')}"


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")
