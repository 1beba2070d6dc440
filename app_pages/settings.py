"""Settings (admins change, everyone can read): team and roles, milestone definitions and
target days per segment, health weights and band thresholds, risk rules, checklist
templates, playbooks, alert ranges and destinations with the delivery log. Every change is
versioned and in the change log (destination URLs masked)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from components import context
from components.safe import md
from db.defaults import DELIVERABLES, OWNER_KINDS
from db.models import CHECKLIST_CATEGORIES, ROLES, SEGMENTS
from metrics.health import engagement_full_days
from metrics.triggers import RULE_LABELS
from services.access import PermissionDenied
from services.admin_read import settings_snapshot
from services.notify import (
    ALERT_KINDS,
    DIGEST_LABELS,
    DIGESTS,
    SCOPE_LABELS,
    SCOPES,
    delivery_log,
    destinations,
    masked,
    remove_destination,
    save_destination,
    send_test,
    set_preferences,
    team_urls,
)
from services.plans import StaleVersion, ValidationFailed, in_session
from services.plays import CONTRACT_START, TRIGGERS
from services.settings import save_milestones, save_team_member, update_setting

user = context.user()
admin = user.is_admin
st.title("Settings")
if not admin:
    st.info(f"Read-only: only admins change settings (you are signed in as {md(user.role)}).", icon=":material/lock:")

snap = settings_snapshot()


def percent_input(container, label: str, share: float, *, lo: float, hi: float, **kwargs) -> float:
    """A share (stored as 0.5) edited as a whole percent (50), as the rest of the app shows
    shares; an untouched input gives back the stored value exactly."""
    shown = container.number_input(
        f"{label} (%)", round(lo * 100), round(hi * 100), round(share * 100), step=5, **kwargs
    )
    return float(share) if shown == round(share * 100) else shown / 100


def report(exc: Exception) -> None:
    if isinstance(exc, ValidationFailed):
        st.error("Not saved: " + "; ".join(md(f"{p.column}: {p.reason} (got {p.value!r})") for p in exc.problems))
    else:
        st.error(f"Not saved: {md(exc)}")


# Only the chosen tab's body runs (and is sent to the browser); the choice is in the URL.
t_team, t_ms, t_health, t_rules, t_tpl, t_pb, t_alerts, t_log = st.tabs(
    ["Team", "Milestones", "Health model", "Risk rules", "Checklist templates", "Playbooks", "Alerts", "Change log"],
    key="settings_tab",
    bind="query-params",
)

with t_team:
    if t_team.open is not False:
        st.dataframe(snap["team"], hide_index=True)
        if admin:
            with st.form("member", clear_on_submit=True):
                st.markdown("**Add a member or change one** (by email)")
                c1, c2, c3, c4 = st.columns([3, 3, 2, 1])
                email = c1.text_input("Email")
                name = c2.text_input("Name")
                role = c3.selectbox("Role", ROLES)
                active = c4.checkbox("Active", value=True)
                if st.form_submit_button("Save member", type="primary"):
                    try:
                        in_session(save_team_member, user, email=email, name=name, role=role, active=active)
                        st.toast("Saved", icon=":material/check:")
                        st.rerun()
                    except (ValidationFailed, PermissionDenied) as exc:
                        report(exc)
            with st.form("member_notifications"):
                st.markdown("**A member's alerts and digest**")
                c1, c2, c3 = st.columns([3, 2, 2])
                who = c1.selectbox("Member", snap["team"]["email"].tolist())
                how = c2.selectbox("Alerts", DIGESTS, format_func=DIGEST_LABELS.get)
                scope = c3.selectbox("About", SCOPES, format_func=SCOPE_LABELS.get)
                if st.form_submit_button("Save notifications"):
                    try:
                        in_session(set_preferences, user, email=who, digest=how, scope=scope)
                        st.toast("Saved", icon=":material/check:")
                        st.rerun()
                    except (ValidationFailed, PermissionDenied) as exc:
                        report(exc)

with t_ms:
    if t_ms.open:
        ms = snap["milestones"]
        st.caption(
            "Target day per segment = days after contract start. Changes apply to due dates of accounts created afterwards."
        )
        # Fixed widths so that every column fits the page at 1400 px (nothing cut off at the right).
        edited = st.data_editor(
            ms,
            key="ms_editor",
            hide_index=True,
            disabled=not admin or ["key"],
            column_config={
                "key": st.column_config.TextColumn("Key", width=150),
                "name": st.column_config.TextColumn("Name", required=True, width=170),
                "phase": st.column_config.NumberColumn("Phase", min_value=1, max_value=5, step=1, width=60),
                "order": st.column_config.NumberColumn("Order", min_value=1, step=1, width=60),
                "is_value": st.column_config.CheckboxColumn("Value", help="A value milestone", width=60),
                **{
                    s: st.column_config.NumberColumn(
                        s,
                        help=f"Target day for {s} accounts",
                        min_value=0,
                        max_value=730,
                        step=1,
                        format="day %d",
                        width=95,
                    )
                    for s in SEGMENTS
                },
            },
        )
        if admin and st.button("Save milestones", type="primary"):
            rows = [
                {
                    "key": r["key"],
                    "name": r["name"],
                    "phase": int(r["phase"]) if pd.notna(r["phase"]) else None,
                    "order": int(r["order"]) if pd.notna(r["order"]) else None,
                    "is_value": bool(r["is_value"]),
                    "target_days": {s: int(r[s]) if pd.notna(r[s]) else None for s in SEGMENTS},
                }
                for _, r in edited.iterrows()
            ]
            try:
                in_session(save_milestones, user, rows=rows)
                st.toast("Milestones saved", icon=":material/check:")
                st.rerun()
            except (ValidationFailed, PermissionDenied) as exc:
                report(exc)

with t_health:
    if t_health.open:
        hm, hv = snap["health_model"]
        st.caption(f"Version {hv}. Changes apply from the next health snapshot; score histories mark the change.")
        with st.form("health_model"):
            w = hm["weights"]
            c = st.columns(4)
            weights = {
                k: c[i].number_input(f"{k.capitalize()} weight", 0, 100, int(w[k]), disabled=not admin)
                for i, k in enumerate(["milestone", "adoption", "engagement", "value"])
            }
            b = hm["bands"]
            d = st.columns(3)
            bands = {
                "excellent": d[0].number_input("Excellent from", 1, 100, int(b["excellent"]), disabled=not admin),
                "on_track": d[1].number_input("On Track from", 1, 100, int(b["on_track"]), disabled=not admin),
                "at_risk": d[2].number_input("At Risk from", 1, 100, int(b["at_risk"]), disabled=not admin),
            }
            e = st.columns(5)
            value = dict(hm)
            value["weights"] = weights
            value["bands"] = bands
            value["adoption_window_days"] = int(
                e[0].number_input("Adoption window (days)", 1, 90, int(hm["adoption_window_days"]), disabled=not admin)
            )
            value["adoption_full_share"] = percent_input(
                e[1],
                "Adoption for full points",
                float(hm["adoption_full_share"]),
                lo=0.05,
                hi=1.0,
                help="Active users over licensed seats that earn full adoption points",
                disabled=not admin,
            )
            value["engagement_window_days"] = int(
                e[2].number_input(
                    "Engagement window (days)", 1, 90, int(hm["engagement_window_days"]), disabled=not admin
                )
            )
            full_days = engagement_full_days(hm)
            shown_days = int(
                e[3].number_input(
                    "Active days for full engagement points",
                    1,
                    90,
                    round(full_days),
                    help="Days with activity in the engagement window that earn full points (10 of 14 = every working day)",
                    disabled=not admin,
                )
            )
            # A setting stored as a share of the window is rewritten as days only when changed.
            if "engagement_full_days" in hm or shown_days != full_days:
                value.pop("engagement_full_share", None)
                value["engagement_full_days"] = shown_days
            value["late_credit"] = percent_input(
                e[4],
                "Share of points for a late milestone",
                float(hm["late_credit"]),
                lo=0.0,
                hi=1.0,
                help="A milestone completed after its due day earns this share of its points (50 % = half)",
                disabled=not admin,
            )
            value["new_account_days"] = int(
                st.number_input(
                    "New accounts: too early to score for the first N days",
                    0,
                    90,
                    int(hm.get("new_account_days", 14)),
                    help="In their first N days accounts show 'Too early to score': they count as live, never as at risk, "
                    "and reach the attention list only through a trigger for new accounts (e.g. kickoff overdue). 0 = off.",
                    disabled=not admin,
                )
            )
            st.caption(f"Weights add up to {sum(weights.values())} (must be 100).")
            if st.form_submit_button("Save health model", type="primary", disabled=not admin):
                try:
                    in_session(update_setting, user, key="health_model", value=value, expected_version=hv)
                    st.toast("Health model saved", icon=":material/check:")
                    st.rerun()
                except (ValidationFailed, PermissionDenied, StaleVersion) as exc:
                    report(exc)

with t_rules:
    if t_rules.open:
        rules, rv = snap["risk_rules"]
        st.caption(f"Version {rv}. Rules are evaluated as of the chosen date on every page.")
        with st.form("rules"):
            new = json.loads(json.dumps(rules))
            rows = [
                ("milestone_overdue", "Milestone overdue by more than N days", [("days", "N days")]),
                ("no_activity", "No activity for N days", [("days", "N days")]),
                (
                    "low_adoption",
                    "Adoption under X at day D (while onboarding)",
                    [("day", "Day D"), ("threshold", "Share X")],
                ),
                ("health_drop", "Health fell P points in D days", [("points", "P points"), ("days", "D days")]),
                ("no_champion", "No champion by day D", [("day", "Day D")]),
                ("ttfv_overdue", "First value later than the segment target + grace", [("grace_days", "Grace days")]),
            ]
            for key, label, params in rows:
                cols = st.columns([3, 1, 1, 1])
                new[key]["enabled"] = cols[0].checkbox(
                    label, value=bool(rules[key].get("enabled", True)), disabled=not admin, key=f"rule_{key}"
                )
                for i, (p, plabel) in enumerate(params):
                    cur = rules[key][p]
                    if isinstance(cur, float) and cur < 1:
                        new[key][p] = percent_input(
                            cols[i + 1], plabel, cur, lo=0.0, hi=1.0, disabled=not admin, key=f"rule_{key}_{p}"
                        )
                    else:
                        new[key][p] = int(
                            cols[i + 1].number_input(
                                plabel, 0, 365, int(cur), disabled=not admin, key=f"rule_{key}_{p}"
                            )
                        )
            if st.form_submit_button("Save risk rules", type="primary", disabled=not admin):
                try:
                    in_session(update_setting, user, key="risk_rules", value=new, expected_version=rv)
                    st.toast("Risk rules saved", icon=":material/check:")
                    st.rerun()
                except (ValidationFailed, PermissionDenied, StaleVersion) as exc:
                    report(exc)

with t_tpl:
    if t_tpl.open:
        templates, tv = snap["checklist_templates"]
        seg = st.selectbox(
            "Template for", ["default", *SEGMENTS], help="A segment without its own template uses the default"
        )
        items = templates.get(seg)
        st.caption(
            f"Version {tv}. "
            + (
                "This segment uses the default template; editing creates its own."
                if items is None and seg != "default"
                else "New accounts of this segment start with these items."
            )
        )
        frame = pd.DataFrame(
            items if items is not None else templates["default"], columns=["category", "criterion", "target", "metric"]
        )
        edited_t = st.data_editor(
            frame,
            key=f"tpl_{seg}",
            num_rows="dynamic" if admin else "fixed",
            disabled=not admin or ["metric"],
            hide_index=True,
            column_config={
                "category": st.column_config.SelectboxColumn(
                    "Category", options=list(CHECKLIST_CATEGORIES), required=True
                ),
                "criterion": st.column_config.TextColumn("Criterion", required=True),
                "target": st.column_config.TextColumn("Target"),
                "metric": st.column_config.TextColumn("Bound metric", help="Measured from events"),
            },
        )
        if admin and st.button("Save template", type="primary"):
            new_t = json.loads(json.dumps(templates))
            new_t[seg] = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in edited_t.to_dict("records")]
            try:
                in_session(update_setting, user, key="checklist_templates", value=new_t, expected_version=tv)
                st.toast("Template saved", icon=":material/check:")
                st.rerun()
            except (ValidationFailed, PermissionDenied, StaleVersion) as exc:
                report(exc)

with t_pb:
    if t_pb.open:
        pbs, pv = snap["playbooks"]
        st.caption(
            f"Version {pv}. A playbook opens a play on an account when its trigger fires (at most one open per "
            "account and playbook); each step becomes a task with an owner and a due date, counted from the play's "
            "start. A play closes when its tasks are done, by hand, or by itself once the trigger has not fired for "
            "the auto-resolve days."
        )
        keys = sorted(pbs, key=lambda k: str(pbs[k].get("name", k)).lower())
        pick = st.selectbox(
            "Playbook",
            [*keys, "+ new playbook"],
            format_func=lambda k: k if k not in pbs else f"{pbs[k]['name']} ({k})",
        )
        new_pb = pick not in pbs
        pb = pbs.get(pick) or {
            "name": "",
            "enabled": True,
            "trigger": {"rule": "no_activity"},
            "auto_resolve_days": 7,
            "steps": [{"title": "", "deliver": DELIVERABLES[0], "owner": "csm", "due_days": 3}],
        }
        with st.form(f"playbook_{pick}"):
            c1, c2, c3, c4 = st.columns([2, 3, 2, 1])
            key = c1.text_input("Key", "" if new_pb else pick, disabled=not new_pb or not admin, max_chars=60)
            name = c2.text_input("Name", pb["name"], disabled=not admin, max_chars=200)
            rule = c3.selectbox(
                "Trigger",
                TRIGGERS,
                index=TRIGGERS.index(pb["trigger"]["rule"]) if pb["trigger"]["rule"] in TRIGGERS else 0,
                format_func=lambda r: "contract start" if r == CONTRACT_START else RULE_LABELS.get(r, r),
                disabled=not admin,
            )
            enabled = c4.checkbox("Enabled", pb.get("enabled", True), disabled=not admin)
            auto = st.number_input(
                "Auto-resolve after the trigger has not fired for (days; 0 = at once; empty = never)",
                min_value=0,
                max_value=365,
                value=pb.get("auto_resolve_days"),
                step=1,
                disabled=not admin,
            )
            owner_opts = [*OWNER_KINDS, *(f"member:{e}" for e in snap["team"]["email"])]
            steps = st.data_editor(
                pd.DataFrame(pb["steps"], columns=["title", "deliver", "owner", "due_days"]),
                key=f"steps_{pick}",
                num_rows="dynamic" if admin else "fixed",
                disabled=not admin,
                hide_index=True,
                width="stretch",
                column_config={
                    "title": st.column_config.TextColumn("Step", required=True, width="large"),
                    "deliver": st.column_config.SelectboxColumn("Deliver", options=list(DELIVERABLES), required=True),
                    "owner": st.column_config.SelectboxColumn("Owner", options=owner_opts, required=True),
                    "due_days": st.column_config.NumberColumn(
                        "Due (days after start)", min_value=0, max_value=365, step=1, required=True
                    ),
                },
            )
            if st.form_submit_button("Save playbook", type="primary", disabled=not admin):
                trigger = {"rule": rule}
                if rule == CONTRACT_START:
                    trigger["within_days"] = int(pb["trigger"].get("within_days", 14))
                value = {
                    **pbs,
                    (key.strip() if new_pb else pick): {
                        "name": name,
                        "enabled": enabled,
                        "trigger": trigger,
                        "auto_resolve_days": None if auto is None else int(auto),
                        "steps": [
                            {
                                "title": str(r["title"] or ""),
                                "deliver": r["deliver"],
                                "owner": r["owner"],
                                "due_days": int(r["due_days"]) if pd.notna(r["due_days"]) else None,
                            }
                            for _, r in steps.iterrows()
                        ],
                    },
                }
                try:
                    in_session(update_setting, user, key="playbooks", value=value, expected_version=pv)
                    st.toast("Playbook saved", icon=":material/check:")
                    st.rerun()
                except (ValidationFailed, PermissionDenied, StaleVersion) as exc:
                    report(exc)

with t_alerts:
    if t_alerts.open:
        ranges, av = snap["alerts"]
        st.caption(
            "Alerts go to every destination below and to NOTIFY_URLS (set in the environment); a member's own "
            "alerts and digest go to their email through NOTIFY_EMAIL_URL, at once or in their daily or weekly "
            "digest (Team tab). `manage.py notify` (cron) or `manage.py worker` evaluates and sends them."
        )
        st.markdown("**Expected ranges** (outside them, a KPI alert)")
        with st.form("alert_ranges"):
            c1, c2, c3 = st.columns(3)
            comp = percent_input(
                c1, "Onboarding completion at least", ranges["completion_min"], lo=0, hi=1, disabled=not admin
            )
            rise = c2.number_input(
                "Share at risk up by more than (points on last week)",
                0,
                100,
                int(ranges["at_risk_rise_points"]),
                disabled=not admin,
            )
            ttfv = c3.number_input(
                "Time to first value over target by more than (days)",
                0,
                365,
                int(ranges["ttfv_over_target_days"]),
                disabled=not admin,
            )
            if st.form_submit_button("Save ranges", type="primary", disabled=not admin):
                try:
                    in_session(
                        update_setting,
                        user,
                        key="alerts",
                        value={"completion_min": comp, "at_risk_rise_points": rise, "ttfv_over_target_days": ttfv},
                        expected_version=av,
                    )
                    st.toast("Ranges saved", icon=":material/check:")
                    st.rerun()
                except (ValidationFailed, PermissionDenied, StaleVersion) as exc:
                    report(exc)

        st.markdown("**Destinations**")
        env_urls = team_urls()
        if env_urls:
            st.caption("From NOTIFY_URLS: " + md(", ".join(masked(u) for u in env_urls)))
        dests = in_session(destinations)
        if dests:
            st.dataframe(pd.DataFrame(dests).drop(columns=["id"]), hide_index=True)
        elif not env_urls:
            st.info("No destination yet: alerts are kept in the outbox until one is added.", icon=":material/info:")
        if admin:
            with st.form("destination", clear_on_submit=True):
                c1, c2, c3 = st.columns([2, 4, 3])
                dname = c1.text_input("Name", placeholder="CS leads on Slack")
                durl = c2.text_input(
                    "Apprise URL", type="password", placeholder="slack://T…/B…/… or mailtos://… or json://host/path"
                )
                dkinds = c3.multiselect("Only these alerts (empty: every alert)", list(ALERT_KINDS))
                if st.form_submit_button("Add destination"):
                    try:
                        in_session(save_destination, user, name=dname, apprise_url=durl, kinds=dkinds)
                        st.toast("Destination added", icon=":material/check:")
                        st.rerun()
                    except (ValidationFailed, PermissionDenied) as exc:
                        report(exc)
            b1, b2 = st.columns([1, 3])
            if dests:
                gone = b2.selectbox(
                    "Remove a destination",
                    [None, *[d["id"] for d in dests]],
                    format_func=lambda i: "—" if i is None else next(d["name"] for d in dests if d["id"] == i),
                )
                if gone is not None and b2.button("Remove it"):
                    in_session(remove_destination, user, destination_id=gone)
                    st.rerun()
            if b1.button("Send a test", icon=":material/send:"):
                r = in_session(send_test, user)
                if r.undeliverable:
                    st.warning("Nothing to send to: add a destination, or set NOTIFY_URLS or NOTIFY_EMAIL_URL.")
                elif r.sent and not (r.failed or r.retrying):
                    st.success(f"Test sent to {r.sent} destination(s).", icon=":material/check_circle:")
                else:
                    st.error(f"Test: {r.sent} sent, {r.failed + r.retrying} failed (see the delivery log below).")

        st.markdown("**Delivery log** (newest first)")
        log = in_session(delivery_log)
        if log:
            st.dataframe(
                pd.DataFrame(log),
                hide_index=True,
                column_config={
                    "when": st.column_config.DatetimeColumn("When (UTC)", format="D MMM YYYY HH:mm"),
                    "to": "To",
                    "what": st.column_config.TextColumn("What", width="large"),
                    "kind": "Kind",
                    "status": "Status",
                    "attempts": "Tries",
                    "error": st.column_config.TextColumn("Error", width="large"),
                },
            )
        else:
            st.caption("Nothing delivered yet.")

with t_log:
    if t_log.open:
        log = snap["log"]
        st.dataframe(
            log,
            hide_index=True,
            height=420,
            column_config={"at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm")},
        )
