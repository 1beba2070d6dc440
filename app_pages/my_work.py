"""My work: the open tasks of the plays that playbooks opened, soonest due first. A CSM sees
their own (their start page); leaders and admins see the team's and can pick one owner.
Done, snooze and reassign are one click in the table: tick Done, pick a snooze date, pick an
owner. Who, which tasks and the as-of date are in the URL."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import cache, context
from components.safe import md
from components.ui import account_link, csv_bytes, empty, page_of
from db.session import session_scope
from metrics.days import day_after
from services.access import PermissionDenied
from services.admin_read import settings_snapshot, team_members
from services.notify import DIGEST_LABELS, DIGESTS, SCOPE_LABELS, SCOPES, set_preferences
from services.plans import StaleVersion, ValidationFailed, in_session
from services.plays import complete_task, member_ids, reassign_task, snooze_task, tasks

user = context.user()
as_of = context.as_of()

st.title("My work")
team = [(e, n, r) for e, n, r in team_members() if r != "revops"]
with session_scope() as s:
    ids_by_email = member_ids(s)
names = {e.lower(): n for e, n, _ in team}

# Whose tasks: ?owner=<email> or ?owner=all (a CSM starts on their own, others on the team's).
default_owner = user.email.lower() if user.role == "csm" and user.email.lower() in names else "all"
owner_param = (st.query_params.get("owner") or default_owner).lower()
choices = ["all", *sorted(names, key=lambda e: names[e])]
if owner_param not in choices:
    owner_param = default_owner
owner = st.selectbox(
    "Whose tasks",
    choices,
    index=choices.index(owner_param),
    format_func=lambda e: "Everyone in the team" if e == "all" else f"{names[e]} ({e})",
)
if owner != default_owner:
    st.query_params["owner"] = owner
elif "owner" in st.query_params:
    del st.query_params["owner"]

WHEN = {"open": "All open", "overdue": "Overdue", "today": "Due today", "week": "Due this week", "snoozed": "Snoozed"}
when_param = st.query_params.get("due") or "open"
if when_param not in WHEN:
    when_param = "open"
when = st.segmented_control("Show", list(WHEN), default=when_param, format_func=WHEN.get, key="my_work_due")
when = when or "open"
if when != "open":
    st.query_params["due"] = when
elif "due" in st.query_params:
    del st.query_params["due"]

with session_scope() as s:
    df = tasks(s, today=as_of, owner_ids=None if owner == "all" else [ids_by_email.get(owner, -1)])
flt = context.filters()
if len(df):  # the sidebar's account filters (segment, CSM, ...)
    df = df[df["account_id"].isin(flt.apply(cache.facts().accounts())["account_id"])]

counts = df["bucket"].value_counts() if len(df) else pd.Series(dtype=int)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Overdue", f"{int(counts.get('overdue', 0)):,}")
c2.metric("Due today", f"{int(counts.get('today', 0)):,}")
c3.metric("Due in the next 7 days", f"{int(counts.get('this week', 0)):,}")
c4.metric("Snoozed", f"{int(counts.get('snoozed', 0)):,}")
st.caption(
    f"As of {as_of:%d %b %Y}. Open tasks of plays that playbooks opened when a trigger fired "
    "(Settings → Playbooks). Snoozed tasks come back on their date."
)

me = next((m for m in team if m[0].lower() == user.email.lower()), None)
if me is not None:
    with st.expander("Your alerts and digest"):
        cur = next((r for r in settings_snapshot()["team"].itertuples() if r.email.lower() == user.email.lower()), None)
        with st.form("my_notifications", border=False):
            c1, c2 = st.columns(2)
            how = c1.selectbox(
                "Alerts", DIGESTS, index=DIGESTS.index(cur.digest) if cur else 1, format_func=DIGEST_LABELS.get
            )
            scope = c2.selectbox(
                "About", SCOPES, index=SCOPES.index(cur.digest_scope) if cur else 0, format_func=SCOPE_LABELS.get
            )
            if st.form_submit_button("Save"):
                try:
                    in_session(set_preferences, user, email=user.email, digest=how, scope=scope)
                    st.session_state["my_work_msg"] = "Your notification choices are saved."
                    st.rerun()
                except (ValidationFailed, PermissionDenied) as exc:
                    st.error(f"Not saved: {md(exc)}")

if msg := st.session_state.pop("my_work_msg", None):
    st.success(msg, icon=":material/check_circle:")
if err := st.session_state.pop("my_work_err", None):
    st.error(err)

show = {
    "open": df,
    "overdue": df[df["bucket"] == "overdue"] if len(df) else df,
    "today": df[df["bucket"] == "today"] if len(df) else df,
    "week": df[df["bucket"].isin(["today", "this week"])] if len(df) else df,
    "snoozed": df[df["bucket"] == "snoozed"] if len(df) else df,
}[when]
if df.empty:
    empty(
        "No open tasks" + ("" if owner == "all" else f" for {md(names.get(owner, owner))}") + ".",
        "A play opens when a playbook's trigger fires on an account (manage.py notify or snapshot-health).",
    )
    st.stop()
if show.empty:
    empty(f"Nothing {WHEN[when].lower()}.", "Pick another view above.")
    st.stop()

order = {"overdue": 0, "today": 1, "this week": 2, "later": 3, "snoozed": 4}
show = show.assign(_o=show["bucket"].map(order)).sort_values(["_o", "due", "external_id", "step"]).drop(columns="_o")
page = page_of(show, key="my_work", noun="tasks")
page = page.reset_index(drop=True)  # the columns below align on it
email_of = {i: e for e, i in ids_by_email.items()}
view = pd.DataFrame(
    {
        "Done": False,
        "When": page["bucket"].str.capitalize(),
        "Due": pd.to_datetime(page["due"]),
        "Account": [account_link(e) for e in page["external_id"]],
        "Name": page["account"],
        "Task": page["title"],
        # The actions within the page's width at 1400 px: Done, Owner, Snooze until.
        "Owner": [email_of.get(int(o), "") if o == o else "" for o in page["owner_id"]],
        "Snooze until": pd.to_datetime(page["snoozed_until"]),
        "Play": page["playbook"],
        "Deliver": page["deliver"],
        "Why": page["reason"],
    }
)
view.index = page["task_id"].to_numpy()
owner_options = sorted(names)
state_key = f"my_work_editor_{st.session_state.get('my_work_gen', 0)}"
edited = st.data_editor(
    view,
    key=state_key,
    hide_index=True,
    width="stretch",
    disabled=["When", "Due", "Account", "Name", "Play", "Task", "Deliver", "Why"],
    column_config={
        "Done": st.column_config.CheckboxColumn("Done", help="Tick to mark the task done", width="small"),
        "Due": st.column_config.DateColumn("Due", format="D MMM YYYY"),
        "Account": st.column_config.LinkColumn("Account", display_text=r"account=([^&]+)", help="Open the account"),
        "Owner": st.column_config.SelectboxColumn(
            "Owner", options=owner_options, help="Pick someone to reassign the task", required=True
        ),
        "Snooze until": st.column_config.DateColumn(
            "Snooze until", min_value=day_after(as_of), format="D MMM YYYY", help="Pick a date to snooze it"
        ),
        "Task": st.column_config.TextColumn("Task", width="medium"),
        "Why": st.column_config.TextColumn("Why the play opened", width="large"),
    },
)

# Apply what changed in the table: each change is one service call (with its checks).
changes = st.session_state.get(state_key, {}).get("edited_rows", {})
if changes:
    versions = dict(zip(page["task_id"], page["version"], strict=True))
    done_n, errors = 0, []
    for pos, cols in changes.items():
        task_id = int(view.index[int(pos)])
        try:
            if cols.get("Done"):
                in_session(complete_task, user, task_id=task_id, on=as_of, expected_version=versions[task_id])
            elif cols.get("Snooze until"):
                until = pd.Timestamp(cols["Snooze until"]).date()
                in_session(
                    snooze_task, user, task_id=task_id, until=until, today=as_of, expected_version=versions[task_id]
                )
            elif cols.get("Owner"):
                in_session(
                    reassign_task,
                    user,
                    task_id=task_id,
                    owner_id=ids_by_email[str(cols["Owner"]).lower()],
                    expected_version=versions[task_id],
                )
            else:
                continue
            done_n += 1
        except StaleVersion:
            errors.append(f"{view.at[task_id, 'Task']}: someone else changed this task; it is shown as it is now.")
        except (ValidationFailed, PermissionDenied) as exc:
            errors.append(f"{view.at[task_id, 'Task']}: {exc}")
    st.session_state["my_work_gen"] = st.session_state.get("my_work_gen", 0) + 1
    if done_n:
        st.session_state["my_work_msg"] = f"Saved {done_n} change{'s' if done_n != 1 else ''}."
    if errors:
        st.session_state["my_work_err"] = "Not saved: " + md(" ".join(errors))
    st.rerun()

cols = ["bucket", "due", "external_id", "account", "playbook", "title", "deliver", "owner", "snoozed_until", "reason"]
st.download_button(
    "Download CSV",
    lambda: csv_bytes(show[cols]),
    file_name="my-work.csv",
    mime="text/csv",
    key="my_work_csv",
    icon=":material/download:",
)
