"""Events as pipelines write them (issue 14, part 2): Segment-spec JSON lines and Parquet,
gzip-compressed or not, import exactly as events.csv does: the same rows, the same
deduplication (re-importing changes nothing), the same problem report (file, line, field,
reason; every problem; nothing written), the same round-trip through export. Non-track
calls are skipped and counted; the account comes from context.groupId or a named property;
gzip bombs are refused within bounded memory; a Parquet file with a wrong or missing column
is told which."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from db import eventfiles, uploads
from db.exporter import export_dir
from db.importer import ImportReport, files_from_dir, files_from_uploads, import_files
from db.models import Event, ImportRun
from db.session import data_version, get_engine, session_scope
from tests.conftest import ROOT
from tests.services import count

ACCOUNTS = (
    b"account_id,name,segment,contract_start\n"
    b"A-1,Acme,SMB,2026-01-05\n"
    b"A-2,Beta,Enterprise,2026-01-05\n"
    b"A-3,Gamma,Mid-Market,2026-01-05\n"
)
# The events of every format below: (account, event, UTC time, user, properties).
EVENTS = [
    ("A-1", "login", "2026-01-06T10:00:00Z", "u1", {"plan": "pro", "seats": 3}),
    ("A-1", "report_viewed", "2026-01-06T10:05:30.250Z", "u1", {"nested": {"a": [1, 2, None]}, "name": "Zoë ✓"}),
    ("A-2", "login", "2026-01-07T08:00:00Z", "u7", None),
    ("A-2", "'quoted", "2026-01-07T09:00:00Z", "u7", {"text": "'=SUM(A1)"}),  # a leading ' kept as given
    ("A-3", "invite_sent", "2026-01-08T23:59:59.123456Z", "", {"to": "x@example.com"}),
    ("A-1", "login", "2026-01-06T10:00:00Z", "u1", {"plan": "pro", "seats": 3}),  # a repeat: skipped
]
NEW = len(EVENTS) - 1


def _props(p: dict | None) -> str:
    return "" if p is None else json.dumps(p, ensure_ascii=False)


def events_csv(events=EVENTS) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["account_id", "event", "timestamp", "user_id", "properties"])
    for a, e, ts, u, p in events:
        w.writerow([a, "'" + e if e.startswith("'") else e, ts, u, _props(p)])  # as export escapes it
    return buf.getvalue().encode()


def segment_call(a: str, e: str, ts: str, u: str, p: dict | None, **extra) -> dict:
    call = {"type": "track", "event": e, "timestamp": ts, "context": {"groupId": a}, "messageId": f"m-{e}-{ts}"}
    if u:
        call["userId"] = u
    else:
        call["anonymousId"] = "anon-1"
    if p is not None:
        call["properties"] = p
    return {**call, **extra}


def events_jsonl(events=EVENTS, *, extra_lines: list[str] = ()) -> bytes:
    lines = [json.dumps(segment_call(*ev), ensure_ascii=False) for ev in events]
    return ("\n".join([*lines, *extra_lines]) + "\n").encode()


def events_parquet(events=EVENTS, *, tz: str | None = "UTC", row_group_size: int | None = None) -> bytes:
    import pandas as pd

    ts = pd.to_datetime([e[2] for e in events], utc=True, format="ISO8601")
    if tz != "UTC":
        ts = ts.tz_convert(tz) if tz else ts.tz_localize(None)
    table = pa.table(
        {
            "account_id": [e[0] for e in events],
            "event": pa.array([e[1] for e in events]).dictionary_encode(),
            "timestamp": pa.array(ts, pa.timestamp("us", tz)),
            "user_id": [e[3] or None for e in events],
            "properties": [None if e[4] is None else _props(e[4]) for e in events],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size)
    return buf.getvalue()


def _file(fmt: str) -> tuple[str, bytes]:
    data = {"csv": events_csv, "jsonl": events_jsonl, "ndjson": events_jsonl, "parquet": events_parquet}
    base = fmt.removesuffix(".gz")
    raw = data[base]()
    return (f"events.{fmt}", gzip.compress(raw) if fmt.endswith(".gz") else raw)


def exported_events(url: str, tmp: Path) -> list[dict[str, str]]:
    export_dir(tmp, url=url, backup=False)
    with open(tmp / "events.csv", newline="", encoding="utf-8") as f:
        return sorted(csv.DictReader(f), key=lambda r: (r["account_id"], r["timestamp"], r["event"]))


def _where(report: ImportReport) -> list[tuple[str, int, str, str]]:
    return [(p.file, p.row, p.column, p.reason) for p in report.problems]


def _version(url: str) -> int:
    with session_scope(url) as s:
        return data_version(s)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "jsonl.gz", "ndjson", "parquet", "parquet.gz"])
def test_the_same_events_in_every_format_import_to_the_same_rows(empty_db: str, fmt: str, tmp_path: Path) -> None:
    name, data = _file(fmt)
    files = {"accounts.csv": ACCOUNTS, **files_from_uploads([(name, data)])}
    report = import_files(files, url=empty_db)
    assert report.ok, [str(p) for p in report.problems]
    shown = "events.csv" if fmt == "csv" else f"{name} (as events.csv)"
    ev = report.files["events.csv"]
    assert (ev.file, ev.rows, ev.inserted, ev.duplicates_skipped) == (shown, len(EVENTS), NEW, 1)

    rows = exported_events(empty_db, tmp_path / "export")
    by_key = {(r["account_id"], r["event"].removeprefix("'"), r["timestamp"]): r for r in rows}
    # The rows, as export writes them: times in UTC with microseconds, the user (Segment's
    # anonymousId where there is no userId), and the properties JSON as given.
    for a, e, ts, u, p in EVENTS[:NEW]:
        got = next(r for k, r in by_key.items() if k[0] == a and k[1] == e)
        assert _same_time(got["timestamp"], ts), (got, ts)
        expect_user = u or ("anon-1" if fmt.startswith(("jsonl", "ndjson")) else "")
        assert got["user_id"] == expect_user
        assert (json.loads(got["properties"]) if got["properties"] else None) == p
    assert len(rows) == NEW

    # Importing the file again changes nothing: every event is a duplicate.
    again = import_files(files_from_uploads([(name, data)]), url=empty_db)
    assert again.ok
    assert (again.files["events.csv"].inserted, again.files["events.csv"].duplicates_skipped) == (0, len(EVENTS))
    assert exported_events(empty_db, tmp_path / "again") == rows
    assert count(empty_db, Event) == NEW


def _same_time(exported: str, given: str) -> bool:
    import pandas as pd

    return pd.Timestamp(exported) == pd.Timestamp(given)


def test_csv_jsonl_and_parquet_exports_are_identical(databases, tmp_path: Path) -> None:
    """Rows stored from each format export to the same events.csv (users aside: the JSON
    lines give the anonymous user's anonymousId)."""
    from db.settings_store import init_db

    exports = {}
    for fmt in ["csv", "jsonl.gz", "parquet.gz"]:
        url = databases.new()
        init_db(url)
        report = import_files({"accounts.csv": ACCOUNTS, **files_from_uploads([_file(fmt)])}, url=url)
        assert report.ok, [str(p) for p in report.problems]
        exports[fmt] = [
            {**r, "user_id": r["user_id"].replace("anon-1", "")} for r in exported_events(url, tmp_path / fmt)
        ]
    assert exports["jsonl.gz"] == exports["csv"]
    assert exports["parquet.gz"] == exports["csv"]


def test_properties_round_trip_through_export_and_back(empty_db: str, databases, tmp_path: Path) -> None:
    from db.settings_store import init_db

    assert import_files({"accounts.csv": ACCOUNTS, **files_from_uploads([_file("jsonl")])}, url=empty_db).ok
    export_dir(tmp_path / "out", url=empty_db, backup=False)
    with open(tmp_path / "out" / "events.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    props = {(r["account_id"], r["event"]): (json.loads(r["properties"]) if r["properties"] else None) for r in rows}
    assert props == {(a, "'" + e if e.startswith("'") else e): p for a, e, _t, _u, p in EVENTS}
    # ... and that export imports into another database to the same events.
    other = databases.new()
    init_db(other)
    back = import_files(files_from_dir(tmp_path / "out"), url=other)
    assert back.ok and back.files["events.csv"].inserted == NEW
    assert exported_events(other, tmp_path / "two") == exported_events(empty_db, tmp_path / "one")


# ----------------------------------------------------------------------------- Segment specifics


def test_calls_that_are_not_track_calls_are_skipped_and_counted(empty_db: str) -> None:
    others = [
        json.dumps({"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}}),
        json.dumps({"type": "page", "name": "Home", "userId": "u1"}),
        json.dumps({"type": "page", "name": "Pricing", "userId": "u1"}),
        json.dumps({"type": "group", "groupId": "A-1", "userId": "u1"}),
        json.dumps({"type": "screen", "name": "Settings", "userId": "u1"}),
        "",  # a blank line
    ]
    data = events_jsonl(extra_lines=others)
    report = import_files({"accounts.csv": ACCOUNTS, **files_from_uploads([("segment.jsonl", data)])}, url=empty_db)
    assert report.ok, [str(p) for p in report.problems]
    assert report.files["events.csv"].rows == len(EVENTS)
    assert report.files["events.csv"].inserted == NEW
    assert "segment.jsonl (as events.csv): 5 call(s) that are not track calls skipped (page 2, " in report.warnings[0]
    assert {"identify 1", "group 1", "screen 1"} <= set(report.warnings[0].split("(", 2)[2].rstrip(")").split(", "))


def test_a_call_without_type_is_a_track_call(empty_db: str) -> None:
    line = {"event": "login", "timestamp": "2026-01-06T10:00:00Z", "userId": "u1", "context": {"groupId": "A-1"}}
    report = import_files(
        {"accounts.csv": ACCOUNTS, **files_from_uploads([("x.jsonl", (json.dumps(line) + "\n").encode())])},
        url=empty_db,
    )
    assert report.ok and report.files["events.csv"].inserted == 1


def test_the_time_falls_back_as_segment_derives_it(empty_db: str) -> None:
    base = {"type": "track", "event": "e", "userId": "u1", "context": {"groupId": "A-1"}}
    calls = [
        # timestamp wins over everything else
        {**base, "event": "given", "timestamp": "2026-02-01T10:00:00Z", "originalTimestamp": "2020-01-01T00:00:00Z"},
        # receivedAt - (sentAt - originalTimestamp): the device clock was 5 s fast, the trip took 1 s... corrected
        {
            **base,
            "event": "corrected",
            "originalTimestamp": "2026-02-01T10:00:00+01:00",
            "sentAt": "2026-02-01T10:00:10+01:00",
            "receivedAt": "2026-02-01T09:00:04Z",
        },
        {**base, "event": "original", "originalTimestamp": "2026-02-01T11:00:00"},  # no offset: UTC
        {**base, "event": "received", "receivedAt": "2026-02-01T12:00:00Z"},
    ]
    data = ("\n".join(json.dumps(c) for c in calls) + "\n").encode()
    report = import_files({"accounts.csv": ACCOUNTS, **files_from_uploads([("t.jsonl", data)])}, url=empty_db)
    assert report.ok, [str(p) for p in report.problems]
    import pandas as pd

    with get_engine(empty_db).connect() as c:
        got = {e: pd.Timestamp(ts) for e, ts in c.execute(text("SELECT event, ts FROM events"))}
    got = {e: (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")) for e, t in got.items()}
    assert got == {
        "given": pd.Timestamp("2026-02-01T10:00:00Z"),
        "corrected": pd.Timestamp("2026-02-01T08:59:54Z"),
        "original": pd.Timestamp("2026-02-01T11:00:00Z"),
        "received": pd.Timestamp("2026-02-01T12:00:00Z"),
    }


def test_every_bad_line_is_reported_with_file_line_and_field_and_nothing_is_written(empty_db: str) -> None:
    def track(**kw) -> str:
        call = {"type": "track", "event": "login", "timestamp": "2026-01-06T10:00:00Z", "context": {"groupId": "A-1"}}
        call.update(kw)
        return json.dumps({k: v for k, v in call.items() if v is not ...})

    lines = [
        track(),  # 1: good
        "{not json",  # 2
        "[1, 2]",  # 3
        track(event=...),  # 4: no event
        track(timestamp=...),  # 5: no time at all
        track(timestamp="yesterday"),  # 6
        track(context=...),  # 7: no account
        track(context={"groupId": "NOPE"}),  # 8: not an account
        track(properties=["a"]),  # 9
        track(userId=1.5),  # 10
        track(event=" ", timestamp="2026-13-01T00:00:00Z"),  # 11: two problems on one line
        track(type="identify"),  # 12: skipped, not a problem
    ]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    version = _version(empty_db)
    report = import_files({"accounts.csv": ACCOUNTS, **files_from_uploads([("day.jsonl.gz", data)])}, url=empty_db)
    f = "day.jsonl.gz (as events.csv)"
    bad_ts = "bad timestamp: use ISO 8601, e.g. 2025-03-01T14:05:00Z (no offset = UTC)"
    assert _where(report) == [
        (f, 2, "", "not JSON: Expecting property name enclosed in double quotes"),
        (f, 3, "", "not a JSON object (one Segment call a line)"),
        (f, 4, "event", "missing: a track call needs an event name"),
        (f, 5, "timestamp", "missing: a track call needs a timestamp (or originalTimestamp or receivedAt)"),
        (f, 6, "timestamp", bad_ts),
        (
            f,
            7,
            "context.groupId",
            "missing: the account is read from context.groupId; name the property that holds it instead with the "
            "account-property option",
        ),
        (f, 8, "context.groupId", "unknown account: not in accounts.csv or the database"),
        (f, 9, "properties", 'must be a JSON object like {"plan": "pro"}'),
        (f, 10, "userId", "must be text or a whole number"),
        (f, 11, "event", "required value is empty"),
        (f, 11, "timestamp", bad_ts),
    ]
    assert report.problem_count == 11 and report.files["events.csv"].problems == 11
    assert not report.written
    assert count(empty_db, Event) == 0
    assert count(empty_db, ImportRun) == 1  # the rejected import is logged
    with get_engine(empty_db).connect() as c:
        assert c.execute(text("SELECT status FROM import_runs")).scalar() == "rejected"
        assert c.execute(text("SELECT count(*) FROM accounts")).scalar() == 0  # the accounts too: one transaction
    assert _version(empty_db) == version
    assert "1 call(s) that are not track calls skipped (identify 1)" in report.warnings[0]


def test_the_account_from_context_group_id_or_from_a_named_property_on_the_cli(
    empty_db: str, cli, tmp_path: Path
) -> None:
    calls = [
        {
            "type": "track",
            "event": "login",
            "timestamp": f"2026-01-0{i}T10:00:00Z",
            "userId": "u1",
            "properties": {"account_id": a, "plan": "pro"},
        }
        for i, a in [(6, "A-1"), (7, "A-2")]
    ]
    (tmp_path / "accounts.csv").write_bytes(ACCOUNTS)
    (tmp_path / "track.ndjson.gz").write_bytes(gzip.compress(("\n".join(map(json.dumps, calls)) + "\n").encode()))

    res = cli(empty_db, "import", str(tmp_path), "--quiet", "--format", "json")
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert [(p["file"], p["row"], p["column"]) for p in out["problems"]] == [
        ("track.ndjson.gz (as events.csv)", 1, "context.groupId"),
        ("track.ndjson.gz (as events.csv)", 2, "context.groupId"),
    ]
    assert count(empty_db, Event) == 0

    res = cli(empty_db, "import", str(tmp_path), "--quiet", "--account-property", "account_id")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "track.ndjson.gz (as events.csv)" in res.stdout
    with get_engine(empty_db).connect() as c:
        got = c.execute(
            text("SELECT a.external_id, e.properties FROM events e JOIN accounts a ON a.id = e.account_id ORDER BY 1")
        ).all()
    assert [(a, json.loads(p)) for a, p in got] == [
        ("A-1", {"account_id": "A-1", "plan": "pro"}),
        ("A-2", {"account_id": "A-2", "plan": "pro"}),
    ]

    # A property that the calls lack is named in the problem.
    (tmp_path / "more.jsonl").write_bytes(events_jsonl(EVENTS[:1]))
    res = cli(empty_db, "import", str(tmp_path / "more.jsonl"), "--account-property", "acct", "--quiet")
    assert res.returncode == 1
    assert "more.jsonl (as events.csv) row 1, column properties.acct: missing: the account is read from the " in (
        res.stdout
    )


def test_files_given_one_by_one_and_several_event_files_in_one_import(empty_db: str, cli, tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_bytes(ACCOUNTS)
    (tmp_path / "part-1.jsonl").write_bytes(events_jsonl(EVENTS[:3]))
    (tmp_path / "part-2.parquet").write_bytes(events_parquet(EVENTS[3:]))
    bad = events_jsonl(
        EVENTS[:1], extra_lines=[json.dumps(segment_call("A-9", "x", "2026-01-01T00:00:00Z", "u", None))]
    )
    (tmp_path / "part-3.jsonl").write_bytes(bad)
    paths = [str(tmp_path / n) for n in ["accounts.csv", "part-1.jsonl", "part-2.parquet", "part-3.jsonl"]]
    res = cli(empty_db, "import", *paths, "--quiet", "--format", "json")
    assert res.returncode == 1
    out = json.loads(res.stdout)
    # Each problem names its own file.
    assert [(p["file"], p["row"], p["column"]) for p in out["problems"]] == [
        ("part-3.jsonl (as events.csv)", 2, "context.groupId")
    ]
    res = cli(empty_db, "import", *paths[:3], "--quiet", "--format", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert out["files"]["events.csv"]["file"] == "part-1.jsonl, part-2.parquet (as events.csv)"
    assert (out["files"]["events.csv"]["inserted"], out["files"]["events.csv"]["duplicates_skipped"]) == (NEW, 1)

    res = cli(empty_db, "import", str(tmp_path / "notes.txt"))
    assert res.returncode == 1 and res.stderr.strip() == f"error: {tmp_path / 'notes.txt'} is not a directory"
    (tmp_path / "notes.txt").write_text("x")
    res = cli(empty_db, "import", str(tmp_path / "notes.txt"))
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"error: {tmp_path / 'notes.txt'} is neither a .csv file nor an event file (.jsonl, .ndjson, .parquet, "
        "optionally .gz)"
    )


def test_a_zip_of_event_files_is_read_like_its_csv_files(empty_db: str) -> None:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("export/accounts.csv", ACCOUNTS)
        zf.writestr("export/events.parquet", events_parquet())
    report = import_files(files_from_uploads([("data.zip", buf.getvalue())]), url=empty_db)
    assert report.ok, [str(p) for p in report.problems]
    assert report.files["events.csv"].inserted == NEW


# ----------------------------------------------------------------------------- Parquet specifics


def test_parquet_timestamps_with_a_zone_are_converted_to_utc_and_without_one_are_utc(
    empty_db: str, tmp_path: Path
) -> None:
    assert import_files({"accounts.csv": ACCOUNTS}, url=empty_db).ok
    utc = None
    for i, tz in enumerate(["UTC", "America/New_York", None]):
        report = import_files(files_from_uploads([("e.parquet", events_parquet(tz=tz))]), url=empty_db)
        assert report.ok, [str(p) for p in report.problems]
        # The same instants: the first import inserts them, the others find them all present.
        assert report.files["events.csv"].inserted == (NEW if i == 0 else 0), tz
        rows = exported_events(empty_db, tmp_path / str(i))
        utc = utc or rows
        assert rows == utc


def test_parquet_with_a_missing_or_mistyped_column_is_told_which(empty_db: str) -> None:
    t = pa.table(
        {
            "Account_ID": ["A-1"],
            "timestamp": pa.array([True]),
            "user_id": pa.array([1.5]),
            "properties": pa.array([{"a": 1}]),
            "colour": ["red"],
        }
    )
    buf = io.BytesIO()
    pq.write_table(t, buf)
    report = import_files(
        {"accounts.csv": ACCOUNTS, **files_from_uploads([("x.parquet", buf.getvalue())])}, url=empty_db
    )
    f = "x.parquet (as events.csv)"
    assert _where(report) == [
        (
            f,
            0,
            "event",
            "missing required column (the file's columns: Account_ID, timestamp, user_id, properties, colour)",
        ),
        (f, 0, "timestamp", "the column's type is bool; expected a timestamp, a date or ISO 8601 text"),
        (f, 0, "user_id", "the column's type is double; expected text or a whole number"),
        (f, 0, "properties", "the column's type is struct<a: int64>; expected JSON text"),
    ]
    assert report.warnings == [f"{f}: ignored unknown column(s) colour"]
    assert count(empty_db, Event) == 0
    with get_engine(empty_db).connect() as c:
        assert c.execute(text("SELECT count(*) FROM accounts")).scalar() == 0

    report = import_files(files_from_uploads([("y.parquet", b"PAR1 not really")]), url=empty_db, dry_run=True)
    assert [(p.file, p.row) for p in report.problems] == [("y.parquet (as events.csv)", 0)]
    assert report.problems[0].reason.startswith("not a readable Parquet file (")


def test_parquet_values_go_through_the_csv_validation(empty_db: str) -> None:
    """Whole-number ids are text, dates are midnight, ISO text is parsed as in a CSV; an empty
    required value, a bad time, a bad JSON or an unknown account is reported by record."""
    assert import_files({"accounts.csv": ACCOUNTS}, url=empty_db).ok
    good = pa.table(
        {
            "account_id": ["A-1", "A-1"],
            "event": ["e1", "e2"],
            "timestamp": pa.array([20_000, 20_001], pa.date32()),
            "user_id": pa.array([7, None], pa.int64()),
        }
    )
    bad = pa.table(
        {
            "account_id": ["A-1", "A-9", "A-1", None],
            "event": ["ok", "e", "e", "e"],
            "timestamp": ["2026-01-06T10:00:00+02:00", "2026-01-06", "soon", "2026-01-06"],
            "properties": ['{"a": 1}', None, "[1]", None],
        }
    )
    for data, name in [(good, "good.parquet"), (bad, "bad.parquet")]:
        buf = io.BytesIO()
        pq.write_table(data, buf)
        report = import_files(files_from_uploads([(name, buf.getvalue())]), url=empty_db)
        if name == "good.parquet":
            assert report.ok, [str(p) for p in report.problems]
            with get_engine(empty_db).connect() as c:
                assert sorted(c.execute(text("SELECT event, user_id FROM events")).all()) == [("e1", "7"), ("e2", "")]
    f = "bad.parquet (as events.csv)"
    assert _where(report) == [
        (f, 2, "account_id", "unknown account: not in accounts.csv or the database"),
        (f, 3, "timestamp", "bad timestamp: use ISO 8601, e.g. 2025-03-01T14:05:00Z (no offset = UTC)"),
        (f, 3, "properties", 'malformed properties: must be a JSON object like {"plan": "pro"}'),
        (f, 4, "account_id", "required value is empty"),
    ]
    assert count(empty_db, Event) == 2


def test_parquet_is_read_in_batches_never_whole() -> None:
    """A file of 1,000 events in row groups of 300 read in batches of at most 128 rows, with
    record numbers that run on across them."""
    n = 1000
    events = [("A-1", f"e{i}", "2026-01-06T10:00:00Z", "u", None) for i in range(n)]
    data = events_parquet(events, row_group_size=300)
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 4
    report = ImportReport(dry_run=True)
    seen: list[int] = []
    chunks = list(
        eventfiles._parquet_chunks(
            "events.csv", data, report, chunk_rows=128, on_bytes=seen.append, gz=False, label="e.parquet"
        )
    )
    assert max(len(c) for c in chunks) <= 128
    assert [int(r) for c in chunks for r in c.rows] == list(range(1, n + 1))
    assert [v for c in chunks for v in c.table.column("event").to_pylist()] == [f"e{i}" for i in range(n)]
    assert seen[-1] == len(data) and seen == sorted(seen)


# ----------------------------------------------------------------------------- bounds


def test_a_gzip_that_decompresses_past_the_limit_is_refused_and_writes_nothing(
    empty_db: str, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 1024 * 1024)
    line = json.dumps(segment_call("A-1", "login", "2026-01-06T10:00:00Z", "u1", {"pad": "x" * 200})) + "\n"
    big = gzip.compress(line.encode() * 20_000, compresslevel=9)  # 5 MB of lines in about 20 KB
    assert len(big) < 100_000
    for name, data in [("big.jsonl.gz", big), ("big.parquet.gz", gzip.compress(b"\0" * (3 * 1024 * 1024)))]:
        report = import_files({"accounts.csv": ACCOUNTS, **files_from_uploads([(name, data)])}, url=empty_db)
        assert [(p.file, p.column, p.reason) for p in report.problems] == [
            (
                f"{name} (as events.csv)",
                "",
                "the file decompresses to more than 1.0 MB, the most accepted per file; reading of this file stopped here",
            )
        ], name
        assert count(empty_db, Event) == 0
    # From disk, files of any size are read (as CSV files are), within the line limit.
    (tmp_path / "big.jsonl.gz").write_bytes(big)
    report = import_files(
        {
            "accounts.csv": ACCOUNTS,
            "events.csv": eventfiles.files_from_paths([tmp_path / "big.jsonl.gz"])["events.csv"],
        },
        url=empty_db,
    )
    assert report.ok and report.files["events.csv"].inserted == 1
    assert report.files["events.csv"].duplicates_skipped == 20_000 - 1


def test_a_damaged_gzip_is_a_clear_problem(empty_db: str) -> None:
    data = gzip.compress(events_jsonl())
    for name, payload, says in [
        ("cut.jsonl.gz", data[: len(data) // 2], "the gzip stream is damaged or not gzip ("),
        ("plain.jsonl.gz", events_jsonl(), "the gzip stream is damaged or not gzip ("),
    ]:
        report = import_files(
            {"accounts.csv": ACCOUNTS, **files_from_uploads([(name, payload)])}, url=empty_db, dry_run=True
        )
        assert not report.ok
        assert report.problems[-1].file == f"{name} (as events.csv)"
        assert report.problems[-1].reason.startswith(says), report.problems[-1].reason
        assert report.problems[-1].reason.endswith("reading of this file stopped here")


BOMB_CHILD = """
import resource, sys
from db.importer import files_from_uploads, import_files
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = import_files(files_from_uploads([("bomb.jsonl.gz", data)]), dry_run=True)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, [p.reason.split(":")[0] for p in report.problems])
"""


def test_validating_a_jsonl_gzip_bomb_keeps_memory_bounded(empty_db: str, tmp_path: Path) -> None:
    """400 MB of one line in a gzip of about 400 KB, validated in a real process with the
    default limits: refused at the line limit, its peak memory grows by a few MB."""
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        block = b"x" * (4 * 1024 * 1024)
        for _ in range(100):
            f.write(block)
    assert path.stat().st_size < 1024 * 1024
    env = {**os.environ, "DATABASE_URL": empty_db, "PYTHONPATH": str(ROOT)}
    for k in [k for k in env if k.startswith("IMPORT_")]:
        del env[k]
    res = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, str(path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert res.returncode == 0, res.stderr
    grown_mb, reasons = res.stdout.split(" ", 1)
    assert reasons.strip() == "['line too long']"
    assert int(grown_mb) < 60, f"peak RSS grew by {grown_mb} MB while validating the bomb"


def test_a_damaged_zip_entry_of_json_lines_is_a_clear_problem(empty_db: str) -> None:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("track.jsonl", events_jsonl())
    data = bytearray(buf.getvalue())
    at = data.index(b'"event": "login"') + 11
    data[at] = ord("X")  # a byte changed after the CRC was computed
    report = import_files(
        {"accounts.csv": ACCOUNTS, **files_from_uploads([("x.zip", bytes(data))])}, url=empty_db, dry_run=True
    )
    assert [(p.file, p.reason.split(" (")[0]) for p in report.problems] == [
        ("track.jsonl (as events.csv)", "the zip entry is damaged")
    ]
