"""Small UI pieces: KPI tiles, tables with CSV download, readings, empty states."""

from __future__ import annotations

import math
import re
from urllib.parse import quote

import pandas as pd
import streamlit as st

from components.safe import md
from db.exporter import neutralise
from services.analytics import Kpi

ACCOUNT_PAGE = "accounts"


def fmt_pct(x: float, digits: int = 0) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.{digits}f} %"


def fmt_num(x: float, digits: int = 0, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}{(' ' + unit) if unit else ''}"


CURRENCY_DEFAULT = "USD"


def currency(src) -> str | None:
    """The currency amounts such as ARR are in: the `analysis.currency` setting (an ISO 4217
    code, default USD). A malformed value gives None (amounts are then shown without one)."""
    value, _ = src.setting("analysis")
    code = (value or {}).get("currency", CURRENCY_DEFAULT)
    return code if isinstance(code, str) and re.fullmatch(r"[A-Z]{3}", code) else None


def account_header(a, *, csm: str | None, status: str) -> str:
    """One account's attributes, each with its label (markdown-escaped)."""
    parts = [
        f"Id: {md(a.external_id)}",
        f"Segment: {md(a.segment)}",
        f"Industry: {md(a.industry or 'unknown')}",
        f"Plan: {md(a.plan or 'unknown')}",
        f"Region: {md(a.region or 'unknown')}",
        f"CSM: {md(csm or 'unassigned')}",
        f"Contract start: {a.contract_start:%d %b %Y}",
        f"Status: {md(status)}",
    ]
    return " · ".join(parts)


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


def blank_missing(df: pd.DataFrame, formats: dict[str, str]) -> pd.DataFrame:
    """These columns as text, blank where a value is missing: st.dataframe draws "None" for
    a missing value whatever its format. `formats`: column -> "{:.1f} %" for numbers or a
    strftime pattern such as "%Y-%m-%d %H:%M" for times. Give them a TextColumn config
    (`blank_column`); the CSV download keeps the numbers."""
    out = df.copy()
    for c, f in formats.items():
        if c not in out.columns:
            continue
        col = out[c]
        if pd.api.types.is_datetime64_any_dtype(col):
            out[c] = col.dt.strftime(f).fillna("")
        else:
            out[c] = col.map(lambda v, f=f: "" if pd.isna(v) else f.format(v))
    return out


def blank_column(label: str, *, help: str | None = None):
    """The column config of a `blank_missing` column: text, aligned as a number."""
    return st.column_config.TextColumn(label, help=help, alignment="right")


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


PAGE_ROWS = 100


def page_of(df: pd.DataFrame, *, key: str, size: int = PAGE_ROWS, noun: str = "rows") -> pd.DataFrame:
    """One page of a long table, so the browser draws `size` rows, not thousands: a page
    selector when there is more than one page, and "rows 1–100 of N" (the total). The
    download beside the table keeps every row."""
    n = len(df)
    pages = max(1, math.ceil(n / size))
    state = f"{key}_page"
    if not isinstance(st.session_state.get(state), int) or not 1 <= st.session_state[state] <= pages:
        st.session_state[state] = 1  # fewer pages than before (a filter changed): back to the first
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    if pages > 1:
        with right:
            page = st.selectbox("Page", range(1, pages + 1), key=state, format_func=lambda k: f"Page {k} of {pages:,}")
    else:
        page = 1
    lo, hi = (page - 1) * size, min(page * size, n)
    with left:
        st.caption(f"{noun} {lo + 1 if n else 0:,}–{hi:,} of {n:,}")
    return df.iloc[lo:hi]
