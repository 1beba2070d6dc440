"""Accounts: a searchable list (health, band, segment, CSM, overdue milestones, triggers),
then one account: health breakdown and what would raise it, score history, milestones
planned against actual, fired triggers with interventions, its plays and their tasks, the
interventions log, the success plan summary and recent activity."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import cache, charts, context, measured
from components.links import account_column, follow_click, go_to, open_account
from components.safe import md
from components.ui import account_header, currency, empty, fmt_num, page_of, reading, table
from db.models import INTERVENTION_TYPES, PERSON_OUTCOMES, Account
from db.session import session_scope
from metrics.days import by_date, end_of
from metrics.health import BANDS as BAND_NAMES
from metrics.health import TOO_EARLY
from services.access import PermissionDenied
from services.accounts import METRIC_LABELS, account_list, account_view, find_account, history_changes
from services.analytics import LIVE_STATUSES, today
from services.interventions import delete_intervention, list_interventions, update_intervention
from services.measured import account_disagreements
from services.plans import StaleVersion, ValidationFailed, add_intervention, in_session
from services.plays import account_plays, can_act, close_play, tasks

src = cache.facts()
flt = context.filters()
as_of = context.as_of()
user = context.user()

ext = st.query_params.get("account")
STATUSES = ["onboarding", "active", "churned"]


def list_controls(where, *, in_columns: bool) -> tuple:
    """The list's search and filters (bound to the URL). The account view draws them too,
    folded away in the sidebar: a widget not drawn loses its URL parameter, which would add
    a history entry, so Back from an account would not return to the list in one step."""
    with where:
        # Two rows in the main area, so the toggles' labels are not cut at 1400 px.
        c1, c0, c2 = st.columns([3, 2, 2]) if in_columns else [where] * 3
        c3, c4, _ = st.columns([1, 1, 3]) if in_columns else [where] * 3
    q = c1.text_input("Search name or id", key="q", bind="query-params", placeholder="e.g. Harbor or ACC-00042")
    lifecycle = c0.multiselect(
        "Lifecycle status",
        STATUSES,
        default=list(LIVE_STATUSES),
        key="lifecycle",
        bind="query-params",
        placeholder="All statuses",
        help="Live accounts (onboarding or active) by default, the set Portfolio counts; add churned to see them too.",
    )
    bands = c2.multiselect("Band", [*BAND_NAMES, TOO_EARLY], key="band", bind="query-params", placeholder="All bands")
    overdue = c3.toggle("Overdue milestones", key="overdue", bind="query-params")
    trig = c4.toggle("With triggers", key="triggered", bind="query-params")
    with where:
        mine = user.role == "csm" and st.toggle("Only my accounts", value=True, key="mine")
    return q, lifecycle, bands, overdue, trig, mine


def show_list() -> None:
    st.title("Accounts")
    with cache.timed("accounts"):
        lst = account_list(src, as_of=as_of, filters=flt)
    if lst.empty:
        empty("No accounts match these filters.", "Clear the sidebar filters, or import accounts on the Data page.")
        return
    q, lifecycle, bands, overdue, trig, mine = list_controls(st.container(), in_columns=True)
    # A new account's band is not judged yet (metrics.health.too_early_to_score).
    view = lst.assign(band=lst["band"].where(~lst["too_early"], TOO_EARLY))
    if lifecycle:
        view = view[view["status"].isin(lifecycle)]
    if q:
        ql = q.strip().lower()
        view = view[
            view["name"].str.lower().str.contains(ql, regex=False)
            | view["external_id"].str.lower().str.contains(ql, regex=False)
        ]
    if bands:
        view = view[view["band"].isin(bands)]
    if overdue:
        view = view[view["overdue_milestones"] > 0]
    if trig:
        view = view[view["triggers"] > 0]
    if mine:
        view = view[view["csm_email"] == user.email]
    which = "live accounts" if sorted(lifecycle) == sorted(LIVE_STATUSES) else ", ".join(lifecycle) or "every status"
    st.caption(f"{len(view):,} of {len(lst):,} accounts · {which} · as of {as_of:%d %b %Y} · {md(flt.describe())}")
    # 100 rows a page: the browser draws one page; the download has them all.
    page = page_of(view, key="account_table")
    shown = page.assign(link=page["external_id"])
    event = table(
        shown[
            [
                "link",
                "name",
                "segment",
                "csm_name",
                "status",
                "total",
                "band",
                "overdue_milestones",
                "triggers",
                "top_trigger",
                "checklist_done",
                "checklist_items",
                "checklist_blocked",
            ]
        ],
        key="account_table",
        filename=f"accounts-{as_of}",
        height=520,
        selectable=True,
        column_config={
            "link": account_column("open_account"),
            "name": "Name",
            "segment": "Segment",
            "csm_name": "CSM",
            "status": "Status",
            "total": st.column_config.ProgressColumn("Health", min_value=0, max_value=100, format="%.0f"),
            "band": "Band",
            "overdue_milestones": st.column_config.NumberColumn("Overdue milestones", format="%d"),
            "triggers": st.column_config.NumberColumn("Triggers", format="%d"),
            "top_trigger": st.column_config.TextColumn("Main trigger", width="large"),
            "checklist_done": st.column_config.NumberColumn("Checklist done", format="%d"),
            "checklist_items": st.column_config.NumberColumn("of items", format="%d"),
            "checklist_blocked": st.column_config.NumberColumn("Blocked", format="%d"),
        },
        download_df=view.drop(columns=["account_id"]),
    )
    follow_click("open_account", shown["link"], same_page=True)
    rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
    if rows:
        open_account(shown.iloc[rows[0]]["external_id"], same_page=True)
    early = int(view["too_early"].sum())
    reading(
        f"{int(view['at_risk'].sum()):,} of these accounts are at risk or critical; "
        f"{int((view['overdue_milestones'] > 0).sum()):,} have an overdue milestone"
        + (f"; {early:,} are too early to score" if early else "")
        + ". Click an id (or select a row) to open the account."
    )


def edit_own_interventions(own: pd.DataFrame) -> None:
    """Let the author change or delete their own entries (both go to the change log)."""
    if own.empty:
        return
    with st.expander(f"Edit or delete your interventions ({len(own)})"):
        labels = {int(r.id): f"{r.date:%d %b %Y} · {r.type} · {str(r.note)[:60]}" for r in own.itertuples(index=False)}
        iid = st.selectbox("Your intervention", list(labels), format_func=labels.get, key="iv_pick")
        row = own[own["id"] == iid].iloc[0]
        with st.form(f"edit_intervention_{iid}", border=False):
            f1, f2 = st.columns(2)
            itype = f1.selectbox(
                "Type",
                INTERVENTION_TYPES,
                index=INTERVENTION_TYPES.index(row["type"]) if row["type"] in INTERVENTION_TYPES else 0,
            )
            idate = f2.date_input("Date", value=row["date"], format="YYYY-MM-DD")
            note = st.text_area("Note (required)", value=row["note"])
            outcome = st.text_input("Outcome (optional)", value=row["outcome"])
            b1, b2 = st.columns([1, 4])
            save = b1.form_submit_button("Save intervention", type="primary")
            remove = b2.form_submit_button("Delete intervention", icon=":material/delete:")
        try:
            if save:
                n = in_session(
                    update_intervention, user, intervention_id=iid, type=itype, on=idate, note=note, outcome=outcome
                )
                st.session_state["iv_saved"] = f"Intervention saved ({n} field(s) changed)."
                st.rerun()
            if remove:
                in_session(delete_intervention, user, intervention_id=iid)
                st.session_state["iv_saved"] = "Intervention deleted (the change history keeps what it said)."
                st.rerun()
        except ValidationFailed as exc:
            for p in exc.problems:
                st.error(f"Not saved: {md(p.column)}: {md(p.reason)}")
        except PermissionDenied as exc:
            st.error(f"Not saved: {md(exc)}")


def show_plays(a) -> None:
    """The account's plays (what opened them, where they stand) and their open tasks; who
    may act closes a play with an outcome and a note."""
    with session_scope() as s:
        plays = account_plays(s, account_id=a.id)
        open_tasks = tasks(s, today=as_of, account_id=a.id)
        done_tasks = tasks(s, today=as_of, account_id=a.id, status="done")
        may_act = can_act(user, s.get(Account, a.id))
    open_n = int((plays["status"] == "open").sum()) if len(plays) else 0
    st.subheader(f"Plays ({open_n} open)")
    if msg := st.session_state.pop("play_closed", None):
        st.success(msg, icon=":material/check_circle:")
    if plays.empty:
        st.caption("No play has run on this account: a play opens when a playbook's trigger fires.")
        return
    shown = plays.assign(
        state=[
            "open" if st_ == "open" else f"closed: {o}"
            for st_, o in zip(plays["status"], plays["outcome"], strict=True)
        ],
        progress=[f"{d} of {n} done" for d, n in zip(plays["tasks_done"], plays["tasks"], strict=True)],
        # Blank, not "None", while a play is open.
        closed_on=[f"{d:%d %b %Y}" if d is not None and d == d else "" for d in plays["closed_on"]],
    )
    st.dataframe(
        shown[["playbook", "reason", "opened_on", "state", "progress", "closed_on", "close_note"]],
        hide_index=True,
        column_config={
            "playbook": "Play",
            "reason": st.column_config.TextColumn("Why it opened", width="large"),
            "opened_on": st.column_config.DateColumn("Opened", format="D MMM YYYY"),
            "state": "Status",
            "progress": "Tasks",
            "closed_on": "Closed",
            "close_note": st.column_config.TextColumn("Note", width="medium"),
        },
    )
    if len(open_tasks):
        st.markdown(f"**Open tasks ({len(open_tasks)})**")
        st.dataframe(
            open_tasks[["title", "deliver", "owner", "due", "bucket", "playbook"]],
            hide_index=True,
            column_config={
                "title": st.column_config.TextColumn("Task", width="large"),
                "deliver": "Deliver",
                "owner": "Owner",
                "due": st.column_config.DateColumn("Due", format="D MMM YYYY"),
                "bucket": "When",
                "playbook": "Play",
            },
        )
        st.page_link("app_pages/my_work.py", label="Work them on My work", icon=":material/task_alt:")
    if len(done_tasks):
        st.caption(
            "Done: "
            + md("; ".join(f"{t.title} ({t.owner})" for t in done_tasks.tail(5).itertuples()))
            + (f" and {len(done_tasks) - 5} more" if len(done_tasks) > 5 else "")
        )
    still_open = plays[plays["status"] == "open"]
    if may_act and len(still_open):
        with st.form("close_play", clear_on_submit=True, border=True):
            st.markdown("**Close a play**")
            c1, c2 = st.columns(2)
            pid = c1.selectbox(
                "Play",
                still_open["play_id"].tolist(),
                format_func=lambda i: str(still_open.set_index("play_id").at[i, "playbook"]),
            )
            outcome = c2.selectbox("Outcome", PERSON_OUTCOMES)
            note = st.text_input("Note (required)", placeholder="What happened, in a few words")
            if st.form_submit_button("Close the play"):
                version = int(still_open.set_index("play_id").at[pid, "version"])
                try:
                    in_session(
                        close_play,
                        user,
                        play_id=int(pid),
                        outcome=outcome,
                        note=note,
                        on=as_of,
                        expected_version=version,
                    )
                    st.session_state["play_closed"] = "Play closed; its open tasks were cancelled."
                    st.rerun()
                except ValidationFailed as exc:
                    for p in exc.problems:
                        st.error(f"Not closed: {md(p.column)}: {md(p.reason)}")
                except (PermissionDenied, StaleVersion) as exc:
                    st.error(f"Not closed: {md(exc) or 'someone else changed this play; reload to see it'}")


def show_account(account_id: int) -> None:
    v = account_view(src, user, account_id=account_id, as_of=as_of)
    a = v.account
    if st.button("All accounts", icon=":material/arrow_back:"):
        del st.query_params["account"]
        st.rerun()
    st.title(md(a.name))
    st.caption(account_header(a, csm=v.csm.name if v.csm else None, status=v.status))
    if not v.can_edit:
        st.info(
            f"Read-only: you are signed in as {user.role}"
            + (" and this is not one of your accounts." if user.role == "csm" else "."),
            icon=":material/lock:",
        )
    m = st.columns(5)
    code = currency(src)
    # The currency in the label: at 1400 px a code before a 9-digit amount cuts the figure.
    m[0].metric(f"ARR ({code})" if code else "ARR (currency not set)", fmt_num(a.arr, 0))
    m[1].metric("Licensed seats", fmt_num(a.licensed_seats, 0))
    m[2].metric(
        "Since contract start",
        f"day {(as_of - a.contract_start).days:,}",
        help=f"Days from the contract start ({a.contract_start:%d %b %Y}) to the as-of date",
    )
    h = v.health
    if h:
        m[3].metric("Health", f"{h['total']:.0f} / 100")
        m[4].metric("Band", TOO_EARLY if h.get("too_early") else h["band"])

    st.subheader("Health breakdown")
    if not h:
        empty("The contract starts after the as-of date.", "Pick a later as-of date.")
    else:
        if h.get("too_early"):
            st.info(
                f"Too early to score: a new account (its first {h['new_account_days']} days) has little due and no "
                "history, so its band is not judged and it counts as live, never as at risk. It reaches the attention "
                "list only through a trigger for new accounts (e.g. the kickoff overdue). The points below are what "
                "is measured so far.",
                icon=":material/hourglass_top:",
            )
        comp = pd.DataFrame(h["components"])
        # Each bar against its own component's maximum: 20 of 20 is a full bar.
        comp["of_max"] = (100 * comp["points"] / comp["max"].where(comp["max"] > 0)).fillna(0)
        st.dataframe(
            comp[["component", "of_max", "points", "max", "facts"]],
            hide_index=True,
            column_config={
                "component": "Component",
                "of_max": st.column_config.ProgressColumn(
                    "Share of its maximum", min_value=0, max_value=100, format="%.0f %%"
                ),
                "points": st.column_config.NumberColumn("Points", format="%.1f"),
                "max": st.column_config.NumberColumn("Out of", format="%.0f"),
                "facts": st.column_config.TextColumn("The facts behind it", width="large"),
            },
        )
        st.caption(" ".join(h.get("rules", [])))
        st.success(
            f"**Next action** ({md(h['next_action_component'])}, up to +{h['next_action_gain']:.0f} points): {md(h['next_action'])}",
            icon=":material/trending_up:",
        )

    st.subheader("Score history")
    if len(v.history) >= 2:
        st.plotly_chart(charts.score_history_chart(v.history), key="history_chart")
        ch = history_changes(v.history)
        first, last = v.history.iloc[0], v.history.iloc[-1]
        reading(
            f"From {first['date']:%d %b} to {last['date']:%d %b} the score went {first['total']:.0f} → {last['total']:.0f}."
        )
        if len(ch):
            table(
                ch,
                key="history_changes",
                filename=f"{a.external_id}-health-changes",
                height=240,
                column_config={"change": st.column_config.NumberColumn("Change", format="%+.1f")},
            )
    else:
        empty("No score history yet for this account.", "Snapshots are stored weekly by `manage.py snapshot-health`.")

    st.subheader("Milestones: planned against actual")
    if len(v.milestones):
        st.plotly_chart(
            charts.timeline_chart(v.milestones, as_of=end_of(as_of), start=pd.Timestamp(a.contract_start)),
            key="timeline",
        )
        mt = v.milestones[["name", "due_date", "completed_at"]].copy()
        end = end_of(as_of)
        done = mt["completed_at"].notna() & (mt["completed_at"] < end)
        mt["state"] = [
            ("on time" if by_date(d, c) else f"late by {(c - d).days} d")
            if ok
            else (f"overdue by {(end - pd.Timedelta(days=1) - d).days} d" if d < end else "upcoming")
            for c, d, ok in zip(mt["completed_at"], mt["due_date"], done, strict=True)
        ]
        mt.loc[~done, "completed_at"] = pd.NaT
        st.dataframe(
            mt,
            hide_index=True,
            column_config={
                "name": "Milestone",
                "due_date": st.column_config.DateColumn("Due"),
                "completed_at": st.column_config.DatetimeColumn("Completed", format="YYYY-MM-DD"),
                "state": "State",
            },
        )
        late = mt[mt["state"].str.startswith("overdue")]
        reading(
            f"{len(late)} milestone(s) overdue: {md(', '.join(late['name']))}."
            if len(late)
            else "No milestone is overdue."
        )

    st.subheader(f"Risk triggers ({len(v.triggers)})")
    if v.triggers.empty:
        st.success("No risk trigger is firing for this account.", icon=":material/check_circle:")
    else:
        st.dataframe(
            v.triggers[["trigger", "reason", "action", "open_since"]],
            hide_index=True,
            column_config={
                "trigger": "Trigger",
                "reason": st.column_config.TextColumn("Why", width="large"),
                "action": st.column_config.TextColumn("Recommended intervention", width="large"),
                "open_since": st.column_config.DateColumn("Open since"),
            },
        )

    show_plays(a)

    st.subheader("Interventions")
    if msg := st.session_state.pop("iv_saved", None):
        st.success(msg, icon=":material/check_circle:")
    ivs = in_session(list_interventions, account_id=a.id)
    if len(ivs):
        table(
            ivs[["date", "type", "note", "outcome", "rule", "author"]],
            key="interventions",
            filename=f"{a.external_id}-interventions",
            height=220,
            column_config={
                "date": st.column_config.DateColumn("Date"),
                "type": "Type",
                "note": st.column_config.TextColumn("Note", width="large"),
                "outcome": st.column_config.TextColumn("Outcome", width="large"),
                "rule": "Trigger",
                "author": "Author",
            },
            download_df=ivs.drop(columns=["id"]),
        )
        edit_own_interventions(ivs[ivs["author_email"].str.lower() == user.email.lower()])
    else:
        st.caption("No intervention logged yet.")
    if v.can_edit:
        with st.form("add_intervention", clear_on_submit=True, border=True):
            st.markdown("**Log an intervention**")
            f1, f2 = st.columns(2)
            suggested = v.triggers["intervention"].iloc[0] if len(v.triggers) else INTERVENTION_TYPES[0]
            itype = f1.selectbox(
                "Type",
                INTERVENTION_TYPES,
                index=INTERVENTION_TYPES.index(suggested) if suggested in INTERVENTION_TYPES else 0,
            )
            # Today, not the as-of date: logging during a replay must not backdate the entry.
            idate = f2.date_input("Date", value=today(), format="YYYY-MM-DD")
            note = st.text_area("Note (required)", placeholder="What was agreed, with whom")
            outcome = st.text_input(
                "Outcome (optional)", placeholder="e.g. sponsor re-engaged; training booked for 12 Mar"
            )
            if st.form_submit_button("Add intervention", type="primary"):
                try:
                    in_session(
                        add_intervention,
                        user,
                        account_id=a.id,
                        type=itype,
                        on=idate,
                        note=note,
                        outcome=outcome,
                        rule=v.triggers["rule"].iloc[0] if len(v.triggers) else None,
                    )
                    st.session_state["iv_saved"] = "Intervention logged."
                    st.rerun()
                except ValidationFailed as exc:
                    for p in exc.problems:
                        st.error(f"Not logged: {md(p.column)}: {md(p.reason)}")
                except PermissionDenied as exc:
                    st.error(md(exc))

    st.subheader("Success plan")
    p = v.plan
    if p is not None:
        s1, s2 = st.columns(2)
        with s1:
            st.markdown("**Goals**")
            st.text(p.goals or "—")
            st.markdown("**Definition of success**")
            st.text(f"30 days: {p.success_30 or '—'}\n60 days: {p.success_60 or '—'}\n90 days: {p.success_90 or '—'}")
        with s2:
            st.markdown("**Stakeholders**")
            st.text(
                f"Champion: {p.champion or '— none named —'}\nAdmin: {p.admin_contact or '—'}\nExecutive sponsor: {p.executive_sponsor or '—'}"
            )
    cl = v.checklist
    if len(cl):
        summary = cl.groupby("category").agg(
            items=("id", "size"),
            done=("status", lambda s: int((s == "done").sum())),
            blocked=("status", lambda s: int((s == "blocked").sum())),
        )
        st.dataframe(
            summary.reset_index(),
            hide_index=True,
            column_config={"category": "Category", "items": "Items", "done": "Done", "blocked": "Blocked"},
        )
        bound = cl[cl["metric"].notna()]
        if len(bound):
            st.caption(
                "Measured from events: "
                + "; ".join(
                    f"{md(c)}: {v.metric_values.get(mk, '–')} ({METRIC_LABELS[mk][0].lower()})"
                    for c, mk in zip(bound["criterion"], bound["metric"], strict=True)
                    if mk in METRIC_LABELS
                )
            )
            measured.account_warning(
                account_disagreements(cl, account_id=a.id, seats=a.licensed_seats, as_of=as_of, url=src.url)
            )
    if st.button("Edit the success plan and checklist", icon=":material/edit:", type="tertiary"):
        go_to("app_pages/success_plans.py", {"account": a.external_id})

    st.subheader("Recent activity")
    if len(v.daily):
        day_end = end_of(as_of)  # the as-of day included (metrics/days.py)
        st.plotly_chart(
            charts.daily_activity_chart(v.daily, start=day_end - pd.Timedelta(days=90), end=day_end), key="daily"
        )
        reading(
            f"Active on {len(v.daily)} of the last 90 days; at most {int(v.daily['users'].max())} users on one day."
        )
        st.dataframe(
            v.recent[["ts", "event", "user_id"]],
            hide_index=True,
            height=240,
            column_config={
                "ts": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm"),
                "event": "Event",
                "user_id": "User",
            },
        )
    else:
        empty(
            "No product activity in the last 90 days.",
            "Check the integration with the customer's admin; the no-activity trigger recommends enhanced support.",
        )
    with st.expander("Change history"):
        st.dataframe(
            v.changes,
            hide_index=True,
            column_config={"at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm")},
        )


if ext:
    acc_id = find_account(ext)
    if acc_id is None:
        st.title("Accounts")
        st.error(f"There is no account with id {md(repr(ext))}.")
        if st.button("All accounts", icon=":material/arrow_back:"):
            del st.query_params["account"]
            st.rerun()
    else:
        with cache.timed("account"):
            show_account(acc_id)
        list_controls(st.sidebar.expander("Accounts list: search and filters"), in_columns=False)
else:
    show_list()
