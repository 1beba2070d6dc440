"""Uploads and imports a deployment can survive (issue 10, points 5-10): zip bombs and
endless lines are refused within bounded memory; a dry run writes nothing and takes no
write lock, so a user's save goes through while it runs; two imports never run at once
and the second is told who runs the first; a name given twice is refused; timestamps are
ISO 8601 only; a database that fails mid-import gives a clear message and writes nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event, select, text

from db import import_lock, uploads
from db.importer import ImportBusy, ImportFailed, files_from_uploads, import_files
from db.models import Account, ChecklistItem, Event, ImportRun
from db.session import get_engine, is_sqlite, session_scope
from db.uploads import Refused, ZipMember
from services.plans import ItemChange, in_session, save_checklist
from tests.conftest import ON_POSTGRES, ROOT, run_cli
from tests.services import ADMIN, base_of, count, external_id, items, member, owned_accounts

TEAM = b"email,name,role\ncsm@example.com,Casey Smith,csm\n"
ACCOUNTS = b"account_id,name,segment,contract_start,csm_email\nA-1,Acme,SMB,2026-01-05,csm@example.com\n"
PLAIN_ACCOUNTS = b"account_id,name,segment,contract_start\nA-1,Acme,SMB,2026-01-05\n"
EV_HEAD = b"account_id,event,timestamp,user_id,properties\n"
WAIT = 120  # seconds a test thread waits for the other at most (a guard against a hang, not a timing)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _bomb(path: Path, *, line_bytes: int, name: str = "events.csv") -> bytes:
    """A zip whose one member is a header and one line of `line_bytes` bytes, written in
    chunks (the test itself never holds the decompressed file)."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open(name, "w", force_zip64=True) as f,
    ):
        f.write(EV_HEAD)
        chunk = b"x" * (4 * 1024 * 1024)
        left = line_bytes
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
        f.write(b"\n")
    return path.read_bytes()


def _count(url: str, model: type) -> int:
    return count(url, model)


def _problems(report) -> list[tuple[str, int, str]]:
    return [(p.file, p.row, p.reason) for p in report.problems]


# ----------------------------------------------------------------------------- 5. zip bombs


def test_a_zip_member_larger_than_the_limit_is_refused_unread(empty_db: str, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 1024 * 1024)
    monkeypatch.setattr(uploads, "MAX_TOTAL_BYTES", 2 * 1024 * 1024)  # the member alone is over this too
    data = _bomb(tmp_path / "bomb.zip", line_bytes=5 * 1024 * 1024)
    assert len(data) < 100_000  # 5 MB of one line compresses to almost nothing
    files = files_from_uploads([("bomb.zip", data)])
    assert isinstance(files["events.csv"], Refused)
    report = import_files(files, url=empty_db, dry_run=True)
    assert _problems(report) == [
        ("events.csv", 0, "events.csv in bomb.zip is 5.0 MB uncompressed; at most 1.0 MB per file")
    ]
    assert not report.written


def test_a_zip_member_that_lies_about_its_size_is_stopped_at_the_declared_size(empty_db: str) -> None:
    body = EV_HEAD + b"A-1,login,2026-01-06T09:00:00Z,u1,\n" * 100_000
    data = bytearray(_zip({"events.csv": body}))
    # Declare 1,000 bytes in both headers: reading must stop there, not at the real 3.5 MB.
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, 1000)
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, 1000)
    files = files_from_uploads([("liar.zip", bytes(data))])
    assert isinstance(files["events.csv"], ZipMember) and files["events.csv"].size == 1000
    report = import_files({"accounts.csv": ACCOUNTS, "team.csv": TEAM, **files}, url=empty_db)
    assert not report.ok and not report.written
    [p] = report.problems
    assert p.file == "events.csv" and p.reason.startswith("the zip entry is damaged (Bad CRC-32")
    assert report.files["events.csv"].rows == 0  # no row of the truncated file was taken
    assert _count(empty_db, Account) == 0


def test_a_member_decompressing_past_the_limit_is_stopped(empty_db: str, monkeypatch, tmp_path: Path) -> None:
    """The counting reader's own bound, whatever the zip headers say."""
    data = _zip({"events.csv": EV_HEAD + b"A-1,login,2026-01-06T09:00:00Z,u1,\n" * 20_000})
    files = files_from_uploads([("ok.zip", data)])
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 100_000)  # lowered after the declared-size check
    report = import_files({"team.csv": TEAM, "accounts.csv": ACCOUNTS, **files}, url=empty_db, dry_run=True)
    assert [p.reason for p in report.problems] == [
        "the file decompresses to more than 98 KB, the most accepted per file; reading of this file stopped here"
    ]


def test_one_endless_line_is_refused_without_being_read_whole(empty_db: str, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(uploads, "MAX_ROW_CHARS", 10_000)
    line = b",".join([b"a"] * 200_000)  # 400 KB of tiny fields on one line: the field limit never trips
    for files in (
        {"events.csv": EV_HEAD + line + b"\n"},
        files_from_uploads([("x.zip", _zip({"events.csv": EV_HEAD + line + b"\n"}))]),
    ):
        report = import_files(files, url=empty_db, dry_run=True)
        assert _problems(report) == [
            (
                "events.csv",
                2,
                "row too long: more than 10,000 characters (is this a CSV file?); reading of this file stopped here",
            )
        ]


def test_a_quoted_field_spanning_many_lines_is_bounded_too(empty_db: str, monkeypatch) -> None:
    monkeypatch.setattr(uploads, "MAX_ROW_CHARS", 10_000)
    many = b'A-1,login,2026-01-06T09:00:00Z,u1,"' + b"{\n" * 20_000 + b'"\n'
    report = import_files({"events.csv": EV_HEAD + many}, url=empty_db, dry_run=True)
    assert [p.reason.split(":")[0] for p in report.problems] == ["row too long"]


def test_too_many_zip_entries_and_too_much_in_total_are_refused(empty_db: str, monkeypatch) -> None:
    monkeypatch.setattr(uploads, "MAX_ZIP_ENTRIES", 3)
    many = _zip({f"x{i}/notes{i}.txt": b"" for i in range(5)})
    assert _problems(import_files(files_from_uploads([("many.zip", many)]), url=empty_db, dry_run=True)) == [
        ("many.zip", 0, "the zip has more than 3 entries; at most 3 are accepted")
    ]
    monkeypatch.setattr(uploads, "MAX_TOTAL_BYTES", 150)
    both = _zip({"team.csv": TEAM, "accounts.csv": ACCOUNTS + b"A-2,Beta,SMB,2026-01-05,\n"})
    assert _problems(import_files(files_from_uploads([("both.zip", both)]), url=empty_db, dry_run=True)) == [
        ("both.zip", 0, "the files in the zip add up to more than 150 bytes uncompressed; split it")
    ]


def _understated(data: bytes, entries: int) -> bytes:
    """The zip with both entry counts of its end record set to `entries` (the directory untouched)."""
    out = bytearray(data)
    end = out.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", out, end + 8, entries, entries)
    return bytes(out)


def test_a_zip_that_understates_its_entries_is_refused_before_they_are_parsed(empty_db: str) -> None:
    """5,000 entries behind an end record that says 1: zipfile would build all 5,000 (millions
    in a 1 GB upload); the directory itself is counted, and the count stops past the limit."""
    liar = _understated(_zip({f"x{i}.txt": b"" for i in range(5_000)}), 1)
    with zipfile.ZipFile(io.BytesIO(liar)) as zf:
        assert len(zf.infolist()) == 5_000  # what parsing it would have cost
    refusal = "the zip has more than 100 entries; at most 100 are accepted"
    assert uploads.expand([("x.zip", liar)], known=["events.csv"]) == {"x.zip": Refused(refusal)}
    report = import_files(files_from_uploads([("x.zip", liar)]), url=empty_db, dry_run=True)
    assert _problems(report) == [("x.zip", 0, refusal)]


def test_a_zip_directory_too_large_for_the_entry_limit_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(uploads, "MAX_ZIP_ENTRIES", 3)
    monkeypatch.setattr(uploads, "ZIP_DIR_BYTES_PER_ENTRY", 100)
    long_names = _zip({f"{'n' * 200}{i}.csv": b"" for i in range(2)})
    assert uploads.expand([("long.zip", long_names)], known=[]) == {
        "long.zip": Refused("the zip's list of entries is 502 bytes; at most 300 bytes (3 entries) is accepted")
    }


def test_zips_within_the_entry_limit_still_expand(monkeypatch) -> None:
    """Exactly the limit, an understated count within it, and a zip after other data (as a
    self-extracting archive is): the directory is found where zipfile finds it."""
    monkeypatch.setattr(uploads, "MAX_ZIP_ENTRIES", 3)
    three = _zip({"team.csv": TEAM, "accounts.csv": PLAIN_ACCOUNTS, "notes.txt": b"hi"})
    for data in (three, _understated(three, 1), b"#!/bin/sh\nexit 0\n" * 50 + three):
        got = uploads.expand([("d.zip", data)], known=["team.csv", "accounts.csv"])
        assert sorted(got) == ["accounts.csv", "team.csv"]
        assert all(isinstance(src, ZipMember) for src in got.values())
        stream, _size, _limit = uploads.open_source(got["accounts.csv"])
        with stream:
            assert stream.read() == PLAIN_ACCOUNTS
    four = _zip({f"f{i}.csv": b"a\n" for i in range(4)})
    assert uploads.expand([("four.zip", four)], known=[]) == {
        "four.zip": Refused("the zip has more than 3 entries; at most 3 are accepted")
    }
    assert uploads.expand([("junk.zip", b"PK\x05\x06 not a zip")], known=[]) == {
        "junk.zip": Refused("not a readable zip file")
    }


def test_a_loose_file_over_the_limit_is_refused(empty_db: str, monkeypatch) -> None:
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 1000)
    report = import_files(files_from_uploads([("events.csv", EV_HEAD * 100)]), url=empty_db, dry_run=True)
    assert _problems(report) == [("events.csv", 0, "the file is 4 KB; at most 1000 bytes per file")]


def test_the_upload_limit_matches_what_the_importer_reads() -> None:
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * uploads.MB == uploads.MAX_FILE_BYTES


BOMB_CHILD = """
import resource, sys
from db.importer import files_from_uploads, import_files
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = import_files(files_from_uploads([("bomb.zip", data)]), dry_run=True)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, [p.reason.split(":")[0] for p in report.problems])
"""


def test_validating_a_zip_bomb_keeps_memory_bounded(empty_db: str, tmp_path: Path) -> None:
    """400 MB of one line in a 400 KB zip, validated in a real process with the default
    limits: its peak memory grows by a few MB, not by the 400 MB the old reader took."""
    path = tmp_path / "bomb.zip"
    data = _bomb(path, line_bytes=400 * 1024 * 1024)
    assert len(data) < 1024 * 1024
    env = {**os.environ, "DATABASE_URL": empty_db, "PYTHONPATH": str(ROOT)}
    for k in [k for k in env if k.startswith("IMPORT_")]:
        del env[k]
    res = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, str(path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert res.returncode == 0, res.stderr
    grown_mb, reasons = res.stdout.split(" ", 1)
    assert reasons.strip() == "['row too long']"
    assert int(grown_mb) < 60, f"peak RSS grew by {grown_mb} MB while validating the bomb"


# ----------------------------------------------------------------------------- 6. dry run without locks


def _events_for(url: str, n: int) -> bytes:
    with session_scope(url) as s:
        ids = list(s.execute(select(Account.external_id).order_by(Account.id)).scalars())
    rows = [
        f"{ids[i % len(ids)]},dry_run_probe,2026-03-{1 + i % 28:02d}T{(i // 28) % 24:02d}:{(i // 672) % 60:02d}:00Z,"
        f"u{i // 40320},"
        for i in range(n)
    ]
    return EV_HEAD + ("\n".join(rows) + "\n").encode()


def _foreign_write_locks(url: str) -> list[tuple[str, str]]:
    """Locks other sessions hold on this test schema's tables, beyond plain reads (PostgreSQL)."""
    with get_engine(url).connect() as c:
        return [
            (r[0], r[1])
            for r in c.execute(
                text(
                    "SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND l.pid <> pg_backend_pid() AND l.mode <> 'AccessShareLock'"
                )
            )
        ]


def test_a_checklist_save_goes_through_while_a_dry_run_runs(small_db: str) -> None:
    account = owned_accounts(small_db, "alex.csm@example.com")[0]
    it = next(i for i in items(small_db, account) if i.status not in ("blocked", "done"))
    ext = external_id(small_db, account)
    # The dry run would change the same item (and add 150,000 events in three batches).
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(
        [
            ["account_id", "category", "criterion", "target", "actual", "status"],
            [ext, it.category, it.criterion, it.target or "", it.actual or "", "blocked"],
        ]
    )
    checklist = buf.getvalue().encode()
    files = {"checklist.csv": checklist, "events.csv": _events_for(small_db, 150_000)}
    events_before = _count(small_db, Event)
    reached, go = threading.Event(), threading.Event()
    calls: list[str] = []
    out: dict = {}

    def pause_in_the_middle(fraction: float, message: str) -> None:
        calls.append(message)
        if sum(m.startswith("events.csv:") for m in calls) == 2:  # one batch of events done
            reached.set()
            go.wait(WAIT)

    def dry_run() -> None:
        try:
            out["report"] = import_files(files, url=small_db, dry_run=True, progress=pause_in_the_middle)
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["error"] = exc

    t = threading.Thread(target=dry_run)
    t.start()
    try:
        assert reached.wait(WAIT), out
        if ON_POSTGRES:
            assert _foreign_write_locks(small_db) == []
        result = in_session(
            save_checklist,
            member(small_db, ADMIN),
            account_id=account,
            changes=[ItemChange(it.id, it.version, {"status": "done"}, base_of(small_db, it))],
            url=small_db,
        )
        assert result is not None
    finally:
        go.set()
        t.join(WAIT)
    assert "error" not in out, out.get("error")
    report = out["report"]
    assert report.ok and not report.written
    # What an import would do, counted by reading: the item changes, every event is new.
    assert (report.files["checklist.csv"].inserted, report.files["checklist.csv"].updated) == (0, 1)
    assert report.files["events.csv"].inserted == 150_000
    assert _count(small_db, Event) == events_before
    with session_scope(small_db) as s:
        saved = s.get(ChecklistItem, it.id)
        assert (saved.status, saved.version) == ("done", it.version + 1)


def test_a_dry_run_counts_what_the_import_then_does(empty_db: str) -> None:
    events = EV_HEAD + b"A-1,login,2026-01-06T09:00:00Z,u1,\nA-1,login,2026-01-07T09:00:00Z,u1,\n"
    assert import_files({"team.csv": TEAM, "accounts.csv": ACCOUNTS, "events.csv": events}, url=empty_db).written
    again = {
        "team.csv": TEAM,
        "accounts.csv": ACCOUNTS.replace(b"Acme", b"Acme Corp") + b"A-2,Beta,SMB,2026-02-01,\n",
        "milestones.csv": b"account_id,milestone,due_date\nA-1,kickoff_complete,2026-01-09\nA-2,kickoff_complete,\n",
        # One event already stored, one new one twice, one for the new account.
        "events.csv": events
        + b"A-1,login,2026-01-08T09:00:00Z,u1,\nA-1,login,2026-01-08T09:00:00Z,u1,\nA-2,login,2026-02-02T09:00:00Z,,\n",
    }
    dry = import_files(again, url=empty_db, dry_run=True)
    real = import_files(again, url=empty_db)
    assert dry.ok and real.written
    assert dry.summary_frame().to_dict("records") == real.summary_frame().to_dict("records")
    assert {
        f: (r.inserted, r.updated, r.unchanged) for f, r in dry.files.items() if f in ("team.csv", "accounts.csv")
    } == {
        "team.csv": (0, 0, 1),
        "accounts.csv": (1, 1, 0),
    }
    assert dry.files["milestones.csv"].inserted == 1  # A-2's, a new account's
    assert (dry.files["events.csv"].inserted, dry.files["events.csv"].duplicates_skipped) == (2, 3)


def test_user_saves_wait_seconds_not_minutes_for_a_lock(empty_db: str) -> None:
    with get_engine(empty_db).connect() as c:
        if is_sqlite(c.engine):
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 5000
        else:
            assert c.exec_driver_sql("SHOW lock_timeout").scalar_one() == "5s"
            assert c.exec_driver_sql("SHOW statement_timeout").scalar_one() == "0"  # the import's own is restored


def test_a_dry_run_cannot_write_even_by_mistake(empty_db: str) -> None:
    with (
        import_lock.import_connection(get_engine(empty_db), dry_run=True) as conn,
        pytest.raises(Exception, match=r"readonly|read-only"),
    ):
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('probe', '1')"))
    # ...and the connection goes back to the pool able to write again.
    with session_scope(empty_db) as s:
        s.execute(text("INSERT INTO meta (key, value) VALUES ('probe', '1')"))


# ----------------------------------------------------------------------------- 7. one import at a time


def test_a_second_import_is_refused_naming_the_first(empty_db: str, monkeypatch) -> None:
    monkeypatch.setattr(import_lock, "LOCK_WAIT_MS", 300)
    monkeypatch.setenv("IMPORT_LOCK_WAIT_MS", "300")
    first = {"team.csv": TEAM, "accounts.csv": ACCOUNTS}
    second = {"accounts.csv": b"account_id,name,segment,contract_start\nB-1,Bravo,SMB,2026-01-05\n"}
    started, go = threading.Event(), threading.Event()
    out: dict = {}

    def hold(fraction: float, message: str) -> None:
        started.set()
        go.wait(WAIT)

    def run_first() -> None:
        try:
            out["report"] = import_files(first, url=empty_db, actor="alice@example.com", progress=hold)
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["error"] = exc

    t = threading.Thread(target=run_first)
    t.start()
    try:
        assert started.wait(WAIT), out
        with pytest.raises(ImportBusy) as refused:
            import_files(second, url=empty_db, actor="bob@example.com")
        with session_scope(empty_db) as s:
            running = s.execute(select(ImportRun).where(ImportRun.status == "running")).scalars().one()
        when = running.started_at.strftime("%Y-%m-%d %H:%M:%S")
        assert running.actor == "alice@example.com"
        assert str(refused.value) == (
            f"Another import is running, started by alice@example.com at {when} UTC, so this import did not "
            "start; nothing was written. Try again when it has finished."
        )
        # The same from the command line, in another process.
        d = ROOT / "tests" / ".tmp-second-import"
        d.mkdir(exist_ok=True)
        try:
            (d / "accounts.csv").write_bytes(second["accounts.csv"])
            res = run_cli(empty_db, "import", str(d), "--quiet")
        finally:
            (d / "accounts.csv").unlink()
            d.rmdir()
        assert res.returncode == 1
        assert f"error: Another import is running, started by alice@example.com at {when} UTC" in res.stderr
        assert "Traceback" not in res.stderr and "IntegrityError" not in res.stderr
    finally:
        go.set()
        t.join(WAIT)
    assert "error" not in out, out.get("error")
    assert out["report"].written
    with session_scope(empty_db) as s:
        assert sorted(s.execute(select(Account.external_id)).scalars()) == ["A-1"]
        runs = s.execute(select(ImportRun.actor, ImportRun.status)).all()
    assert runs == [("alice@example.com", "imported")]  # the refused ones leave no trace


def test_the_same_new_accounts_imported_twice_at_once_give_no_integrity_error(empty_db: str, monkeypatch) -> None:
    """The case from the issue: both imports create the same accounts."""
    monkeypatch.setattr(import_lock, "LOCK_WAIT_MS", 300)
    files = {"team.csv": TEAM, "accounts.csv": ACCOUNTS}
    started, go = threading.Event(), threading.Event()
    out: dict = {}

    def hold(fraction: float, message: str) -> None:
        started.set()
        go.wait(WAIT)

    t = threading.Thread(target=lambda: out.update(report=import_files(files, url=empty_db, progress=hold)))
    t.start()
    try:
        assert started.wait(WAIT)
        with pytest.raises(ImportBusy, match=r"^Another import is running, started by cli at "):
            import_files(files, url=empty_db)
    finally:
        go.set()
        t.join(WAIT)
    assert out["report"].written
    assert _count(empty_db, Account) == 1


def test_an_import_after_a_crashed_one_runs_and_marks_it_interrupted(empty_db: str) -> None:
    with session_scope(empty_db) as s:
        s.add(ImportRun(actor="crashed@example.com", status="running"))
    assert import_files({"team.csv": TEAM}, url=empty_db).written
    with session_scope(empty_db) as s:
        assert dict(s.execute(select(ImportRun.actor, ImportRun.status)).all()) == {
            "crashed@example.com": "interrupted",
            "cli": "imported",
        }


# ----------------------------------------------------------------------------- 8. a name given twice


@pytest.mark.parametrize(
    ("given", "names"),
    [
        (
            [("x.zip", _zip({"a/team.csv": TEAM, "b/team.csv": TEAM.replace(b"Casey", b"Kim")}))],
            "a/team.csv in x.zip and b/team.csv in x.zip",
        ),
        ([("team.csv", TEAM), ("x.zip", _zip({"export/team.csv": TEAM}))], "team.csv and export/team.csv in x.zip"),
        ([("x.zip", _zip({"team.csv": TEAM})), ("Team.csv", TEAM)], "team.csv in x.zip and Team.csv"),
    ],
    ids=["two-folders-of-a-zip", "loose-and-in-a-zip", "zip-and-loose-other-case"],
)
def test_a_file_name_given_twice_is_refused_naming_both(empty_db: str, given: list, names: str) -> None:
    report = import_files({**files_from_uploads(given), "accounts.csv": PLAIN_ACCOUNTS}, url=empty_db)
    assert not report.written
    assert [(p.file, p.reason) for p in report.problems] == [
        ("team.csv", f"team.csv appears 2 times in the upload ({names}); upload only one of them")
    ]
    assert _count(empty_db, Account) == 0


def test_two_files_that_differ_only_in_case_are_refused(empty_db: str) -> None:
    report = import_files({"Team.csv": TEAM, "team.csv": TEAM, "accounts.csv": PLAIN_ACCOUNTS}, url=empty_db)
    assert [(p.file, p.reason) for p in report.problems] == [
        ("team.csv", "team.csv is given 2 times (Team.csv and team.csv); give only one")
    ]
    assert _count(empty_db, Account) == 0


# ----------------------------------------------------------------------------- 9. ISO 8601 only


@pytest.mark.parametrize(
    "value",
    ["now", "today", "NOW", "Today", "tomorrow", "Jan 5 2026", "5/1/2026", "2026-01-06T09", "20260106T090000Z"],
)
def test_only_iso_8601_timestamps_are_accepted(empty_db: str, value: str) -> None:
    files = {
        "team.csv": TEAM,
        "accounts.csv": ACCOUNTS,
        "events.csv": EV_HEAD + f"A-1,login,{value},u1,\n".encode(),
        "milestones.csv": f"account_id,milestone,due_date,completed_at\nA-1,kickoff_complete,,{value}\n".encode(),
    }
    report = import_files(files, url=empty_db)
    assert [(p.file, p.row, p.column) for p in report.problems] == [
        ("milestones.csv", 2, "completed_at"),
        ("events.csv", 2, "timestamp"),
    ]
    assert all(p.reason.startswith("bad timestamp: use ISO 8601") for p in report.problems)
    assert _count(empty_db, Event) == 0


@pytest.mark.parametrize("value", ["now", "today", "2026-1-5", "05.01.2026", "2026-01-05T00:00:00Z"])
def test_only_iso_dates_are_accepted(empty_db: str, value: str) -> None:
    acc = f"account_id,name,segment,contract_start\nA-1,Acme,SMB,{value}\n".encode()
    report = import_files({"accounts.csv": acc}, url=empty_db)
    assert [(p.row, p.column, p.reason) for p in report.problems] == [
        (2, "contract_start", "not a date: use YYYY-MM-DD")
    ]


def test_reimporting_iso_timestamps_is_idempotent(empty_db: str) -> None:
    files = {
        "team.csv": TEAM,
        "accounts.csv": ACCOUNTS,
        "events.csv": EV_HEAD + b"A-1,login,2026-01-06 09:00,u1,\nA-1,login,2026-01-06T11:00:00+02:00,u2,\n",
    }
    assert import_files(files, url=empty_db).files["events.csv"].inserted == 2
    again = import_files(files, url=empty_db)
    assert (again.files["events.csv"].inserted, again.files["events.csv"].duplicates_skipped) == (0, 2)


# ----------------------------------------------------------------------------- 10. the database fails mid-import


@contextmanager
def full_database(url: str) -> Iterator[None]:
    """The database refuses to grow, as on a full disk: SQLite's max_page_count at the
    current size on every new connection; on PostgreSQL a trigger that raises disk_full."""
    engine = get_engine(url)
    if is_sqlite(engine):

        def cap(dbapi_connection, _record) -> None:
            cur = dbapi_connection.cursor()
            pages = cur.execute("PRAGMA page_count").fetchone()[0]
            cur.execute(f"PRAGMA max_page_count = {pages}")
            cur.close()

        engine.dispose()
        event.listen(engine, "connect", cap)
        try:
            yield
        finally:
            event.remove(engine, "connect", cap)
            engine.dispose()
        return
    with engine.begin() as c:
        c.exec_driver_sql(
            "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not extend file \"base/16384/2619\": No space left on device' "
            "USING ERRCODE = 'disk_full'; END $$"
        )
        c.exec_driver_sql(
            "CREATE TRIGGER disk_full BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION disk_full()"
        )
    try:
        yield
    finally:
        with engine.begin() as c:
            c.exec_driver_sql("DROP TRIGGER disk_full ON accounts")
            c.exec_driver_sql("DROP FUNCTION disk_full()")


def many_accounts(n: int) -> bytes:
    rows = [f"F-{i},Full Co {i} {'x' * 200},SMB,2026-01-05" for i in range(n)]
    return ("account_id,name,segment,contract_start\n" + "\n".join(rows) + "\n").encode()


def test_a_full_database_is_a_clear_error_and_nothing_is_written(empty_db: str, caplog) -> None:
    before = _count(empty_db, Account)
    with full_database(empty_db), pytest.raises(ImportFailed) as failed:
        import_files({"accounts.csv": many_accounts(3000)}, url=empty_db, actor="admin@example.com")
    message = str(failed.value)
    assert message.startswith("The import stopped because the database is out of space")
    assert "nothing was written" in message
    for leak in ("INSERT", "sqlite3", "psycopg", "/", "[SQL"):
        assert leak not in message
    assert _count(empty_db, Account) == before
    # The detail is in the log, for whoever runs the server.
    assert any("failed in the database" in r.getMessage() and r.exc_info for r in caplog.records)
    # The database works again afterwards.
    assert import_files({"accounts.csv": many_accounts(3)}, url=empty_db).written


def test_the_cli_reports_a_full_database_without_a_traceback(empty_db: str, tmp_path: Path) -> None:
    """manage.py import in another process, its database unable to grow (SQLite's limit, set by
    a sitecustomize on its connections; PostgreSQL's trigger)."""
    (tmp_path / "accounts.csv").write_bytes(many_accounts(3000))
    env = dict(os.environ)
    if ON_POSTGRES:
        ctx = full_database(empty_db)
    else:
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(
            "import sqlite3, sqlite3.dbapi2\n_connect = sqlite3.connect\n"
            "def connect(*a, **k):\n"
            "    c = _connect(*a, **k)\n"
            "    c.execute(f'PRAGMA max_page_count = {c.execute(\"PRAGMA page_count\").fetchone()[0]}')\n"
            "    return c\n"
            "sqlite3.connect = sqlite3.dbapi2.connect = connect\n"
        )
        env["PYTHONPATH"] = str(site)
        ctx = _nothing()
    with ctx:
        res = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "import", str(tmp_path), "--quiet"],
            capture_output=True,
            text=True,
            env={**env, "DATABASE_URL": empty_db},
            cwd=ROOT,
            timeout=300,
        )
    assert res.returncode == 1
    assert "error: The import stopped because the database is out of space" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout and "[SQL" not in res.stderr
    assert _count(empty_db, Account) == 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_db_error_messages_name_no_sql_and_no_paths() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    class Orig(Exception):
        sqlstate = None

    cases = {
        OperationalError("INSERT INTO x", {"a": 1}, Orig("database or disk is full")): "out of space",
        OperationalError("INSERT", {}, Orig("database is locked")): "the database was busy",
        IntegrityError(
            "INSERT INTO accounts", {"p": "secret"}, Orig("UNIQUE constraint failed: /srv/app/data.db accounts.id")
        ): "was refused by the database (UNIQUE constraint failed: … accounts.id)",
    }
    for exc, expected in cases.items():
        message = import_lock.db_error_message(exc, dry_run=False)
        assert expected in message, message
        assert "INSERT" not in message and "secret" not in message and "/srv" not in message
    assert json.dumps(message)  # plain text
