"""Export -> import -> export round-trips byte for byte; spreadsheet formulas are neutralised
on export and restored on import, free text keeps its spaces and apostrophes, and re-importing
a database's own export changes nothing (PRODUCT.md §3, §7). These tests are about the six
contract files (`backup=False`); the backup beside them is tested in test_backup.py."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from db.exporter import export_dir, export_zip
from db.importer import SPECS, files_from_uploads, import_dir, import_files
from db.session import get_engine
from db.settings_store import init_db


def read_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def parse(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def rows(url: str, sql: str) -> list[tuple]:
    with get_engine(url).connect() as c:
        return [tuple(r) for r in c.execute(text(sql))]


def test_demo_export_import_export_is_byte_identical(small_db: str, unmigrated_db: str, tmp_path: Path) -> None:
    exported = export_dir(tmp_path / "one", url=small_db, backup=False)
    assert set(exported) == set(SPECS)
    assert exported["accounts.csv"] == 30
    assert all(n > 0 for n in exported.values()), exported

    init_db(unmigrated_db)
    report = import_dir(tmp_path / "one", url=unmigrated_db)
    assert report.ok, [str(p) for p in report.problems[:5]]
    assert {n: f.inserted for n, f in report.files.items()} == exported
    assert report.duplicates_skipped == 0

    assert export_dir(tmp_path / "two", url=unmigrated_db, backup=False) == exported
    one, two = read_files(tmp_path / "one"), read_files(tmp_path / "two")
    assert sorted(one) == sorted(SPECS)
    for name in one:
        assert one[name] == two[name], f"{name} differs after export -> import -> export"

    # Importing the export again into the copy changes nothing.
    again = import_dir(tmp_path / "one", url=unmigrated_db)
    assert again.ok
    assert sum(f.inserted + f.updated for f in again.files.values()) == 0
    assert again.duplicates_skipped == exported["events.csv"]


FORMULA_FILES = {
    "team.csv": "email,name,role\ncsm@example.com,=cmd|' /C calc'!A0,csm\n'+ops@example.com,Ops Desk,admin\n",
    "accounts.csv": (
        "account_id,name,segment,contract_start,industry,arr,csm_email\n"
        'F-1,"=HYPERLINK(""x"")",SMB,2026-01-05,"\'\tTabbed",1000,csm@example.com\n'
        "F-2,+1,SMB,2026-01-05,-minus,,'+ops@example.com\n"
        "@7,@SUM(A1),Enterprise,2026-02-01,'quoted,2500.5,\n"
        "F-4,'=already neutralised,Strategic,2026-03-01,<img src=x onerror=alert(1)>,,\n"
    ),
    "checklist.csv": (
        "account_id,category,criterion,target,actual,status,owner_email,due_date,note\n"
        "F-1,Engagement,Champion identified,Yes,,done,,,@ceo please review\n"
        '@7,Engagement,=1+1,Yes,-1,in progress,,,"\'\rcarriage"\n'
    ),
    "outcomes.csv": "account_id,date,type,arr_change\nF-1,2026-06-01,contracted,-500\n@7,2026-06-01,expanded,-0.5\n",
    "events.csv": (
        "account_id,event,timestamp,user_id,properties\n"
        'F-1,=2+3,2026-01-06T09:00:00Z,-u1,"\t{""a"": ""=1""}"\n'
        "@7,login,2026-02-02T08:00:00Z,@bob,\n"
    ),
}


def test_formulas_are_neutralised_on_export_and_restored_on_import(
    empty_db: str, unmigrated_db: str, tmp_path: Path
) -> None:
    report = import_files({k: v.encode() for k, v in FORMULA_FILES.items()}, url=empty_db)
    assert report.ok, [str(p) for p in report.problems]
    stored = rows(empty_db, "SELECT external_id, name, industry, arr FROM accounts ORDER BY id")
    original = [
        ("F-1", '=HYPERLINK("x")', "\tTabbed", 1000.0),
        ("F-2", "+1", "-minus", None),
        # A leading ' is always the escape export writes, so exactly one is dropped on import.
        ("@7", "@SUM(A1)", "quoted", 2500.5),
        ("F-4", "=already neutralised", "<img src=x onerror=alert(1)>", None),
    ]
    assert stored == original
    assert rows(empty_db, "SELECT email, name FROM team_members ORDER BY email") == [
        ("+ops@example.com", "Ops Desk"),
        ("csm@example.com", "=cmd|' /C calc'!A0"),
    ]

    export_dir(tmp_path / "one", url=empty_db, backup=False)
    files = read_files(tmp_path / "one")
    accounts = {r["account_id"]: r for r in parse(files["accounts.csv"])}
    assert sorted(accounts) == ["'@7", "F-1", "F-2", "F-4"]
    assert accounts["F-1"]["name"] == '\'=HYPERLINK("x")'
    assert accounts["F-1"]["industry"] == "'\tTabbed"
    assert accounts["F-2"]["name"] == "'+1"
    assert accounts["F-2"]["industry"] == "'-minus"
    assert accounts["F-2"]["csm_email"] == "'+ops@example.com"
    assert accounts["'@7"]["name"] == "'@SUM(A1)"
    assert accounts["'@7"]["industry"] == "quoted"
    assert accounts["'@7"]["arr"] == "2500.5"
    assert accounts["F-4"]["name"] == "'=already neutralised"
    assert accounts["F-4"]["industry"] == "<img src=x onerror=alert(1)>"
    assert b'"\'=HYPERLINK(""x"")"' in files["accounts.csv"]

    team = {r["email"]: r for r in parse(files["team.csv"])}
    assert team["csm@example.com"]["name"] == "'=cmd|' /C calc'!A0"
    assert "'+ops@example.com" in team

    # (F-2 and F-4 got the template checklist; F-1 and @7 only their imported rows.)
    notes = {r["criterion"]: r for r in parse(files["checklist.csv"]) if r["account_id"] in ("F-1", "'@7")}
    assert sorted(notes) == ["'=1+1", "Champion identified"]
    assert notes["Champion identified"]["note"] == "'@ceo please review"
    assert notes["'=1+1"]["actual"] == "'-1"
    assert notes["'=1+1"]["note"] == "'\rcarriage"

    # Numbers are never prefixed: a negative ARR change stays a number.
    outcomes = parse(files["outcomes.csv"])
    assert [(r["account_id"], r["arr_change"]) for r in outcomes] == [("'@7", "-0.5"), ("F-1", "-500")]

    events = {r["event"]: r for r in parse(files["events.csv"])}
    assert events["'=2+3"]["user_id"] == "'-u1"
    assert events["'=2+3"]["properties"] == '\'\t{"a": "=1"}'
    assert events["login"]["user_id"] == "'@bob"

    # Re-import into a fresh database: the original values come back, and export is stable.
    init_db(unmigrated_db)
    report = import_dir(tmp_path / "one", url=unmigrated_db)
    assert report.ok, [str(p) for p in report.problems]
    assert sorted(rows(unmigrated_db, "SELECT external_id, name, industry, arr FROM accounts")) == sorted(original)
    assert rows(unmigrated_db, "SELECT email FROM team_members ORDER BY email") == [
        ("+ops@example.com",),
        ("csm@example.com",),
    ]
    assert rows(
        unmigrated_db,
        "SELECT criterion, actual, note FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
        "WHERE a.external_id IN ('F-1', '@7') ORDER BY criterion",
    ) == [
        ("=1+1", "-1", "\rcarriage"),
        ("Champion identified", "", "@ceo please review"),
    ]
    assert rows(unmigrated_db, "SELECT event, user_id, properties FROM events ORDER BY event") == [
        ("=2+3", "-u1", '\t{"a": "=1"}'),
        ("login", "@bob", None),
    ]
    assert rows(unmigrated_db, "SELECT arr_change FROM outcomes ORDER BY arr_change") == [(-500.0,), (-0.5,)]
    export_dir(tmp_path / "two", url=unmigrated_db, backup=False)
    assert read_files(tmp_path / "two") == files


def test_large_and_fractional_numbers_round_trip(empty_db: str, tmp_path: Path) -> None:
    accounts = (
        "account_id,name,segment,contract_start,arr,employees\n"
        "N-1,Big,SMB,2026-01-05,1e20,2147483647\n"
        "N-2,Small,SMB,2026-01-05,0.1,0\n"
        "N-3,Plain,SMB,2026-01-05,12000,\n"
    )
    assert import_files({"accounts.csv": accounts.encode()}, url=empty_db).ok
    export_dir(tmp_path, url=empty_db, backup=False)
    got = [(r["account_id"], r["arr"], r["employees"]) for r in parse((tmp_path / "accounts.csv").read_bytes())]
    assert got == [("N-1", "1e+20", "2147483647"), ("N-2", "0.1", "0"), ("N-3", "12000", "")]
    again = import_dir(tmp_path, url=empty_db)
    assert again.ok
    assert again.files["accounts.csv"].unchanged == 3


def test_zip_export_imports_back(empty_db: str, unmigrated_db: str) -> None:
    assert import_files({k: v.encode() for k, v in FORMULA_FILES.items()}, url=empty_db).ok
    files = files_from_uploads([("export.zip", export_zip(url=empty_db, backup=False))])
    assert sorted(files) == sorted(SPECS)
    init_db(unmigrated_db)
    report = import_files(files, url=unmigrated_db)
    assert report.ok, [str(p) for p in report.problems]
    again = files_from_uploads([("again.zip", export_zip(url=unmigrated_db, backup=False))])
    # Zip members are streamed by the importer, not decompressed up front: compare their bytes.
    assert {n: _unzipped(m) for n, m in again.items()} == {n: _unzipped(m) for n, m in files.items()}


def _unzipped(member) -> bytes:
    with zipfile.ZipFile(io.BytesIO(member.archive)) as zf:
        return zf.read(member.member)


def test_cli_export_then_import(empty_db: str, unmigrated_db: str, cli, tmp_path: Path) -> None:
    assert import_files({k: v.encode() for k, v in FORMULA_FILES.items()}, url=empty_db).ok
    res = cli(empty_db, "export", str(tmp_path / "one"), "--contract-only")
    assert res.returncode == 0, res.stderr
    assert "accounts.csv: 4 rows" in res.stdout
    assert "events.csv: 2 rows" in res.stdout

    # The CLI migrates the empty database itself before importing.
    res = cli(unmigrated_db, "import", str(tmp_path / "one"), "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(rows(unmigrated_db, "SELECT external_id, name FROM accounts")) == [
        ("@7", "@SUM(A1)"),
        ("F-1", '=HYPERLINK("x")'),
        ("F-2", "+1"),
        ("F-4", "=already neutralised"),
    ]
    res = cli(unmigrated_db, "export", str(tmp_path / "two"), "--contract-only")
    assert res.returncode == 0, res.stderr
    assert read_files(tmp_path / "two") == read_files(tmp_path / "one")


# ----------------------------------------------------------------------------- free text, exactly

HOSTILE_TEXT = [
    "  leading",
    "trailing  ",
    "  both  ",
    "'=apostrophe",
    "'-5",
    "''=x",
    "'",
    "''",
    "'quoted",
    "x'",
    " '=spaced",
    "=x",
    "+1",
    "-",
    "@at",
    "\ttab first",
    "tab\tinside",
    "tab last\t",
    "\t",
    "   ",
    "\r\ncrlf first",
    "line\nbreak",
    "cr\ronly",
    '"quoted"',
    "a,b",
    "é ünïcode ",
]
# Free-text columns a database row carries into the contract files (table, column, max length).
FREE_TEXT = [
    ("accounts", "name", 300),
    ("accounts", "industry", 100),
    ("accounts", "plan", 100),
    ("accounts", "region", 100),
    ("team_members", "name", 200),
    ("checklist_items", "criterion", 300),
    ("checklist_items", "target", 100),
    ("checklist_items", "actual", 100),
    ("checklist_items", "note", 5000),
]
REQUIRED = {("accounts", "name"), ("team_members", "name"), ("checklist_items", "criterion")}


def _free_text(url: str) -> dict[tuple[str, str], list]:
    out = {}
    for table, col, _n in FREE_TEXT:
        out[(table, col)] = rows(url, f"SELECT {col} FROM {table} ORDER BY {col}")
    out[("events", "properties")] = rows(url, "SELECT properties FROM events ORDER BY properties")
    return out


def _put_hostile_text(url: str) -> None:
    """Store every hostile value in every free-text column (one row per value), as a database
    that was edited in the app holds them."""
    extra = "".join(f"extra{i}@example.com,Extra {i},leader\n" for i in range(len(HOSTILE_TEXT)))
    assert import_files({"team.csv": ("email,name,role\n" + extra).encode()}, url=url).ok
    ids = {
        t: [r[0] for r in rows(url, f"SELECT id FROM {t} ORDER BY id")]
        for t in ("accounts", "team_members", "checklist_items")
    }
    with get_engine(url).begin() as c:
        for table, col, _n in FREE_TEXT:
            values = [v for v in HOSTILE_TEXT if (table, col) not in REQUIRED or v.strip()]
            assert len(ids[table]) >= len(values)
            for pk, v in zip(ids[table], values, strict=False):
                # The criterion is part of the checklist's key: keep it unique per account.
                v = f"{v}#{pk}" if col == "criterion" else v
                c.execute(text(f"UPDATE {table} SET {col} = :v WHERE id = :id"), {"v": v, "id": pk})
        props = [f'{v.replace(chr(34), "")}{{"k": 1}}'.lstrip() for v in ("", " ", "\t", "'")]
        event_ids = [r[0] for r in rows(url, "SELECT id FROM events ORDER BY id")]
        for pk, v in zip(event_ids, [" " + props[0], props[0] + "  ", "\t" + props[0], props[0]], strict=False):
            c.execute(text("UPDATE events SET properties = :v WHERE id = :id"), {"v": v, "id": pk})


def test_free_text_round_trips_exactly(small_db: str, unmigrated_db: str, tmp_path: Path) -> None:
    """Spaces are kept, a leading ' survives, and the export is byte-identical the second time."""
    _put_hostile_text(small_db)
    before = _free_text(small_db)
    assert ("'=apostrophe",) in before[("accounts", "industry")]
    export_dir(tmp_path / "one", url=small_db, backup=False)
    accounts = {r["name"] for r in parse((tmp_path / "one" / "accounts.csv").read_bytes())}
    assert {"''=apostrophe", "'''=x", "'=x", "'''", "  leading"} <= accounts  # escaped, not trimmed

    init_db(unmigrated_db)
    report = import_dir(tmp_path / "one", url=unmigrated_db)
    assert report.ok, [str(p) for p in report.problems]
    after = _free_text(unmigrated_db)
    for key, values in before.items():
        if key[0] == "checklist_items":  # new accounts also got no template rows: same rows
            assert sorted(v for v in values) == sorted(after[key]), key
        else:
            assert values == after[key], key
    export_dir(tmp_path / "two", url=unmigrated_db, backup=False)
    assert read_files(tmp_path / "two") == read_files(tmp_path / "one")


def test_reimporting_own_export_writes_nothing_and_keeps_versions(small_db: str, tmp_path: Path) -> None:
    """The case behind "updated 4": values saved in the app (untrimmed, leading ') used to be
    changed by a re-import of the database's own export, bumping checklist versions."""
    from services.plans import ItemChange, in_session, save_checklist
    from tests.services import ALEX, items, member, owned_accounts

    acc = owned_accounts(small_db, ALEX)[0]
    it = items(small_db, acc)
    in_session(
        save_checklist,
        member(small_db, ALEX),
        url=small_db,
        account_id=acc,
        changes=[
            ItemChange(it[0].id, it[0].version, {"target": "'-5"}),
            ItemChange(it[1].id, it[1].version, {"actual": " 5 "}),
            ItemChange(it[2].id, it[2].version, {"note": "'=apostrophe  "}),
            ItemChange(it[3].id, it[3].version, {"target": "''=x", "actual": "\tx"}),
        ],
    )
    with get_engine(small_db).begin() as c:
        c.execute(text("UPDATE accounts SET name = ' ' || name || ' ', industry = '''' || industry"))
    versions = rows(small_db, "SELECT id, version, target, actual, note FROM checklist_items ORDER BY id")
    accounts = rows(small_db, "SELECT id, name, industry FROM accounts ORDER BY id")
    log = rows(small_db, "SELECT COUNT(*) FROM change_log")

    export_dir(tmp_path, url=small_db, backup=False)
    report = import_dir(tmp_path, url=small_db)
    assert report.ok, [str(p) for p in report.problems]
    assert {n: (f.inserted, f.updated) for n, f in report.files.items()} == {n: (0, 0) for n in SPECS}
    assert rows(small_db, "SELECT id, version, target, actual, note FROM checklist_items ORDER BY id") == versions
    assert rows(small_db, "SELECT id, name, industry FROM accounts ORDER BY id") == accounts
    assert rows(small_db, "SELECT COUNT(*) FROM change_log") == log


def test_identifiers_and_codes_are_still_trimmed(empty_db: str) -> None:
    """Keys, enums, emails, dates and numbers are trimmed as before (docs/data-contract.md)."""
    files = {
        "team.csv": b"email,name,role\n  Csm@Example.com , Pat , csm \n",
        "accounts.csv": (
            b"account_id,name,segment,contract_start,employees,channel,csm_email\n"
            b" T-1 , Acme  , smb , 2026-01-05 , 12 , sales ,csm@example.com\n"
        ),
        "events.csv": b"account_id,event,timestamp,user_id\nT-1, login ,2026-01-06T09:00:00Z, u1 \n",
    }
    report = import_files(files, url=empty_db)
    assert report.ok, [str(p) for p in report.problems]
    assert rows(empty_db, "SELECT email, name, role FROM team_members") == [("csm@example.com", " Pat ", "csm")]
    assert rows(empty_db, "SELECT external_id, name, segment, employees, channel FROM accounts") == [
        ("T-1", " Acme  ", "SMB", 12, "sales")
    ]
    assert rows(empty_db, "SELECT event, user_id FROM events") == [("login", "u1")]
    # A whitespace-only required name is still an empty value.
    bad = import_files({"team.csv": b"email,name,role\nx@example.com,   ,csm\n"}, url=empty_db)
    assert [str(p) for p in bad.problems] == ["team.csv row 2, column name: required value is empty (value '   ')"]


_prefix = st.sampled_from(["", "'", "''", " ", "  ", "\t", "=", "'=", "''=", "-", "+", "@", "\r", "\n"])
_body = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
HOSTILE = st.builds(lambda a, b, c: a + b + c, _prefix, _body, _prefix).filter(lambda v: v != "")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE)
def test_any_free_text_survives_export_and_import(empty_db: str, value: str) -> None:
    """Any text stored in a free-text column comes back unchanged from its own export, and the
    row is not counted as updated."""
    if not rows(empty_db, "SELECT id FROM accounts"):
        assert import_files(
            {"accounts.csv": b"account_id,name,segment,contract_start\nH-1,H,SMB,2026-01-05\n"}, url=empty_db
        ).ok
    with get_engine(empty_db).begin() as c:
        c.execute(text("UPDATE accounts SET industry = :v, plan = :v"), {"v": value[:100]})
    data = export_zip(url=empty_db, backup=False)
    files = files_from_uploads([("x.zip", data)])
    report = import_files({"accounts.csv": files["accounts.csv"]}, url=empty_db)
    assert report.ok, [str(p) for p in report.problems]
    assert (report.files["accounts.csv"].updated, report.files["accounts.csv"].unchanged) == (0, 1)
    assert rows(empty_db, "SELECT industry, plan FROM accounts") == [(value[:100], value[:100])]
    again = files_from_uploads([("y.zip", export_zip(url=empty_db, backup=False))])
    assert _unzipped(again["accounts.csv"]) == _unzipped(files["accounts.csv"])


def test_an_escaped_space_in_an_identifier_does_not_survive_as_a_space(empty_db: str, tmp_path: Path) -> None:
    """`'<space>x` in a trimmed column is x, so its export imports back as the same key."""
    files = {
        "accounts.csv": b"account_id,name,segment,contract_start\n'\x1dK-1,K,SMB,2026-01-05\n' K-2,K2,SMB,2026-01-05\n"
    }
    assert import_files(files, url=empty_db).ok
    assert rows(empty_db, "SELECT external_id FROM accounts ORDER BY external_id") == [("K-1",), ("K-2",)]
    export_dir(tmp_path, url=empty_db, backup=False)
    again = import_files({"accounts.csv": (tmp_path / "accounts.csv").read_bytes()}, url=empty_db)
    assert again.ok and again.files["accounts.csv"].unchanged == 2
