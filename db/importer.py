"""CSV import per the data contract (PRODUCT.md §3).

One transaction for the whole import: every file is validated row by row and every
problem is reported (file, row, column, value, reason); if there is any problem, or on a
dry run, the transaction is rolled back and nothing is written. Entity files are
upserted by natural key, events appended with their natural key deduplicated, so
importing the same files again changes nothing. Events stream in batches.

Row numbers are line numbers in the file: the header is row 1.

Uploads are bounded (PRODUCT.md §7, issue 10): a file's size, a zip's entries and their
declared and actual uncompressed sizes, and the length of one line are limited, and zip
members are streamed, never read whole. A dry run only reads. A real import holds the
import lock (an advisory lock on PostgreSQL, the write lock on SQLite) so imports run one
at a time, and the second is told who started the first.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlmodel import Session

from db.bulk import ACCOUNT_COLUMNS, SQLITE_TS, insert_events, upsert
from db.defaults import DEFAULT_CHECKLIST
from db.models import (
    CHECKLIST_CATEGORIES,
    CHECKLIST_STATUSES,
    OUTCOME_TYPES,
    ROLES,
    SEGMENTS,
    Account,
    AccountMilestone,
    ChecklistItem,
    ImportRun,
    Outcome,
    TeamMember,
    utcnow,
)
from db.session import BUSY_TIMEOUT_MS, bump_data_version, get_engine, is_sqlite
from db.settings_store import milestone_definitions
from db.templates import apply_new_account_defaults

ProgressFn = Callable[[float, str], None]
log = logging.getLogger(__name__)

MB = 1024 * 1024
# Limits of what the importer reads (module settings, so tests can scale them down).
# One uploaded file, uncompressed (a loose CSV or a zip member); .streamlit/config.toml's
# server.maxUploadSize is the same figure, in MB.
MAX_FILE_BYTES = int(os.environ.get("IMPORT_MAX_FILE_MB", "1024")) * MB
# All the files of one upload together, uncompressed.
MAX_TOTAL_BYTES = int(os.environ.get("IMPORT_MAX_TOTAL_MB", "2048")) * MB
MAX_ZIP_ENTRIES = int(os.environ.get("IMPORT_MAX_ZIP_ENTRIES", "100"))
# One row of a file (a line, or the lines of one quoted multi-line record), in characters.
MAX_ROW_CHARS = int(os.environ.get("IMPORT_MAX_ROW_CHARS", str(MB)))
MAX_FIELD_CHARS = 131_072  # one cell: the csv module's default, set explicitly
# How long an import waits for a lock (SQLite's write lock, a PostgreSQL row lock) and
# how long one of its statements may run on PostgreSQL.
LOCK_WAIT_MS = int(os.environ.get("IMPORT_LOCK_WAIT_MS", "5000"))
STATEMENT_TIMEOUT_MS = int(os.environ.get("IMPORT_STATEMENT_TIMEOUT_MS", "600000"))
# The PostgreSQL advisory lock class for imports (the second key is the schema's hash).
ADVISORY_CLASS = 0x1D0C

MAX_PROBLEMS = 5000
UNKNOWN_ACCOUNT = "unknown account: not in accounts.csv or the database"
EVENT_BATCH = 50_000
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Col:
    name: str
    kind: str = "text"  # text | enum | date | ts | int | float | json | email
    required: bool = False
    choices: tuple[str, ...] = ()
    nonneg: bool = False
    max_len: int | None = None  # the database column's length (VARCHAR(n))


SPECS: dict[str, list[Col]] = {
    "team.csv": [
        Col("email", "email", True, max_len=254),
        Col("name", "text", True, max_len=200),
        Col("role", "enum", True, ROLES),
    ],
    "accounts.csv": [
        Col("account_id", "text", True, max_len=100),
        Col("name", "text", True, max_len=300),
        Col("segment", "enum", True, SEGMENTS),
        Col("contract_start", "date", True),
        Col("industry", max_len=100),
        Col("employees", "int", nonneg=True),
        Col("plan", max_len=100),
        Col("channel", max_len=20),
        Col("region", max_len=100),
        Col("arr", "float", nonneg=True),
        Col("licensed_seats", "int", nonneg=True),
        Col("csm_email", "email", max_len=254),
    ],
    "events.csv": [
        Col("account_id", "text", True, max_len=100),
        Col("event", "text", True, max_len=200),
        Col("timestamp", "ts", True),
        Col("user_id", max_len=200),
        Col("properties", "json"),
    ],
    "milestones.csv": [
        Col("account_id", "text", True, max_len=100),
        Col("milestone", "text", True, max_len=100),
        Col("due_date", "date"),
        Col("completed_at", "ts"),
    ],
    "outcomes.csv": [
        Col("account_id", "text", True, max_len=100),
        Col("date", "date", True),
        Col("type", "enum", True, OUTCOME_TYPES),
        Col("arr_change", "float"),
    ],
    "checklist.csv": [
        Col("account_id", "text", True, max_len=100),
        Col("category", "enum", True, CHECKLIST_CATEGORIES),
        Col("criterion", "text", True, max_len=300),
        Col("target", max_len=100),
        Col("actual", max_len=100),
        Col("status", "enum", choices=CHECKLIST_STATUSES),
        Col("owner_email", "email", max_len=254),
        Col("due_date", "date"),
        # Beyond the contract's columns: the item's note, so export -> import round-trips.
        Col("note"),
    ],
}
FILE_ORDER = list(SPECS)
FILE_ORDER.sort(key=["team.csv", "accounts.csv", "milestones.csv", "outcomes.csv", "checklist.csv", "events.csv"].index)
KEYS = {
    "team.csv": ["email"],
    "accounts.csv": ["account_id"],
    "milestones.csv": ["account_id", "milestone"],
    "outcomes.csv": ["account_id", "date", "type"],
    "checklist.csv": ["account_id", "category", "criterion"],
}
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# ISO 8601 (extended format, as RFC 3339 also allows a space for the T): a date, optionally
# a time to the minute, second or fraction, optionally an offset. Nothing else: pandas also
# reads "now", "today" or "Jan 5", which would make a re-import differ from the first.
_TS_RE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$"
)
INT_MAX = 2_147_483_647  # INTEGER columns (PostgreSQL int4)


@dataclass
class Problem:
    file: str
    row: int
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file} row {self.row}" + (f", column {self.column}" if self.column else "")
        value = f" (value {self.value!r})" if self.value != "" else ""
        return f"{where}: {self.reason}{value}"


@dataclass
class FileReport:
    file: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_skipped: int = 0
    problems: int = 0


@dataclass
class ImportReport:
    dry_run: bool
    files: dict[str, FileReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    written: bool = False

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, p: Problem) -> None:
        self.problem_count += 1
        if p.file in self.files:
            self.files[p.file].problems += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(p)

    @property
    def duplicates_skipped(self) -> int:
        return sum(f.duplicates_skipped for f in self.files.values())

    def problems_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(p.file, p.row, p.column, p.value, p.reason) for p in self.problems],
            columns=["file", "row", "column", "value", "reason"],
        )

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                (f.file, f.rows, f.inserted, f.updated, f.unchanged, f.duplicates_skipped, f.problems)
                for f in self.files.values()
            ],
            columns=["file", "rows", "inserted", "updated", "unchanged", "duplicates skipped", "problems"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "written": self.written,
            "seconds": round(self.seconds, 2),
            "files": {k: vars(v) for k, v in self.files.items()},
            "problem_count": self.problem_count,
            "problems_listed": len(self.problems),
            "warnings": self.warnings,
        }


class ImportError_(Exception):
    """Raised internally to abort reading a file after an unrecoverable problem."""


class ImportFailed(Exception):
    """The import could not run or the database refused it; nothing was written.

    The message is for the user (no SQL, no parameters, no server paths); the detail is logged."""


class ImportBusy(ImportFailed):
    """Another import holds the import lock."""


class _TooLong(Exception):
    """A row of a file is longer than MAX_ROW_CHARS."""


class _TooLarge(Exception):
    """A zip member decompresses to more than MAX_FILE_BYTES."""


@dataclass(frozen=True)
class ZipMember:
    """A CSV file inside an uploaded zip, streamed when read (never decompressed whole)."""

    archive: bytes
    member: str
    size: int  # the declared uncompressed size
    label: str  # for messages: "a/team.csv in data.zip"


@dataclass(frozen=True)
class Refused:
    """An upload entry refused before reading (too large, a duplicate name, a bad zip)."""

    reason: str


Source = Path | bytes | ZipMember | Refused


# ----------------------------------------------------------------------------- sources


def files_from_dir(path: str | Path) -> dict[str, Path]:
    """The contract's CSV files found in a directory (unknown .csv files are reported)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory")
    return {p.name: p for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() == ".csv"}


def _mb(n: int) -> str:
    """A size for a message: 2.0 GB, 120 MB, 5.0 MB, 98 KB, 150 bytes."""
    if n >= 1024 * MB:
        return f"{n / (1024 * MB):,.1f} GB"
    if n >= MB:
        return f"{n / MB:,.0f} MB" if n >= 10 * MB else f"{n / MB:,.1f} MB"
    return f"{n / 1024:,.0f} KB" if n >= 1024 else f"{n} bytes"


def files_from_uploads(uploads: list[tuple[str, bytes]]) -> dict[str, Source]:
    """Uploaded files (name, bytes); a .zip is expanded to the CSV files inside it.

    Nothing is decompressed here: zip members are checked against the limits by their
    declared sizes and streamed when read. A name given twice (in two folders of a zip, or
    a loose file and a zip member) is refused with both names."""
    out: dict[str, Source] = {}
    labels: dict[str, list[str]] = {}
    total = 0

    def put(base: str, label: str, src: Source, size: int) -> None:
        nonlocal total
        key = base.lower() if base.lower() in SPECS else base
        labels.setdefault(key, []).append(label)
        if len(labels[key]) > 1:
            out[key] = Refused(
                f"{key} appears {len(labels[key])} times in the upload ({' and '.join(labels[key])}); "
                "upload only one of them"
            )
            return
        total += size
        if isinstance(src, Refused) or total <= MAX_TOTAL_BYTES:
            out[key] = src
        else:
            out[key] = Refused(f"the upload adds up to more than {_mb(MAX_TOTAL_BYTES)} uncompressed; split it")

    for name, data in uploads:
        base = Path(name).name
        if base.lower().endswith(".zip"):
            try:
                members = _zip_members(data, base)
            except _ZipRefused as exc:
                out[base] = Refused(str(exc))
                continue
            for inner, label, src, size in members:
                put(inner, label, src, size)
        elif len(data) > MAX_FILE_BYTES:
            put(base, base, Refused(f"the file is {_mb(len(data))}; at most {_mb(MAX_FILE_BYTES)} per file"), 0)
        else:
            put(base, base, data, len(data))
    return out


class _ZipRefused(Exception):
    pass


def _zip_entry_count(data: bytes) -> int | None:
    """The number of entries the zip's end record declares, read before the directory itself."""
    end = getattr(zipfile, "_EndRecData", None)
    if end is None:  # pragma: no cover - a Python without the helper: the upload size bounds it
        return 0
    rec = end(io.BytesIO(data))
    return None if rec is None else int(rec[4])  # _ECD_ENTRIES_TOTAL (zip64-aware)


def _zip_members(data: bytes, zipname: str) -> list[tuple[str, str, Source, int]]:
    """(file name, label, source, declared size) of the CSV files in a zip, within the limits."""
    try:
        entries = _zip_entry_count(data)
        if entries is None:
            raise _ZipRefused("not a readable zip file")
        if entries > MAX_ZIP_ENTRIES:
            raise _ZipRefused(f"the zip has {entries:,} entries; at most {MAX_ZIP_ENTRIES:,} are accepted")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        if isinstance(exc, _ZipRefused):
            raise
        raise _ZipRefused("not a readable zip file") from exc
    out: list[tuple[str, str, Source, int]] = []
    declared = 0
    for info in infos:
        inner = Path(info.filename).name
        if info.is_dir() or not inner.lower().endswith(".csv") or inner.startswith("."):
            continue
        if "__MACOSX" in Path(info.filename).parts:
            continue  # macOS Finder's resource forks
        label = f"{info.filename} in {zipname}"
        if info.file_size > MAX_FILE_BYTES:
            src: Source = Refused(
                f"{label} is {_mb(info.file_size)} uncompressed; at most {_mb(MAX_FILE_BYTES)} per file"
            )
        elif info.flag_bits & 0x1:
            src = Refused(f"{label} is encrypted; zip it without a password")
        else:
            src = ZipMember(data, info.filename, info.file_size, label)
        declared += info.file_size
        if declared > MAX_TOTAL_BYTES:
            raise _ZipRefused(f"the files in the zip add up to more than {_mb(MAX_TOTAL_BYTES)} uncompressed; split it")
        out.append((inner, label, src, 0 if isinstance(src, Refused) else info.file_size))
    return out


class _Counting(io.RawIOBase):
    """Counts bytes read, for progress; refuses to read past `limit` bytes (a zip bomb)."""

    def __init__(self, raw: BinaryIO, limit: int | None = None) -> None:
        self.raw = raw
        self.count = 0
        self.limit = limit

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        if self.limit is not None and self.count > self.limit:
            raise _TooLarge
        return n


def _open(source: Path | bytes | ZipMember) -> tuple[BinaryIO, int, int | None]:
    """A binary stream of the source, its size, and the most bytes it may yield."""
    if isinstance(source, ZipMember):
        zf = zipfile.ZipFile(io.BytesIO(source.archive))
        try:
            member = zf.open(source.member)
        except BaseException:
            zf.close()
            raise
        return member, source.size, MAX_FILE_BYTES
    if isinstance(source, bytes | bytearray):
        return io.BytesIO(source), len(source), None
    return open(source, "rb"), Path(source).stat().st_size, None


def _size(source: Source) -> int:
    if isinstance(source, ZipMember):
        return source.size
    if isinstance(source, Refused):
        return 0
    if isinstance(source, bytes | bytearray):
        return len(source)
    return Path(source).stat().st_size


class _Lines:
    """Lines of a text stream, each read with a bound: a file of one 2 GiB line costs at most
    MAX_ROW_CHARS of memory. `record` counts the characters of the current CSV record, which
    the reader resets after each record (a quoted field may span lines)."""

    def __init__(self, stream: io.TextIOBase, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.record = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.stream.readline(self.limit + 2)
        if not line:
            raise StopIteration
        self.record += len(line)
        if len(line.rstrip("\r\n")) > self.limit or self.record > self.limit + 2:
            raise _TooLong
        return line


# ----------------------------------------------------------------------------- reading


def _read_chunks(
    name: str,
    source: Path | bytes,
    report: ImportReport,
    *,
    chunk_rows: int,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[tuple[list[str], pd.DataFrame, np.ndarray]]:
    """Yield (header, frame of str, row numbers) chunks; report malformed rows."""
    spec = SPECS[name]
    line = 1
    try:
        raw, _bytes, limit = _open(source)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, ValueError) as exc:
        report.add(Problem(name, 0, "", "", f"the file cannot be read from the zip: {exc}"))
        return
    counting = _Counting(raw, limit)
    stream = io.TextIOWrapper(io.BufferedReader(counting), encoding="utf-8-sig", newline="", errors="strict")
    csv.field_size_limit(MAX_FIELD_CHARS)
    lines = _Lines(stream, MAX_ROW_CHARS)
    reader = csv.reader(lines)
    try:
        try:
            header = next(reader)
        except StopIteration:
            report.add(Problem(name, 1, "", "", "the file is empty: a header row is required"))
            return
        lines.record = 0
        header = [h.strip().lower() for h in header]
        seen: set[str] = set()
        for h in header:
            if h in seen:
                report.add(Problem(name, 1, h, h, "column appears twice in the header"))
            seen.add(h)
        known = {c.name for c in spec}
        missing = [c.name for c in spec if c.required and c.name not in header]
        for m in missing:
            report.add(Problem(name, 1, m, "", "missing required column"))
        unknown = [h for h in header if h and h not in known]
        if unknown:
            report.warnings.append(f"{name}: ignored unknown column(s) {', '.join(unknown)}")
        if missing or len(seen) != len(header):
            return
        width = len(header)
        rows: list[list[str]] = []
        numbers: list[int] = []
        prev_end = reader.line_num
        for rec in reader:
            lines.record = 0
            start_line = prev_end + 1
            prev_end = reader.line_num
            if not rec or all(not f.strip() for f in rec):
                continue  # a blank line, or a spreadsheet's empty row (",,,")
            if len(rec) != width:
                report.add(
                    Problem(
                        name,
                        start_line,
                        "",
                        ",".join(rec)[:80],
                        f"has {len(rec)} fields but the header has {width}",
                    )
                )
                continue
            rows.append(rec)
            numbers.append(start_line)
            if len(rows) >= chunk_rows:
                if on_bytes:
                    on_bytes(counting.count)
                yield header, pd.DataFrame(rows, columns=header, dtype=object), np.asarray(numbers)
                rows, numbers = [], []
        line = prev_end
        if rows:
            yield header, pd.DataFrame(rows, columns=header, dtype=object), np.asarray(numbers)
        if on_bytes:
            on_bytes(counting.count)
    except UnicodeDecodeError as exc:
        report.add(
            Problem(
                name,
                reader.line_num + 1,
                "",
                "",
                f"the file is not UTF-8 text ({exc.reason} at byte {exc.start} of a block); save it as UTF-8 and retry",
            )
        )
    except csv.Error as exc:
        report.add(
            Problem(name, reader.line_num or line, "", "", f"unreadable CSV: {exc}; reading of this file stopped here")
        )
    except _TooLong:
        report.add(
            Problem(
                name,
                reader.line_num + 1,
                "",
                "",
                f"row too long: more than {MAX_ROW_CHARS:,} characters (is this a CSV file?); "
                "reading of this file stopped here",
            )
        )
    except _TooLarge:
        report.add(
            Problem(
                name,
                reader.line_num + 1,
                "",
                "",
                f"the file decompresses to more than {_mb(MAX_FILE_BYTES)}, the most accepted per file; "
                "reading of this file stopped here",
            )
        )
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
        # A damaged or lying zip member (a bad CRC, a truncated stream, an unsupported method).
        report.add(
            Problem(
                name,
                reader.line_num + 1,
                "",
                "",
                f"the zip entry is damaged ({exc}); reading of this file stopped here",
            )
        )
    finally:
        raw.close()


# ----------------------------------------------------------------------------- validation


def _parse_ts(s: pd.Series) -> pd.Series:
    """ISO 8601 timestamps to UTC (NaT if unreadable or not ISO 8601); no offset is UTC.

    Values with and without an offset are parsed apart: in one call pandas reads a value
    without an offset in the offset of an earlier value (2026-01-06T09:00:00 after a
    +02:00 value became 07:00 UTC).
    """
    iso = s.str.match(_TS_RE, na=False).to_numpy()
    has_offset = s.str.contains(r"[T ].*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$", na=False).to_numpy()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    for part in (iso & has_offset, iso & ~has_offset):
        if part.any():
            out[part] = pd.to_datetime(s[part], format="ISO8601", utc=True, errors="coerce")
    return out


def _date_reason(v: str) -> str:
    """Why a YYYY-MM-DD-shaped value did not parse."""
    try:
        date.fromisoformat(v)
    except ValueError:
        return "impossible date: no such day in the calendar"
    return "date out of range: years 1678 to 2261 are supported"


def _unneutralise(s: pd.Series) -> pd.Series:
    """Undo export's formula neutralisation: a leading ' before = + - @ is dropped."""
    mask = s.str.startswith("'") & s.str[1:2].isin(list(FORMULA_PREFIXES))
    if mask.any():
        s = s.where(~mask, s.str[1:])
    return s


def _validate(name: str, df: pd.DataFrame, rows: np.ndarray, report: ImportReport) -> tuple[pd.DataFrame, np.ndarray]:
    """Type-check a chunk; return typed columns and a mask of valid rows."""
    spec = {c.name: c for c in SPECS[name]}
    ok = np.ones(len(df), dtype=bool)
    out = pd.DataFrame(index=df.index)

    def bad(mask: np.ndarray, col: str, values: pd.Series, reason: str | Callable[[str], str]) -> None:
        nonlocal ok
        idx = np.flatnonzero(mask)
        for i in idx:
            v = str(values.iloc[i])
            report.add(Problem(name, int(rows[i]), col, v[:200], reason(v) if callable(reason) else reason))
        ok &= ~mask

    for col in df.columns:
        if col not in spec:
            continue
        c = spec[col]
        raw = df[col].astype(str)
        s = raw.str.strip() if c.kind != "json" else raw
        if c.kind in ("text", "email", "json"):  # the kinds export neutralises (enums never need it)
            s = _unneutralise(s)
        empty = (s.str.strip() == "").to_numpy()
        if c.required:
            bad(empty, col, s, "required value is empty")
        if c.kind in ("text", "email"):
            nul = s.str.contains("\x00", regex=False).to_numpy()
            bad(nul, col, s, "contains a NUL character (\\x00), which cannot be stored")
            if c.max_len:
                stored = s.str.lower() if c.kind == "email" else s
                too_long = ~nul & (stored.str.len() > c.max_len).to_numpy()
                bad(too_long, col, s, f"too long: at most {c.max_len} characters")
        if c.kind in ("text", "json"):
            out[col] = s.where(~empty, None)
        if c.kind == "email":
            lowered = s.str.lower()
            malformed = ~empty & ~lowered.str.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$").to_numpy()
            bad(malformed, col, s, "not an email address")
            out[col] = lowered.where(~empty, None)
        elif c.kind == "enum":
            lookup = {x.lower(): x for x in c.choices}
            mapped = s.str.lower().map(lookup)
            unknown = ~empty & mapped.isna().to_numpy()
            what = {
                "segment": "segment",
                "role": "role",
                "type": "outcome type",
                "status": "status",
                "category": "category",
            }.get(col, col)
            bad(unknown, col, s, f"unknown {what}; allowed: {', '.join(c.choices)}")
            out[col] = mapped
        elif c.kind == "date":
            parsed = pd.to_datetime(s.where(~pd.Series(empty, index=s.index), None), format="%Y-%m-%d", errors="coerce")
            shape = s.str.match(_DATE_RE).to_numpy()
            not_date = ~empty & ~shape
            impossible = ~empty & shape & parsed.isna().to_numpy()
            bad(not_date, col, s, "not a date: use YYYY-MM-DD")
            bad(impossible, col, s, _date_reason)
            out[col] = parsed.dt.date.where(parsed.notna(), None)
        elif c.kind == "ts":
            parsed = _parse_ts(s.where(~pd.Series(empty, index=s.index), None))
            badts = ~empty & parsed.isna().to_numpy()
            bad(badts, col, s, "bad timestamp: use ISO 8601, e.g. 2025-03-01T14:05:00Z (no offset = UTC)")
            out[col] = parsed
        elif c.kind in ("int", "float"):
            num = pd.to_numeric(s.where(~pd.Series(empty, index=s.index), None), errors="coerce")
            notnum = ~empty & (num.isna() | np.isinf(num)).to_numpy()
            bad(notnum, col, s, "not a number")
            if c.nonneg:
                bad((num < 0).to_numpy() & ~notnum, col, s, "must not be negative")
            if c.kind == "int":
                too_big = ~notnum & ~empty & (num.abs() > INT_MAX).to_numpy()
                bad(too_big, col, s, f"too large: at most {INT_MAX}")
                frac = ~notnum & ~empty & ~too_big & (num.fillna(0) % 1 != 0).to_numpy()
                bad(frac, col, s, "must be a whole number")
                out[col] = num.where(~(notnum | too_big | frac)).astype("Int64")
            else:
                out[col] = num
        elif c.kind == "json":
            vals = s.to_numpy()
            badjson = np.zeros(len(s), dtype=bool)
            for i in np.flatnonzero(~empty):
                try:
                    obj = json.loads(vals[i])
                except (ValueError, RecursionError):
                    badjson[i] = True
                    continue
                if not isinstance(obj, dict):
                    badjson[i] = True
            bad(badjson, col, s, 'malformed properties: must be a JSON object like {"plan": "pro"}')
    return out, ok


# ----------------------------------------------------------------------------- the import


@dataclass
class _Context:
    session: Session
    report: ImportReport
    actor: str
    dry_run: bool = False
    writing: bool = True  # a real import without problems so far
    counting: bool = False  # a dry run without problems so far: read-only counts
    accounts: dict[str, int | None] = field(default_factory=dict)  # external id -> pk (None: declared, not written)
    account_info: dict[int, tuple[str, Any]] = field(default_factory=dict)  # pk -> (segment, contract_start)
    team: dict[str, int | None] = field(default_factory=dict)
    milestones: dict[str, dict] = field(default_factory=dict)
    new_accounts: set[int] = field(default_factory=set)
    had_milestones: set[int] = field(default_factory=set)
    had_checklist: set[int] = field(default_factory=set)
    new_event_keys: list[np.ndarray] = field(default_factory=list)  # dry run: hashes of events not in the database

    @property
    def active(self) -> bool:
        """Still writing (a real import) or counting (a dry run)."""
        return self.writing or self.counting

    def stop_writing_if_problems(self) -> None:
        if self.report.problem_count:
            self.writing = False
            self.counting = False

    def release(self) -> None:
        """A dry run ends its read transaction between steps: it holds no snapshot and no lock.
        (Never a real import: its transaction must stay whole.)"""
        if self.dry_run:
            self.session.commit()


def import_files(
    files: dict[str, Source],
    *,
    url: str | None = None,
    dry_run: bool = False,
    actor: str = "cli",
    progress: ProgressFn | None = None,
    source: str = "",
) -> ImportReport:
    """Validate and import the given contract files atomically; see the module docstring.

    A dry run only reads (no write lock, no row lock). A real import takes the import lock
    first; raises ImportBusy if another import holds it and ImportFailed (a message for the
    user, the detail logged) if the database refuses the import. Nothing is written then."""
    t0 = time.perf_counter()
    report = ImportReport(dry_run=dry_run)
    files = _by_contract_name(files)
    unknown = [n for n in files if n not in SPECS]
    for n in unknown:
        if isinstance(files[n], Refused):
            continue
        reason = (
            "not a readable zip file"  # readable zips were expanded by files_from_uploads
            if n.lower().endswith(".zip")
            else f"unknown file name; expected one of {', '.join(FILE_ORDER)}"
        )
        report.add(Problem(n, 0, "", "", reason))
    for n, v in files.items():
        if isinstance(v, Refused):
            report.add(Problem(n, 0, "", "", v.reason))
    present = [n for n in FILE_ORDER if n in files and not isinstance(files[n], Refused)]
    for n in [n for n in FILE_ORDER if n in files]:
        report.files[n] = FileReport(n)
    if not files:
        report.add(Problem("", 0, "", "", "no files to import"))
    sizes = {n: _size(files[n]) for n in present}
    total = max(sum(sizes.values()), 1)

    engine = get_engine(url)
    run_id = None
    status = "failed"
    try:
        if not dry_run and present:
            run_id = _start_run(engine, actor=actor, source=source)
        with _import_connection(engine, dry_run=dry_run) as conn, Session(bind=conn, expire_on_commit=False) as session:
            ctx = _Context(session=session, report=report, actor=actor, dry_run=dry_run)
            ctx.writing = not dry_run and report.problem_count == 0
            ctx.counting = dry_run and report.problem_count == 0
            try:
                if run_id is not None:
                    _take_import_lock(session, run_id)
                _load_reference(ctx)
                ctx.release()
                _read_all(ctx, files, present, sizes, total, progress)
                if ctx.writing:
                    _complete_new_accounts(ctx)
                report.written = report.ok and not dry_run
                if report.written:
                    bump_data_version(session)
                    _finish_run(session, run_id, report, "imported")
                    session.commit()
                    status = "imported"
                else:
                    session.rollback()
                    status = "rejected"
            except BaseException:
                session.rollback()
                raise
    except ImportBusy:
        status = "refused"
        raise
    except ImportFailed:
        raise
    except SQLAlchemyError as exc:
        log.exception("import by %s (%s) failed in the database", actor, source or "files")
        raise ImportFailed(_db_error_message(exc, dry_run=dry_run)) from exc
    finally:
        if run_id is not None and status != "imported":
            _end_run(engine, run_id, report, status)
    report.seconds = time.perf_counter() - t0
    if progress:
        progress(1.0, "done")
    return report


def _by_contract_name(files: dict[str, Source]) -> dict[str, Source]:
    """File names matched case-insensitively (Accounts.csv is accounts.csv); two files that
    are the same contract file are refused, naming both."""
    out: dict[str, Source] = {}
    seen: dict[str, list[str]] = {}
    for n, v in files.items():
        key = n.lower() if n.lower() in SPECS else n
        seen.setdefault(key, []).append(n)
        if len(seen[key]) > 1:
            v = Refused(f"{key} is given {len(seen[key])} times ({' and '.join(seen[key])}); give only one")
        out[key] = v
    return out


def _read_all(
    ctx: _Context,
    files: dict[str, Source],
    present: list[str],
    sizes: dict[str, int],
    total: int,
    progress: ProgressFn | None,
) -> None:
    done_before = 0
    for name in present:

        def on_bytes(b: int, name: str = name, before: int = done_before) -> None:
            if progress:
                progress(min((before + b) / total, 0.99), f"{name}: {b / 1e6:.1f} of {sizes[name] / 1e6:.1f} MB")

        if progress:
            progress(done_before / total, f"reading {name}")
        if name == "events.csv":
            _import_events(ctx, files[name], on_bytes)
        else:
            _import_entity(ctx, name, files[name])
        ctx.stop_writing_if_problems()
        ctx.release()
        done_before += sizes[name]


# ----------------------------------------------------------------------------- locks and timeouts


@contextmanager
def _import_connection(engine: Engine, *, dry_run: bool) -> Iterator[Connection]:
    """One connection for the whole import, with the import's lock waits and timeouts (and,
    for a dry run, read-only): a user's save never waits minutes behind an import, and an
    import never waits long behind a user. The settings are undone before the connection
    goes back to the pool."""
    conn = engine.connect()
    sqlite = is_sqlite(engine)
    try:
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(LOCK_WAIT_MS)}")
            if dry_run:
                conn.exec_driver_sql("PRAGMA query_only = ON")  # a dry run cannot write, even by mistake
        else:
            conn.exec_driver_sql(f"SET lock_timeout = {int(LOCK_WAIT_MS)}")
            conn.exec_driver_sql(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
            if dry_run:
                conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.commit()
        yield conn
    finally:
        try:
            conn.rollback()
            if sqlite:
                conn.exec_driver_sql("PRAGMA query_only = OFF")
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
            else:
                conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
                conn.exec_driver_sql("RESET lock_timeout")
                conn.exec_driver_sql("RESET statement_timeout")
            conn.commit()
        except Exception:  # noqa: BLE001 - a broken connection must not go back to the pool
            conn.invalidate()
        conn.close()


def _start_run(engine: Engine, *, actor: str, source: str) -> int:
    """Record the import as running (committed, so a second import can name who runs)."""
    try:
        with engine.connect() as conn:
            if is_sqlite(engine):
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(LOCK_WAIT_MS)}")
            try:
                run_id = conn.execute(
                    ImportRun.__table__.insert().values(
                        actor=actor[:254], source=source[:300], status="running", started_at=utcnow(), summary="{}"
                    )
                ).inserted_primary_key[0]
                conn.commit()
            finally:
                if is_sqlite(engine):
                    conn.rollback()
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
        return int(run_id)
    except OperationalError as exc:
        if is_sqlite(engine) and "locked" in str(exc.orig):
            # Another import (or a long write) holds SQLite's write lock.
            raise ImportBusy(_busy_message(engine, None)) from exc
        raise


def _take_import_lock(session: Session, run_id: int) -> None:
    """The import lock, held until the import's transaction ends: BEGIN IMMEDIATE (SQLite's
    write lock) or a transaction-scoped advisory lock per schema (PostgreSQL)."""
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError as exc:
            if "locked" not in str(exc.orig):
                raise
            raise ImportBusy(_busy_message(conn.engine, run_id)) from exc
        return
    got = conn.execute(
        text("SELECT pg_try_advisory_xact_lock(:cls, hashtext(current_schema()))"), {"cls": ADVISORY_CLASS}
    ).scalar_one()
    if not got:
        raise ImportBusy(_busy_message(conn.engine, run_id))


def _busy_message(engine: Engine, run_id: int | None) -> str:
    """Who holds the import lock, from the newest other import marked running."""
    q = select(ImportRun.actor, ImportRun.started_at).where(ImportRun.status == "running")
    if run_id is not None:
        q = q.where(ImportRun.id != run_id)
    try:
        with engine.connect() as conn:
            row = conn.execute(q.order_by(ImportRun.started_at.desc(), ImportRun.id.desc()).limit(1)).first()
    except SQLAlchemyError:
        log.exception("could not read the running import")
        row = None
    if row is None:
        return (
            "Another import or a long write is running, so this import did not start; nothing was written. "
            "Try again in a minute."
        )
    at = row.started_at.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"Another import is running, started by {row.actor} at {at} UTC, so this import did not start; "
        "nothing was written. Try again when it has finished."
    )


def _finish_run(session: Session, run_id: int | None, report: ImportReport, status: str) -> None:
    """Mark the import's run record finished (in the caller's transaction); any other import
    still marked running started before this one and no longer holds the lock."""
    if run_id is None:
        return
    table = ImportRun.__table__
    session.execute(
        table.update()
        .where(table.c.id == run_id)
        .values(
            status=status,
            finished_at=utcnow(),
            summary=json.dumps({k: vars(v) for k, v in report.files.items()}),
            duplicates_skipped=report.duplicates_skipped,
            problems=report.problem_count,
        )
    )
    session.execute(
        table.update()
        .where(table.c.status == "running", table.c.id < run_id)
        .values(status="interrupted", finished_at=utcnow())
    )


def _end_run(engine: Engine, run_id: int, report: ImportReport, status: str) -> None:
    """Record a rejected, failed or refused import (a refused one leaves no trace)."""
    try:
        with Session(engine) as s:
            if status == "refused":
                s.execute(ImportRun.__table__.delete().where(ImportRun.__table__.c.id == run_id))
            else:
                _finish_run(s, run_id, report, status)
            s.commit()
    except SQLAlchemyError:
        # The database is failing (full, gone): the run stays marked running; the next import marks it interrupted.
        log.exception("could not record the end of import run %s", run_id)


def _db_error_message(exc: SQLAlchemyError, *, dry_run: bool) -> str:
    """What a user is told when the database refuses an import (never SQL, parameters or paths)."""
    orig = getattr(exc, "orig", None)
    detail = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else type(exc).__name__
    code = getattr(orig, "sqlstate", None) or ""
    low = detail.lower()
    what = "The validation" if dry_run else "The import"
    tail = "nothing was written." if not dry_run else "nothing was written (a validation never writes)."
    if "disk is full" in low or "no space left" in low or code.startswith("53"):
        return (
            f"{what} stopped because the database is out of space (the disk or its size limit is full); {tail} "
            "Free some space, or ask whoever runs the database, then try again."
        )
    if "locked" in low or code in ("55P03", "40P01"):
        return (
            f"{what} stopped because the database was busy (a lock was held for more than "
            f"{LOCK_WAIT_MS / 1000:g} s); {tail} Try again in a minute."
        )
    if code == "57014":
        return (
            f"{what} stopped because one step took longer than {STATEMENT_TIMEOUT_MS / 1000:g} s; {tail} "
            "Split the files and try again, or ask an admin to raise IMPORT_STATEMENT_TIMEOUT_MS."
        )
    if (isinstance(exc, DBAPIError) and exc.connection_invalidated) or "connection" in low:
        return f"{what} stopped because the connection to the database was lost; {tail} Try again."
    # Keep the database's own reason (it names no SQL and no parameters), but no file paths.
    reason = re.sub(r"(/[^\s'\"]+)+", "…", detail)[:200]
    return f"{what} was refused by the database ({reason}); {tail} The details are in the server log."


def import_dir(path: str | Path, **kwargs: Any) -> ImportReport:
    """Import every contract CSV file found in a directory."""
    return import_files(files_from_dir(path), source=str(path), **kwargs)


def _load_reference(ctx: _Context) -> None:
    s = ctx.session
    for ext, pk, seg, start in s.execute(
        select(Account.external_id, Account.id, Account.segment, Account.contract_start)
    ):
        ctx.accounts[ext] = pk
        ctx.account_info[pk] = (seg, start)
    ctx.team = {e: pk for e, pk in s.execute(select(TeamMember.email, TeamMember.id))}
    for m in milestone_definitions(s):
        ctx.milestones[m["key"]] = m


def _check_duplicates(ctx: _Context, name: str, df: pd.DataFrame, rows: np.ndarray, ok: np.ndarray) -> np.ndarray:
    key = KEYS[name]
    keys = df[key].astype(str).agg("\x1f".join, axis=1) if len(key) > 1 else df[key[0]].astype(str)
    # Rows with an empty key part are already reported as such, not as duplicates of each other.
    dup = keys.duplicated(keep="first").to_numpy() & df[key].notna().all(axis=1).to_numpy()
    if dup.any():
        first_row = dict(zip(keys[~dup], rows[~dup], strict=True))
        for i in np.flatnonzero(dup):
            k = keys.iloc[i]
            ctx.report.add(
                Problem(
                    name,
                    int(rows[i]),
                    "+".join(key),
                    k.replace("\x1f", " / ")[:200],
                    f"duplicate key in this file (first at row {first_row[k]})",
                )
            )
    return ok & ~dup


def _ref_check(
    ctx: _Context, name: str, col: str, values: pd.Series, known: dict | set, rows: np.ndarray, reason: str
) -> np.ndarray:
    present = values.notna().to_numpy()
    unknown = present & ~values.isin(list(known) if isinstance(known, dict) else known).to_numpy()
    for i in np.flatnonzero(unknown):
        ctx.report.add(Problem(name, int(rows[i]), col, str(values.iloc[i])[:200], reason))
    return ~unknown


def _import_entity(ctx: _Context, name: str, source: Path | bytes) -> None:
    report = ctx.report
    frames, typed_parts, numbers = [], [], []
    for _header, df, rows in _read_chunks(name, source, report, chunk_rows=100_000):
        typed, ok = _validate(name, df, rows, report)
        frames.append(df.assign(_ok=ok))
        typed_parts.append(typed)
        numbers.append(rows)
    if not frames:
        return
    df = pd.concat(frames, ignore_index=True)
    typed = pd.concat(typed_parts, ignore_index=True)
    rows = np.concatenate(numbers)
    ok = df.pop("_ok").to_numpy()
    report.files[name].rows = len(df)
    # Keys compare on the typed (trimmed, canonical) values.
    ok = _check_duplicates(ctx, name, typed, rows, ok)

    if name == "team.csv":
        for e in typed["email"].dropna():
            ctx.team.setdefault(e, None)
        if not ctx.active or report.problem_count:
            return
        res = upsert(
            ctx.session,
            TeamMember.__table__,
            typed[ok],
            key=["email"],
            columns=["name", "role"],
            actor=ctx.actor,
            log_entity="team_member",
            log_key="email",
            return_ids=True,
            write=ctx.writing,
        )
        _tally(report.files[name], res)
        ctx.team.update({k[0]: v for k, v in (res.new_ids or {}).items()})
        return

    if name == "accounts.csv":
        if "csm_email" in typed:
            ok &= _ref_check(
                ctx,
                name,
                "csm_email",
                typed["csm_email"],
                ctx.team,
                rows,
                "unknown CSM email: not in the team (add it to team.csv)",
            )
        for a in typed["account_id"].dropna():
            ctx.accounts.setdefault(a, None)
        if not ctx.active or report.problem_count:
            return
        t = typed[ok].rename(columns={"account_id": "external_id"})
        if "csm_email" in t:
            t["csm_id"] = t.pop("csm_email").map(ctx.team)
        cols = [c for c in ACCOUNT_COLUMNS if c in t]
        res = upsert(
            ctx.session,
            Account.__table__,
            t,
            key=["external_id"],
            columns=cols,
            actor=ctx.actor,
            log_entity="account",
            log_key="external_id",
            return_ids=True,
            write=ctx.writing,
        )
        _tally(report.files[name], res)
        for (ext,), pk in (res.new_ids or {}).items():
            ctx.accounts[ext] = pk
            ctx.new_accounts.add(pk)
        for _ext, pk, seg, start in ctx.session.execute(
            select(Account.external_id, Account.id, Account.segment, Account.contract_start).where(
                Account.external_id.in_(list(t["external_id"]))
            )
        ):
            ctx.account_info[pk] = (seg, start)
        return

    ok &= _ref_check(
        ctx,
        name,
        "account_id",
        typed["account_id"],
        ctx.accounts,
        rows,
        UNKNOWN_ACCOUNT,
    )
    if name == "milestones.csv":
        ok &= _ref_check(
            ctx,
            name,
            "milestone",
            typed["milestone"],
            ctx.milestones,
            rows,
            f"unknown milestone key; defined: {', '.join(ctx.milestones)}",
        )
    if name == "checklist.csv" and "owner_email" in typed:
        ok &= _ref_check(
            ctx, name, "owner_email", typed["owner_email"], ctx.team, rows, "unknown owner email: not in the team"
        )
    if not ctx.active or report.problem_count:
        return
    t = typed[ok].copy()
    pk = t["account_id"].map(ctx.accounts)
    if not ctx.writing:
        # A dry run: rows of accounts the import would create are new; the rest are compared.
        new = pk.isna().to_numpy()
        report.files[name].inserted += int(new.sum())
        t, pk = t[~new], pk[~new]
    t["account_id"] = pk.astype(int)

    if name == "milestones.csv":
        t = t.rename(columns={"milestone": "milestone_key"})
        # object dtype: an all-empty column parses as datetime64, which python dates cannot be set into
        t["due_date"] = t["due_date"].astype(object) if "due_date" in t else None
        missing_due = t["due_date"].isna()
        if missing_due.any():
            t.loc[missing_due, "due_date"] = [
                _default_due(ctx, pk, key)
                for pk, key in zip(t.loc[missing_due, "account_id"], t.loc[missing_due, "milestone_key"], strict=True)
            ]
        if "completed_at" in t:
            t["completed_at"] = t["completed_at"].astype(object).where(t["completed_at"].notna(), None)
        cols = [c for c in ["due_date", "completed_at"] if c in t]
        res = upsert(
            ctx.session,
            AccountMilestone.__table__,
            t,
            key=["account_id", "milestone_key"],
            columns=cols,
            actor=ctx.actor,
            log_entity="account_milestone",
            account_col="account_id",
            write=ctx.writing,
        )
        ctx.had_milestones.update(t["account_id"].unique().tolist())
    elif name == "outcomes.csv":
        res = upsert(
            ctx.session,
            Outcome.__table__,
            t,
            key=["account_id", "date", "type"],
            columns=["arr_change"],
            actor=ctx.actor,
            log_entity="outcome",
            account_col="account_id",
            write=ctx.writing,
        )
    else:  # checklist.csv
        if "owner_email" in t:
            t["owner_id"] = t.pop("owner_email").map(ctx.team)
        if "status" in t:
            t["status"] = t["status"].fillna("not started")
        for c in ("target", "actual", "note"):
            if c in t:
                t[c] = t[c].fillna("")
        metrics = {i["criterion"]: i["metric"] for i in DEFAULT_CHECKLIST}
        t["metric"] = t["criterion"].map(metrics)
        t["position"] = t.groupby("account_id").cumcount()
        cols = [c for c in ["target", "actual", "status", "owner_id", "due_date", "note"] if c in t]
        res = upsert(
            ctx.session,
            ChecklistItem.__table__,
            t,
            key=["account_id", "category", "criterion"],
            columns=cols,
            actor=ctx.actor,
            log_entity="checklist_item",
            account_col="account_id",
            on_update={"version": lambda old: int(old["version"]) + 1},
            return_ids=True,
            write=ctx.writing,
        )
        # New rows get metric binding and position; existing rows keep theirs.
        ctx.had_checklist.update(t["account_id"].unique().tolist())
        if ctx.writing:
            _sync_done_at(ctx.session, list(t["account_id"].unique()))
            if res.new_ids:
                _set_insert_extras(ctx.session, t, res.new_ids)
    _tally(report.files[name], res)


def _set_insert_extras(session: Session, t: pd.DataFrame, new_ids: dict[tuple, int]) -> None:
    """Metric binding and position for the newly inserted checklist rows (ids by natural key)."""
    params = []
    for r in t[["account_id", "category", "criterion", "metric", "position"]].to_dict("records"):
        pk = new_ids.get((int(r["account_id"]), r["category"], r["criterion"]))
        if pk is not None:
            metric = r["metric"] if isinstance(r["metric"], str) else None
            params.append({"id": pk, "metric": metric, "position": int(r["position"])})
    if params:
        session.connection().execute(
            text("UPDATE checklist_items SET metric = :metric, position = :position WHERE id = :id"), params
        )


def _sync_done_at(session: Session, account_ids: list[int]) -> None:
    now = utcnow()
    for i in range(0, len(account_ids), 500):
        ids = [int(x) for x in account_ids[i : i + 500]]
        session.execute(
            ChecklistItem.__table__.update()
            .where(ChecklistItem.account_id.in_(ids), ChecklistItem.status == "done", ChecklistItem.done_at.is_(None))
            .values(done_at=now)
        )
        session.execute(
            ChecklistItem.__table__.update()
            .where(
                ChecklistItem.account_id.in_(ids), ChecklistItem.status != "done", ChecklistItem.done_at.is_not(None)
            )
            .values(done_at=None)
        )


def _default_due(ctx: _Context, pk: int, key: str) -> Any:
    seg, start = ctx.account_info[pk]
    days = ctx.milestones[key]["target_days"].get(seg)
    return None if days is None or start is None else start + pd.Timedelta(days=int(days))


def _tally(fr: FileReport, res: Any) -> None:
    fr.inserted += res.inserted
    fr.updated += res.updated
    fr.unchanged += res.unchanged


def _import_events(ctx: _Context, source: Path | bytes, on_bytes: Callable[[int], None]) -> None:
    name = "events.csv"
    report = ctx.report
    fr = report.files[name]
    for _header, df, rows in _read_chunks(name, source, report, chunk_rows=EVENT_BATCH, on_bytes=on_bytes):
        fr.rows += len(df)
        typed, ok = _validate(name, df, rows, report)
        ok &= _ref_check(
            ctx,
            name,
            "account_id",
            typed["account_id"],
            ctx.accounts,
            rows,
            UNKNOWN_ACCOUNT,
        )
        ctx.stop_writing_if_problems()
        if not ctx.active:
            continue
        t = typed[ok]
        if not ctx.writing:
            _count_events(ctx, t)
            ctx.release()
            continue
        batch = pd.DataFrame(
            {
                "account_id": t["account_id"].map(ctx.accounts).astype(int),
                "event": t["event"],
                "ts": t["timestamp"],
                "user_id": t["user_id"].fillna("") if "user_id" in t else "",
                "properties": t.get("properties"),
            }
        )
        inserted = insert_events(ctx.session, batch)
        fr.inserted += inserted
        fr.duplicates_skipped += len(batch) - inserted
    if ctx.counting and ctx.new_event_keys:
        # New events, counted once however often they repeat in the file.
        candidates = np.concatenate(ctx.new_event_keys)
        fr.inserted = int(np.unique(candidates).size)
        fr.duplicates_skipped += len(candidates) - fr.inserted
        ctx.new_event_keys.clear()


def _count_events(ctx: _Context, t: pd.DataFrame) -> None:
    """A dry run's count of one batch: events already in the database (read-only key
    lookups) are duplicates; the keys of the others are kept as hashes (8 bytes a row) to
    find repeats across batches."""
    user = t["user_id"].fillna("") if "user_id" in t else pd.Series("", index=t.index)
    pk = t["account_id"].map(ctx.accounts)
    present = np.zeros(len(t), dtype=bool)
    known = pk.notna().to_numpy()
    if known.any():
        present[np.flatnonzero(known)] = _events_present(
            ctx.session, pk[known].astype(int), t["event"][known], t["timestamp"][known], user[known]
        )
    keys = pd.DataFrame({"a": t["account_id"], "e": t["event"], "t": t["timestamp"], "u": user})
    hashes = pd.util.hash_pandas_object(keys, index=False).to_numpy()
    ctx.new_event_keys.append(hashes[~present])
    ctx.report.files["events.csv"].duplicates_skipped += int(present.sum())


def _events_present(session: Session, pk: pd.Series, event: pd.Series, ts: pd.Series, user: pd.Series) -> np.ndarray:
    """Which of these events are already stored (by the natural key's unique index)."""
    found = np.zeros(len(pk), dtype=bool)
    conn = session.connection()
    for start in range(0, len(pk), 10_000):
        sl = slice(start, start + 10_000)
        if conn.dialect.name == "sqlite":
            ts_text = ts.iloc[sl].dt.tz_localize(None).dt.strftime(SQLITE_TS)
            keys = json.dumps(
                [
                    list(k)
                    for k in zip(
                        pk.iloc[sl].tolist(),
                        event.iloc[sl].tolist(),
                        ts_text.tolist(),
                        user.iloc[sl].tolist(),
                        strict=True,
                    )
                ]
            )
            rows = conn.execute(
                text(
                    "SELECT CAST(j.key AS INTEGER) FROM json_each(:keys) AS j CROSS JOIN events AS e "
                    "ON e.account_id = json_extract(j.value, '$[0]') AND e.event = json_extract(j.value, '$[1]') "
                    "AND e.ts = json_extract(j.value, '$[2]') AND e.user_id = json_extract(j.value, '$[3]')"
                ),
                {"keys": keys},
            )
            idx = [r[0] for r in rows]
        else:
            rows = conn.execute(
                text(
                    "SELECT k.i - 1 FROM unnest(CAST(:a AS integer[]), CAST(:e AS text[]), "
                    "CAST(:t AS timestamptz[]), CAST(:u AS text[])) WITH ORDINALITY AS k(a, e, t, u, i) "
                    "JOIN events AS ev ON ev.account_id = k.a AND ev.event = k.e AND ev.ts = k.t AND ev.user_id = k.u"
                ),
                {
                    "a": pk.iloc[sl].tolist(),
                    "e": event.iloc[sl].tolist(),
                    "t": ts.iloc[sl].dt.strftime("%Y-%m-%d %H:%M:%S.%f+00").tolist(),
                    "u": user.iloc[sl].tolist(),
                },
            )
            idx = [int(r[0]) for r in rows]
        if idx:
            found[start + np.asarray(idx, dtype=int)] = True
    return found


def _complete_new_accounts(ctx: _Context) -> None:
    """New accounts get their milestones (due dates from targets), checklist template and plan."""
    new = sorted(ctx.new_accounts)
    apply_new_account_defaults(
        ctx.session,
        # Every new account gets every milestone; rows given in the import are kept as given.
        milestones_for=new,
        checklist_for=[pk for pk in new if pk not in ctx.had_checklist],
        plan_for=new,
    )
