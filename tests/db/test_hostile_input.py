"""Property-based tests: the importer either imports hostile CSV faithfully (what comes back
from the database and through export equals what went in) or rejects it with problems
naming row and column. It never raises.

An oracle below states the contract's rules for the generated cells independently of the
importer: trim identifiers but keep free text as written, drop one leading apostrophe (the
export's escape), required values, column lengths,
enums case-insensitively, YYYY-MM-DD dates, ISO 8601 timestamps, numbers, JSON objects.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from db.csvsafe import FORMULA_PREFIXES
from db.exporter import export_dir
from db.importer import import_files
from db.models import SEGMENTS, Account, Event
from db.session import get_engine

SETTINGS = settings(
    # HOSTILE_EXAMPLES=2000 for a longer search.
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "50")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
CSV_FIELD_LIMIT = 131_072  # the csv module's default field size limit
HUGE = CSV_FIELD_LIMIT + 1
IDS = itertools.count(1)

# ----------------------------------------------------------------------------- hostile cells

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    '<script>alert("x")</script>',
    "&lt;b&gt;",
    '=HYPERLINK("http://evil.example","click")',
    "=cmd|' /C calc'!A0",
    "+1",
    "-1",
    "@SUM(A1:A9)",
    "\t=1",
    "\r=1",
    "'=1",
    "'+",
    "'",
    "''",
    '"',
    '""',
    'say "hi"',
    ",",
    "a,b",
    "\n",
    "\r\n",
    "\r",
    "line1\nline2",
    "line1\r\nline2",
    "\x00",
    "a\x00b",
    "\x1b[31mred\x1b[0m",
    "\x07\x08\x0b\x0c",
    "\u202egnp.exe",
    "\ufeffbom",
    "  padded  ",
    "\u00a0nbsp\u00a0",
    "%s%n%x",
    "${jndi:ldap://x/a}",
    "Robert'); DROP TABLE accounts;--",
    "İstanbul ǅ ß",
    "😀 emoji",
    "null",
    "None",
]
PREFIXED = st.builds(lambda p, s: p + s, st.sampled_from([*FORMULA_PREFIXES, "'", " '"]), st.text(max_size=8))
LONG = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["x", "é", '"', ",", "\n", "<"]),
    st.sampled_from([99, 100, 101, 199, 200, 201, 299, 300, 301, HUGE]),
)
HOSTILE_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(HOSTILE), PREFIXED, LONG)
SEGMENT_CELLS = [*SEGMENTS, "smb", "MID-MARKET", " enterprise ", "strategic\t", "", "Tiny", "S M B"]
DATE_CELLS = ["2026-01-05", " 2026-03-31 ", "2024-02-29", "2025-02-30", "", "2026-1-5", "9999-12-31", "05/01/2026"]
DATE_CELLS += ["2026-01-05T00:00:00", "２０２６-０１-０５"]
# cell -> stored value, or BAD
BAD = object()
ARR_CELLS = {"": None, "0": 0.0, "12000": 12000.0, " 7 ": 7.0, "1e3": 1000.0, "1e20": 1e20, "2500.5": 2500.5}
ARR_CELLS |= {"-1": BAD, "inf": BAD, "-inf": BAD, "NaN": BAD, "abc": BAD, "1,000": BAD, "1e400": BAD}
SEAT_CELLS = {"": None, "0": 0, "10": 10, "5.0": 5, "1e3": 1000, "2147483647": 2147483647}
SEAT_CELLS |= {"-3": BAD, "2.5": BAD, "2147483648": BAD, "99999999999999999999": BAD, "ten": BAD, "inf": BAD}
TS_CELLS = {
    "2026-01-06T09:00:00Z": datetime(2026, 1, 6, 9, tzinfo=UTC),
    "2026-01-06T09:00:00": datetime(2026, 1, 6, 9, tzinfo=UTC),
    "2026-01-06 09:00:00+02:00": datetime(2026, 1, 6, 7, tzinfo=UTC),
    "2026-01-06T09:00:00-05:30": datetime(2026, 1, 6, 14, 30, tzinfo=UTC),
    "2026-01-06": datetime(2026, 1, 6, tzinfo=UTC),
    "2026-01-06T09:00:00.123456Z": datetime(2026, 1, 6, 9, 0, 0, 123456, tzinfo=UTC),
    "2026-01-06T09:00:00.1234567Z": datetime(2026, 1, 6, 9, 0, 0, 123456, tzinfo=UTC),
    " 2026-01-06T09:00:00Z ": datetime(2026, 1, 6, 9, tzinfo=UTC),
    "yesterday": BAD,
    "": BAD,
    "2026-02-30T00:00:00Z": BAD,
    "2026-01-06T25:00:00Z": BAD,
    "9999-01-01T00:00:00Z": BAD,
}
ENCODINGS = ["utf-8"] * 5 + ["utf-8-sig"] * 2 + ["latin-1", "cp1252", "utf-16"]
ENDINGS = ["\n", "\r\n", "\r"]


def expect_text(cell: str, *, required: bool, max_len: int, free: bool = False) -> object:
    """What a text cell is stored as (None if empty), or BAD. Free text keeps its spaces."""
    v = cell if free else cell.strip()
    if v.startswith("'"):
        v = v[1:] if free else v[1:].strip()
    if v.strip() == "" and (required or not free or v == ""):
        return BAD if required else None
    if "\x00" in v or len(v) > max_len:
        return BAD
    return v


def expect_segment(cell: str) -> object:
    canonical = {s.lower(): s for s in SEGMENTS}
    return canonical.get(cell.strip().lower(), BAD)


def expect_date(cell: str) -> object:
    v = cell.strip()
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", v):
        return BAD
    try:
        d = date.fromisoformat(v)
    except ValueError:
        return BAD
    return d if 1678 <= d.year <= 2261 else BAD


def expect_properties(cell: str) -> object:
    v = cell[1:] if cell.startswith("'") else cell
    if v.strip() == "":
        return None
    try:
        obj = json.loads(v)
    except ValueError:
        return BAD
    return v if isinstance(obj, dict) else BAD


def mostly(good: st.SearchStrategy, anything: st.SearchStrategy, weight: int = 3) -> st.SearchStrategy:
    """Valid cells `weight` times as often as any cell, so that whole files are often valid."""
    return st.one_of(*[good] * weight, anything)


def table_cells(table: dict) -> st.SearchStrategy:
    return mostly(st.sampled_from([k for k, v in table.items() if v is not BAD]), st.sampled_from(sorted(table)))


def text_cells(*, required: bool, max_len: int, free: bool = False) -> st.SearchStrategy:
    valid = st.one_of(
        st.text(min_size=1, max_size=30),
        st.sampled_from(HOSTILE),
        PREFIXED,
        st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", '"', ",", "<"]), st.integers(1, max_len - 10)),
    ).filter(lambda v: expect_text(v, required=required, max_len=max_len, free=free) is not BAD)
    return mostly(valid, HOSTILE_TEXT)


# ----------------------------------------------------------------------------- rendering files


@dataclass
class Rendered:
    data: bytes
    text: str
    start_lines: list[int]  # line number of each data row (header = 1)
    exact: bool  # the bytes are the text in UTF-8 (with or without BOM)


def render(header: list[str], rows: list[list[str]], endings: list[str], encoding: str, quote_all: bool) -> Rendered:
    """CSV with the given line ending per row; fields holding CR or LF are always quoted."""
    quoting = csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    lines, starts, line = [], [], 2
    for i, cells in enumerate([header, *rows]):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n", quoting=quoting).writerow(cells)
        body = buf.getvalue()[:-2]
        lines.append(body + (endings[i % len(endings)] if i else "\n"))
        if i:
            starts.append(line)
            line += len(re.findall(r"\r\n|\r|\n", lines[-1]))
    text = "".join(lines)
    data = text.encode(encoding, errors="replace")
    exact = data in (text.encode("utf-8"), text.encode("utf-8-sig"))
    return Rendered(data, text, starts, exact)


def utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return True


def check_rejection_is_reported(report, name: str) -> None:
    assert not report.ok
    assert report.problems
    for p in report.problems:
        assert p.file == name
        assert isinstance(p.row, int) and p.row >= 0
        assert p.reason
        assert str(p).startswith(f"{name} row {p.row}")


# ----------------------------------------------------------------------------- random bytes


HEADERS = {
    "accounts.csv": b"account_id,name,segment,contract_start,arr,licensed_seats\n",
    "events.csv": b"account_id,event,timestamp,user_id,properties\n",
}


@SETTINGS
@given(
    name=st.sampled_from(sorted(HEADERS)),
    with_header=st.booleans(),
    body=st.one_of(
        st.binary(max_size=400),
        st.text(alphabet=st.sampled_from(list(",\"'\r\n\x00=+-@\t ab1-:T{}[]é")), max_size=200).map(str.encode),
    ),
    dry_run=st.booleans(),
)
@example(name="accounts.csv", with_header=True, body=b"A,B,SMB,2026-01-01,1,1\n\xff\xfe\x00", dry_run=False)
@example(name="events.csv", with_header=False, body="\ufeffaccount_id\n".encode("utf-16"), dry_run=False)
@example(name="events.csv", with_header=True, body=b'"unterminated,x,2026-01-01,,\n', dry_run=False)
@example(name="accounts.csv", with_header=True, body=b"A," + b"x" * HUGE + b",SMB,2026-01-01,,\n", dry_run=False)
def test_random_bytes_never_raise(empty_db: str, name: str, with_header: bool, body: bytes, dry_run: bool) -> None:
    data = (HEADERS[name] if with_header else b"") + body
    before = _count(empty_db)
    report = import_files({name: data}, url=empty_db, dry_run=dry_run)
    event("bytes: ok" if report.ok else "bytes: rejected")
    if report.ok:
        # Valid by chance (e.g. a header and blank lines): only possible for UTF-8 text.
        assert utf8(data)
    else:
        check_rejection_is_reported(report, name)
    if not utf8(data):
        assert not report.ok
        if with_header:  # (after a bad header, the importer reads no further)
            assert any("not UTF-8" in p.reason for p in report.problems)
    if dry_run or not report.ok:
        assert _count(empty_db) == before


def _count(url: str) -> dict[str, int]:
    with get_engine(url).connect() as c:
        return {
            "accounts": c.execute(select(func.count()).select_from(Account)).scalar_one(),
            "events": c.execute(select(func.count()).select_from(Event)).scalar_one(),
        }


# ----------------------------------------------------------------------------- accounts.csv

ACC_HEADER = ["account_id", "name", "segment", "contract_start", "industry", "arr", "licensed_seats"]
ACC_ROW = st.fixed_dictionaries(
    {
        "id": st.one_of(st.just("ACC"), text_cells(required=False, max_len=90)),  # "#<n>" is appended
        "name": text_cells(required=True, max_len=300, free=True),
        "segment": mostly(
            st.sampled_from([c for c in SEGMENT_CELLS if expect_segment(c) is not BAD]), st.sampled_from(SEGMENT_CELLS)
        ),
        "contract_start": mostly(
            st.sampled_from([c for c in DATE_CELLS if expect_date(c) is not BAD]), st.sampled_from(DATE_CELLS)
        ),
        "industry": text_cells(required=False, max_len=100, free=True),
        "arr": table_cells(ARR_CELLS),
        "licensed_seats": table_cells(SEAT_CELLS),
    }
)
GOOD_ROW = {
    "id": "ACC",
    "segment": "SMB",
    "contract_start": "2026-01-05",
    "industry": "",
    "arr": "",
    "licensed_seats": "",
}


@dataclass
class FileCase:
    rows: list[dict]
    endings: list[str]
    encoding: str
    quote_all: bool


ACC_CASES = st.builds(
    FileCase,
    rows=st.lists(ACC_ROW, min_size=1, max_size=2),
    endings=st.lists(st.sampled_from(ENDINGS), min_size=1, max_size=3),
    encoding=st.sampled_from(ENCODINGS),
    quote_all=st.booleans(),
)


def _acc_example(**row) -> FileCase:
    return FileCase([{**GOOD_ROW, **row}], ["\n"], "utf-8", False)


@SETTINGS
@given(case=ACC_CASES)
@example(case=_acc_example(name="<img src=x onerror=alert(1)>", industry="<b>bold</b>"))
@example(case=_acc_example(name='=HYPERLINK("x")', industry="'@SUM(A1)"))
@example(case=_acc_example(name="x" * HUGE))
@example(case=_acc_example(name="a\x00b"))
@example(case=_acc_example(name="\x01\x02\x1f control"))
@example(case=FileCase([{**GOOD_ROW, "name": "Café"}], ["\n"], "latin-1", False))
@example(case=FileCase([{**GOOD_ROW, "name": "Café"}], ["\n"], "utf-16", False))
@example(
    case=FileCase([{**GOOD_ROW, "name": "a\rb"}, {**GOOD_ROW, "name": "c\nd"}], ["\r", "\n", "\r\n"], "utf-8", False)
)
def test_hostile_accounts_import_faithfully_or_are_rejected(empty_db: str, tmp_path_factory, case: FileCase) -> None:
    ids = [f"{r['id']}#{next(IDS)}" for r in case.rows]
    cells = [
        [i, r["name"], r["segment"], r["contract_start"], r["industry"], r["arr"], r["licensed_seats"]]
        for i, r in zip(ids, case.rows)
    ]
    f = render(ACC_HEADER, cells, case.endings, case.encoding, case.quote_all)

    before = _count(empty_db)
    report = import_files({"accounts.csv": f.data}, url=empty_db)

    if not utf8(f.data):
        event("accounts: not UTF-8")
        check_rejection_is_reported(report, "accounts.csv")
        assert [p.reason for p in report.problems if "not UTF-8" in p.reason], report.problems
        assert _count(empty_db) == before
        return
    if not f.exact:
        # Other bytes that happen to be UTF-8: any outcome but an exception is acceptable.
        event("accounts: re-encoded")
        assert report.ok or report.problems
        return

    huge = any(len(c) > CSV_FIELD_LIMIT for row in cells for c in row)
    expected = [
        {
            "account_id": expect_text(row[0], required=True, max_len=100),
            "name": expect_text(row[1], required=True, max_len=300, free=True),
            "segment": expect_segment(row[2]),
            "contract_start": expect_date(row[3]),
            "industry": expect_text(row[4], required=False, max_len=100, free=True),
            "arr": ARR_CELLS[row[5]],
            "licensed_seats": SEAT_CELLS[row[6]],
        }
        for row in cells
    ]
    bad = {(line, col) for line, exp in zip(f.start_lines, expected) for col, v in exp.items() if v is BAD}

    if huge:
        event("accounts: huge field")
        check_rejection_is_reported(report, "accounts.csv")
        assert any("field larger than field limit" in p.reason for p in report.problems)
        assert _count(empty_db) == before
        return
    got = {(p.row, p.column) for p in report.problems}
    assert got == bad, [str(p) for p in report.problems]
    if bad:
        event("accounts: rejected")
        check_rejection_is_reported(report, "accounts.csv")
        assert _count(empty_db) == before
        return

    # Imported: the database holds exactly what the contract says went in.
    event("accounts: imported")
    assert report.files["accounts.csv"].inserted == len(cells)
    stored = _stored_accounts(empty_db, [e["account_id"] for e in expected])
    assert stored == {e["account_id"]: e for e in expected}

    # And export -> import gives the same values back (nothing updated, nothing new).
    out = tmp_path_factory.mktemp("export")
    export_dir(out, url=empty_db)
    again = import_files({"accounts.csv": (out / "accounts.csv").read_bytes()}, url=empty_db)
    assert again.ok, [str(p) for p in again.problems]
    a = again.files["accounts.csv"]
    assert (a.inserted, a.updated) == (0, 0)
    assert _stored_accounts(empty_db, list(stored)) == stored


def _stored_accounts(url: str, ids: list) -> dict:
    ids = [i for i in ids if isinstance(i, str)]
    t = Account.__table__
    q = select(t.c.external_id, t.c.name, t.c.segment, t.c.contract_start, t.c.industry, t.c.arr, t.c.licensed_seats)
    with get_engine(url).connect() as c:
        found = c.execute(q.where(t.c.external_id.in_(ids))).mappings().all()
    return {
        r["external_id"]: {"account_id": r["external_id"], **{k: v for k, v in r.items() if k != "external_id"}}
        for r in found
    }


# ----------------------------------------------------------------------------- events.csv

EV_HEADER = ["account_id", "event", "timestamp", "user_id", "properties"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=10) | st.sampled_from(HOSTILE),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def json_objects(leads: list[str]) -> st.SearchStrategy:
    return st.builds(
        lambda lead, d, ascii_: lead + json.dumps(d, ensure_ascii=ascii_),
        st.sampled_from(leads),
        st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4),
        st.booleans(),
    )


VALID_PROPERTIES = st.one_of(
    st.sampled_from(["", " ", "{}", '{"a": NaN}']), json_objects(["", " ", "\t", "'\t", " \n"])
)
PROPERTIES = st.one_of(
    json_objects(["'", " '", "'\t", "\x00"]),
    st.sampled_from(["[1, 2]", '"text"', "42", "{oops", "{'single': 1}", '{"a": 1', "null"]),
    HOSTILE_TEXT,
)
EV_ROW = st.fixed_dictionaries(
    {
        "known": st.sampled_from([True] * 11 + [False]),  # mostly the example's own account
        "event": st.one_of(st.sampled_from(["login", "report_shared"]), text_cells(required=True, max_len=200)),
        "timestamp": table_cells(TS_CELLS),
        "user_id": st.one_of(st.sampled_from(["", "u1", "u2"]), text_cells(required=False, max_len=200)),
        "properties": mostly(VALID_PROPERTIES, PROPERTIES, weight=8),
    }
)
EV_CASES = st.builds(
    FileCase,
    rows=st.lists(EV_ROW, min_size=1, max_size=3),
    endings=st.lists(st.sampled_from(ENDINGS), min_size=1, max_size=3),
    encoding=st.sampled_from(ENCODINGS),
    quote_all=st.booleans(),
)
GOOD_EVENT = {"known": True, "event": "login", "timestamp": "2026-01-06T09:00:00Z", "user_id": "u1", "properties": ""}


def _ev_example(*rows: dict, encoding: str = "utf-8") -> FileCase:
    return FileCase([{**GOOD_EVENT, **r} for r in rows], ["\n", "\r\n"], encoding, False)


@SETTINGS
@given(case=EV_CASES)
@example(case=_ev_example({"event": "<img src=x onerror=alert(1)>", "properties": '{"html": "<script>x</script>"}'}))
@example(case=_ev_example({"properties": '\t{"a": "=1"}'}, {"properties": "{}", "user_id": "=u2"}))
@example(case=_ev_example({}, {"properties": '{"dup": true}'}))  # the same natural key twice
@example(case=_ev_example({"properties": '{"big": "' + "x" * HUGE + '"}'}))
@example(case=_ev_example({"event": "log\x00in"}, {"properties": '{"a": "\x00"}'}))
@example(case=_ev_example({"event": "événement"}, encoding="latin-1"))
@example(case=_ev_example({"known": False}))
def test_hostile_events_import_faithfully_or_are_rejected(empty_db: str, tmp_path_factory, case: FileCase) -> None:
    n = next(IDS)
    account = f"EV#{n}"
    accounts = f"account_id,name,segment,contract_start\n{account},Events {n},SMB,2026-01-05\n".encode()
    cells = [
        [account if r["known"] else f"NOPE#{n}", r["event"], r["timestamp"], r["user_id"], r["properties"]]
        for r in case.rows
    ]
    f = render(EV_HEADER, cells, case.endings, case.encoding, case.quote_all)

    report = import_files({"accounts.csv": accounts, "events.csv": f.data}, url=empty_db)

    if not utf8(f.data):
        event("events: not UTF-8")
        assert not report.ok
        assert any(p.file == "events.csv" and "not UTF-8" in p.reason for p in report.problems)
        assert _stored_events(empty_db, account) is None
        return
    if not f.exact:
        event("events: re-encoded")
        assert report.ok or report.problems
        return

    expected = [
        {
            "account_id": None if row[0] == account else BAD,
            "event": expect_text(row[1], required=True, max_len=200),
            "timestamp": TS_CELLS[row[2]],
            "user_id": expect_text(row[3], required=False, max_len=200),
            "properties": expect_properties(row[4]),
        }
        for row in cells
    ]
    huge = any(len(c) > CSV_FIELD_LIMIT for row in cells for c in row)
    if huge:
        event("events: huge field")
        assert not report.ok
        assert any("field larger than field limit" in p.reason for p in report.problems)
        assert _stored_events(empty_db, account) is None
        return
    bad = {(line, col) for line, exp in zip(f.start_lines, expected) for col, v in exp.items() if v is BAD}
    got = {(p.row, p.column) for p in report.problems}
    assert all(p.file == "events.csv" for p in report.problems)
    assert got == bad, [str(p) for p in report.problems]
    if bad:
        event("events: rejected")
        assert _stored_events(empty_db, account) is None
        return

    # Imported: one event per natural key (account, event, timestamp, user_id).
    event("events: imported")
    keys: dict[tuple, list] = {}
    for e in expected:
        keys.setdefault((e["event"], e["timestamp"], e["user_id"] or ""), []).append(e["properties"])
    ev_report = report.files["events.csv"]
    assert (ev_report.inserted, ev_report.duplicates_skipped) == (len(keys), len(cells) - len(keys))
    stored = _stored_events(empty_db, account)
    assert set(stored) == set(keys)
    for key, props in keys.items():
        if len(props) == 1:
            assert stored[key] == props[0]
        else:  # the first of the duplicates is kept
            assert stored[key] in props

    # Export -> import: every exported event is recognised as already there.
    out = tmp_path_factory.mktemp("export")
    export_dir(out, url=empty_db)
    before = _count(empty_db)
    again = import_files({"events.csv": (out / "events.csv").read_bytes()}, url=empty_db)
    assert again.ok, [str(p) for p in again.problems]
    a = again.files["events.csv"]
    assert (a.rows, a.inserted, a.duplicates_skipped) == (before["events"], 0, before["events"])
    assert _count(empty_db) == before
    assert _stored_events(empty_db, account) == stored


def _stored_events(url: str, account: str) -> dict | None:
    """(event, ts, user_id) -> properties for one account; None if the account does not exist."""
    a, e = Account.__table__, Event.__table__
    with get_engine(url).connect() as c:
        pk = c.execute(select(a.c.id).where(a.c.external_id == account)).scalar()
        if pk is None:
            return None
        found = c.execute(select(e.c.event, e.c.ts, e.c.user_id, e.c.properties).where(e.c.account_id == pk)).all()
    return {(ev, _utc(ts), user): props for ev, ts, user, props in found}


def _utc(ts) -> datetime:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def test_hostile_files_leave_no_trace(empty_db: str) -> None:
    """A fixed sample of the worst cases: each rejected for the right reason, nothing written."""
    cases = {
        "latin-1": "account_id,name,segment,contract_start\nL-1,Café,SMB,2026-01-05\n".encode("latin-1"),
        "utf-16": "account_id,name,segment,contract_start\nU-1,Name,SMB,2026-01-05\n".encode("utf-16"),
        "huge": b"account_id,name,segment,contract_start\nH-1," + b"x" * HUGE + b",SMB,2026-01-05\n",
        "nul": b"account_id,name,segment,contract_start\nN-1,a\x00b,SMB,2026-01-05\n",
        "stray-quote": b'account_id,name,segment,contract_start\nQ-1,"abc,SMB,2026-01-05\nQ-2,ok,SMB,2026-01-05\n',
    }
    reasons = {}
    for label, data in cases.items():
        report = import_files({"accounts.csv": data}, url=empty_db)
        check_rejection_is_reported(report, "accounts.csv")
        reasons[label] = [(p.row, p.column, p.reason.split(":")[0].split(" (")[0]) for p in report.problems]
    assert reasons == {
        "latin-1": [(1, "", "the file is not UTF-8 text")],
        "utf-16": [(1, "", "the file is not UTF-8 text")],
        "huge": [(2, "", "unreadable CSV")],
        "nul": [(2, "name", "contains a NUL character")],
        "stray-quote": [(2, "", "has 2 fields but the header has 4")],
    }
    with get_engine(empty_db).connect() as c:
        assert c.execute(select(Account.id)).all() == []
