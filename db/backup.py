"""The complete backup written beside the contract files, and its restore (PRODUCT.md §7).

The six contract files are what spreadsheets load; they cannot hold what only the app knows
(ids, success plans, interventions, the change log, health snapshots, settings with their
versions, milestone definitions, a checklist item's metric binding, position, done_at and
version, ...). The backup is a folder `backup/` next to them: one JSON-lines file per table
holding every column of every row in primary-key order, and `manifest.json` naming the
format, the schema revision and each table's columns and row count.

A restore goes into an empty database only (see `database_contents`), in one transaction,
and keeps every id, so foreign keys, and the change log's references to records by id, stay
valid. Tables are written and read in chunks, so memory stays bounded however big the
events table is. A dry run (Validate) reads on a read-only connection, takes no lock and
inserts nothing: it checks the emptiness rule and every row's types, not foreign keys.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    Numeric,
    Table,
    TypeDecorator,
    delete,
    func,
    select,
    text,
    type_coerce,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session, SQLModel

from db import import_lock
from db.import_lock import ADVISORY_CLASS
from db.importer import FileReport, ImportReport, Problem
from db.models import ImportRun, Meta, utcnow
from db.session import bump_data_version, get_engine
from db.settings_store import SYSTEM_ACTOR

BACKUP_DIR = "backup"
MANIFEST = f"{BACKUP_DIR}/manifest.json"
FORMAT = "onboarding-analytics-backup"
FORMAT_VERSION = 1
CHUNK = 5_000
MAX_LINE = 16_000_000  # bytes in one row of a backup file: a longer one is refused, not read whole
# meta keys that are counters or about this database, not data: never backed up.
LAST_RESTORE_KEY = "last_restore"
# What a freshly migrated database already holds (init_db's defaults), replaced by a restore.
DEFAULT_TABLES = ("milestone_definitions", "setting_versions")

Source = Path | bytes | bytearray | Callable[[], IO[bytes]]
ProgressFn = Callable[[float, str], None]


class BackupError(ValueError):
    """A backup that cannot be read (named file and reason)."""


def tables() -> list[Table]:
    """Every table of the model, parents before children (the order a restore inserts)."""
    return list(SQLModel.metadata.sorted_tables)


def file_name(table: Table) -> str:
    return f"{BACKUP_DIR}/{table.name}.jsonl"


def _meta_key_skipped(key: str) -> bool:
    return key.endswith("_version") or key == LAST_RESTORE_KEY


def _kind(col: Any) -> str:
    t = col.type
    impl = t.impl if isinstance(t, TypeDecorator) else t
    if isinstance(impl, DateTime):
        return "ts"
    if isinstance(impl, Date):
        return "date"
    if isinstance(impl, Boolean):
        return "bool"
    if isinstance(impl, Integer):
        return "int"
    if isinstance(impl, Float | Numeric):
        return "float"
    return "text"


def _dump_ts(v: datetime) -> str:
    """A timestamp in UTC with microseconds and Z (isoformat: several times faster than strftime)."""
    if v.tzinfo is not None:
        v = v.astimezone(UTC).replace(tzinfo=None)
    return v.isoformat(timespec="microseconds") + "Z"


_DUMP: dict[str, Callable[[Any], Any] | None] = {
    "ts": _dump_ts,
    "date": date.isoformat,
    "bool": bool,
    "int": int,
    "float": float,
    "text": None,  # as it is
}


def _read_column(col: Any) -> Any:
    """The column as the backup reads it: timestamps through SQLAlchemy's own DateTime (C code
    on SQLite) rather than SQLModel's per-value Python decorator; `_dump_ts` makes them UTC."""
    if _kind(col) == "ts":
        return type_coerce(col, DateTime(timezone=True)).label(col.name)
    return col


def _load(kind: str, v: Any) -> Any:
    """A JSON value as a database value; ValueError says what is wrong."""
    if v is None:
        return None
    if kind == "ts":
        if not isinstance(v, str):
            raise ValueError("not a timestamp")
        dt = datetime.fromisoformat(v)
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    if kind == "date":
        if not isinstance(v, str):
            raise ValueError("not a date")
        return date.fromisoformat(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise ValueError("not true or false")
        return v
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("not a whole number")
        return v
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("not a number")
        return float(v)
    if not isinstance(v, str):
        raise ValueError("not text")
    if "\x00" in v:
        raise ValueError("contains a NUL character")
    return v


def _schema_revision(conn: Connection) -> str:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision() or ""


# ----------------------------------------------------------------------------- export


def write_backup(conn: Connection, write: Callable[[str, str], None], *, progress: ProgressFn | None = None) -> dict:
    """Hand (file name, text chunk) for every table and then the manifest to `write`; return
    rows per backup file."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_revision": _schema_revision(conn),
        "tables": {},
    }
    counts: dict[str, int] = {}
    all_tables = tables()
    for i, table in enumerate(all_tables):
        if progress:
            progress(i / len(all_tables), f"backing up {table.name}")
        cols = list(table.columns)
        kinds = [_kind(c) for c in cols]
        names = [c.name for c in cols]
        name = file_name(table)
        n = 0
        write(name, "")  # the file exists even when the table is empty
        dumps = [_DUMP[k] for k in kinds]
        encode = json.JSONEncoder(separators=(",", ":")).encode
        q = select(*[_read_column(c) for c in cols]).order_by(*table.primary_key.columns)
        result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(q)
        for part in result.partitions(CHUNK):
            lines = []
            for row in part:
                if table.name == "meta" and _meta_key_skipped(row[0]):
                    continue
                values = [v if v is None or f is None else f(v) for f, v in zip(dumps, row, strict=True)]
                lines.append(encode(dict(zip(names, values, strict=True))) + "\n")
            if lines:
                write(name, "".join(lines))
                n += len(lines)
        counts[name] = n
        manifest["tables"][table.name] = {"file": name, "columns": names, "rows": n}
    write(MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return counts


# ----------------------------------------------------------------------------- sources


def backup_files_in_dir(path: Path) -> dict[str, Path]:
    """The backup files of an export folder (`backup/...`), or nothing if it has none."""
    folder = path / BACKUP_DIR
    if not (folder / "manifest.json").is_file():
        return {}
    return {f"{BACKUP_DIR}/{p.name}": p for p in sorted(folder.iterdir()) if p.is_file() and _is_backup_name(p.name)}


def remove_backup_files(path: Path) -> None:
    """Delete the backup files an earlier export wrote into a folder (and backup/ if then empty)."""
    folder = path / BACKUP_DIR
    if not folder.is_dir():
        return
    for name in ["manifest.json", *(f"{t.name}.jsonl" for t in tables())]:
        (folder / name).unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()


def _is_backup_name(name: str) -> bool:
    return name == "manifest.json" or name.endswith(".jsonl")


def backup_member(member: str) -> str | None:
    """The backup file name for a zip member (`backup/x.jsonl`, also inside a top folder), else None."""
    p = Path(member)
    if p.parent.name == BACKUP_DIR and _is_backup_name(p.name):
        return f"{BACKUP_DIR}/{p.name}"
    return None


def files_from_zip(path: Path) -> dict[str, Source] | None:
    """A backup zip's files, each opened lazily from the zip (streamed, never read whole);
    None if the zip holds no backup."""
    with zipfile.ZipFile(path) as zf:
        members = {backup_member(i.filename): i.filename for i in zf.infolist() if not i.is_dir()}
    members.pop(None, None)
    if MANIFEST not in members:
        return None

    def opener(member: str) -> Callable[[], IO[bytes]]:
        def open_member() -> IO[bytes]:
            # The member keeps the zip's file open until it is closed itself.
            with zipfile.ZipFile(path) as zf:
                return zf.open(member)

        return open_member

    return {name: opener(member) for name, member in members.items() if name}


def _open(source: Source) -> IO[bytes]:
    from db.uploads import Refused, ZipMember, open_source

    if isinstance(source, Refused):
        raise BackupError(source.reason)
    if isinstance(source, ZipMember):
        return open_source(source)[0]  # streamed from the uploaded zip, within the upload limits
    if isinstance(source, bytes | bytearray):
        return io.BytesIO(source)
    if callable(source):
        return source()
    return open(source, "rb")


def _lines(source: Source) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a JSON-lines file, blank lines skipped; BackupError on a line
    longer than MAX_LINE."""
    with _open(source) as fh:
        number = 0
        while line := fh.readline(MAX_LINE + 1):
            number += 1
            if len(line) > MAX_LINE:
                raise BackupError(f"line {number} is longer than {MAX_LINE:,} bytes")
            if line.strip():
                yield number, line


# ----------------------------------------------------------------------------- restore


def database_contents(conn: Connection) -> list[str]:
    """What makes a database not empty: rows in any table beyond init_db's defaults, changed
    settings, or a successful import. Empty list = empty."""
    found = []
    for table in tables():
        if table.name in (*DEFAULT_TABLES, "meta"):
            continue
        q = select(func.count()).select_from(table)
        if table.name == "import_runs":  # rejected attempts leave no data behind
            q = q.where(table.c.status == "imported")
        n = int(conn.execute(q).scalar_one())
        if n:
            found.append(f"{n:,} {table.name.replace('_', ' ')}")
    sv = SQLModel.metadata.tables["setting_versions"]
    changed = conn.execute(
        select(func.count()).select_from(sv).where((sv.c.changed_by != SYSTEM_ACTOR) | (sv.c.version != 1))
    ).scalar_one()
    if changed:
        found.append(f"{changed:,} changed setting version(s)")
    return found


def restore_files(
    files: dict[str, Any],
    *,
    url: str | None = None,
    dry_run: bool = False,
    actor: str = "cli",
    progress: ProgressFn | None = None,
    source: str = "",
) -> ImportReport:
    """Restore a backup (`backup/...` files; other files are ignored) into an empty database,
    atomically, under the import lock; a dry run checks everything it can and takes no lock
    and writes nothing (see `_check_backup`)."""
    t0 = time.perf_counter()
    report = ImportReport(dry_run=dry_run)
    ignored = sorted(n for n in files if not n.startswith(f"{BACKUP_DIR}/"))
    if ignored:
        report.warnings.append(
            f"restoring the backup in {BACKUP_DIR}/; the contract files beside it ({', '.join(ignored)}) "
            "hold the same data and were not read"
        )
    try:
        manifest = _read_manifest(files)
        plan = _plan(manifest, files)
    except BackupError as exc:
        report.add(Problem(MANIFEST, 0, "", "", str(exc)))
        return _finish(report, url=url, actor=actor, source=source, t0=t0, dry_run=dry_run)
    for name, _entry in plan:
        report.files[name] = FileReport(name)
    total = max(sum(entry["rows"] for _, entry in plan), 1)
    done = 0

    engine = get_engine(url)
    if dry_run:
        _check_backup(engine, plan, files, report, progress=progress, total=total)
        if not report.ok:
            for fr in report.files.values():
                fr.inserted = 0
        return _finish(report, url=url, actor=actor, source=source, t0=t0, dry_run=True, progress=progress)
    with (
        import_lock.import_connection(engine, dry_run=False) as bound,
        Session(bind=bound, expire_on_commit=False) as session,
    ):
        try:
            conn = session.connection()
            _lock(conn)
            contents = database_contents(conn)
            if contents:
                report.add(_not_empty(contents))
                session.rollback()
                return _finish(report, url=url, actor=actor, source=source, t0=t0, dry_run=dry_run)
            kept_runs = _take_rejected_runs(conn)
            for name in DEFAULT_TABLES:
                conn.execute(delete(SQLModel.metadata.tables[name]))
            for name, entry in plan:
                table = SQLModel.metadata.tables[entry["table"]]
                if progress:
                    progress(done / total, f"restoring {table.name}")
                if table.name == "meta":
                    keys = _meta_keys(files[name])
                    if keys:
                        conn.execute(delete(table).where(table.c.key.in_(keys)))
                step = None
                if progress:

                    def step(k: int, before: int = done, t: str = table.name) -> None:
                        progress((before + k) / total, f"restoring {t}: {k:,} rows")

                n = _restore_table(conn, table, entry, files[name], report, name, on_rows=step)
                _tally_rows(report, name, n, expected=entry["rows"])
                done += entry["rows"]
            if report.ok:
                _reset_sequences(conn)
                if kept_runs:
                    conn.execute(ImportRun.__table__.insert(), kept_runs)
        except (IntegrityError, DataError) as exc:
            session.rollback()
            reason = str(exc.orig or exc).strip().splitlines()[0][:300]
            report.add(Problem(MANIFEST, 0, "", "", f"the backup's rows do not fit together: {reason}"))
            return _finish(report, url=url, actor=actor, source=source, t0=t0, dry_run=dry_run)
        except BackupError as exc:
            session.rollback()
            report.add(Problem(MANIFEST, 0, "", "", str(exc)))
            return _finish(report, url=url, actor=actor, source=source, t0=t0, dry_run=dry_run)
        except BaseException:
            session.rollback()
            raise
        report.written = report.ok and not dry_run
        if report.written:
            stamp = {"at": utcnow().isoformat(timespec="seconds"), "by": actor[:60], "source": source[-80:]}
            session.merge(Meta(key=LAST_RESTORE_KEY, value=json.dumps(stamp)[:200]))
            bump_data_version(session)
            session.commit()
        else:
            session.rollback()
    if report.written:  # a restore replaces everything: rebuild the columnar copy (engine/)
        from engine import sync_after_write

        sync_after_write(url, rebuild=True)
    if not report.ok:
        for fr in report.files.values():
            fr.inserted = 0
    return _finish(report, url=url, actor=actor, source=source, t0=t0, dry_run=dry_run, progress=progress)


def _not_empty(contents: list[str]) -> Problem:
    """The refusal of a restore into a database that holds data (real restore and dry run alike)."""
    return Problem(
        MANIFEST,
        0,
        "",
        "",
        "a backup restores only into an empty database, and this one holds "
        + ", ".join(contents)
        + ". Nothing was written. Point DATABASE_URL at a new database (manage.py migrate "
        "creates it) and restore there; to merge only the six contract files into this "
        "database, import them without the backup/ folder.",
    )


def _check_backup(
    engine: Engine,
    plan: list[tuple[str, dict]],
    files: dict[str, Any],
    report: ImportReport,
    *,
    progress: ProgressFn | None,
    total: int,
) -> None:
    """A dry run: on a read-only connection (import_connection), with no lock, check that the
    database is empty and parse and type-check every row of every backup file, counting rows
    per file as a restore would. Nothing is inserted, so whether the restored rows fit together
    (foreign keys, unique keys) is only checked by the real restore, which is atomic."""
    done = 0
    # Read-only for the whole dry run (SQLite query_only, a PostgreSQL read-only transaction),
    # so it can never take the write lock; the rollback ends the read before the files are read.
    with import_lock.import_connection(engine, dry_run=True) as conn:
        contents = database_contents(conn)
        conn.rollback()
        if contents:
            report.add(_not_empty(contents))
            return
        for name, entry in plan:
            table = SQLModel.metadata.tables[entry["table"]]
            if progress:
                progress(done / total, f"checking {table.name}")
            step = None
            if progress:

                def step(k: int, before: int = done, t: str = table.name) -> None:
                    progress((before + k) / total, f"checking {t}: {k:,} rows")

            try:
                n = _restore_table(None, table, entry, files[name], report, name, on_rows=step)
            except BackupError as exc:
                report.add(Problem(MANIFEST, 0, "", "", str(exc)))
                return
            _tally_rows(report, name, n, expected=entry["rows"])
            done += entry["rows"]


def _tally_rows(report: ImportReport, name: str, n: int, *, expected: int) -> None:
    """Record the rows read from one backup file; fewer or more than the manifest says is a problem."""
    report.files[name].rows = report.files[name].inserted = n
    if n != expected:
        report.add(
            Problem(name, 0, "", "", f"holds {n:,} rows but the manifest says {expected:,}: the backup is incomplete")
        )


def _finish(
    report: ImportReport,
    *,
    url: str | None,
    actor: str,
    source: str,
    t0: float,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
) -> ImportReport:
    if not report.ok and not dry_run:
        # Keep an audit trail of refused restores, outside the rolled-back transaction.
        with Session(get_engine(url)) as s:
            s.add(
                ImportRun(
                    actor=actor,
                    source=("restore: " + source)[:300],
                    status="rejected",
                    finished_at=utcnow(),
                    summary=json.dumps({k: vars(v) for k, v in report.files.items()}),
                    problems=report.problem_count,
                )
            )
            s.commit()
    report.seconds = time.perf_counter() - t0
    if progress:
        progress(1.0, "done")
    return report


def _read_manifest(files: dict[str, Any]) -> dict:
    if MANIFEST not in files:
        raise BackupError("no manifest.json in backup/: this is not a backup written by export")
    try:
        with _open(files[MANIFEST]) as fh:
            manifest = json.loads(fh.read(1_000_000))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"the manifest is not readable JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("the manifest is not an onboarding-analytics backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"backup format version {manifest.get('format_version')!r}; this version of the app reads {FORMAT_VERSION}"
        )
    if not isinstance(manifest.get("tables"), dict):
        raise BackupError("the manifest lists no tables")
    return manifest


def _plan(manifest: dict, files: dict[str, Any]) -> list[tuple[str, dict]]:
    """(file, entry) per backed-up table in insert order; BackupError if the backup does not
    fit this schema (a table or column this database lacks, or a required column missing)."""
    known = SQLModel.metadata.tables
    unknown = [t for t in manifest["tables"] if t not in known]
    if unknown:
        raise BackupError(
            f"the backup has table(s) {', '.join(unknown)} that this database does not (schema revision "
            f"{manifest.get('schema_revision')!r}): restore it with the app version that wrote it"
        )
    plan = []
    for table in tables():
        entry = manifest["tables"].get(table.name)
        if entry is None:
            continue
        cols = entry.get("columns")
        rows = entry.get("rows")
        if not isinstance(cols, list) or not isinstance(rows, int):
            raise BackupError(f"the manifest's entry for {table.name} lacks its columns or row count")
        extra = [c for c in cols if c not in table.c]
        if extra:
            raise BackupError(
                f"{table.name} in the backup has column(s) {', '.join(extra)} that this database does not "
                f"(schema revision {manifest.get('schema_revision')!r})"
            )
        lacking = [
            c.name
            for c in table.columns
            if c.name not in cols and not c.nullable and c.default is None and c.server_default is None
        ]
        if lacking:
            raise BackupError(f"{table.name} in the backup lacks required column(s) {', '.join(lacking)}")
        name = file_name(table)
        if name not in files:
            raise BackupError(f"{name} is missing from the backup")
        plan.append((name, {**entry, "table": table.name}))
    return plan


def _lock(conn: Connection) -> None:
    """Serialise restores and imports before the emptiness check (SQLite: take the write
    lock now; PostgreSQL: a transaction-scoped advisory lock)."""
    if conn.dialect.name == "postgresql":
        # The same key as imports take (db/import_lock.py), so a restore and an import never overlap.
        conn.execute(text("SELECT pg_advisory_xact_lock(:cls, hashtext(current_schema()))"), {"cls": ADVISORY_CLASS})
    else:
        # A write statement takes SQLite's write lock even when it matches no row.
        conn.execute(text("UPDATE meta SET value = value WHERE key = 'data_version'"))


def _take_rejected_runs(conn: Connection) -> list[dict]:
    """Rejected import attempts made on the empty database: kept, renumbered after the backup's."""
    t = ImportRun.__table__
    rows = [dict(r) for r in conn.execute(select(t).order_by(t.c.id)).mappings()]
    if rows:
        conn.execute(delete(t))
    return [{k: v for k, v in r.items() if k != "id"} for r in rows]


def _meta_keys(source: Source) -> list[str]:
    keys = []
    for _n, line in _lines(source):
        try:
            key = json.loads(line).get("key")
        except (ValueError, AttributeError):
            continue
        if isinstance(key, str):
            keys.append(key)
    return keys


def _restore_table(
    conn: Connection | None,
    table: Table,
    entry: dict,
    source: Source,
    report: ImportReport,
    name: str,
    *,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Insert one table's rows in chunks (no connection: only check them, a dry run); report
    unreadable rows (file, line, column); return rows read."""
    names = list(entry["columns"])
    cols = [table.c[c] for c in names]
    kinds = [_kind(c) for c in cols]
    keys = [c.key for c in cols]
    # COPY needs every column; a backup from before a column existed goes through inserts,
    # which fill the model's defaults.
    copy = conn is not None and conn.dialect.name == "postgresql" and len(cols) == len(table.columns)
    batch: list[dict] = []
    n = 0
    for number, line in _lines(source):
        n += 1
        try:
            obj = json.loads(line.decode("utf-8"))  # str: json skips guessing the encoding
        except (ValueError, UnicodeDecodeError) as exc:
            report.add(Problem(name, number, "", line[:80].decode("utf-8", "replace"), f"not a JSON object ({exc})"))
            continue
        if not isinstance(obj, dict):
            report.add(Problem(name, number, "", str(obj)[:80], "not a JSON object"))
            continue
        row = {}
        for col_name, key, kind, col in zip(names, keys, kinds, cols, strict=True):
            v = obj.get(col_name)
            try:
                row[key] = _load(kind, v)
            except ValueError as exc:
                report.add(Problem(name, number, col_name, str(v)[:200], str(exc)))
                continue
            if row[key] is None and not col.nullable and col.default is None:
                report.add(Problem(name, number, col_name, "", "required value is missing"))
        if report.ok and conn is not None:
            batch.append(row)
            if len(batch) >= CHUNK:
                _insert(conn, table, keys, batch, copy=copy)
                batch = []
                if on_rows:
                    on_rows(n)
        elif on_rows and n % CHUNK == 0:
            on_rows(n)
    if batch and report.ok and conn is not None:
        _insert(conn, table, keys, batch, copy=copy)
    return n


def _insert(conn: Connection, table: Table, keys: list[str], batch: list[dict], *, copy: bool) -> None:
    if copy:
        # COPY on PostgreSQL: the events table may hold millions of rows.
        dbapi = conn.dialect.dbapi
        cur = conn.connection.dbapi_connection.cursor()
        columns = ", ".join(f'"{table.c[k].name}"' for k in keys)
        statement = f'COPY "{table.name}" ({columns}) FROM STDIN'
        try:
            with cur.copy(statement) as cp:
                for r in batch:
                    cp.write_row([r[k] for k in keys])
        except (dbapi.IntegrityError, dbapi.DataError) as exc:  # the raw cursor's errors, as SQLAlchemy's
            wrapped = IntegrityError if isinstance(exc, dbapi.IntegrityError) else DataError
            raise wrapped(statement, None, exc) from exc
        finally:
            cur.close()
    else:
        conn.execute(table.insert(), batch)


def _reset_sequences(conn: Connection) -> None:
    """PostgreSQL: the next generated id follows the restored ones."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables():
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or _kind(pk[0]) != "int":
            continue
        col = pk[0].name
        seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": col}).scalar()
        if seq:
            conn.execute(
                text(f'SELECT setval(:s, COALESCE((SELECT MAX("{col}") FROM "{table.name}"), 0) + 1, false)'),
                {"s": seq},
            )
