"""The Arrow CSV reader (issue 16) gives exactly what the reference reader (Python's csv
module) gives: the same records, row numbers, problems and warnings, on simple files and on
hostile ones (where it hands over to the reference reader part-way)."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from db import importer
from db.importer import FileReport, ImportReport

HEADER = "account_id,event,timestamp,user_id,properties"


def read(reader, data: bytes, *, chunk_rows: int = 7) -> tuple[list, list[str], list[str], list[bool]]:
    report = ImportReport(dry_run=True)
    report.files["events.csv"] = FileReport("events.csv")
    records, arrow = [], []
    for chunk in reader("events.csv", data, report, chunk_rows=chunk_rows):
        frame = chunk.frame
        assert list(frame.columns) == chunk.header
        for number, cells in zip(chunk.rows.tolist(), frame.itertuples(index=False), strict=True):
            records.append((number, tuple(cells)))
        arrow.append(chunk.table is not None)
    return records, [str(p) for p in report.problems], report.warnings, arrow


def both(data: bytes, **kw) -> tuple:
    fast = read(importer._read_chunks, data, **kw)
    ref = read(importer._read_chunks_python, data, **kw)
    assert fast[:3] == ref[:3], data
    return fast


def test_a_simple_file_is_read_by_arrow_with_the_reference_readers_result():
    body = [
        '  A-1 , login ,2026-01-06T09:00:00Z, u1 ,"{""plan"": ""pro, max""}"',
        "A-1,'=cmd,2026-01-06 09:00:00+02:00,'u2,",
        ",,,,",  # a spreadsheet's empty row: skipped, the numbering goes on
        "A-2,login,2026-02-02T08:00:00,,",
        "   ,  , , ,",
        "A-2,é\u3000,2026-02-02,u3,",
    ]
    records, problems, _, arrow = both(("\ufeff" + HEADER + "\r\n" + "\r\n".join(body) + "\r\n").encode())
    assert arrow and all(arrow)
    assert [n for n, _ in records] == [2, 3, 5, 7]
    assert records[0][1] == ("  A-1 ", " login ", "2026-01-06T09:00:00Z", " u1 ", '{"plan": "pro, max"}')
    assert problems == []


@pytest.mark.parametrize(
    "body",
    [
        ['A-1,"multi\nline",2026-01-06T09:00:00Z,u1,', "A-1,x,2026-01-06T09:00:00Z,u1,"],  # a quoted newline
        ["A-1,x,2026-01-06T09:00:00Z,u1", "A-1,x,2026-01-06T09:00:00Z,u1,"],  # a field short
        ["A-1,x,2026-01-06T09:00:00Z,u1,", "", "A-1,y,2026-01-06T09:00:00Z,u1,"],  # a blank line
        ["A-1,x\r2026,u1,,", "A-1,y,2026-01-06T09:00:00Z,u1,"],  # a lone CR ends a line
        ["A-1,\u3000,\x1c,\u00a0,\u2028"],  # a record of Unicode whitespace only: skipped
    ],
)
def test_files_that_are_not_simple_read_as_the_reference_reader_reads_them(body):
    lines = [f"A-{i},e,2026-01-06T09:00:00Z,u,'" for i in range(30)] + body + ["A-9,z,2026-01-07T00:00:00Z,u,"]
    both((HEADER + "\n" + "\n".join(lines) + "\n").encode())


def test_not_utf8_and_too_long_rows_report_as_the_reference_reader(monkeypatch):
    lines = [f"A-{i},e,2026-01-06T09:00:00Z,u," for i in range(50)]
    both((HEADER + "\n" + "\n".join(lines) + "\nA-1,\xe9t\xe9,x,y,\n").encode("latin-1"))
    monkeypatch.setattr(importer.uploads, "MAX_ROW_CHARS", 60)
    both((HEADER + "\n" + "\n".join(lines) + "\nA-1," + "x" * 100 + ",t,u,\n").encode())


def test_random_csv_reads_as_the_reference_reader(monkeypatch):
    """Fuzz: small blocks (so the Arrow reader stops and hands over at every place), cells of
    quotes, commas, line ends, spaces and non-ASCII; the same result either way."""
    monkeypatch.setattr(importer, "ARROW_BLOCK_BYTES", 40)
    rnd = random.Random(16)
    alphabet = ["a", "b", ",", ",", '"', '"', " ", "\n", "\r\n", "\r", "\u3000", "é", "\x00", "'"]
    arrow_used = 0
    for _ in range(1500):
        good = [
            ",".join(rnd.choice(["A-1", " x ", '"q,""q"""', "", "2026-01-06T09:00:00Z"]) for _ in range(5))
            for _ in range(rnd.randint(0, 8))
        ]
        noise = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        at = rnd.randint(0, len(good))
        text = "\n".join([HEADER, *good[:at], noise, *good[at:]])
        if rnd.random() < 0.7:
            text += "\n"
        data = text.encode()
        if rnd.random() < 0.05:
            data = data.replace(b"\xc3\xa9", b"\xe9")  # invalid UTF-8: the read-ahead margin matters
            monkeypatch.setattr(importer, "READ_AHEAD_MARGIN", 64 * 1024)
        else:  # hand over part-way, after chunks given out already
            monkeypatch.setattr(importer, "READ_AHEAD_MARGIN", 0)
        arrow_used += any(both(data, chunk_rows=rnd.randint(1, 5))[3])
    assert arrow_used > 300  # many files are read, at least in part, by Arrow


def test_validate_fast_on_the_arrow_table_equals_the_frame_and_the_per_cell_path():
    import pyarrow as pa

    rows = [
        ["A-1", "login", "2026-01-06T09:00:00Z", " u1 ", '{"a": 1}'],
        ["A-1", "x", "2026-01-06 09:00:00.123456789+02:00", "", ""],
        ["A-2", "y", "2026-01-06T09:00+0130", "u", " {} "],
    ]
    naive = [["A-1", "login", "2026-01-06T09:00:00", "u", ""], ["A-2", "y", "2026-01-06", "u", ""]]
    for body in (rows, naive, rows + naive):
        frame = pd.DataFrame(body, columns=HEADER.split(","), dtype=object)
        table = pa.table({c: pa.array(frame[c].tolist(), type=pa.string()) for c in frame.columns})
        from_table = importer._validate_fast("events.csv", table)
        from_frame = importer._validate_fast("events.csv", frame)
        report = ImportReport(dry_run=True)
        per_cell, ok = importer._validate("events.csv", frame, np.arange(2, 2 + len(body)), report)
        assert ok.all() and not report.problems
        pd.testing.assert_frame_equal(from_table, from_frame)
        pd.testing.assert_frame_equal(from_table, per_cell[from_table.columns], check_dtype=False)


def test_the_bytes_reported_with_a_chunk_are_those_of_its_records(monkeypatch):
    """The large-load estimate (rows per byte of the first chunk) must not see the read-ahead."""
    monkeypatch.setattr(importer, "ARROW_BLOCK_BYTES", 4096)
    monkeypatch.setattr(importer, "READ_AHEAD_MARGIN", 0)
    lines = [f"A-{i:05d},e,2026-01-06T09:00:00Z,u," for i in range(2000)]
    data = (HEADER + "\n" + "\n".join(lines) + "\n").encode()
    seen: list[int] = []
    report = ImportReport(dry_run=True)
    chunks = list(importer._read_chunks("events.csv", data, report, chunk_rows=100, on_bytes=seen.append))
    assert all(c.table is not None for c in chunks)
    line_bytes = len(lines[0]) + 1
    assert seen[0] == len(HEADER) + 1 + 100 * line_bytes
    assert seen[-1] == len(data)
