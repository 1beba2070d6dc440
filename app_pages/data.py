"""Data: upload the contract CSV files (or a zip), validate them as a dry run with the full
problem list, import atomically with a progress bar, export everything as a zip, and check
data quality."""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd
import streamlit as st

from components import banner, context
from components.safe import md
from components.ui import table
from db.eventfiles import event_format
from db.filemap import template_csv
from db.importer import SPECS
from services.access import PermissionDenied
from services.data import ImportFailed, data_quality, export_all, import_history, run_import
from services.demo_data import remove_demo
from services.sources import SyncError, run_source_now, sources_overview

log = logging.getLogger(__name__)
user = context.user()
st.title("Data")

with st.expander("The data contract: which files and columns", icon=":material/description:"):
    st.markdown(
        "CSV files, UTF-8 (a BOM is fine), a header row, one file per entity; any subset can be imported. "
        "Dates are `YYYY-MM-DD`, timestamps ISO 8601 (no offset = UTC). An import is one transaction: if any row is invalid nothing is written. "
        "Importing the same files again changes nothing. Events can also be Segment-spec JSON lines (track calls; "
        "the account from `context.groupId` or a property you name) or Parquet with the columns of events.csv, "
        "gzip-compressed or not. See the README for the details."
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "file": f,
                    "required columns": ", ".join(c.name for c in cols if c.required),
                    "optional columns": ", ".join(c.name for c in cols if not c.required),
                }
                for f, cols in SPECS.items()
            ]
        ),
        hide_index=True,
    )
    st.caption("Templates: each file's columns (required first) with an example row; the six fit together.")
    for col, name in zip(st.columns(len(SPECS)), SPECS, strict=True):
        col.download_button(
            name,
            template_csv(name),
            file_name=name,
            mime="text/csv",
            key=f"template_{name}",
            on_click="ignore",
            icon=":material/download:",
        )

held = banner.current()
st.subheader("Import")
if user.mode == "demo":
    st.info(
        "This is the open local demo: everyone who reaches it is an admin. Once your own data is imported "
        "into the demo database, the app closes until sign-in is configured (unless DEMO_MODE=1 is set), "
        "so your data is never open to every visitor.",
        icon=":material/lock:",
    )
uploads = st.file_uploader(
    "CSV files (team.csv, accounts.csv, events.csv, milestones.csv, outcomes.csv, checklist.csv) or one zip of them; "
    "events also as Segment JSON lines (.jsonl, .ndjson) or Parquet (.parquet), gzipped (.gz) or not",
    type=["csv", "zip", "jsonl", "ndjson", "parquet", "gz"],
    accept_multiple_files=True,
    key="uploads",
)
account_property = ""
if any(event_format(f.name) == "jsonl" or f.name.lower().endswith(".zip") for f in uploads or []):
    account_property = st.text_input(
        "Account property (JSON lines)",
        key="account_property",
        placeholder="context.groupId",
        help="Leave empty to take each track call's account from context.groupId; or give the name of the "
        "property that holds the account id (e.g. account_id).",
    )
replace_demo = False
if held.has_demo:
    replace_demo = st.checkbox(
        f"My own data: remove the demo portfolio ({held.demo_accounts:,} generated "
        f"account{'' if held.demo_accounts == 1 else 's'}) first",
        value=True,
        key="replace_demo",
        help="In the same transaction as the import: if the import is rejected, the demo stays as it was. "
        "Leave it unticked to add your files to the demo data.",
    )
c1, c2, _ = st.columns([1, 1, 3])
validate = c1.button("Validate (dry run)", icon=":material/rule:", disabled=not uploads)
do_import = c2.button(
    "Import",
    type="primary",
    icon=":material/upload:",
    disabled=not uploads or not user.is_admin,
    help=None if user.is_admin else "Only admins can import data",
)
if not user.is_admin:
    st.caption(
        "You can validate files (validating only reads them and the database, and writes nothing); "
        f"only admins can import them (you are signed in as {md(user.role)})."
    )

rerun = False
if (validate or do_import) and uploads:
    files = [(f.name, f.getvalue()) for f in uploads]
    bar = st.progress(0.0, text="Starting…")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=message)

    try:
        report = run_import(
            user,
            files,
            dry_run=bool(validate),
            progress=progress,
            replace_demo=replace_demo,
            account_property=account_property,
        )
        st.session_state["import_report"] = report
        # Run again so the sidebar's banner (drawn before this page) tells what is shown now.
        rerun = report.written
    except PermissionDenied as exc:
        st.error(md(exc))
    except ImportFailed as exc:
        # A refused or failed import (busy, database full, ...): a message, never a traceback.
        bar.empty()
        st.session_state.pop("import_report", None)
        st.error(md(exc), icon=":material/error:")
    except Exception:  # the page boundary: the log gets the traceback, the user a message
        log.exception("the import on the Data page failed")
        bar.empty()
        st.session_state.pop("import_report", None)
        st.error("The import stopped on an unexpected error; nothing was written. The details are in the server log.")
    if rerun:
        st.rerun()

report = st.session_state.get("import_report")
if report is not None:
    if report.ok and report.written:
        st.success(
            f"Imported in {report.seconds:.1f} s. {report.duplicates_skipped:,} duplicate event(s) skipped.",
            icon=":material/check_circle:",
        )
    elif report.ok:
        new = sum(f.inserted for f in report.files.values())
        changed = sum(f.updated for f in report.files.values())
        st.success(
            f"Dry run: the files are valid and nothing was written. Importing them would add {new:,} row(s) and "
            f"update {changed:,}. Import them when you are ready.",
            icon=":material/check_circle:",
        )
    else:
        st.error(
            f"{report.problem_count:,} problem(s) found; nothing was written. Fix them in the files and validate again.",
            icon=":material/error:",
        )
    for w in report.warnings:
        st.warning(md(w))
    st.dataframe(report.summary_frame(), hide_index=True)
    if report.problems:
        shown = report.problems_frame()
        if report.problem_count > len(shown):
            st.caption(
                f"Showing the first {len(shown):,} of {report.problem_count:,} problems; the rest are of the same kinds."
            )
        table(
            shown,
            key="problems",
            filename="import-problems",
            height=360,
            column_config={
                "row": st.column_config.NumberColumn("Row", format="%d", help="Line in the file; the header is row 1"),
                "value": st.column_config.TextColumn("Value"),
                "reason": st.column_config.TextColumn("Problem", width="large"),
            },
        )

st.subheader("Sources")
if not user.is_admin:
    st.caption(f"Only admins see and run the syncs from SQL sources (you are signed in as {md(user.role)}).")
else:
    syncs = sources_overview(user)
    if not syncs:
        st.caption(
            "No sync from a SQL source is configured. Configure one with `python manage.py sync --save NAME "
            "--source URL --mapping FILE [--schedule CRON]` (README: Sync from a warehouse)."
        )
    else:
        st.caption(
            "Syncs read the data contract's entities from a warehouse or database with SQL and import them as a "
            "file import does: one transaction, nothing written if any row is invalid. Passwords are never shown."
        )
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        k: r[k]
                        for k in (
                            "name",
                            "source",
                            "mapping",
                            "schedule",
                            "last_run",
                            "status",
                            "rows_read",
                            "rows_written",
                            "watermark",
                            "problems",
                        )
                    }
                    for r in syncs
                ]
            ),
            hide_index=True,
            key="sources",
            column_config={
                "name": st.column_config.TextColumn("Sync", width="small"),
                "source": st.column_config.TextColumn("Source (password hidden)", width="medium"),
                "mapping": st.column_config.TextColumn("Mapping", width="small"),
                "schedule": st.column_config.TextColumn("Schedule (UTC)", width="small"),
                "last_run": st.column_config.DatetimeColumn("Last run (UTC)", format="YYYY-MM-DD HH:mm", width="small"),
                "status": st.column_config.TextColumn("Status", width="small"),
                "rows_read": st.column_config.NumberColumn("Rows read", format="localized", width="small"),
                "rows_written": st.column_config.NumberColumn("Rows written", format="localized", width="small"),
                "watermark": st.column_config.TextColumn("Watermark", width="medium"),
                "problems": st.column_config.NumberColumn("Problems", format="localized", width="small"),
            },
        )
        by_name = {r["name"]: r for r in syncs}
        chosen = st.selectbox("Sync", list(by_name), key="source_chosen")
        r = by_name[chosen]
        st.caption(
            f"Source: {md(r['source'])} · mapping: {md(r['mapping'])} · schedule: {md(r['schedule'])}"
            + (f" · watermark: {md(r['watermark'])}" if r["watermark"] else "")
        )
        if r["message"]:
            st.caption(f"Last run: {md(r['message'])}")
        if r["problem_list"]:
            st.dataframe(
                pd.DataFrame(r["problem_list"]).rename(columns={"file": "query"}),
                hide_index=True,
                key="source_problems",
                column_config={
                    "row": st.column_config.NumberColumn(
                        "Row", format="%d", help="Row of the query's result (the first is 1; 0: the query's columns)"
                    )
                },
            )
        with st.expander("Mapping", icon=":material/description:"):
            st.code(r["mapping_text"], language="toml")
        if st.button("Run now", icon=":material/sync:", key="source_run", type="primary"):
            bar = st.progress(0.0, text="Connecting to the source…")

            def sync_progress(entity: str, rows: int) -> None:
                bar.progress(0.5, text=f"{entity}: {rows:,} rows read")

            try:
                result = run_source_now(user, chosen, progress=sync_progress)
            except (PermissionDenied, SyncError) as exc:
                bar.empty()
                st.error(md(exc), icon=":material/error:")
            except Exception:  # the page boundary: the log gets the traceback, the user a message
                log.exception("the sync %s on the Data page failed", chosen)
                bar.empty()
                st.error(
                    "The sync stopped on an unexpected error; nothing was written. The details are in the server log."
                )
            else:
                st.session_state["source_result"] = (chosen, result.status, result.message)
                st.rerun()
        if done := st.session_state.pop("source_result", None):
            name, status, message = done
            shown = f"{md(name)}: {md(message)}"
            if status in ("synced", "dry run"):
                st.success(shown, icon=":material/check_circle:")
            else:
                st.error(shown, icon=":material/error:")

if held.has_demo:
    st.subheader("Demo data")
    st.caption(
        f"This database holds the generated demo portfolio: {held.demo_accounts:,} accounts"
        + (f", beside {held.own_accounts:,} account(s) of your own." if held.own_accounts else ".")
    )
    if not st.session_state.get("confirm_remove_demo"):
        st.button(
            "Remove demo data",
            icon=":material/delete:",
            disabled=not user.is_admin,
            help="Asks you to confirm first" if user.is_admin else "Only admins can remove the demo data",
            on_click=lambda: st.session_state.update(confirm_remove_demo=True),
        )
    else:
        st.warning(
            f"Remove the demo portfolio? This deletes its {held.demo_accounts:,} accounts with their events, "
            "milestones, checklists, plans, health history and interventions, and the demo team members no "
            "remaining account uses. "
            + (f"Your own {held.own_accounts:,} account(s) stay. " if held.own_accounts else "")
            + "It cannot be undone; the change log records who did it.",
            icon=":material/warning:",
        )
        y, n, _ = st.columns([2, 1, 3])
        yes = y.button("Yes, remove the demo data", type="primary", icon=":material/delete_forever:")
        n.button("Cancel", on_click=lambda: st.session_state.pop("confirm_remove_demo", None))
        if yes:
            st.session_state.pop("confirm_remove_demo", None)
            try:
                removed = remove_demo(user)
            except PermissionDenied as exc:
                st.error(md(exc))
            else:
                st.session_state["demo_removed_note"] = f"Removed {removed.describe()}."
                st.rerun()
if note := st.session_state.pop("demo_removed_note", None):
    st.success(note, icon=":material/check_circle:")

st.subheader("Export")
st.caption(
    "One zip: the six contract CSV files (cells a spreadsheet would run as formulas, or that start with ', are prefixed with ') and a complete backup of every table in backup/. Upload it into an empty database to restore everything exactly."
)
if user.is_admin:
    # Made when clicked, for this admin's session only: the zip is never put in Streamlit's
    # media store (served under /media/ to anyone with the link) on an ordinary page run.
    st.download_button(
        "Download export (zip)",
        lambda: export_all(user),
        file_name=f"onboarding-export-{datetime.now().strftime('%Y%m%d-%H%M')}.zip",
        mime="application/zip",
        key="export_zip",
        on_click="ignore",
        icon=":material/download:",
        type="primary",
        help="The zip is made when you click; large databases take a while.",
    )
else:
    st.caption(f"Only admins can export the data (you are signed in as {user.role}).")

st.subheader("Data quality")
dq = data_quality()
q1, q2, q3, q4 = st.columns(4)
q1.metric("Accounts", f"{dq['rows']['accounts']:,}")
q2.metric("Events", f"{dq['rows']['events']:,}")
q3.metric(
    "Events before contract start",
    f"{dq['events_before_start']:,}",
    help=f"On {dq['accounts_with_events_before_start']:,} accounts (e.g. trial usage, or a wrong start date)",
)
q4.metric(
    "Accounts without events",
    f"{dq['accounts_without_events']:,}",
    help="No product event at all: check the tracking or the account id mapping",
)
r1, r2, r3 = st.columns(3)
last = dq["last_import"]
r1.metric("Last import", last["at"].strftime("%Y-%m-%d %H:%M UTC") if last else "never")
r1.caption(f"by {md(last['by'])}" if last else "The data came from the demo generator or the CLI seed.")
r2.metric(
    "Duplicate events skipped",
    f"{dq['duplicates_skipped_total']:,}",
    help="Events already present (same account, event, timestamp and user) across all imports",
)
r3.metric(
    "Rejected imports", f"{dq['rejected_imports']:,}", help="Imports refused because of problems (nothing written)"
)
rows = pd.DataFrame(sorted(dq["rows"].items()), columns=["table", "rows"])
st.dataframe(rows, hide_index=True, column_config={"rows": st.column_config.NumberColumn("Rows", format="localized")})
hist = import_history()
if len(hist):
    st.markdown("**Import history**")
    st.dataframe(
        hist,
        hide_index=True,
        column_config={"finished": st.column_config.DatetimeColumn("Finished (UTC)", format="YYYY-MM-DD HH:mm")},
    )
