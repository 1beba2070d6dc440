"""The export is a complete backup (PRODUCT.md §7): every table, restored exactly into an empty
database, through the functions, the CLI and the Data page's zip; refused into a database
that holds data; atomic; bounded in memory."""

from __future__ import annotations

import io
import json
import threading
import tracemalloc
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from db import backup
from db.exporter import export_dir, export_zip, export_zip_to
from db.importer import SPECS, files_from_dir, files_from_uploads, import_dir, import_files
from db.models import Account, ChangeLog, ChecklistItem, Intervention
from db.session import dispose_engine, get_engine, session_scope
from db.settings_store import init_db
from services.health import snapshot
from services.notify import save_destination, send_test
from services.plans import ItemChange, add_intervention, in_session, save_checklist, save_plan
from services.settings import save_milestone, update_setting
from tests.conftest import AS_OF
from tests.services import ADMIN, ALEX, items, member, owned_accounts

HOSTILE = "  '=lead and trail\t  "


def tree(path: Path) -> dict[str, bytes]:
    """Every file under a folder, by relative path."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def table_rows(url: str) -> dict[str, list[tuple]]:
    """Every backed-up row of every table, in primary-key order, timestamps as UTC."""

    def norm(v):
        if isinstance(v, datetime):
            return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
        return v

    out = {}
    with get_engine(url).connect() as c:
        for t in backup.tables():
            q = select(t).order_by(*t.primary_key.columns)
            rows = [tuple(norm(v) for v in r) for r in c.execute(q)]
            if t.name == "meta":
                rows = [r for r in rows if not r[0].endswith("_version") and r[0] != backup.LAST_RESTORE_KEY]
            out[t.name] = rows
    return out


@pytest.fixture
def full_db(small_db: str) -> str:
    """The small demo with something in every table, written through the services."""
    url = small_db
    admin, alex = member(url, ADMIN), member(url, ALEX)
    acc = owned_accounts(url, ALEX)[0]
    with session_scope(url) as s:
        plan_version = s.execute(text("SELECT version FROM success_plans WHERE account_id = :a"), {"a": acc}).scalar()
    in_session(
        save_plan,
        alex,
        url=url,
        account_id=acc,
        version=plan_version,
        values={
            "goals": HOSTILE + "\nsecond line",
            "success_30": "'-5 seats",
            "success_60": "=SUM(A1)",
            "success_90": "",
            "champion": "Chris Champion",
            "admin_contact": "Ada Admin",
            "executive_sponsor": "Eve Sponsor",
        },
    )
    in_session(
        add_intervention, alex, url=url, account_id=acc, type="extra training", on=AS_OF, note=HOSTILE, outcome="ok"
    )
    it = items(url, acc)
    in_session(
        save_checklist,
        alex,
        url=url,
        account_id=acc,
        changes=[
            ItemChange(it[0].id, it[0].version, {"status": "done", "actual": " 5 ", "note": HOSTILE}),
            ItemChange(it[1].id, it[1].version, {"target": "'-5"}),
        ],
    )
    in_session(update_setting, admin, url=url, key="analysis", value={"week_start": "monday"})
    # An alert destination (nothing listens on port 9: the test message waits for a retry).
    in_session(save_destination, admin, url=url, name="Team hook", apprise_url="json://127.0.0.1:9/cs")
    in_session(send_test, admin, url=url)
    in_session(
        save_milestone,
        admin,
        url=url,
        key="kickoff_complete",
        name="Kick-off held",
        phase=1,
        order=1,
        target_days={"SMB": 5, "Mid-Market": 7, "Enterprise": 10, "Strategic": 14},
        is_value=False,
    )
    snapshot(url=url, as_of=AS_OF)
    assert import_files({"team.csv": b"email,name,role\nnew.csm@example.com,New CSM,csm\n"}, url=url).ok
    # A configured sync, its run and its watermark (a DuckDB source in memory).
    from db.sync_config import run_configured, save_sync

    mapping = (
        "[team]\nquery = \"SELECT 'sync.csm@example.com' AS email, 'Sync CSM' AS name, 'csm' AS role, "
        "TIMESTAMP '2026-06-01 10:00:00' AS changed FROM range(1) WHERE TIMESTAMP '2026-06-01' > :watermark\"\n"
        'watermark = "changed"\n'
    )
    with session_scope(url) as s:
        save_sync(s, actor=ADMIN, name="crm", source_url="duckdb:///:memory:", mapping_text=mapping)
    assert run_configured("crm", url=url).status == "synced"
    rows = table_rows(url)
    empty = [t for t, r in rows.items() if not r]
    assert not empty, f"the fixture leaves tables empty, so their backup is not tested: {empty}"
    return url


def test_backup_restores_every_table_exactly_and_exports_identically(
    full_db: str, unmigrated_db: str, tmp_path: Path
) -> None:
    counts = export_dir(tmp_path / "one", url=full_db)
    manifest = json.loads((tmp_path / "one" / backup.MANIFEST).read_text())
    assert set(manifest["tables"]) == {t.name for t in backup.tables()}
    for t, entry in manifest["tables"].items():
        assert counts[entry["file"]] == entry["rows"] > 0, t
    assert manifest["schema_revision"]
    # The six contract files are still there, as spreadsheets expect them.
    assert {n for n in counts if not n.startswith("backup/")} == set(SPECS)

    init_db(unmigrated_db)
    report = import_dir(tmp_path / "one", url=unmigrated_db)
    assert report.ok, [str(p) for p in report.problems]
    assert report.written
    assert {n: f.inserted for n, f in report.files.items()} == {
        e["file"]: e["rows"] for e in manifest["tables"].values()
    }

    assert table_rows(unmigrated_db) == table_rows(full_db)
    export_dir(tmp_path / "two", url=unmigrated_db)
    assert tree(tmp_path / "two") == tree(tmp_path / "one")

    # What the backup holds that the contract files cannot, by name.
    with session_scope(unmigrated_db) as s:
        acc = s.execute(select(Intervention.account_id)).scalar_one()
        goals = s.execute(text("SELECT goals FROM success_plans WHERE account_id = :a"), {"a": acc}).scalar()
        assert goals == HOSTILE + "\nsecond line"
        assert s.execute(select(Intervention.note)).scalar_one() == HOSTILE
        week = s.execute(text("SELECT value, version FROM setting_versions WHERE key = 'analysis' ORDER BY version"))
        assert [(json.loads(v), n) for v, n in week] == [({"week_start": "sunday"}, 1), ({"week_start": "monday"}, 2)]
        its = list(
            s.execute(select(ChecklistItem).where(ChecklistItem.account_id == acc).order_by(ChecklistItem.position))
            .scalars()
            .all()
        )
        assert (its[0].status, its[0].actual, its[0].version, its[0].position) == ("done", " 5 ", 2, 0)
        assert its[0].done_at is not None and any(i.metric for i in its)
        assert s.execute(text("SELECT name FROM milestone_definitions WHERE key = 'kickoff_complete'")).scalar() == (
            "Kick-off held"
        )


def test_the_restored_database_takes_new_writes(full_db: str, unmigrated_db: str, tmp_path: Path) -> None:
    """Ids are kept, and the next generated id follows them (PostgreSQL's sequences are reset)."""
    export_dir(tmp_path / "one", url=full_db)
    init_db(unmigrated_db)
    assert import_dir(tmp_path / "one", url=unmigrated_db).ok
    with session_scope(unmigrated_db) as s:
        before = s.execute(select(func.max(ChangeLog.id))).scalar_one()
        max_iv = s.execute(select(func.max(Intervention.id))).scalar_one()
    acc = owned_accounts(unmigrated_db, ALEX)[0]
    iv = in_session(
        add_intervention,
        member(unmigrated_db, ALEX),
        url=unmigrated_db,
        account_id=acc,
        type="other",
        on=AS_OF,
        note="called the champion",
    )
    assert iv.id == max_iv + 1
    with session_scope(unmigrated_db) as s:
        assert s.execute(select(func.max(ChangeLog.id))).scalar_one() == before + 1
        assert json.loads(s.execute(text("SELECT value FROM meta WHERE key = 'last_restore'")).scalar())["by"] == "cli"


def test_cli_export_and_import_restore_a_backup_folder_and_zip(
    full_db: str, unmigrated_db: str, databases, cli, tmp_path: Path
) -> None:
    res = cli(full_db, "export", str(tmp_path / "one"))
    assert res.returncode == 0, res.stderr
    assert "backup/change_log.jsonl:" in res.stdout and "accounts.csv: 30 rows" in res.stdout

    # The CLI migrates the empty database itself, then restores the backup.
    res = cli(unmigrated_db, "import", str(tmp_path / "one"), "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "backup/events.jsonl" in res.stdout
    res = cli(unmigrated_db, "export", str(tmp_path / "two"))
    assert res.returncode == 0, res.stderr
    assert tree(tmp_path / "two") == tree(tmp_path / "one")
    assert table_rows(unmigrated_db) == table_rows(full_db)

    # A zip written by export restores the same way.
    res = cli(full_db, "export", str(tmp_path / "full.zip"))
    assert res.returncode == 0, res.stderr
    other = databases.new()
    res = cli(other, "import", str(tmp_path / "full.zip"), "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    assert table_rows(other) == table_rows(full_db)

    # Into a database that holds data: refused, with what it holds, and nothing written.
    res = cli(other, "import", str(tmp_path / "full.zip"), "--quiet")
    assert res.returncode == 1
    assert "a backup restores only into an empty database, and this one holds" in res.stdout
    assert "30 accounts" in res.stdout and "Traceback" not in res.stdout + res.stderr
    after, source = table_rows(other), table_rows(full_db)
    assert after.pop("import_runs")[:-1] == source.pop("import_runs")
    assert after == source


def test_contract_only_export_is_the_six_files(full_db: str, cli, tmp_path: Path) -> None:
    # Over an earlier full export: its backup/ goes, or it would be restored instead of the new files.
    assert cli(full_db, "export", str(tmp_path / "c")).returncode == 0
    assert backup.MANIFEST in files_from_dir(tmp_path / "c")
    res = cli(full_db, "export", str(tmp_path / "c"), "--contract-only")
    assert res.returncode == 0, res.stderr
    assert sorted(tree(tmp_path / "c")) == sorted(SPECS)
    assert sorted(files_from_dir(tmp_path / "c")) == sorted(SPECS)


def test_data_page_zip_restores(full_db: str, unmigrated_db: str) -> None:
    data = export_zip(url=full_db)
    files = files_from_uploads([("onboarding-export.zip", data)])
    assert backup.MANIFEST in files and set(SPECS) <= set(files)
    init_db(unmigrated_db)
    report = import_files(files, url=unmigrated_db, actor="admin@example.com")
    assert report.ok, [str(p) for p in report.problems]
    assert any("were not read" in w for w in report.warnings)
    assert table_rows(unmigrated_db) == table_rows(full_db)
    again = files_from_uploads([("again.zip", export_zip(url=unmigrated_db))])
    assert {n: member_bytes(m) for n, m in again.items()} == {n: member_bytes(m) for n, m in files.items()}


def member_bytes(source) -> bytes:
    """The bytes of an uploaded zip's member (members are streamed, not held as bytes)."""
    from db.uploads import open_source

    stream = open_source(source)[0]
    with stream:
        return stream.read()


def test_restore_refuses_a_database_with_changed_settings(full_db: str, empty_db: str, tmp_path: Path) -> None:
    export_dir(tmp_path / "one", url=full_db)
    in_session(update_setting, member(full_db, ADMIN), url=empty_db, key="analysis", value={"week_start": "monday"})
    before = table_rows(empty_db)
    report = import_dir(tmp_path / "one", url=empty_db)
    assert not report.ok and not report.written
    assert "1 changed setting version(s)" in str(report.problems[0])
    after = table_rows(empty_db)
    assert {k: v for k, v in after.items() if k != "import_runs"} == {
        k: v for k, v in before.items() if k != "import_runs"
    }
    # The refusal is in the import history.
    assert [r[5] for r in after["import_runs"]] == ["rejected"]


def test_dry_run_checks_and_writes_nothing(full_db: str, empty_db: str, tmp_path: Path) -> None:
    export_dir(tmp_path / "one", url=full_db)
    before = table_rows(empty_db)
    report = import_dir(tmp_path / "one", url=empty_db, dry_run=True)
    assert report.ok and not report.written
    assert report.files["backup/accounts.jsonl"].inserted == 30
    assert table_rows(empty_db) == before


class Statements:
    """Every SQL statement run on a database's engine while in use (a real listener)."""

    def __init__(self, url: str) -> None:
        self.engine = get_engine(url)
        self.seen: list[str] = []

    def _record(self, _conn, _cursor, statement: str, *_args) -> None:
        self.seen.append(" ".join(statement.split()))

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def writes(self) -> list[str]:
        """Statements that write or lock: anything but a read, a pragma or a session setting,
        and PostgreSQL's advisory locks (a SELECT that blocks other imports)."""
        read = ("SELECT", "PRAGMA", "SET", "RESET", "SHOW", "WITH")
        return [s for s in self.seen if not s.upper().startswith(read) or "advisory" in s.lower()]


def test_dry_run_restore_only_reads_and_counts_every_row(full_db: str, empty_db: str, tmp_path: Path) -> None:
    """Validating a backup takes no lock and sends no INSERT, UPDATE or DELETE (issue 10.6)."""
    counts = export_dir(tmp_path / "one", url=full_db)
    with Statements(empty_db) as sql:
        report = import_dir(tmp_path / "one", url=empty_db, dry_run=True)
    assert report.ok and not report.written, [str(p) for p in report.problems]
    assert sql.seen, "the listener saw no statement"
    assert sql.writes() == []
    # Every row of every backup file was read and counted, as a restore would.
    assert {n: f.rows for n, f in report.files.items()} == {n: c for n, c in counts.items() if n.startswith("backup/")}
    assert report.files["backup/events.jsonl"].inserted == counts["backup/events.jsonl"] > 0


def test_a_user_write_does_not_wait_for_a_dry_run_restore(full_db: str, empty_db: str, tmp_path: Path) -> None:
    """While a backup is being validated (held mid-way by its progress callback), an admin's
    settings change and a write to the tables a restore replaces go through at once: before,
    the dry run held SQLite's write lock (or PostgreSQL row locks) and they failed after the
    5 s busy/lock timeout."""
    export_dir(tmp_path / "one", url=full_db)
    reached, go = threading.Event(), threading.Event()
    calls: list[str] = []
    result: dict = {}

    def progress(_fraction: float, label: str) -> None:
        calls.append(label)
        if len(calls) == 2:  # the first table is done; the second is next
            reached.set()
            go.wait(60)

    def validate() -> None:
        try:
            result["report"] = import_dir(tmp_path / "one", url=empty_db, dry_run=True, progress=progress)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            result["error"] = exc

    worker = threading.Thread(target=validate)
    worker.start()
    try:
        assert reached.wait(60), "the dry run never reached its second table"
        assert worker.is_alive()
        in_session(update_setting, member(full_db, ADMIN), url=empty_db, key="analysis", value={"week_start": "monday"})
        with get_engine(empty_db).begin() as c:
            assert c.execute(text("UPDATE milestone_definitions SET name = name")).rowcount > 0
    finally:
        go.set()
        worker.join(120)
    assert "error" not in result, result
    assert result["report"].ok, [str(p) for p in result["report"].problems]
    assert result["report"].files["backup/accounts.jsonl"].rows == 30
    with session_scope(empty_db) as s:
        assert (
            "monday"
            in s.execute(text("SELECT value FROM setting_versions WHERE key = 'analysis' ORDER BY version"))
            .scalars()
            .all()[-1]
        )


def test_dry_run_into_a_database_with_data_is_refused_without_a_lock(full_db: str, tmp_path: Path) -> None:
    """Validate into a database that holds data: the same refusal as a restore, and no lock taken."""
    export_dir(tmp_path / "one", url=full_db)
    before = table_rows(full_db)
    with Statements(full_db) as sql:
        report = import_dir(tmp_path / "one", url=full_db, dry_run=True)
    assert not report.ok and not report.written
    assert sql.writes() == []
    assert table_rows(full_db) == before  # not even a rejected-run record
    real = import_dir(tmp_path / "one", url=full_db)
    assert [str(p) for p in report.problems] == [str(p) for p in real.problems]
    assert "a backup restores only into an empty database" in str(report.problems[0])
    assert "30 accounts" in str(report.problems[0])


def _break(path: Path, name: str, edit) -> None:
    p = path / "backup" / name
    p.write_text(edit(p.read_text()))


@pytest.mark.parametrize(
    ("name", "edit", "expected"),
    [
        ("events.jsonl", lambda s: s[: s.index("\n", len(s) // 2) + 1], "the manifest says"),
        (
            "accounts.jsonl",
            lambda s: s.replace('"employees":', '"employees":"many","x":', 1),
            "backup/accounts.jsonl row 1, column employees: not a whole number (value 'many')",
        ),
        ("checklist_items.jsonl", lambda s: "{not json\n" + s.split("\n", 1)[1], "backup/checklist_items.jsonl row 1"),
        (
            "events.jsonl",
            lambda s: s.replace('"account_id":', '"account_id":999999,"_":', 1),
            "the backup's rows do not fit together",
        ),
        (
            "manifest.json",
            lambda s: s.replace('"name"', '"nickname"', 1),
            "column(s) nickname that this database does not",
        ),
        ("manifest.json", lambda s: s.replace(backup.FORMAT, "something else"), "not an onboarding-analytics backup"),
    ],
)
def test_a_broken_backup_is_refused_with_file_row_and_reason(
    full_db: str, empty_db: str, tmp_path: Path, name: str, edit, expected: str
) -> None:
    export_dir(tmp_path / "one", url=full_db)
    _break(tmp_path / "one", name, edit)
    before = table_rows(empty_db)
    report = import_dir(tmp_path / "one", url=empty_db)
    assert not report.ok and not report.written
    assert any(expected in str(p) for p in report.problems), [str(p) for p in report.problems]
    assert {k: v for k, v in table_rows(empty_db).items() if k != "import_runs"} == {
        k: v for k, v in before.items() if k != "import_runs"
    }


def test_a_rejected_attempt_does_not_block_the_restore(full_db: str, empty_db: str, tmp_path: Path) -> None:
    export_dir(tmp_path / "one", url=full_db)
    assert not import_files({"team.csv": b"email,name,role\nnot-an-email,X,csm\n"}, url=empty_db).ok
    report = import_dir(tmp_path / "one", url=empty_db)
    assert report.ok, [str(p) for p in report.problems]
    runs = table_rows(empty_db)["import_runs"]
    # The backup's import history, then the rejected attempt made on the empty database.
    assert runs[:-1] == table_rows(full_db)["import_runs"]
    assert runs[-1][5] == "rejected" and runs[-1][0] > runs[-2][0]


def _events_db(url: str, n: int) -> None:
    init_db(url)
    assert import_files({"accounts.csv": b"account_id,name,segment,contract_start\nA-1,A,SMB,2026-01-01\n"}, url=url).ok
    lines = ["account_id,event,timestamp,user_id,properties"]
    lines += [f'A-1,e{i % 7},2026-01-02T00:00:{i % 60:02d}.{i:06d}Z,u{i % 13},"{{""k"": {i}}}"' for i in range(n)]
    assert import_files({"events.csv": ("\n".join(lines) + "\n").encode()}, url=url).ok


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_backup_and_restore_memory_does_not_grow_with_the_events_table(
    databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows go out and come back in chunks: five times the events, about the same peak memory
    (chunks of 1,000 rows here instead of 5,000, so the test stays small)."""
    monkeypatch.setattr(backup, "CHUNK", 1_000)
    monkeypatch.setattr("engine.copy._CHUNK", 1_000)  # the columnar copy built after the restore
    peaks = {}
    for n in (4_000, 20_000):
        src, dst = databases.new(), databases.new()
        _events_db(src, n)
        out = tmp_path / f"b{n}.zip"
        export_zip_to(out, url=src)
        with get_engine(src).connect() as conn:
            written = []
            backup_peak = _peak(lambda conn=conn, w=written: backup.write_backup(conn, lambda _n, c: w.append(len(c))))
        assert sum(written) > 100 * n  # it did write every row
        init_db(dst)
        files = backup.files_from_zip(out)
        assert files is not None and all(callable(v) for v in files.values())
        restore_peak = _peak(lambda dst=dst, files=files: import_files(files, url=dst))
        with get_engine(dst).connect() as c:
            assert c.execute(text("SELECT COUNT(*) FROM events")).scalar() == n
        peaks[n] = (backup_peak, restore_peak)
    (b_small, r_small), (b_big, r_big) = peaks[4_000], peaks[20_000]
    assert b_big < 2 * b_small, peaks
    assert r_big < 2 * r_small, peaks


def test_zip_member_names_inside_a_top_folder_are_recognised(full_db: str, unmigrated_db: str, tmp_path: Path) -> None:
    """A user who unzipped the export and zipped the folder again."""
    export_dir(tmp_path / "one", url=full_db)
    z = tmp_path / "again.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for rel, data in tree(tmp_path / "one").items():
            zf.writestr(f"onboarding-export/{rel}", data)
    init_db(unmigrated_db)
    report = import_files(files_from_uploads([("again.zip", z.read_bytes())]), url=unmigrated_db)
    assert report.ok, [str(p) for p in report.problems]
    with session_scope(unmigrated_db) as s:
        assert s.execute(select(func.count()).select_from(Account)).scalar_one() == 30
        assert s.execute(select(Account.contract_start).order_by(Account.id)).scalars().first() < date(2100, 1, 1)


def test_data_page_export_is_the_backup(full_db: str, unmigrated_db: str, use_db) -> None:
    """The Data page offers an admin the export, made on click by services.data.export_all;
    what that gives restores into an empty database exactly."""
    from services.data import export_all
    from tests.pages import open_page, texts

    use_db(full_db)
    at = open_page("data", query={"as_of": AS_OF.isoformat()}, as_user=ADMIN)
    assert not at.exception, [e.value for e in at.exception]
    assert any("complete backup of every table" in c for c in texts(at.caption))
    assert [b.label for b in at.download_button if b.label == "Download export (zip)"]
    data = export_all(member(full_db, ADMIN), url=full_db)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert backup.MANIFEST in zf.namelist() and "accounts.csv" in zf.namelist()
    init_db(unmigrated_db)
    report = import_files(files_from_uploads([("export.zip", data)]), url=unmigrated_db)
    assert report.ok, [str(p) for p in report.problems]
    assert table_rows(unmigrated_db) == table_rows(full_db)


def test_a_sqlite_backup_restores_into_the_test_database(databases, tmp_path: Path) -> None:
    """The backup does not depend on the database kind: a SQLite file's backup restores into
    PostgreSQL (when the suite runs on it) with the same rows, and exports the same files."""
    from services.setup import seed_demo
    from tests.conftest import SMALL

    src = f"sqlite:///{tmp_path / 'source.db'}"
    try:
        seed_demo(url=src, **{**SMALL, "history_weeks": 1})
        export_dir(tmp_path / "one", url=src)
        target = databases.new()
        init_db(target)
        report = import_dir(tmp_path / "one", url=target)
        assert report.ok, [str(p) for p in report.problems]
        assert table_rows(target) == table_rows(src)
        export_dir(tmp_path / "two", url=target)
        assert tree(tmp_path / "two") == tree(tmp_path / "one")
    finally:
        dispose_engine(src)
