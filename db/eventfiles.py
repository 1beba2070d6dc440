"""Event files as pipelines write them (issue 14): Segment-spec JSON lines and Parquet,
gzip-compressed or not, imported as events.csv is.

The readers here yield the importer's `Chunk`s (the cells as text, as the CSV reader gives
them), so the events go through exactly the validation, deduplication, upsert, change log
and atomicity of events.csv (db/importer.py `_stream_events`). Problems are named after the
file ("track.jsonl.gz (as events.csv)"), and for JSON lines after the Segment field.

- **JSON lines** (`.jsonl`, `.ndjson`): one Segment call a line. Track calls are events
  (a line without `type` is one: the HTTP API's /track takes them so); identify, page,
  screen, group and alias calls are skipped and counted in a warning. `event` is the event;
  the time is `timestamp`, else as Segment derives it: `receivedAt - (sentAt -
  originalTimestamp)` when all three are given, else `originalTimestamp`, else `receivedAt`
  (the time the API received the call, its default); `userId` is the user, else
  `anonymousId` (every Segment call has one of them); `properties` (an object) is stored as
  the event's properties JSON; the account is `context.groupId`, or the property named by
  the account-property option.
- **Parquet**: the contract's columns (names case-insensitive); text or whole numbers for
  account_id, event and user_id; a timestamp (with a zone: converted to UTC; without: UTC),
  a date or ISO 8601 text for timestamp; JSON text for properties. Row numbers are record
  numbers (the first is 1). Read a batch at a time, only the contract's columns.

Bounds: a line is read to at most MAX_ROW_CHARS; a gzip stream (and a Parquet file inside a
zip or a gzip, which is decompressed to a temporary file first, as Parquet must seek) from an
upload may yield at most MAX_FILE_BYTES (db/uploads.py), as a zip member may.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import shutil
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from db import uploads
from db.uploads import EVENT_SUFFIXES, EventParts, Refused, Source, ZipMember

EVENTS = "events.csv"
HEADER = ["account_id", "event", "timestamp", "user_id", "properties"]
# Segment's names of the contract's columns, for problems in JSON lines.
SEGMENT_FIELDS = {"event": "event", "timestamp": "timestamp", "user_id": "userId", "properties": "properties"}
GROUP_FIELD = "context.groupId"
PARQUET_BATCH_BUFFER = 8 * 1024 * 1024  # bytes of a column chunk read at a time (not the whole row group)
_LINE_BYTES = 4  # the most bytes a UTF-8 character takes: a line's byte bound is 4 x MAX_ROW_CHARS
_TS_SHAPE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$"
)


def event_format(name: str) -> str | None:
    """The format ("jsonl" or "parquet") of a file name of those formats (gzipped or not), else None."""
    low = name.lower()
    if "/" in name or not low.endswith(EVENT_SUFFIXES):
        return None
    return "parquet" if ".parquet" in low[-12:] else "jsonl"


def group_event_files(files: dict[str, Source], *, account_property: str | None = None) -> dict[str, Source]:
    """Files of the event formats (with events.csv, if given too) as one events source
    under events.csv; other files as they are. Without event-format files: `files`."""
    names = [n for n, s in files.items() if event_format(n) and not isinstance(s, Refused)]
    if not names:
        return files
    names = [n for n in files if n.lower() == EVENTS and not isinstance(files[n], Refused)] + names
    out = {n: s for n, s in files.items() if n not in names}
    prop = (account_property or "").strip() or None
    out[EVENTS] = EventParts(tuple((n, files[n]) for n in names), prop)
    return out


def files_from_paths(paths: list[Path], *, account_property: str | None = None) -> dict[str, Source]:
    """Files given one by one (contract CSV files and event files); raises FileNotFoundError
    for a path that is not such a file."""
    out: dict[str, Source] = {}
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p} is not a file")
        if not (p.suffix.lower() == ".csv" or event_format(p.name)):
            raise FileNotFoundError(
                f"{p} is neither a .csv file nor an event file (.jsonl, .ndjson, .parquet, optionally .gz)"
            )
        if p.name in out:
            out[p.name] = Refused(f"{p.name} is given twice; give only one")
            continue
        out[p.name] = p
    return group_event_files(out, account_property=account_property)


# ----------------------------------------------------------------------------- reading


def event_parts_chunks(
    name: str,
    source: EventParts,
    report: Any,
    *,
    chunk_rows: int,
    on_bytes: Callable[[int], None] | None,
    read_csv: Callable[..., Iterator[Any]],
) -> Iterator[Any]:
    """The chunks of every part in turn (read_csv reads a CSV part); the problems each part
    gives, in reading or in validation, named after it."""
    names = [n for n, _ in source.parts]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    if name in report.files:  # the summary's name of the file (as filemap names a recognised one)
        report.files[name].file = f"{shown} (as {name})"
    done = 0
    for part, src in source.parts:
        fmt = event_format(part)
        label = part if part.lower() == name else f"{part} (as {name})"
        columns: dict[str, str] = {}
        if fmt == "jsonl":
            columns = {**SEGMENT_FIELDS, "account_id": _account_field(source.account_property)}

        def seen(b: int, before: int = done) -> None:
            if on_bytes:
                on_bytes(before + b)

        if fmt == "jsonl":
            reader = _jsonl_chunks(
                name,
                src,
                report,
                chunk_rows=chunk_rows,
                on_bytes=seen,
                gz=part.lower().endswith(".gz"),
                account_property=source.account_property,
                label=label,
            )
        elif fmt == "parquet":
            reader = _parquet_chunks(
                name, src, report, chunk_rows=chunk_rows, on_bytes=seen, gz=part.lower().endswith(".gz"), label=label
            )
        else:
            reader = read_csv(name, src, report, chunk_rows=chunk_rows, on_bytes=seen)
        mark = len(report.problems)
        for chunk in reader:
            mark = _relabel(report, mark, name, label, columns)
            yield chunk
            # Resumed: the chunk has been validated and its problems added.
            mark = _relabel(report, mark, name, label, columns)
        _relabel(report, mark, name, label, columns)
        done += uploads.source_size(src)


def _account_field(account_property: str | None) -> str:
    return f"properties.{account_property}" if account_property else GROUP_FIELD


def _relabel(report: Any, mark: int, name: str, label: str, columns: dict[str, str]) -> int:
    for p in report.problems[mark:]:
        if p.file == name:
            p.file = label
            p.column = columns.get(p.column, p.column)
    return len(report.problems)


def _problem(report: Any, name: str, row: int, column: str, value: str, reason: str) -> None:
    from db.importer import Problem

    report.add(Problem(name, row, column, value[:200], reason))


def _escaped(value: str) -> str:
    """The cell as export writes it: a value that starts with ' gets one more (the
    validation drops exactly one), so it is stored as given."""
    if not value or (value[0] != "'" and not value[0].isspace()):
        return value
    return "'" + value if value.lstrip().startswith("'") else value


# ----------------------------------------------------------------------------- JSON lines


def _text(value: Any) -> str | None:
    """A Segment identifier as text (a whole number is its digits); None if neither."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _segment_time(call: dict) -> tuple[str | None, str, str]:
    """(ISO 8601 text or None, the field it came from, why not) of a track call's time."""
    ts = call.get("timestamp")
    if ts is not None:
        return (ts, "timestamp", "") if isinstance(ts, str) else (None, "timestamp", "must be ISO 8601 text")
    orig, sent, recv = call.get("originalTimestamp"), call.get("sentAt"), call.get("receivedAt")
    if orig is not None:
        if not isinstance(orig, str):
            return None, "originalTimestamp", "must be ISO 8601 text"
        if isinstance(sent, str) and isinstance(recv, str):
            parsed = [_iso(v) for v in (orig, sent, recv)]
            for v, field in zip(parsed, ("originalTimestamp", "sentAt", "receivedAt"), strict=True):
                if v is None:
                    return None, field, "bad timestamp: use ISO 8601, e.g. 2025-03-01T14:05:00Z (no offset = UTC)"
            t = parsed[2] - (parsed[1] - parsed[0])
            return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "originalTimestamp", ""
        return orig, "originalTimestamp", ""
    if recv is not None:
        return (recv, "receivedAt", "") if isinstance(recv, str) else (None, "receivedAt", "must be ISO 8601 text")
    return None, "timestamp", "missing: a track call needs a timestamp (or originalTimestamp or receivedAt)"


def _iso(value: str) -> datetime | None:
    v = value.strip()
    if not _TS_SHAPE.match(v):
        return None
    try:
        t = datetime.fromisoformat(v.replace("z", "Z"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _open_limited(source: Path | bytes | ZipMember, gz: bool) -> tuple[Any, uploads.Counting, Any]:
    """(a binary stream of the file's content, the counter of its stored bytes, the raw
    file to close). Content from an upload (bytes, a zip member) is limited to
    MAX_FILE_BYTES, decompressed."""
    raw, _size, limit = uploads.open_source(source)
    stored = uploads.Counting(raw)
    if not gz:
        stored.limit = limit
        return stored, stored, raw
    if limit is None and not isinstance(source, Path):
        limit = uploads.MAX_FILE_BYTES
    content = uploads.Counting(gzip.GzipFile(fileobj=io.BufferedReader(stored), mode="rb"), limit)
    return content, stored, raw


def _stopped(report: Any, name: str, row: int, exc: BaseException, *, what: str) -> None:
    if isinstance(exc, uploads.TooLarge):
        reason = (
            f"the file decompresses to more than {uploads.human_size(uploads.MAX_FILE_BYTES)}, the most accepted "
            "per file; reading of this file stopped here"
        )
    elif isinstance(exc, gzip.BadGzipFile | zlib.error | EOFError):
        reason = f"the gzip stream is damaged or not gzip ({str(exc) or 'it ends too early'}); reading of this file stopped here"
    elif isinstance(exc, zipfile.BadZipFile):
        reason = f"the zip entry is damaged ({exc}); reading of this file stopped here"
    else:
        reason = f"the {what} cannot be read ({exc}); reading of this file stopped here"
    _problem(report, name, row, "", "", reason)


def _jsonl_chunks(
    name: str,
    source: Path | bytes | ZipMember,
    report: Any,
    *,
    chunk_rows: int,
    on_bytes: Callable[[int], None],
    gz: bool,
    account_property: str | None,
    label: str,
) -> Iterator[Any]:
    from db.importer import Chunk

    try:
        content, stored, raw = _open_limited(source, gz)
    except Exception as exc:  # noqa: BLE001 - a damaged zip member: said, not raised
        _stopped(report, name, 0, exc, what="file")
        return
    max_chars = uploads.MAX_ROW_CHARS
    lines = io.BufferedReader(content, buffer_size=1 << 20)
    account_field = _account_field(account_property)
    skipped: Counter[str] = Counter()
    rows: list[list[str]] = []
    numbers: list[int] = []
    line_no = 0
    try:
        while True:
            line = lines.readline(max_chars * _LINE_BYTES + 2)
            if not line:
                break
            line_no += 1
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                if not line.endswith(b"\n") and len(line) > max_chars * _LINE_BYTES:
                    raise uploads.RowTooLong from exc
                _problem(
                    report, name, line_no, "", "", f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)"
                )
                continue
            if line_no == 1:
                text = text.removeprefix("\ufeff")
            body = text.rstrip("\r\n")
            if len(body) > max_chars or (not line.endswith(b"\n") and len(line) > max_chars * _LINE_BYTES):
                raise uploads.RowTooLong
            body = body.strip()
            if not body:
                continue
            row = _track_row(name, report, line_no, body, account_property, account_field, skipped)
            if row is None:
                continue
            rows.append(row)
            numbers.append(line_no)
            if len(rows) >= chunk_rows:
                on_bytes(stored.count)
                yield Chunk(HEADER, np.asarray(numbers), frame=pd.DataFrame(rows, columns=HEADER, dtype=object))
                rows, numbers = [], []
        if rows:
            yield Chunk(HEADER, np.asarray(numbers), frame=pd.DataFrame(rows, columns=HEADER, dtype=object))
        on_bytes(stored.count)
    except uploads.RowTooLong:
        _problem(
            report,
            name,
            line_no,
            "",
            "",
            f"line too long: more than {max_chars:,} characters (is this a JSON lines file?); "
            "reading of this file stopped here",
        )
    except (
        uploads.TooLarge,
        OSError,
        EOFError,
        zlib.error,
        zipfile.BadZipFile,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        _stopped(report, name, line_no + 1, exc, what="file")
    finally:
        raw.close()
    if skipped:
        kinds = ", ".join(f"{k[:40]} {n:,}" for k, n in skipped.most_common(10))
        report.warnings.append(f"{label}: {sum(skipped.values()):,} call(s) that are not track calls skipped ({kinds})")


def _track_row(
    name: str,
    report: Any,
    line_no: int,
    body: str,
    account_property: str | None,
    account_field: str,
    skipped: Counter[str],
) -> list[str] | None:
    """A track call's cells (account_id, event, timestamp, user_id, properties) as CSV text,
    or None: not a track call (counted in `skipped`), or its problems reported."""
    try:
        call = json.loads(body)
    except RecursionError:
        _problem(report, name, line_no, "", body[:80], "not JSON: nested too deeply")
        return None
    except ValueError as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        _problem(report, name, line_no, "", body[:80], f"not JSON: {why}")
        return None
    if not isinstance(call, dict):
        _problem(report, name, line_no, "", body[:80], "not a JSON object (one Segment call a line)")
        return None
    kind = call.get("type", "track")
    if kind == "track":  # the usual call, every value of the expected kind: its cells at once
        event, ts, props = call.get("event"), call.get("timestamp"), call.get("properties")
        if account_property:
            account = props.get(account_property) if type(props) is dict else None
        else:
            context = call.get("context")
            account = context.get("groupId") if type(context) is dict else None
        user = call.get("userId")
        if user is None or user == "":
            user = call.get("anonymousId")
        if (
            type(event) is str
            and type(ts) is str
            and type(account) is str
            and (user is None or type(user) is str)
            and (props is None or type(props) is dict)
        ):
            return [
                _escaped(account),
                _escaped(event),
                ts,
                "" if user is None else _escaped(user),
                "" if props is None else json.dumps(props, ensure_ascii=False),
            ]
    if not isinstance(kind, str):
        _problem(report, name, line_no, "type", str(kind), "must be text (track, identify, page, ...)")
        return None
    if kind.strip().lower() != "track":
        skipped[kind.strip().lower() or "(empty type)"] += 1
        return None
    problems = 0

    def bad(field: str, value: Any, reason: str) -> None:
        nonlocal problems
        problems += 1
        _problem(report, name, line_no, field, "" if value is None else str(value), reason)

    event = call.get("event")
    if event is None:
        bad("event", None, "missing: a track call needs an event name")
    elif not isinstance(event, str):
        bad("event", event, "must be text")
    ts, ts_field, why = _segment_time(call)
    if ts is None:
        bad(ts_field, call.get(ts_field), why)
    props = call.get("properties")
    if props is not None and not isinstance(props, dict):
        bad("properties", json.dumps(props)[:200], 'must be a JSON object like {"plan": "pro"}')
        props = None
    if account_property:
        account = (props or {}).get(account_property)
    else:
        context = call.get("context")
        account = context.get("groupId") if isinstance(context, dict) else None
    if account is None:
        hint = (
            f"the account is read from the property {account_property!r}"
            if account_property
            else "the account is read from context.groupId; name the property that holds it instead with the "
            "account-property option"
        )
        bad(account_field, None, f"missing: {hint}")
    elif _text(account) is None:
        bad(account_field, account, "must be text or a whole number")
    user = call.get("userId")
    user_field = "userId"
    if user is None or user == "":
        user, user_field = call.get("anonymousId"), "anonymousId"
    if user is not None and _text(user) is None:
        bad(user_field, user, "must be text or a whole number")
    if problems:
        return None
    return [
        _escaped(_text(account) or ""),
        _escaped(event or ""),
        ts or "",
        _escaped(_text(user) or "") if user is not None else "",
        json.dumps(props, ensure_ascii=False) if props is not None else "",
    ]


# ----------------------------------------------------------------------------- Parquet


@contextlib.contextmanager
def _parquet_input(source: Path | bytes | ZipMember, gz: bool) -> Iterator[Any]:
    """What pyarrow reads the Parquet file from: the file itself or the upload's bytes;
    a gzipped file or a zip member decompressed to a temporary file (Parquet must seek),
    within the limits."""
    import pyarrow as pa

    if isinstance(source, Path) and not gz:
        yield str(source)
        return
    if isinstance(source, bytes | bytearray) and not gz:
        yield pa.BufferReader(source)
        return
    content, _stored, raw = _open_limited(source, gz)
    try:
        with tempfile.TemporaryFile(prefix="import-", suffix=".parquet") as tmp:
            shutil.copyfileobj(content, tmp, 1 << 20)
            tmp.seek(0)
            yield tmp
    finally:
        raw.close()


def _as_text(column: Any, kind: str) -> Any:
    """A Parquet column as the CSV reader's text (empty for null), or None if its type is
    not one this column may have."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.dictionary_decode(), t.value_type
    textual = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if pa.types.is_null(t):
        return pa.array([""] * len(column), pa.string())
    if kind == "ts":
        if pa.types.is_timestamp(t):
            # With a zone: the same instant in UTC; without: UTC, as the contract says. Written
            # as UTC without an offset (no offset = UTC): Arrow prints naive times 40x faster.
            column = pc.cast(pc.cast(pc.cast(column, pa.timestamp(t.unit, "UTC")), pa.timestamp(t.unit)), pa.string())
        elif pa.types.is_date(t) or textual:
            column = pc.cast(column, pa.string())
        else:
            return None
    elif kind == "json":
        if not textual:
            return None
        column = pc.cast(column, pa.string())
    elif textual or pa.types.is_integer(t):
        column = pc.cast(column, pa.string())
    else:
        return None
    if kind != "ts":
        column = pc.if_else(
            pc.starts_with(pc.utf8_ltrim_whitespace(column.fill_null("")), "'"),
            pc.binary_join_element_wise("'", column, ""),
            column,
        )
    return column.fill_null("")


EXPECTED_TYPES = {
    "text": "text or a whole number",
    "ts": "a timestamp, a date or ISO 8601 text",
    "json": "JSON text",
}


def _parquet_chunks(
    name: str,
    source: Path | bytes | ZipMember,
    report: Any,
    *,
    chunk_rows: int,
    on_bytes: Callable[[int], None],
    gz: bool,
    label: str,
) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from db.importer import SPECS, Chunk

    spec = {c.name: c for c in SPECS[name]}
    size = uploads.source_size(source)
    done = 0
    try:
        with _parquet_input(source, gz) as where:
            try:
                pf = pq.ParquetFile(where, buffer_size=PARQUET_BATCH_BUFFER, pre_buffer=False)
            except (pa.ArrowException, OSError, ValueError) as exc:
                _problem(report, name, 0, "", "", f"not a readable Parquet file ({exc})")
                return
            given = pf.schema_arrow
            by_name: dict[str, str] = {}
            problems = 0
            for field in given:
                key = field.name.strip().lower()
                if key in by_name:
                    _problem(report, name, 0, key, field.name, "column appears twice in the file")
                    problems += 1
                by_name[key] = field.name
            for c in spec.values():
                if c.required and c.name not in by_name:
                    have = ", ".join(f.name for f in given) or "none"
                    _problem(report, name, 0, c.name, "", f"missing required column (the file's columns: {have})")
                    problems += 1
            kinds = {"account_id": "text", "event": "text", "user_id": "text", "timestamp": "ts", "properties": "json"}
            header = [c for c in HEADER if c in by_name]
            for c in header:
                t = given.field(by_name[c]).type
                if _as_text(pa.array([], t), kinds[c]) is None:
                    _problem(report, name, 0, c, "", f"the column's type is {t}; expected {EXPECTED_TYPES[kinds[c]]}")
                    problems += 1
            unknown = [f.name for f in given if f.name.strip().lower() not in spec]
            if unknown:
                report.warnings.append(f"{label}: ignored unknown column(s) {', '.join(unknown)}")
            if problems:
                return
            total = max(pf.metadata.num_rows, 1)
            for batch in pf.iter_batches(
                batch_size=chunk_rows, columns=[by_name[c] for c in header], use_threads=False
            ):
                n = batch.num_rows
                if not n:
                    continue
                table = pa.table([_as_text(batch.column(i), kinds[c]) for i, c in enumerate(header)], names=header)
                rows = np.arange(done + 1, done + 1 + n)
                done += n
                # Progress (and the importer's estimate of the rows to come) by records read.
                on_bytes(int(size * done / total))
                yield Chunk(header, rows, table=table)
    except (
        uploads.TooLarge,
        OSError,
        EOFError,
        zlib.error,
        zipfile.BadZipFile,
        RuntimeError,
        NotImplementedError,
        pa.ArrowException,
    ) as exc:
        _stopped(report, name, done + 1, exc, what="Parquet file")
