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

import contextlib
import csv
import gc
import io
import json
import logging
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from db import filemap, import_lock, uploads
from db.bulk import (
    ACCOUNT_COLUMNS,
    LARGE_LOAD_EVENTS,
    drop_event_indexes,
    drop_natural_key,
    insert_events,
    rebuild_event_indexes,
    restore_natural_key,
    stored_event_estimate,
    upsert,
)
from db.defaults import DEFAULT_CHECKLIST
from db.import_lock import ImportBusy, ImportFailed
from db.models import (
    CHECKLIST_CATEGORIES,
    CHECKLIST_STATUSES,
    OUTCOME_TYPES,
    ROLES,
    SEGMENTS,
    Account,
    AccountMilestone,
    ChecklistItem,
    Outcome,
    TeamMember,
    utcnow,
)
from db.session import SQLITE_TS, bump_data_version, get_engine
from db.settings_store import milestone_definitions
from db.templates import apply_new_account_defaults
from db.uploads import Refused, Source

ProgressFn = Callable[[float, str], None]
log = logging.getLogger(__name__)

MAX_PROBLEMS = 5000
UNKNOWN_ACCOUNT = "unknown account: not in accounts.csv or the database"
EVENT_BATCH = 50_000
# SQLite's page cache while events load (KiB, negative as PRAGMA cache_size takes it), and
# the connection's usual one (db/session.py) it returns to afterwards.
LOAD_CACHE_KIB = -262_144
NORMAL_CACHE_KIB = -65_536


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
        # When a done item was done (kept for point-in-time health); empty = the import time.
        Col("done_at", "ts"),
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


# ----------------------------------------------------------------------------- sources


def files_from_uploads(files: list[tuple[str, bytes]], *, account_property: str | None = None) -> dict[str, Source]:
    """Uploaded files (name, bytes); a .zip is expanded to the CSV files inside it (streamed
    when read, within the limits of db/uploads.py). Event files of other formats (JSON lines,
    Parquet: db/eventfiles.py) are read as events.csv; account_property: see there."""
    from db.eventfiles import group_event_files

    return group_event_files(uploads.expand(files, known=SPECS), account_property=account_property)


def files_from_dir(path: str | Path, *, account_property: str | None = None) -> dict[str, Source]:
    """The contract's CSV files found in a directory (unknown .csv files are reported), and
    event files of other formats (db/eventfiles.py), read as events.csv."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory")
    from db.backup import backup_files_in_dir
    from db.eventfiles import event_format, group_event_files

    found: dict[str, Source] = {
        p.name: p
        for p in sorted(path.iterdir())
        if p.is_file() and (p.suffix.lower() == ".csv" or event_format(p.name))
    }
    found = group_event_files(found, account_property=account_property)
    return {**found, **backup_files_in_dir(path)}  # an export's backup/ folder, if any


# ----------------------------------------------------------------------------- reading


@dataclass
class Chunk:
    """Records of a file: the header, their row numbers (line numbers, header = 1), and their
    cells as text, as an Arrow table (the Arrow reader) and/or a frame of str (built from
    the table when first asked for)."""

    header: list[str]
    rows: np.ndarray
    table: Any = None  # pyarrow.Table of string columns, or None
    _frame: pd.DataFrame | None = None

    def __init__(self, header: list[str], rows: np.ndarray, *, table: Any = None, frame: pd.DataFrame | None = None):
        self.header, self.rows, self.table, self._frame = header, rows, table, frame

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = pd.DataFrame(
                {h: self.table.column(h).to_numpy(zero_copy_only=False) for h in self.header},
                columns=self.header,
            ).astype(object)
        return self._frame


def _check_header(name: str, header: list[str], report: ImportReport) -> bool:
    """Report a header's repeated and missing columns (and warn of unknown ones); whether
    the file can be read."""
    spec = SPECS[name]
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
    return not missing and len(seen) == len(header)


# Bytes the Arrow reader parses at a time (cut at a line end), and how far past a chunk's last
# byte it reads before giving the chunk out (the reference reader's decoder reads 8 KiB ahead).
ARROW_BLOCK_BYTES = 8 * 1024 * 1024
READ_AHEAD_MARGIN = 64 * 1024


def _read_chunks(
    name: str,
    source: Source,
    report: ImportReport,
    *,
    chunk_rows: int,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of the file's records (at most chunk_rows each); report malformed rows.

    Blocks of simple CSV (one record a line, UTF-8, within the row limit, as many fields as
    the header, no lone CR) are parsed by Arrow; at the first block that is not, or on any
    error, the reference reader (`_read_chunks_python`, Python's csv module) reads the file
    again from its start and yields the records from that block on, so the records, row
    numbers and problems are exactly the reference reader's (tests/db/test_bulk_import.py
    compares them)."""
    if hasattr(source, "chunks"):  # rows of a query (db/sync_source.py QuerySource), not a file
        yield from source.chunks(name, report, chunk_rows=chunk_rows, on_bytes=on_bytes)
        return
    if isinstance(source, uploads.EventParts):  # JSON lines, Parquet (db/eventfiles.py)
        from db.eventfiles import event_parts_chunks

        yield from event_parts_chunks(
            name, source, report, chunk_rows=chunk_rows, on_bytes=on_bytes, read_csv=_read_chunks
        )
        return
    state = {"next_line": 0, "header_done": False}
    try:
        yield from _arrow_chunks(name, source, report, chunk_rows=chunk_rows, on_bytes=on_bytes, state=state)
        if state["next_line"] == -1:  # read to the end by Arrow
            return
    except _NotSimple:
        pass
    if state["header_done"] is None:  # the header had problems: reported, nothing to read
        return
    yield from _read_chunks_python(
        name, source, report, chunk_rows=chunk_rows, on_bytes=on_bytes, skip_before=state["next_line"]
    )


class _NotSimple(Exception):
    """The Arrow reader stops: the reference reader takes over."""


def _arrow_chunks(
    name: str,
    source: Source,
    report: ImportReport,
    *,
    chunk_rows: int,
    on_bytes: Callable[[int], None] | None,
    state: dict,
) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    limit_chars = min(uploads.MAX_ROW_CHARS, uploads.MAX_FIELD_CHARS)
    try:
        raw, _bytes, limit = uploads.open_source(source)
    except Exception as exc:
        raise _NotSimple from exc
    counting = uploads.Counting(raw, limit)
    stream = io.BufferedReader(counting, buffer_size=1 << 20)
    try:
        try:
            first = stream.readline(limit_chars + 2)
        except Exception as exc:
            raise _NotSimple from exc
        bom = first.startswith(b"\xef\xbb\xbf")
        if bom:
            first = first[3:]
        if not first.endswith(b"\n") or len(first) > limit_chars:
            raise _NotSimple
        text_header = first[:-2] if first.endswith(b"\r\n") else first[:-1]
        if b'"' in text_header or b"\r" in text_header:
            raise _NotSimple
        try:
            header = [h.strip().lower() for h in text_header.decode("utf-8").split(",")]
        except UnicodeDecodeError as exc:
            raise _NotSimple from exc
        if not "".join(header).strip():
            raise _NotSimple  # a blank first line: the reference reader's business
        state["next_line"] = 2
        if not _check_header(name, header, report):
            state["header_done"] = None
            return
        state["header_done"] = True
        width = len(header)
        names = [f"c{i}" for i in range(width)]
        read_opts = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=ARROW_BLOCK_BYTES + (1 << 20))
        parse_opts = pacsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=True)
        convert_opts = pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        pending: list[Any] = []
        pending_rows: list[np.ndarray] = []
        pending_ends: list[np.ndarray] = []
        pending_n = 0
        line = 2  # the line the next block starts on
        start = len(first) + (3 if bom else 0)  # the byte the next block starts at
        carry = b""
        eof = False
        while not eof:
            try:
                data = stream.read(ARROW_BLOCK_BYTES)
            except Exception as exc:
                raise _NotSimple from exc
            eof = not data
            buf = carry + data
            if eof:
                block, carry = buf, b""
                if block and not block.endswith(b"\n"):
                    block += b"\n"
            else:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    if len(buf) > limit_chars + 2:
                        raise _NotSimple
                    carry = buf
                    continue
                block, carry = buf[: cut + 1], buf[cut + 1 :]
            if block:
                table, numbers, ends = _arrow_block(block, line, limit_chars, read_opts, parse_opts, convert_opts)
                line += block.count(b"\n")
                if table.num_rows:
                    pending.append(table)
                    pending_rows.append(numbers)
                    pending_ends.append(ends + start)
                    pending_n += table.num_rows
                start += len(block)
            # A chunk is given out once the bytes well past its end have been read and found
            # simple: the reference reader decodes (and reads) ahead of the record it returns,
            # so a problem there would have stopped it before this chunk was complete.
            while pending_n and (pending_n >= chunk_rows or eof):
                rows = np.concatenate(pending_rows) if len(pending_rows) > 1 else pending_rows[0]
                ends = np.concatenate(pending_ends) if len(pending_ends) > 1 else pending_ends[0]
                take = min(chunk_rows, pending_n)
                if not eof and ends[take - 1] > start - READ_AHEAD_MARGIN:
                    break
                whole = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
                out, rest = whole.slice(0, take), whole.slice(take)
                pending = [rest] if rest.num_rows else []
                pending_rows = [rows[take:]] if rest.num_rows else []
                pending_ends = [ends[take:]] if rest.num_rows else []
                pending_n = rest.num_rows
                if on_bytes:  # the bytes of the records given out (the file is read ahead)
                    on_bytes(int(ends[take - 1]))
                state["next_line"] = int(rows[take]) if take < len(rows) else line
                yield Chunk(header, rows[:take], table=out.rename_columns(header))
            state["next_line"] = int(pending_rows[0][0]) if pending_n else line
        if on_bytes:
            on_bytes(counting.count)
        state["next_line"] = -1
    finally:
        raw.close()


def _arrow_block(block: bytes, line: int, limit_chars: int, read_opts, parse_opts, convert_opts):
    """One block of whole lines parsed by Arrow, and the row numbers of its records (blank
    records dropped, as the reference reader drops them); _NotSimple if the block is not
    simple CSV (then the reference reader must read it)."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _NotSimple from exc
    if block.count(b"\r") != block.count(b"\r\n"):
        raise _NotSimple  # a lone CR ends a line for Python's csv module
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    lengths = np.diff(ends, prepend=-1) - 1
    if lengths.max() > limit_chars:
        raise _NotSimple
    try:
        table = pacsv.read_csv(
            io.BytesIO(block), read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts
        )
    except Exception as exc:  # pyarrow.lib.ArrowInvalid: a quoted newline, a field count ...
        raise _NotSimple from exc
    if table.num_rows != len(ends):
        raise _NotSimple  # an empty line skipped, or a record over lines: not one record a line
    numbers = np.arange(line, line + len(ends))
    line_ends = ends + 1
    # Blank records (",,," or spaces): the reference reader skips those whose joined cells
    # strip to nothing. ASCII whitespace is decided here; a record of only ASCII whitespace
    # and other (possibly whitespace) characters is decided by Python itself.
    maybe_blank = None
    for col in table.columns:
        rest = pc.utf8_trim(col, " \t\n\r\x0b\x0c")
        blankish = pc.or_(pc.equal(rest, ""), pc.match_substring_regex(rest, r"[^\x21-\x7e]"))
        maybe_blank = blankish if maybe_blank is None else pc.and_(maybe_blank, blankish)
    idx = np.flatnonzero(maybe_blank.to_numpy(zero_copy_only=False))
    if idx.size:
        cols = [table.column(i).take(idx).to_pylist() for i in range(table.num_columns)]
        blank = [not "".join(cells).strip() for cells in zip(*cols, strict=True)]
        drop = idx[np.asarray(blank, dtype=bool)]
        if drop.size:
            keep = np.ones(table.num_rows, dtype=bool)
            keep[drop] = False
            table = table.filter(keep)
            numbers = numbers[keep]
            line_ends = line_ends[keep]
    return table, numbers, line_ends


def _read_chunks_python(
    name: str,
    source: Source,
    report: ImportReport,
    *,
    chunk_rows: int,
    on_bytes: Callable[[int], None] | None = None,
    skip_before: int = 0,
) -> Iterator[Chunk]:
    """The reference reader (Python's csv module): chunks of the records that start on
    line `skip_before` or later (the earlier ones were read by `_arrow_chunks`, which found
    no problem in them); report malformed rows."""
    line = 1
    try:
        raw, _bytes, limit = uploads.open_source(source)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, ValueError) as exc:
        report.add(Problem(name, 0, "", "", f"the file cannot be read from the zip: {exc}"))
        return
    counting = uploads.Counting(raw, limit)
    stream = io.TextIOWrapper(io.BufferedReader(counting), encoding="utf-8-sig", newline="", errors="strict")
    csv.field_size_limit(uploads.MAX_FIELD_CHARS)
    lines = uploads.BoundedLines(stream, uploads.MAX_ROW_CHARS)
    reader = csv.reader(lines)
    try:
        try:
            header = next(reader)
        except StopIteration:
            report.add(Problem(name, 1, "", "", "the file is empty: a header row is required"))
            return
        lines.record = 0
        header = [h.strip().lower() for h in header]
        # (Past the header, the Arrow reader has checked and reported it already.)
        if not _check_header(name, header, report if skip_before == 0 else ImportReport(dry_run=True)):
            return
        width = len(header)
        rows: list[list[str]] = []
        numbers: list[int] = []
        prev_end = reader.line_num
        for rec in reader:
            lines.record = 0
            start_line = prev_end + 1
            prev_end = reader.line_num
            if start_line < skip_before:
                continue
            if not rec or not "".join(rec).strip():
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
                yield Chunk(header, np.asarray(numbers), frame=pd.DataFrame(rows, columns=header, dtype=object))
                rows, numbers = [], []
        line = prev_end
        if rows:
            yield Chunk(header, np.asarray(numbers), frame=pd.DataFrame(rows, columns=header, dtype=object))
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
    except uploads.RowTooLong:
        report.add(
            Problem(
                name,
                reader.line_num + 1,
                "",
                "",
                f"row too long: more than {uploads.MAX_ROW_CHARS:,} characters (is this a CSV file?); "
                "reading of this file stopped here",
            )
        )
    except uploads.TooLarge:
        report.add(
            Problem(
                name,
                reader.line_num + 1,
                "",
                "",
                f"the file decompresses to more than {uploads.human_size(uploads.MAX_FILE_BYTES)}, the most accepted per file; "
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
    """Undo export's escaping: export prefixes ' to text that starts with a formula character
    or with ' itself, so exactly one leading ' is dropped (`''=x` is read as `'=x`)."""
    mask = s.str.startswith("'")
    if mask.any():
        s = s.where(~mask, s.str[1:])
    return s


# Text columns that are identifiers or codes, trimmed like keys, enums, emails, dates and
# numbers; every other text column is free text and kept exactly as written (docs/data-contract.md).
TRIMMED_TEXT = frozenset({"account_id", "milestone", "event", "user_id", "channel"})


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
        free = c.kind == "json" or (c.kind == "text" and col not in TRIMMED_TEXT)
        s = raw if free else raw.str.strip()
        if c.kind in ("text", "email", "json"):  # the kinds export escapes (enums never need it)
            s = _unneutralise(s)
            if not free:  # `' x` is x: a trimmed value never keeps a space, so it round-trips
                s = s.str.strip()
        empty = (s.str.strip() == "").to_numpy()
        # Free text is stored as written, spaces included; only a cell with nothing in it is empty.
        absent = (s == "").to_numpy() if free and c.kind == "text" else empty
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
            out[col] = s.where(~absent, None)
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
            bad(unknown, col, s, lambda v, what=what, c=c: filemap.enum_reason(what, v, c.choices))
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


_NOT_PRINTABLE_ASCII = r"[^\x20-\x7e]"
_TS_OFFSET_RE = r"[T ].*(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)$"


def _validate_fast(name: str, df: Any) -> pd.DataFrame | None:
    """`_validate` for a chunk without problems, in Arrow compute instead of per-cell Python;
    None when the chunk needs the full check (any problem, or any cell outside printable
    ASCII, where Python's and Arrow's ideas of whitespace could differ). Only the kinds of
    events.csv are handled; so the typed columns are exactly those `_validate` returns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    spec = {c.name: c for c in SPECS[name]}
    out: dict[str, Any] = {}
    null = pa.scalar(None, pa.string())
    arrow = isinstance(df, pa.Table)  # a chunk as the Arrow reader gives it
    columns = df.column_names if arrow else list(df.columns)
    index = pd.RangeIndex(df.num_rows) if arrow else df.index
    for col in columns:
        if col not in spec:
            continue
        c = spec[col]
        if c.kind not in ("text", "ts", "json") or (c.kind == "text" and col not in TRIMMED_TEXT):
            return None
        arr = df.column(col).combine_chunks() if arrow else pa.array(df[col].to_numpy(), type=pa.string())
        if pc.any(pc.match_substring_regex(arr, _NOT_PRINTABLE_ASCII)).as_py():
            return None
        # In printable ASCII the only whitespace is the space: str.strip() is trimming spaces.
        s = arr if c.kind == "json" else pc.utf8_trim(arr, " ")
        if c.kind in ("text", "json"):
            quoted = pc.starts_with(s, "'")
            if pc.any(quoted).as_py():
                s = pc.if_else(quoted, pc.utf8_slice_codeunits(s, 1), s)
                if c.kind == "text":
                    s = pc.utf8_trim(s, " ")
        empty = pc.equal(pc.utf8_trim(s, " "), "")
        if c.required and pc.any(empty).as_py():
            return None
        if c.max_len and pc.any(pc.greater(pc.utf8_length(s), c.max_len)).as_py():
            return None
        if c.kind == "ts":
            iso = pc.match_substring_regex(s, _TS_RE.pattern).to_numpy(zero_copy_only=False)
            if not iso[~empty.to_numpy(zero_copy_only=False)].all():
                return None
            has_offset = pc.match_substring_regex(s, _TS_OFFSET_RE).to_numpy(zero_copy_only=False)
            parsed = _arrow_ts(s, has_offset, index)
            if parsed is None:  # Arrow refused a value: pandas decides (as `_parse_ts`)
                values = s.to_numpy(zero_copy_only=False)
                parsed = pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
                for part in (iso & has_offset, iso & ~has_offset):
                    if part.any():
                        parsed[part] = pd.to_datetime(values[part], format="ISO8601", utc=True, errors="coerce")
            if parsed.isna().to_numpy()[iso].any():
                return None
            out[col] = parsed
            continue
        s = pc.if_else(empty, null, s)
        if c.kind == "json":
            for v in pc.unique(s.drop_null()).to_pylist():
                try:
                    obj = json.loads(v)
                except (ValueError, RecursionError):
                    return None
                if not isinstance(obj, dict):
                    return None
        out[col] = pd.Series(s.to_numpy(zero_copy_only=False), index=index, dtype=object)
    return pd.DataFrame(out, index=index)


def _arrow_ts(s: Any, has_offset: np.ndarray, index: pd.Index) -> pd.Series | None:
    """ISO 8601 text (already known to match _TS_RE) to UTC timestamps by Arrow's parser,
    or None when it refuses any value (it is stricter than pandas: a date without a time,
    an hour alone; pandas then decides). Where Arrow parses, it agrees with pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ns_utc = pa.timestamp("ns", "UTC")
    try:
        if has_offset.all():
            parsed = pc.cast(s, ns_utc)
        elif not has_offset.any():  # no offset is UTC
            parsed = pc.cast(pc.cast(s, pa.timestamp("ns")), ns_utc)
        else:
            return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if parsed.null_count:
        return None
    return pd.Series(parsed.to_pandas(), index=index)


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
    first_step: Callable[[Session, bool], Any] | None = None,
    last_step: Callable[[Session], Any] | None = None,
) -> ImportReport:
    """Validate and import the given contract files atomically; see the module docstring.

    first_step(session, dry_run) runs in the import's transaction before anything is read
    (services/demo_data.py removes the demo portfolio there); for a dry run it may return an
    object with `accounts` and `team` key sets the validation treats as absent.
    last_step(session) runs in the transaction just before a real import without problems
    commits (db/sync.py stores the sync's watermarks there, so they commit with the rows).

    A dry run only reads (no write lock, no row lock). A real import takes the import lock
    first; raises ImportBusy if another import holds it and ImportFailed (a message for the
    user, the detail logged) if the database refuses the import. Nothing is written then."""
    from db.backup import MANIFEST, restore_files

    if MANIFEST in files:  # an export with its backup: a full restore (db/backup.py)
        return restore_files(files, url=url, dry_run=dry_run, actor=actor, progress=progress, source=source)
    t0 = time.perf_counter()
    report = ImportReport(dry_run=dry_run)
    files = filemap.recognise(_by_contract_name(files), report)
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
    for n in [n for n in FILE_ORDER if n in files]:
        report.files[n] = FileReport(n)
    for n, v in files.items():
        if isinstance(v, Refused):
            report.add(Problem(n, 0, "", "", v.reason))
    present = [n for n in FILE_ORDER if n in files and not isinstance(files[n], Refused)]
    if not files:
        report.add(Problem("", 0, "", "", "no files to import"))
    sizes = {n: uploads.source_size(files[n]) for n in present}
    total = max(sum(sizes.values()), 1)

    engine = get_engine(url)
    run_id = None
    status = "failed"
    try:
        if not dry_run and present:
            run_id = import_lock.start_run(engine, actor=actor, source=source)
        with (
            import_lock.import_connection(engine, dry_run=dry_run) as conn,
            Session(bind=conn, expire_on_commit=False) as session,
        ):
            ctx = _Context(session=session, report=report, actor=actor, dry_run=dry_run)
            ctx.writing = not dry_run and report.problem_count == 0
            ctx.counting = dry_run and report.problem_count == 0
            try:
                if run_id is not None:
                    import_lock.take_import_lock(session, run_id)
                forget = first_step(session, dry_run) if first_step and (dry_run or report.ok) else None
                _load_reference(ctx)
                for ext in getattr(forget, "accounts", ()):
                    ctx.accounts.pop(ext, None)
                for email in getattr(forget, "team", ()):
                    ctx.team.pop(email, None)
                ctx.release()
                _read_all(ctx, files, present, sizes, total, progress)
                if ctx.writing:
                    _complete_new_accounts(ctx)
                report.written = report.ok and not dry_run
                if report.written:
                    bump_data_version(session)
                    if last_step:
                        last_step(session)
                    import_lock.finish_run(session, run_id, report, "imported")
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
        raise ImportFailed(import_lock.db_error_message(exc, dry_run=dry_run)) from exc
    finally:
        if run_id is not None and status != "imported":
            import_lock.end_run(engine, run_id, report, status)
    if status == "imported":  # the columnar copy follows the events (engine/)
        from engine import sync_after_write

        sync_after_write(url)
    report.seconds = time.perf_counter() - t0
    filemap.finish(report)
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
            _import_events(ctx, files[name], on_bytes, size=sizes[name])
        else:
            _import_entity(ctx, name, files[name])
        ctx.stop_writing_if_problems()
        ctx.release()
        done_before += sizes[name]


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
    keys = df[key[0]].astype(str)
    for k in key[1:]:  # vectorised: the same text as joining each row's parts with \x1f
        keys = keys + "\x1f" + df[k].astype(str)
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


def _import_entity(ctx: _Context, name: str, source: Source) -> None:
    report = ctx.report
    frames, typed_parts, numbers = [], [], []
    for chunk in _read_chunks(name, source, report, chunk_rows=100_000):
        df, rows = chunk.frame, chunk.rows
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
        # New rows get metric binding and position (existing rows keep theirs), and the
        # done_at given for a done item, as the update of existing rows below gives it.
        ins = t.assign(metric=t["metric"].astype(object).where(t["metric"].notna(), None))
        ins = ins.drop(columns=["done_at"]) if "done_at" in ins else ins
        if "done_at" in t and "status" in t:
            ins["done_at"] = t["done_at"].astype(object).where(t["done_at"].notna() & (t["status"] == "done"), None)
        res = upsert(
            ctx.session,
            ChecklistItem.__table__,
            ins,
            key=["account_id", "category", "criterion"],
            columns=cols,
            actor=ctx.actor,
            log_entity="checklist_item",
            account_col="account_id",
            on_update={"version": lambda old: int(old["version"]) + 1},
            return_ids=True,
            write=ctx.writing,
            insert_only=["metric", "position", "done_at"],
        )
        ctx.had_checklist.update(t["account_id"].unique().tolist())
        if ctx.writing:
            if "done_at" in t:
                # Rows inserted just now already have theirs when the file has a status column.
                _set_done_at(ctx.session, t, skip=set(res.new_ids or ()) if "status" in t else set())
            _sync_done_at(ctx.session, list(t["account_id"].unique()))
    _tally(report.files[name], res)


def _set_done_at(session: Session, t: pd.DataFrame, *, skip: set[tuple]) -> None:
    """A given done_at of a done item replaces the stored one (an empty cell keeps it);
    `skip`: natural keys of rows already written with it."""
    given = t[t["done_at"].notna() & (t.get("status", pd.Series("done", index=t.index)) == "done")]
    if skip:
        keys = zip(given["account_id"].tolist(), given["category"].tolist(), given["criterion"].tolist(), strict=True)
        given = given[[k not in skip for k in keys]]
    if given.empty:
        return
    items = ChecklistItem.__table__
    session.execute(
        items.update()
        .where(
            items.c.account_id == bindparam("a"),
            items.c.category == bindparam("c"),
            items.c.criterion == bindparam("k"),
            items.c.status == "done",
        )
        .values(done_at=bindparam("d")),
        [
            {"a": int(a), "c": c, "k": k, "d": pd.Timestamp(d).to_pydatetime()}
            for a, c, k, d in zip(
                given["account_id"], given["category"], given["criterion"], given["done_at"], strict=True
            )
        ],
    )


def _sync_done_at(session: Session, account_ids: list[int]) -> None:
    """Done items without a done_at get the import time; items no longer done lose theirs."""
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


def _import_events(ctx: _Context, source: Source, on_bytes: Callable[[int], None], *, size: int = 0) -> None:
    """Stream events.csv in batches into the import's transaction. The garbage collector
    waits meanwhile (the batches make no reference cycles, only many small objects);
    SQLite gets a larger page cache for the index B-trees, and a large PostgreSQL load
    builds the secondary indexes once at the end instead of row by row."""
    sqlite = ctx.session.connection().dialect.name == "sqlite"
    was_enabled = gc.isenabled()
    gc.disable()
    if sqlite and ctx.writing:
        ctx.session.connection().exec_driver_sql(f"PRAGMA cache_size = {LOAD_CACHE_KIB}")
    try:
        _stream_events(ctx, source, on_bytes, size=size)
    finally:
        if was_enabled:
            gc.enable()
        if sqlite:
            with contextlib.suppress(SQLAlchemyError):
                ctx.session.connection().exec_driver_sql(f"PRAGMA cache_size = {NORMAL_CACHE_KIB}")


def _stream_events(ctx: _Context, source: Source, on_bytes: Callable[[int], None], *, size: int) -> None:
    name = "events.csv"
    report = ctx.report
    fr = report.files[name]
    read = [0]

    def seen(b: int) -> None:
        read[0] = b
        on_bytes(b)

    dropped: list = []
    keyless = False  # the natural key dropped for a large load: duplicates removed at the end
    decided = False
    for chunk in _read_chunks(name, source, report, chunk_rows=EVENT_BATCH, on_bytes=seen):
        rows = chunk.rows
        fr.rows += len(chunk)
        fast = _validate_fast(name, chunk.table if chunk.table is not None else chunk.frame)
        if fast is not None:
            typed, ok = fast, np.ones(len(chunk), dtype=bool)
        else:
            typed, ok = _validate(name, chunk.frame, rows, report)
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
        if not decided:
            decided = True
            if _large_pg_load(ctx.session, rows_seen=len(chunk), bytes_seen=read[0], size=size):
                dropped = drop_event_indexes(ctx.session)
                keyless = drop_natural_key(ctx.session)
        batch = pd.DataFrame(
            {
                "account_id": t["account_id"].map(ctx.accounts).astype(int),
                "event": t["event"],
                "ts": t["timestamp"],
                "user_id": t["user_id"].fillna("") if "user_id" in t else "",
                "properties": t.get("properties"),
            }
        )
        inserted = insert_events(ctx.session, batch, keyless=keyless)
        fr.inserted += inserted
        fr.duplicates_skipped += len(batch) - inserted
    if (dropped or keyless) and ctx.writing and not report.problem_count:
        # (With problems the import rolls back, which restores the dropped indexes.)
        if keyless:
            repeats = restore_natural_key(ctx.session)
            fr.inserted -= repeats
            fr.duplicates_skipped += repeats
        rebuild_event_indexes(ctx.session, dropped)
    if ctx.counting and ctx.new_event_keys:
        # New events, counted once however often they repeat in the file.
        candidates = np.concatenate(ctx.new_event_keys)
        fr.inserted = int(np.unique(candidates).size)
        fr.duplicates_skipped += len(candidates) - fr.inserted
        ctx.new_event_keys.clear()


def _large_pg_load(session: Session, *, rows_seen: int, bytes_seen: int, size: int) -> bool:
    """Whether this events file is a large PostgreSQL load (estimated from the first batch's
    bytes per row): at least LARGE_LOAD_EVENTS rows, and more than are stored already.
    (SQLite keeps its one secondary index: dropping and rebuilding it measured the same CPU,
    6.8 s + the rebuild against 8.1 s, for 2M events in the order the export writes them.)"""
    if session.connection().dialect.name != "postgresql" or rows_seen == 0 or bytes_seen == 0:
        return False
    expected = rows_seen * max(size, bytes_seen) / bytes_seen
    return expected >= LARGE_LOAD_EVENTS and expected > stored_event_estimate(session)


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
