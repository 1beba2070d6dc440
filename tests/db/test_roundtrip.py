"""Export -> import -> export round-trips byte for byte; spreadsheet formulas are neutralised
on export and restored on import (PRODUCT.md §3, §7)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

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
    exported = export_dir(tmp_path / "one", url=small_db)
    assert set(exported) == set(SPECS)
    assert exported["accounts.csv"] == 30
    assert all(n > 0 for n in exported.values()), exported

    init_db(unmigrated_db)
    report = import_dir(tmp_path / "one", url=unmigrated_db)
    assert report.ok, [str(p) for p in report.problems[:5]]
    assert {n: f.inserted for n, f in report.files.items()} == exported
    assert report.duplicates_skipped == 0

    assert export_dir(tmp_path / "two", url=unmigrated_db) == exported
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
        ("@7", "@SUM(A1)", "'quoted", 2500.5),
        ("F-4", "=already neutralised", "<img src=x onerror=alert(1)>", None),
    ]
    assert stored == original
    assert rows(empty_db, "SELECT email, name FROM team_members ORDER BY email") == [
        ("+ops@example.com", "Ops Desk"),
        ("csm@example.com", "=cmd|' /C calc'!A0"),
    ]

    export_dir(tmp_path / "one", url=empty_db)
    files = read_files(tmp_path / "one")
    accounts = {r["account_id"]: r for r in parse(files["accounts.csv"])}
    assert sorted(accounts) == ["'@7", "F-1", "F-2", "F-4"]
    assert accounts["F-1"]["name"] == '\'=HYPERLINK("x")'
    assert accounts["F-1"]["industry"] == "'\tTabbed"
    assert accounts["F-2"]["name"] == "'+1"
    assert accounts["F-2"]["industry"] == "'-minus"
    assert accounts["F-2"]["csm_email"] == "'+ops@example.com"
    assert accounts["'@7"]["name"] == "'@SUM(A1)"
    assert accounts["'@7"]["industry"] == "'quoted"  # not a formula: left alone
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
    export_dir(tmp_path / "two", url=unmigrated_db)
    assert read_files(tmp_path / "two") == files


def test_large_and_fractional_numbers_round_trip(empty_db: str, tmp_path: Path) -> None:
    accounts = (
        "account_id,name,segment,contract_start,arr,employees\n"
        "N-1,Big,SMB,2026-01-05,1e20,2147483647\n"
        "N-2,Small,SMB,2026-01-05,0.1,0\n"
        "N-3,Plain,SMB,2026-01-05,12000,\n"
    )
    assert import_files({"accounts.csv": accounts.encode()}, url=empty_db).ok
    export_dir(tmp_path, url=empty_db)
    got = [(r["account_id"], r["arr"], r["employees"]) for r in parse((tmp_path / "accounts.csv").read_bytes())]
    assert got == [("N-1", "1e+20", "2147483647"), ("N-2", "0.1", "0"), ("N-3", "12000", "")]
    again = import_dir(tmp_path, url=empty_db)
    assert again.ok
    assert again.files["accounts.csv"].unchanged == 3


def test_zip_export_imports_back(empty_db: str, unmigrated_db: str) -> None:
    assert import_files({k: v.encode() for k, v in FORMULA_FILES.items()}, url=empty_db).ok
    files = files_from_uploads([("export.zip", export_zip(url=empty_db))])
    assert sorted(files) == sorted(SPECS)
    init_db(unmigrated_db)
    report = import_files(files, url=unmigrated_db)
    assert report.ok, [str(p) for p in report.problems]
    again = files_from_uploads([("again.zip", export_zip(url=unmigrated_db))])
    # Zip members are streamed by the importer, not decompressed up front: compare their bytes.
    assert {n: _unzipped(m) for n, m in again.items()} == {n: _unzipped(m) for n, m in files.items()}


def _unzipped(member) -> bytes:
    with zipfile.ZipFile(io.BytesIO(member.archive)) as zf:
        return zf.read(member.member)


def test_cli_export_then_import(empty_db: str, unmigrated_db: str, cli, tmp_path: Path) -> None:
    assert import_files({k: v.encode() for k, v in FORMULA_FILES.items()}, url=empty_db).ok
    res = cli(empty_db, "export", str(tmp_path / "one"))
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
    res = cli(unmigrated_db, "export", str(tmp_path / "two"))
    assert res.returncode == 0, res.stderr
    assert read_files(tmp_path / "two") == read_files(tmp_path / "one")
