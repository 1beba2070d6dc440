"""Success plans: one account's goals, 30/60/90-day definition of success, stakeholders and
the success-criteria checklist, edited in place. Saves are validated per cell, refused if
someone else saved in between (your edits stay on screen), and logged as history."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import streamlit as st

from components import cache, context
from components.safe import md
from components.ui import empty, table
from db.models import CHECKLIST_CATEGORIES, CHECKLIST_STATUSES
from services.access import PermissionDenied
from services.accounts import METRIC_LABELS, account_view, find_account
from services.measured import accept_measured, account_disagreements
from services.plans import (
    EDITABLE,
    ItemChange,
    StaleVersion,
    ValidationFailed,
    apply_template,
    in_session,
    named_history,
    save_checklist,
    save_plan,
)

src = cache.facts()
as_of = context.as_of()
user = context.user()

st.title("Success plans")
accounts = src.accounts()
if accounts.empty:
    empty("There are no accounts yet.", "Import accounts on the Data page.")
    st.stop()

# The picker offers a page of accounts (the CSM's own first), narrowed by a search: the
# browser gets those options, not every account in the portfolio.
SHOWN = 50
mine_first = accounts.sort_values(["external_id"])
if user.role == "csm":
    mine_first = pd.concat(
        [mine_first[mine_first["csm_email"] == user.email], mine_first[mine_first["csm_email"] != user.email]]
    )
current = st.query_params.get("account")
find_col, pick_col = st.columns([1, 2])
search = find_col.text_input(
    "Find an account", key="sp_search", placeholder="id, name or CSM", help="Narrows the Account list"
).strip()
pool = mine_first
if search:
    needle = search.lower()
    hit = np.zeros(len(pool), dtype=bool)
    for col in ("external_id", "name", "csm_name"):
        hit |= pool[col].fillna("").astype(str).str.lower().str.contains(needle, regex=False).to_numpy()
    pool = pool[hit]
options = pool["external_id"].head(SHOWN).tolist()
known = set(accounts["external_id"]) if current is not None else set()
if current in known and current not in options:
    options = [current, *options]  # the account shown stays shown until another is picked
if not options:
    options = mine_first["external_id"].head(1).tolist()
info = accounts.set_index("external_id").loc[options, ["name", "csm_name"]]


def label(e: str) -> str:
    owner = info.at[e, "csm_name"]
    return f"{e} · {info.at[e, 'name']} · {owner if isinstance(owner, str) and owner else 'no CSM'}"


ext = pick_col.selectbox(
    "Account",
    options,
    index=options.index(current) if current in options else 0,
    format_func=label,
    help="Type to search the accounts listed; Find an account narrows the list",
)
matches = len(pool)
if search:
    st.caption(
        f"{matches:,} account{'s' if matches != 1 else ''} match “{md(search)}”"
        + (f"; the first {SHOWN} are listed." if matches > SHOWN else ".")
    )
elif len(mine_first) > SHOWN:
    st.caption(f"The first {SHOWN} of {len(mine_first):,} accounts are listed; search to find any other.")
if ext != current:
    st.query_params["account"] = ext
account_id = find_account(ext)
v = account_view(src, user, account_id=account_id, as_of=as_of, full=False)
a = v.account
st.caption(
    f"Segment: {md(a.segment)} · CSM: {md(v.csm.name if v.csm else 'unassigned')} · "
    f"Contract start: {a.contract_start:%d %b %Y} · Status: {v.status}"
)
if not v.can_edit:
    st.info(
        "Read-only: "
        + (
            "this account belongs to another CSM."
            if user.role == "csm"
            else f"the {user.role} role can read plans but not change them."
        ),
        icon=":material/lock:",
    )

# ----------------------------------------------------------------------------- plan
st.subheader("Goals and definition of success")
if msg := st.session_state.pop(f"plan_saved_{account_id}", None):
    st.success(msg, icon=":material/check_circle:")
plan = v.plan
plan_key = f"plan_{account_id}"
if plan is not None:
    with st.form(plan_key, border=True):
        goals = st.text_area("Goals", plan.goals, disabled=not v.can_edit, max_chars=5000)
        c1, c2, c3 = st.columns(3)
        s30 = c1.text_area("Success at 30 days", plan.success_30, disabled=not v.can_edit, max_chars=5000)
        s60 = c2.text_area("Success at 60 days", plan.success_60, disabled=not v.can_edit, max_chars=5000)
        s90 = c3.text_area("Success at 90 days", plan.success_90, disabled=not v.can_edit, max_chars=5000)
        d1, d2, d3 = st.columns(3)
        champ = d1.text_input("Champion", plan.champion, disabled=not v.can_edit, max_chars=200)
        admin = d2.text_input("Admin", plan.admin_contact, disabled=not v.can_edit, max_chars=200)
        sponsor = d3.text_input("Executive sponsor", plan.executive_sponsor, disabled=not v.can_edit, max_chars=200)
        if st.form_submit_button("Save plan", type="primary", disabled=not v.can_edit):
            try:
                in_session(
                    save_plan,
                    user,
                    account_id=account_id,
                    version=plan.version,
                    values={
                        "goals": goals,
                        "success_30": s30,
                        "success_60": s60,
                        "success_90": s90,
                        "champion": champ,
                        "admin_contact": admin,
                        "executive_sponsor": sponsor,
                    },
                )
                st.session_state[f"plan_saved_{account_id}"] = "Plan saved."
                st.rerun()
            except StaleVersion as exc:
                st.error(
                    "Not saved: someone else changed this plan since you opened it. Their changes are below; reload to see them, then re-apply yours."
                )
                st.dataframe(pd.DataFrame([vars(c) for c in exc.conflicts]), hide_index=True)
            except (ValidationFailed, PermissionDenied) as exc:
                st.error(f"Not saved: {md(exc)}")
    if not plan.champion:
        st.warning(
            "No champion named: the seed's playbook recommends executive sponsorship to find one.",
            icon=":material/person_search:",
        )

# ----------------------------------------------------------------------------- checklist
st.subheader("Success criteria checklist")
if msg := st.session_state.pop(f"cl_saved_{account_id}", None):
    st.success(msg, icon=":material/check_circle:")
base_key = f"cl_base_{account_id}"
gen_key = f"cl_gen_{account_id}"
st.session_state.setdefault(gen_key, 0)
if base_key not in st.session_state:
    st.session_state[base_key] = v.checklist
base: pd.DataFrame = st.session_state[base_key]
editor_key = f"cl_editor_{account_id}_{st.session_state[gen_key]}"


def reload_checklist() -> None:
    st.session_state.pop(base_key, None)
    st.session_state[gen_key] += 1
    st.session_state.pop(f"cl_conflict_{account_id}", None)


def unsaved_changes(base: pd.DataFrame, state: dict) -> None:
    """The edits not saved yet, cell by cell and highlighted (the editor itself cannot
    colour an edited cell)."""
    rows = []
    for idx, cols in state.get("edited_rows", {}).items():
        row = base.iloc[int(idx)]
        for c, new in cols.items():
            old = row[c] if c in row.index else None
            rows.append(
                {
                    "row": int(idx) + 1,
                    "criterion": row["criterion"],
                    "column": c,
                    "saved": "" if old is None or (not isinstance(old, str) and pd.isna(old)) else str(old),
                    "yours": "" if new is None else str(new),
                }
            )
    rows += [
        {
            "row": f"new {i + 1}",
            "criterion": r.get("criterion") or "",
            "column": "(new item)",
            "saved": "",
            "yours": "added",
        }
        for i, r in enumerate(state.get("added_rows", []))
    ]
    rows += [
        {
            "row": int(i) + 1,
            "criterion": base.iloc[int(i)]["criterion"],
            "column": "(item)",
            "saved": "",
            "yours": "removed",
        }
        for i in state.get("deleted_rows", [])
    ]
    if not rows:
        return
    df = pd.DataFrame(rows, columns=["row", "criterion", "column", "saved", "yours"])
    df["row"] = df["row"].astype(str)
    st.markdown(f":orange-background[**Unsaved: {len(df)} edited cell(s)**] (not written until you save)")
    st.dataframe(
        df.style.set_properties(subset=["yours"], **{"background-color": "#fff3cd", "font-weight": "bold"}),
        hide_index=True,
        key="unsaved_cells",
        column_config={
            "row": "Row",
            "criterion": "Criterion",
            "column": "Column",
            "saved": "Saved",
            "yours": "Your edit",
        },
    )


def measured_disagreements(d: pd.DataFrame, *, blocked: bool) -> None:
    """Items whose manual status contradicts the measurement, each with a one-click accept."""
    with st.container(border=True, key="measured_flags"):
        st.markdown(
            f":material/rule: **{len(d)} item(s) contradict the value measured from events.** "
            "Accepting sets *Actual* to the measured value and the status to what it supports (logged in History)."
        )
        for r in d.itertuples(index=False):
            c1, c2 = st.columns([3, 2], vertical_alignment="center")
            c1.markdown(f"**{md(r.criterion)}**: {md(r.reason)}")
            if c2.button(
                f"Accept measured: {md(r.measured)}, {r.supported_status}",
                key=f"accept_{r.id}",
                disabled=not v.can_edit or blocked,
                help="Save or discard your unsaved edits first" if blocked else None,
            ):
                try:
                    in_session(
                        accept_measured,
                        user,
                        account_id=account_id,
                        item_id=int(r.id),
                        version=int(r.version),
                        as_of=as_of,
                    )
                    reload_checklist()
                    st.session_state[f"cl_saved_{account_id}"] = (
                        f"Saved: {md(r.criterion)} now {md(r.measured)}, {r.supported_status} (measured from events)."
                    )
                    st.rerun()
                except StaleVersion:
                    st.error(
                        "Not saved: someone else changed this item since you opened it. Reload to see their change."
                    )
                except (ValidationFailed, PermissionDenied) as exc:
                    st.error(f"Not saved: {md(exc)}")


if base.empty:
    empty(
        "This account has no checklist yet.", "Apply its segment's template to start from the seed's success criteria."
    )
    if v.can_edit and st.button(f"Apply the {md(a.segment)} template", type="primary"):
        in_session(apply_template, user, account_id=account_id)
        reload_checklist()
        st.rerun()
else:
    team = sorted(accounts["csm_email"].dropna().unique().tolist())
    team_names = dict(zip(accounts["csm_email"], accounts["csm_name"], strict=True))
    disagree = account_disagreements(base, account_id=account_id, seats=a.licensed_seats, as_of=as_of, url=src.url)
    flags = dict(zip(disagree["id"], disagree["reason"], strict=True))
    shown = base.copy()
    # Short in the table (it must fit at 1400 px); the full reason is in the block below it.
    shown["check"] = [
        ("⚠ done, below target" if str(flags[i]).startswith("marked done") else "⚠ target met, not done")
        if i in flags
        else ""
        for i in shown["id"]
    ]
    shown["measured"] = [
        f"{v.metric_values.get(mk, '–')} · {METRIC_LABELS[mk][0].lower()}"
        if isinstance(mk, str) and mk in METRIC_LABELS
        else ""
        for mk in shown["metric"]
    ]
    shown["due_date"] = pd.to_datetime(shown["due_date"]).dt.date
    edited = st.data_editor(
        shown,
        key=editor_key,
        num_rows="dynamic" if v.can_edit else "fixed",
        disabled=(not v.can_edit) or ["id", "version", "measured", "metric", "check"],
        hide_index=True,
        column_order=[
            "category",
            "criterion",
            "target",
            "actual",
            "measured",
            "status",
            "check",
            "owner",
            "due_date",
            "note",
        ],
        column_config={
            "category": st.column_config.SelectboxColumn("Category", options=list(CHECKLIST_CATEGORIES), required=True),
            "criterion": st.column_config.TextColumn("Criterion", required=True, max_chars=300, width="medium"),
            "target": st.column_config.TextColumn("Target", max_chars=100),
            "actual": st.column_config.TextColumn("Actual (manual)", max_chars=100),
            "measured": st.column_config.TextColumn(
                "Measured from events", help="Computed from product events for items bound to a metric", width="medium"
            ),
            "status": st.column_config.SelectboxColumn("Status", options=list(CHECKLIST_STATUSES), required=True),
            "check": st.column_config.TextColumn(
                "Check",
                help="Flagged when the manual status contradicts the value measured from events (details below)",
            ),
            "owner": st.column_config.SelectboxColumn(
                "Owner", options=team, format_func=lambda e: team_names.get(e) or e, help="Team member"
            ),
            "due_date": st.column_config.DateColumn(
                "Due", format="YYYY-MM-DD", min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)
            ),
            "note": st.column_config.TextColumn("Note", max_chars=5000, width="large"),
        },
        width="stretch",
    )
    state = st.session_state.get(editor_key) or {}
    n_edits = len(state.get("edited_rows", {})) + len(state.get("added_rows", [])) + len(state.get("deleted_rows", []))
    done = int((edited["status"] == "done").sum())
    st.caption(
        f"{done} of {len(edited)} criteria done · {int((edited['status'] == 'blocked').sum())} blocked"
        + (f" · **{n_edits} unsaved change(s)**" if n_edits else "")
    )

    conflict = st.session_state.get(f"cl_conflict_{account_id}")
    if conflict:
        st.error(
            "Not saved: someone else saved this checklist since you opened it. Nothing was overwritten and your edits are still in the table. "
            "Here is what changed meanwhile; reload to get their version, then re-apply your edits.",
            icon=":material/sync_problem:",
        )
        st.dataframe(
            pd.DataFrame(conflict),
            hide_index=True,
            column_config={"changed_at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm")},
        )

    b1, b2 = st.columns([1, 4])
    save = b1.button("Save checklist", type="primary", disabled=not v.can_edit or n_edits == 0, key="save_checklist")
    if b2.button("Reload (discard my unsaved edits)", disabled=n_edits == 0 and not conflict):
        reload_checklist()
        st.rerun()
    # Below the buttons, so Save is drawn as soon as the edit count is known.
    if n_edits:
        unsaved_changes(base, state)
    if len(disagree):
        measured_disagreements(disagree, blocked=n_edits > 0)
    if save:
        changes, removed, removed_base = [], [], {}
        for idx, cols in state.get("edited_rows", {}).items():
            row = base.iloc[int(idx)]
            values = {c: cols[c] for c in cols if c in EDITABLE}
            basev = {c: (None if pd.isna(row[c]) else row[c]) for c in EDITABLE}
            changes.append(ItemChange(int(row["id"]), int(row["version"]), values, basev))
        for idx in state.get("deleted_rows", []):
            row = base.iloc[int(idx)]
            removed.append((int(row["id"]), int(row["version"])))
            removed_base[int(row["id"])] = {c: (None if pd.isna(row[c]) else row[c]) for c in EDITABLE}
        added = [{c: r.get(c) for c in EDITABLE if c in r} for r in state.get("added_rows", [])]
        try:
            res = in_session(
                save_checklist,
                user,
                account_id=account_id,
                changes=changes,
                added=added,
                removed=removed,
                removed_base=removed_base,
            )
            reload_checklist()
            # Shown after the page is drawn again (a toast can be lost in the rerun).
            st.session_state[f"cl_saved_{account_id}"] = (
                f"Saved: {res.changed} changed, {res.added} added, {res.removed} removed."
            )
            st.rerun()
        except ValidationFailed as exc:
            st.error("Not saved: fix these cells and save again (nothing was written).", icon=":material/error:")
            st.dataframe(
                pd.DataFrame(
                    [
                        {"row": p.row, "column": p.column, "value": str(p.value), "problem": p.reason}
                        for p in exc.problems
                    ]
                ),
                hide_index=True,
            )
        except StaleVersion as exc:
            st.session_state[f"cl_conflict_{account_id}"] = [
                {
                    "criterion": c.criterion,
                    "field": c.field,
                    "you had": c.yours_based_on,
                    "now": c.now,
                    "changed_by": c.changed_by,
                    "changed_at": c.changed_at,
                }
                for c in exc.conflicts
            ]
            st.rerun()
        except PermissionDenied as exc:
            st.error(f"Not saved: {md(exc)}")

st.subheader("History")
hist = in_session(named_history, account_id=account_id)
if hist:
    h = pd.DataFrame(
        [
            {
                "at": r.at,
                "who": r.actor,
                "what": what,
                "field": r.field,
                "old": r.old,
                "new": r.new,
                "change": f"{what}: {r.field} {r.old if r.old not in (None, '') else '—'} → {r.new if r.new not in (None, '') else '—'}",
            }
            for r, what in hist
        ]
    )
    table(
        h,
        key="plan_history",
        filename=f"{a.external_id}-plan-history",
        height=min(36 * (len(h) + 1) + 3, 320),
        column_config={
            "at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "who": "Who",
            "what": st.column_config.TextColumn("Criterion", width="medium"),
            "field": "Field",
            "old": "Before",
            "new": "After",
            "change": st.column_config.TextColumn("Change", width="large"),
        },
    )
else:
    st.caption("No change recorded yet.")
