"""Manual against measured on the pages: the Portfolio's block naming the checklist items
whose manual status the events contradict, and the account page's warning."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from components.safe import md
from components.ui import account_link, table
from services.analytics import Facts
from services.measured import portfolio_disagreements

SUCCESS_PLANS = "success-plans"


def plan_link(external_id: str) -> str:
    return account_link(external_id).replace("/accounts?", f"/{SUCCESS_PLANS}?", 1)


def portfolio_block(src: Facts, *, as_of: date, health: pd.DataFrame, into=None) -> None:
    """For the Portfolio: how many metric-bound checklist items on the live accounts shown
    are marked against what the events measure, and which (each opens its checklist).
    `into`: a container made earlier on the page, so the block can be computed last (it
    reads every account's events once per as-of date) yet shown under the summary."""
    live = health[health["status"] != "churned"]["account_id"].tolist()
    with into if into is not None else st.container():
        with st.spinner("Comparing checklists with the events…"):
            d = portfolio_disagreements(src, as_of=as_of, account_ids=live)
        _block(d, live=len(live), as_of=as_of)


def _block(d: pd.DataFrame, *, live: int, as_of: date) -> None:
    with st.container(border=True, key="measured_block"):
        if d.empty:
            st.markdown("**Manual against measured:** every checklist item bound to a metric agrees with the events.")
            return
        n_acc = d["account_id"].nunique()
        done_low = int((d["status"] == "done").sum())
        st.markdown(
            f"**Manual against measured:** {len(d):,} checklist item(s) on {n_acc:,} of {live:,} live accounts "
            f"contradict the events: {done_low:,} marked done below target, {len(d) - done_low:,} meeting the target "
            "but not marked done. Open an account's checklist to accept the measured value."
        )
        # Only an open expander builds its table (and sends it to the browser): tens of
        # thousands of rows otherwise travel and are drawn, hidden, on every Portfolio run.
        items = st.expander(f"The {len(d):,} item(s)", key="measured_items", on_change="rerun")
        if not items.open:
            return
        with items:
            view = d.assign(link=d["external_id"].map(plan_link))[
                ["link", "name", "csm_name", "criterion", "status", "target", "measured", "reason"]
            ]
            table(
                view,
                key="measured_disagreements",
                filename=f"manual-vs-measured-{as_of}",
                height=min(36 * (len(view) + 1) + 3, 320),
                column_config={
                    "link": st.column_config.LinkColumn(
                        "Account", display_text=r"account=(.*)$", help="Open the account's checklist"
                    ),
                    "name": "Name",
                    "csm_name": "CSM",
                    "criterion": "Criterion",
                    "status": "Status (manual)",
                    "target": "Target",
                    "measured": "Measured",
                    "reason": st.column_config.TextColumn("Why flagged", width="large"),
                },
            )


def account_warning(d: pd.DataFrame) -> None:
    """The account page's note of its items contradicting the measurement."""
    if d.empty:
        return
    st.warning(
        f"**{len(d)} checklist item(s) contradict the measurement:** "
        + "; ".join(f"{md(c)}: {md(r)}" for c, r in zip(d["criterion"], d["reason"], strict=True))
        + ". Accept the measured value on the success plan page.",
        icon=":material/rule:",
    )
