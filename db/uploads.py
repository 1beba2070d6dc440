"""Uploads read within bounds (issue 10): the CSV files of an upload or a zip, each
checked against the size limits before it is read and streamed when it is (a zip member is
never decompressed whole, a line never read past the row limit), and a name given twice
refused with both names. The limits are module settings so that tests can scale them down.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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


class RowTooLong(Exception):
    """A row of a file is longer than MAX_ROW_CHARS."""


class TooLarge(Exception):
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


@dataclass(frozen=True)
class EventParts:
    """The events of an import given as files of other formats than events.csv (JSON lines,
    Parquet, gzip-compressed or not; db/eventfiles.py), with an events.csv if one is given
    too: read one after the other as the one events file of the contract."""

    parts: tuple[tuple[str, Path | bytes | ZipMember], ...]
    account_property: str | None = None  # JSON lines: the property that holds the account

    @property
    def size(self) -> int:
        return sum(source_size(s) for _, s in self.parts)


Source = Path | bytes | ZipMember | Refused | EventParts

# Files that can only be events (db/eventfiles.py): Segment-spec JSON lines and Parquet.
EVENT_SUFFIXES = (".jsonl", ".ndjson", ".parquet", ".jsonl.gz", ".ndjson.gz", ".parquet.gz")


def human_size(n: int) -> str:
    """A size for a message: 2.0 GB, 120 MB, 5.0 MB, 98 KB, 150 bytes."""
    if n >= 1024 * MB:
        return f"{n / (1024 * MB):,.1f} GB"
    if n >= MB:
        return f"{n / MB:,.0f} MB" if n >= 10 * MB else f"{n / MB:,.1f} MB"
    return f"{n / 1024:,.0f} KB" if n >= 1024 else f"{n} bytes"


def expand(uploads: list[tuple[str, bytes]], *, known: Collection[str]) -> dict[str, Source]:
    """Uploaded files (name, bytes); a .zip is expanded to the CSV files inside it.

    Nothing is decompressed here: zip members are checked against the limits by their
    declared sizes and streamed when read. A name given twice (in two folders of a zip, or
    a loose file and a zip member) is refused with both names."""
    out: dict[str, Source] = {}
    labels: dict[str, list[str]] = {}
    total = 0

    def put(base: str, label: str, src: Source, size: int) -> None:
        nonlocal total
        key = base.lower() if base.lower() in known else base
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
            out[key] = Refused(f"the upload adds up to more than {human_size(MAX_TOTAL_BYTES)} uncompressed; split it")

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
            put(
                base,
                base,
                Refused(f"the file is {human_size(len(data))}; at most {human_size(MAX_FILE_BYTES)} per file"),
                0,
            )
        else:
            put(base, base, data, len(data))
    return out


class _ZipRefused(Exception):
    pass


# The most bytes of central directory a zip of MAX_ZIP_ENTRIES entries may have: each entry
# is a 46-byte header and its name, extra field and comment (up to 64 KB each by the format,
# far less in practice); zipfile reads the whole directory into memory at once.
ZIP_DIR_BYTES_PER_ENTRY = 70 * 1024


def _check_zip_directory(data: bytes) -> None:
    """Refuse a zip whose central directory holds more than MAX_ZIP_ENTRIES entries, before
    zipfile parses it. The entry count in the end record is the uploader's word and zipfile
    ignores it (it builds one ZipInfo per directory entry), so the entries are counted here by
    walking the directory headers in place, stopping at the first one past the limit."""
    try:
        rec = zipfile._EndRecData(io.BytesIO(data))
    except OSError as exc:
        raise _ZipRefused("not a readable zip file") from exc
    if not rec:
        raise _ZipRefused("not a readable zip file")
    size_cd = int(rec[zipfile._ECD_SIZE])
    limit = MAX_ZIP_ENTRIES * ZIP_DIR_BYTES_PER_ENTRY
    if size_cd > limit:
        raise _ZipRefused(
            f"the zip's list of entries is {human_size(size_cd)}; at most {human_size(limit)} "
            f"({MAX_ZIP_ENTRIES:,} entries) is accepted"
        )
    # Where zipfile looks for the directory (its arithmetic, in which the offset the end record
    # gives cancels out: data may precede the zip).
    start = int(rec[zipfile._ECD_LOCATION]) - size_cd
    if rec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    if start < 0:
        raise _ZipRefused("not a readable zip file")
    directory = memoryview(data)[start : start + size_cd]  # a view: nothing is copied
    pos = entries = 0
    while pos < size_cd:
        if pos + zipfile.sizeCentralDir > len(directory) or directory[pos : pos + 4] != zipfile.stringCentralDir:
            raise _ZipRefused("not a readable zip file")
        entries += 1
        if entries > MAX_ZIP_ENTRIES:
            raise _ZipRefused(
                f"the zip has more than {MAX_ZIP_ENTRIES:,} entries; at most {MAX_ZIP_ENTRIES:,} are accepted"
            )
        name, extra, comment = struct.unpack_from("<3H", directory, pos + 28)
        pos += zipfile.sizeCentralDir + name + extra + comment


def _zip_members(data: bytes, zipname: str) -> list[tuple[str, str, Source, int]]:
    """(file name, label, source, declared size) of the CSV files in a zip, within the limits."""
    try:
        _check_zip_directory(data)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        if isinstance(exc, _ZipRefused):
            raise
        raise _ZipRefused("not a readable zip file") from exc
    out: list[tuple[str, str, Source, int]] = []
    declared = 0
    from db.backup import backup_member

    for info in infos:
        inner = Path(info.filename).name
        if not info.is_dir() and (member := backup_member(info.filename)):
            inner = member  # an export's backup/ files, streamed like the CSV files
        elif info.is_dir() or not inner.lower().endswith((".csv", *EVENT_SUFFIXES)) or inner.startswith("."):
            continue
        if "__MACOSX" in Path(info.filename).parts:
            continue  # macOS Finder's resource forks
        label = f"{info.filename} in {zipname}"
        if info.file_size > MAX_FILE_BYTES:
            src: Source = Refused(
                f"{label} is {human_size(info.file_size)} uncompressed; at most {human_size(MAX_FILE_BYTES)} per file"
            )
        elif info.flag_bits & 0x1:
            src = Refused(f"{label} is encrypted; zip it without a password")
        else:
            src = ZipMember(data, info.filename, info.file_size, label)
        declared += 0 if isinstance(src, Refused) else info.file_size  # a refused member is never read
        if declared > MAX_TOTAL_BYTES:
            raise _ZipRefused(
                f"the files in the zip add up to more than {human_size(MAX_TOTAL_BYTES)} uncompressed; split it"
            )
        out.append((inner, label, src, 0 if isinstance(src, Refused) else info.file_size))
    return out


class Counting(io.RawIOBase):
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
            raise TooLarge
        return n


def open_source(source: Path | bytes | ZipMember) -> tuple[BinaryIO, int, int | None]:
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


def source_size(source: Source) -> int:
    if hasattr(source, "source_size"):  # rows of a query (db/sync_source.py): no bytes to count
        return int(source.source_size)
    if isinstance(source, ZipMember | EventParts):
        return source.size
    if isinstance(source, Refused):
        return 0
    if isinstance(source, bytes | bytearray):
        return len(source)
    return Path(source).stat().st_size


class BoundedLines:
    """Lines of a text stream, each read with a bound: a file of one 2 GiB line costs at most
    MAX_ROW_CHARS of memory. `record` counts the characters of the current CSV record, which
    the reader resets after each record (a quoted field may span lines)."""

    def __init__(self, stream: io.TextIOBase, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.record = 0

    def __iter__(self) -> BoundedLines:
        return self

    def __next__(self) -> str:
        line = self.stream.readline(self.limit + 2)
        if not line:
            raise StopIteration
        self.record += len(line)
        if len(line.rstrip("\r\n")) > self.limit or self.record > self.limit + 2:
            raise RowTooLong
        return line
