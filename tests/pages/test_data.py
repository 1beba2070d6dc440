"""Data: a bad upload is validated with the full problem table (file, row, column, reason)
and writes nothing; a good upload imported by an admin changes the data-quality counts;
other roles may validate but not import."""

from __future__ import annotations

from db.importer import import_files
from db.models import Account, ImportRun
from tests.conftest import AS_OF
from tests.pages import button, metrics, open_page, table_with, texts, unescape
from tests.services import count

QUERY = {"as_of": AS_OF.isoformat()}

BAD_ACCOUNTS = (
    b"account_id,name,segment,contract_start,csm_email\n"
    b"ACC-T-1,Good Co,SMB,2026-05-01,alex.csm@example.com\n"
    b"ACC-T-2,,SMB,2026-05-01,alex.csm@example.com\n"
    b"ACC-T-3,Third Co,Tiny,2026-05-01,alex.csm@example.com\n"
    b"ACC-T-4,Fourth Co,SMB,2026-13-01,alex.csm@example.com\n"
)
GOOD_ACCOUNTS = (
    b"account_id,name,segment,contract_start,industry,licensed_seats,csm_email\n"
    b"ACC-T-1,Good Co,SMB,2026-05-01,Retail,10,alex.csm@example.com\n"
    b"ACC-T-2,Better Co,Enterprise,2026-04-15,Healthcare,40,priya.csm@example.com\n"
)
GOOD_EVENTS = (
    b"account_id,event,timestamp,user_id\n"
    b"ACC-T-1,workspace_created,2026-05-02T10:00:00Z,u1\n"
    b"ACC-T-1,login,2026-05-03T10:00:00Z,u1\n"
    b"ACC-T-2,workspace_created,2026-04-16T09:30:00Z,u7\n"
)


def _upload_and_click(at, files, label: str, *, keep_demo: bool = True) -> None:
    at.file_uploader[0].set_value(files)
    at.run()
    if keep_demo:  # add the files to the demo data (the page offers to remove the demo first)
        at.checkbox(key="replace_demo").uncheck().run()
    assert not button(at, label).disabled
    button(at, label).click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_a_bad_file_shows_every_problem_and_writes_nothing(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("data", query=QUERY)
    assert metrics(at)["Accounts"] == "30"
    _upload_and_click(at, ("accounts.csv", BAD_ACCOUNTS, "text/csv"), "Validate (dry run)")

    expected = import_files({"accounts.csv": BAD_ACCOUNTS}, url=small_db, dry_run=True).problems_frame()
    assert len(expected) == 3
    assert [e for e in texts(at.error) if f"{len(expected):,} problem(s) found" in e and "nothing was written" in e]
    problems = table_with(at, "file", "row", "column", "value", "reason")
    assert problems.to_dict("records") == expected.to_dict("records")
    where = {(r.row, r.column): r.reason for r in problems.itertuples()}
    assert set(where) == {(3, "name"), (4, "segment"), (5, "contract_start")}
    assert where[(3, "name")] == "required value is empty"
    assert where[(4, "segment")].startswith("unknown segment")
    assert set(problems["file"]) == {"accounts.csv"}
    assert metrics(at)["Accounts"] == "30"
    assert count(small_db, Account) == 30

    # Importing it anyway is refused as a whole and counted as a rejected import.
    button(at, "Import").click().run()
    assert not at.exception
    assert count(small_db, Account) == 30
    assert metrics(at)["Rejected imports"] == "1"
    assert metrics(at)["Last import"] == "never"


def test_a_good_import_changes_the_data_quality_counts(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("data", query=QUERY)
    before = metrics(at)
    assert before["Accounts"] == "30" and before["Last import"] == "never"
    events_before = int(before["Events"].replace(",", ""))

    _upload_and_click(
        at, [("accounts.csv", GOOD_ACCOUNTS, "text/csv"), ("events.csv", GOOD_EVENTS, "text/csv")], "Import"
    )

    assert any(s.startswith("Imported in") and "0 duplicate event(s) skipped" in s for s in texts(at.success))
    after = metrics(at)
    assert after["Accounts"] == "32"
    assert after["Events"] == f"{events_before + 3:,}"
    assert after["Last import"] != "never"
    assert "by demo-admin@localhost" in texts(at.caption)
    assert count(small_db, Account) == 32
    summary = table_with(at, "file", "rows", "inserted")
    assert {(r.file, r.rows, r.inserted) for r in summary.itertuples()} == {
        ("accounts.csv", 2, 2),
        ("events.csv", 3, 3),
    }
    history = table_with(at, "by", "status", "source")
    assert history["status"].tolist() == ["imported"]
    assert history["by"].tolist() == ["demo-admin@localhost"]

    # Importing the same events again skips them as duplicates and changes no count.
    at.file_uploader[0].set_value(("events.csv", GOOD_EVENTS, "text/csv"))
    at.run()
    button(at, "Import").click().run()
    assert any("3 duplicate event(s) skipped" in s for s in texts(at.success))
    assert metrics(at)["Events"] == f"{events_before + 3:,}"
    assert metrics(at)["Duplicate events skipped"] == "3"


def test_revops_can_validate_but_not_import(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("data", query=QUERY, as_user="riley.revops@example.com")
    assert [c for c in texts(at.caption) if "only admins can import" in c and "revops" in c]
    _upload_and_click(at, ("accounts.csv", GOOD_ACCOUNTS, "text/csv"), "Validate (dry run)")
    assert [s for s in texts(at.success) if "Dry run" in s and "nothing was written" in s]
    assert button(at, "Import").disabled
    assert count(small_db, Account) == 30
    assert count(small_db, ImportRun) == 0


def _everything_shown(at) -> str:
    """All the text the page shows (errors, messages, markdown, captions, exceptions)."""
    parts = [
        *texts(at.error),
        *texts(at.warning),
        *texts(at.success),
        *texts(at.info),
        *texts(at.markdown),
        *texts(at.caption),
        *[str(e.value) for e in at.exception],
    ]
    return "\n".join(parts)


def test_a_full_database_during_an_import_shows_a_clear_error_and_writes_nothing(small_db: str, use_db) -> None:
    from tests.db.test_import_safety import full_database, many_accounts

    use_db(small_db)
    at = open_page("data", query=QUERY)
    at.file_uploader[0].set_value(("accounts.csv", many_accounts(3000), "text/csv"))
    at.run()
    with full_database(small_db):
        button(at, "Import").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = texts(at.error)
    assert [
        e
        for e in errors
        if e.startswith("The import stopped because the database is out of space") and "nothing was written" in e
    ], errors
    shown = _everything_shown(at)
    for leak in ("Traceback", "OperationalError", "sqlite3", "psycopg", "[SQL", "INSERT", small_db.split("///")[-1]):
        assert leak not in shown, leak
    # Still the Data page, not the database-error page: the rest of it works.
    assert metrics(at)["Accounts"] == "30"
    assert count(small_db, Account) == 30


def test_a_second_import_while_one_runs_is_told_who_runs_it(small_db: str, use_db, monkeypatch) -> None:
    import threading

    from db import import_lock

    use_db(small_db)
    monkeypatch.setattr(import_lock, "LOCK_WAIT_MS", 300)
    started, go = threading.Event(), threading.Event()

    def hold(fraction: float, message: str) -> None:
        started.set()
        go.wait(120)

    first = threading.Thread(
        target=import_files,
        args=({"accounts.csv": GOOD_ACCOUNTS},),
        kwargs={"url": small_db, "actor": "ops-cron", "progress": hold},
    )
    first.start()
    try:
        assert started.wait(120)
        at = open_page("data", query=QUERY)
        _upload_and_click(at, ("events.csv", GOOD_EVENTS, "text/csv"), "Import")
        errors = texts(at.error)
        assert [e for e in errors if e.startswith("Another import is running, started by ops-cron at ")], errors
        assert "Traceback" not in _everything_shown(at)
    finally:
        go.set()
        first.join(120)
    assert count(small_db, Account) == 32  # the first import's accounts; the second wrote nothing


def test_the_local_demo_says_an_import_closes_the_open_demo(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("data", query={"as_of": AS_OF.isoformat()})
    assert any("the app closes until sign-in is configured" in i for i in texts(at.info))


def _banner(at) -> str:
    found = [c for c in texts(at.sidebar.caption) if c.startswith(":material/") and "Showing" in c]
    assert len(found) == 1, texts(at.sidebar.caption)
    return found[0]


def test_importing_your_own_data_replaces_the_demo_and_the_banner_says_so(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("data", query=QUERY)
    assert "Showing **demo data**: a generated portfolio of 30 accounts" in _banner(at)
    box = at.checkbox(key="replace_demo")
    assert box.value is True and "remove the demo portfolio (30 generated accounts) first" in box.label
    team = b"email,name,role\nkim@own.example,Kim Own,csm\n"
    accounts = GOOD_ACCOUNTS.replace(b"alex.csm@example.com", b"kim@own.example").replace(
        b"priya.csm@example.com", b"kim@own.example"
    )
    _upload_and_click(
        at, [("team.csv", team, "text/csv"), ("accounts.csv", accounts, "text/csv")], "Import", keep_demo=False
    )
    assert any(s.startswith("Imported in") for s in texts(at.success))
    assert any(w.startswith("The demo portfolio was removed first, in the same transaction") for w in texts(at.warning))
    assert _banner(at) == ":material/database: Showing **your data**: 2 account(s)."
    assert "demo data" not in " ".join(texts(at.sidebar.caption))
    assert metrics(at)["Accounts"] == "2"
    assert "replace_demo" not in [c.key for c in at.checkbox]  # no demo left to remove
    assert count(small_db, Account) == 2


def test_adding_to_the_demo_says_both_then_remove_demo_data_after_a_confirm(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("data", query=QUERY)
    _upload_and_click(at, ("accounts.csv", GOOD_ACCOUNTS, "text/csv"), "Import")  # keeps the demo
    assert "2 imported account(s) and 30 generated demo accounts" in _banner(at)
    assert "Remove the demo data on the Data page" in _banner(at)
    assert metrics(at)["Accounts"] == "32"

    button(at, "Remove demo data").click().run()
    warning = [w for w in texts(at.warning) if w.startswith("Remove the demo portfolio?")]
    assert warning and "its 30 accounts" in warning[0] and "Your own 2 account(s) stay" in warning[0]
    assert count(small_db, Account) == 32  # nothing yet: it asks first
    button(at, "Cancel").click().run()
    assert not [w for w in texts(at.warning) if w.startswith("Remove the demo portfolio?")]
    assert count(small_db, Account) == 32

    button(at, "Remove demo data").click().run()
    button(at, "Yes, remove the demo data").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.startswith("Removed 30 demo account(s)") for s in texts(at.success))
    assert count(small_db, Account) == 2
    assert metrics(at)["Accounts"] == "2"
    assert _banner(at) == ":material/database: Showing **your data**: 2 account(s)."
    assert not [b for b in at.button if b.label == "Remove demo data"]


def test_only_admins_can_remove_demo_data(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("data", query=QUERY, as_user="riley.revops@example.com")
    assert button(at, "Remove demo data").disabled


def test_a_file_is_taken_by_its_header_with_suggestions_and_templates_to_download(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("data", query=QUERY)
    templates = [b for b in at.get("download_button") if b.proto.label.endswith(".csv")]
    assert [b.proto.label for b in templates] == [
        "team.csv",
        "accounts.csv",
        "events.csv",
        "milestones.csv",
        "outcomes.csv",
        "checklist.csv",
    ]
    bad = b"account_id,name,segment,contract_start\nNEW-1,One,Mid Market,2026-05-01\nNEW-2,,SMB,2026-05-01\n"
    _upload_and_click(at, ("bad_accounts.csv", bad, "text/csv"), "Validate (dry run)")
    warnings = [unescape(w) for w in texts(at.warning)]
    assert (
        "bad_accounts.csv: taken as accounts.csv (its name is not a contract file name; recognised by its header)"
        in (warnings)
    )
    problems = table_with(at, "file", "row", "column", "value", "reason")
    assert problems[["file", "row", "column"]].values.tolist() == [
        ["bad_accounts.csv (as accounts.csv)", 2, "segment"],
        ["bad_accounts.csv (as accounts.csv)", 3, "name"],
    ]
    assert problems["reason"][0].startswith('unknown segment; did you mean "Mid-Market"?')


TRACK_JSONL = (
    b'{"type":"track","event":"workspace_created","timestamp":"2026-05-02T10:00:00Z","userId":"u1",'
    b'"properties":{"account":"ACC-T-1","source":"segment"}}\n'
    b'{"type":"identify","userId":"u1","traits":{"name":"<b>Una</b>"}}\n'
    b'{"type":"track","event":"login","timestamp":"2026-05-03T10:00:00+02:00","anonymousId":"a-9",'
    b'"properties":{"account":"ACC-T-2"}}\n'
)


def test_segment_json_lines_are_uploaded_with_the_account_property(small_db: str, use_db) -> None:
    """A .jsonl of track calls whose account is in a property: without naming it, every call
    is a problem at context.groupId and nothing is written; named, the events are imported,
    the identify call skipped and counted."""
    use_db(small_db)
    at = open_page("data", query=QUERY)
    events_before = int(metrics(at)["Events"].replace(",", ""))
    files = [("accounts.csv", GOOD_ACCOUNTS, "text/csv"), ("track.jsonl", TRACK_JSONL, "application/jsonl")]
    _upload_and_click(at, files, "Validate (dry run)")
    problems = table_with(at, "file", "row", "column", "value", "reason")
    assert problems[["file", "row", "column"]].values.tolist() == [
        ["track.jsonl (as events.csv)", 1, "context.groupId"],
        ["track.jsonl (as events.csv)", 3, "context.groupId"],
    ]
    assert problems["reason"][0].startswith("missing: the account is read from context.groupId")

    at.text_input(key="account_property").input("account").run()
    button(at, "Import").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.startswith("Imported in") for s in texts(at.success)), texts(at.error)
    summary = table_with(at, "file", "rows", "inserted")
    assert {(r.file, r.rows, r.inserted) for r in summary.itertuples()} == {
        ("accounts.csv", 2, 2),
        ("track.jsonl (as events.csv)", 2, 2),
    }
    assert "track.jsonl (as events.csv): 1 call(s) that are not track calls skipped (identify 1)" in [
        unescape(w) for w in texts(at.warning)
    ]
    assert metrics(at)["Events"] == f"{events_before + 2:,}"
