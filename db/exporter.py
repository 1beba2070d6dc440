"""Export every table in the import contract's format, so export -> import round-trips, plus
the complete backup beside it (db/backup.py: every table, every column, as JSON lines).

Text cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR), or
that start with an apostrophe, get a leading apostrophe; the importer removes exactly one.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Connection

from db.backup import remove_backup_files, write_backup
from db.csvsafe import FORMULA_PREFIXES
from db.importer import SPECS
from db.session import get_engine

EVENT_CHUNK = 200_000

QUERIES = {
    "team.csv": "SELECT email, name, role FROM team_members ORDER BY email",
    "accounts.csv": (
        "SELECT a.external_id AS account_id, a.name, a.segment, a.contract_start, a.industry, a.employees, "
        "a.plan, a.channel, a.region, a.arr, a.licensed_seats, t.email AS csm_email "
        "FROM accounts a LEFT JOIN team_members t ON t.id = a.csm_id ORDER BY a.external_id"
    ),
    "milestones.csv": (
        "SELECT a.external_id AS account_id, m.milestone_key AS milestone, m.due_date, m.completed_at "
        "FROM account_milestones m JOIN accounts a ON a.id = m.account_id "
        "JOIN milestone_definitions d ON d.key = m.milestone_key "
        "ORDER BY a.external_id, d.sort_order, m.milestone_key"
    ),
    "outcomes.csv": (
        "SELECT a.external_id AS account_id, o.date, o.type, o.arr_change "
        "FROM outcomes o JOIN accounts a ON a.id = o.account_id ORDER BY a.external_id, o.date, o.type"
    ),
    "checklist.csv": (
        "SELECT a.external_id AS account_id, c.category, c.criterion, c.target, c.actual, c.status, "
        "t.email AS owner_email, c.due_date, c.note, c.done_at "
        "FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
        "LEFT JOIN team_members t ON t.id = c.owner_id "
        "ORDER BY a.external_id, c.position, c.category, c.criterion"
    ),
    "events.csv": (
        "SELECT a.external_id AS account_id, e.event, e.ts AS timestamp, e.user_id, e.properties "
        "FROM events e JOIN accounts a ON a.id = e.account_id "
        "ORDER BY a.external_id, e.ts, e.event, e.user_id"
    ),
}


def neutralise(s: pd.Series) -> pd.Series:
    """Prefix a ' to text a spreadsheet would evaluate as a formula, and to text that starts
    with ' itself, so the importer's dropping of one leading ' gives the value back exactly."""
    s = s.astype(object).where(s.notna(), "").astype(str)
    mask = s.str.startswith((*FORMULA_PREFIXES, "'"))
    return s.where(~mask, "'" + s)


def _fmt_number(s: pd.Series) -> pd.Series:
    num = pd.to_numeric(s, errors="coerce")
    out = pd.Series("", index=s.index, dtype=object)
    has = num.notna()
    # Integral values print without ".0"; beyond 2**53 (where int64 would overflow) repr is exact.
    integral = has & (num.fillna(0) % 1 == 0) & (num.abs() < 2**53)
    out[integral] = num[integral].astype("int64").astype(str)
    frac = has & ~integral
    out[frac] = num[frac].map(repr)
    return out


def _fmt_ts(s: pd.Series) -> pd.Series:
    ts = pd.to_datetime(s, utc=True, format="mixed")
    base = ts.dt.strftime("%Y-%m-%dT%H:%M:%S")
    micro = ts.dt.microsecond.fillna(0).astype(int)
    frac = np.where(micro > 0, "." + micro.astype(str).str.zfill(6), "")
    out = base + frac + "Z"
    return out.where(ts.notna(), "")


def _fmt_date(s: pd.Series) -> pd.Series:
    d = pd.to_datetime(s, errors="coerce")
    return d.dt.strftime("%Y-%m-%d").where(d.notna(), "")


def format_frame(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Render one file's rows as contract text cells."""
    out = pd.DataFrame(index=df.index)
    for col in SPECS[name]:
        s = df[col.name]
        if col.kind == "date":
            out[col.name] = _fmt_date(s)
        elif col.kind == "ts":
            out[col.name] = _fmt_ts(s)
        elif col.kind in ("int", "float"):
            out[col.name] = _fmt_number(s)
        else:
            out[col.name] = neutralise(s)
    return out


def _csv_text(cells: pd.DataFrame, header: bool) -> str:
    """Formatted cells as CSV text, each row ending in a newline.

    The csv writer quotes a field only for characters of its line terminator, so with a bare
    newline terminator a field holding a carriage return would go out unquoted and split its
    row when read back. A chunk with any carriage return is therefore written row by row with
    CRLF as the terminator (which quotes such fields), each row then ending in a newline.
    """
    if not any(cells[c].str.contains("\r", regex=False).any() for c in cells.columns):
        buf = io.StringIO()
        cells.to_csv(buf, index=False, header=header, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        return buf.getvalue()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    out = []
    for row in ([list(cells.columns)] if header else []) + cells.to_numpy().tolist():
        writer.writerow(row)
        out.append(buf.getvalue()[:-2] + "\n")
        buf.seek(0)
        buf.truncate()
    return "".join(out)


def _frames(conn: Connection, name: str) -> Iterator[pd.DataFrame]:
    if name == "events.csv":
        # A server-side cursor on PostgreSQL: the rows arrive chunk by chunk, not all at once.
        streamed = conn.execution_options(stream_results=True)
        yield from pd.read_sql_query(text(QUERIES[name]), streamed, chunksize=EVENT_CHUNK)
    else:
        yield pd.read_sql_query(text(QUERIES[name]), conn)


@contextmanager
def _snapshot(url: str | None) -> Iterator[Connection]:
    """One read-only snapshot for the whole export, so the files agree with each other (an
    account created half-way cannot be in events but missing from accounts)."""
    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN")  # pysqlite opens no transaction for reads by itself
            yield conn
    else:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")  # the first statement: the transaction begins here
            yield conn


def export_to(
    write: Callable[[str, str], None],
    *,
    url: str | None = None,
    progress: Callable[[float, str], None] | None = None,
    backup: bool = True,
) -> dict[str, int]:
    """Render every contract file (then, with `backup`, the backup files) and hand
    (name, text chunk) to `write`, one file after the other; return rows per file."""
    counts: dict[str, int] = {}
    share = 0.5 if backup else 1.0
    with _snapshot(url) as conn:
        names = list(SPECS)
        for i, name in enumerate(names):
            if progress:
                progress(share * i / len(names), f"exporting {name}")
            counts[name] = 0
            header = True
            for df in _frames(conn, name):
                write(name, _csv_text(format_frame(name, df), header))
                header = False
                counts[name] += len(df)
            if header:  # no rows at all: still write the header
                write(name, ",".join(c.name for c in SPECS[name]) + "\n")
        if backup:
            sub = (lambda f, m: progress(share + share * f, m)) if progress else None
            counts.update(write_backup(conn, write, progress=sub))
    if progress:
        progress(1.0, "done")
    return counts


def export_dir(path: str | Path, *, url: str | None = None, backup: bool = True) -> dict[str, int]:
    """Write the contract files (and, with `backup`, the backup/ folder) into a directory."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if not backup:
        # A backup/ left by an earlier export would be restored instead of these files.
        remove_backup_files(path)
    handles: dict[str, io.TextIOBase] = {}
    try:

        def write(name: str, chunk: str) -> None:
            if name not in handles:
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                handles[name] = open(path / name, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
            handles[name].write(chunk)

        return export_to(write, url=url, backup=backup)
    finally:
        for h in handles.values():
            h.close()


def export_zip_to(
    target: str | Path | BinaryIO,
    *,
    url: str | None = None,
    progress: Callable[[float, str], None] | None = None,
    backup: bool = True,
) -> dict[str, int]:
    """Write the export as one zip, each member streamed in (never held whole in memory)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        current: list = [None, None]  # name, open member

        def write(name: str, chunk: str) -> None:
            if current[0] != name:
                if current[1] is not None:
                    current[1].close()
                current[:] = [name, zf.open(name, "w", force_zip64=True)]
            current[1].write(chunk.encode("utf-8"))

        try:
            return export_to(write, url=url, progress=progress, backup=backup)
        finally:
            if current[1] is not None:
                current[1].close()


def export_zip(
    *, url: str | None = None, progress: Callable[[float, str], None] | None = None, backup: bool = True
) -> bytes:
    """All contract files and the backup in one zip (for the Data page's download)."""
    buf = io.BytesIO()
    export_zip_to(buf, url=url, progress=progress, backup=backup)
    return buf.getvalue()
