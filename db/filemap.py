"""Which contract file an upload is, and helpful problem messages (issue 12, point 17).

A CSV file whose name is not one of the contract's (`bad_accounts.csv`, `export (3).csv`) is
recognised by its header: the contract file whose required columns it has and whose columns
it matches best; the report says which file it was taken as. A header that matches none is
refused with what the closest file misses. An enum value that is not allowed gets the
nearest allowed one ("Mid Market": did you mean "Mid-Market"?). Problems are listed by
file and row. Template CSV files, one per entity, show the format with a consistent example.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from functools import lru_cache
from typing import Any

from db import uploads
from db.uploads import Refused, Source

HEADER_BYTES = 64 * 1024  # enough for any header row of the contract's files


def _specs() -> dict[str, list[Any]]:
    from db.importer import SPECS  # the contract lives in the importer

    return SPECS


def read_header(source: Source) -> list[str] | None:
    """The first row of a CSV source, trimmed and lower-cased; None if unreadable."""
    if isinstance(source, Refused):
        return None
    try:
        raw, _size, _limit = uploads.open_source(source)
        try:
            head = raw.read(HEADER_BYTES)
        finally:
            raw.close()
        text = head.decode("utf-8-sig", errors="replace")
        row = next(csv.reader(io.StringIO(text.splitlines()[0] if text else "")), [])
    except (OSError, ValueError, RuntimeError, StopIteration, IndexError, csv.Error, NotImplementedError):
        return None
    except Exception:  # noqa: BLE001 - a damaged zip member: the importer reports it when reading
        return None
    return [h.strip().lower() for h in row]


def match_header(header: list[str]) -> tuple[str | None, str]:
    """(contract file, "") when the header identifies one file, else (None, why not)."""
    specs = _specs()
    cols = {h for h in header if h}
    scores: list[tuple[int, str]] = []
    closest: tuple[int, str, list[str]] | None = None
    for name, spec in specs.items():
        known = {c.name for c in spec}
        required = [c.name for c in spec if c.required]
        missing = [c for c in required if c not in cols]
        overlap = len(cols & known)
        if not missing:
            scores.append((overlap - len(cols - known), name))
        elif closest is None or overlap > closest[0]:
            closest = (overlap, name, missing)
    if scores:
        scores.sort(reverse=True)
        if len(scores) > 1 and scores[0][0] == scores[1][0]:
            return None, (f"its header fits both {scores[0][1]} and {scores[1][1]}; name the file after the one it is")
        return scores[0][1], ""
    shown = ", ".join(header[:8]) + (", …" if len(header) > 8 else "")
    if closest and closest[0]:
        return None, (
            f"its header ({shown}) is closest to {closest[1]} but lacks the required column(s) {', '.join(closest[2])}"
        )
    return None, f"its header ({shown or 'empty'}) matches none of the contract files"


def recognise(files: dict[str, Source], report: Any) -> dict[str, Source]:
    """Files whose name is not a contract name, taken as the contract file their header
    identifies (a warning says so); the others are refused with the reason."""
    specs = _specs()
    out: dict[str, Source] = {}
    taken: dict[str, str] = {}
    pending: list[tuple[str, Source]] = []
    for name, src in files.items():
        if name in specs or isinstance(src, Refused) or not name.lower().endswith(".csv") or "/" in name:
            out[name] = src
        else:
            pending.append((name, src))
    for name, src in pending:
        header = read_header(src)
        if header is None:
            out[name] = src  # unreadable: the importer says why
            continue
        entity, why = match_header(header)
        expected = ", ".join(specs)
        if entity is None:
            out[name] = Refused(f"unknown file name; expected one of {expected}; nor does its header tell: {why}")
        elif entity in out or entity in taken:
            other = taken.get(entity, entity)
            out[name] = Refused(f"its header is that of {entity}, which {other} already is; give only one")
        else:
            out[entity] = src
            taken[entity] = name
            report.warnings.append(
                f"{name}: taken as {entity} (its name is not a contract file name; recognised by its header)"
            )
    report.taken_as = {**getattr(report, "taken_as", {}), **taken}
    return out


def finish(report: Any) -> None:
    """Name recognised files as the user did ("bad_accounts.csv (as accounts.csv)") and
    list the problems by file and row."""
    taken: dict[str, str] = getattr(report, "taken_as", {})
    label = {entity: f"{name} (as {entity})" for entity, name in taken.items()}
    if taken:
        for p in report.problems:
            p.file = label.get(p.file, p.file)
        for entity, fr in report.files.items():
            fr.file = label.get(entity, fr.file)
    # Files in the contract's order (the order they are read in), then any other file by
    # name; within a file by row. Stable: within one row, problems keep the order of the columns.
    from db.importer import FILE_ORDER

    entity = {shown: e for e, shown in label.items()}
    rank = {name: i for i, name in enumerate(FILE_ORDER)}

    def key(p: Any) -> tuple[int, str, int]:
        return (rank.get(entity.get(p.file, p.file), len(rank)), p.file, p.row)

    report.problems.sort(key=key)


_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


@lru_cache(maxsize=4096)
def suggest(value: str, choices: tuple[str, ...]) -> str | None:
    """The allowed value closest to VALUE (spacing, dashes and case ignored first, then
    difflib's similarity), or None when nothing is close."""
    v = _NOT_ALNUM.sub("", value.lower())
    if not v:
        return None
    squashed = {_NOT_ALNUM.sub("", c.lower()): c for c in choices}
    if v in squashed:
        return squashed[v]
    close = difflib.get_close_matches(v, list(squashed), n=1, cutoff=0.6)
    if close:
        return squashed[close[0]]
    close = difflib.get_close_matches(value.strip().lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    return next((c for c in choices if close and c.lower() == close[0]), None)


def enum_reason(what: str, value: str, choices: tuple[str, ...]) -> str:
    """The problem text for a value that is not allowed, with the nearest allowed value."""
    allowed = ", ".join(choices)
    near = suggest(value.strip(), tuple(choices))
    if near:
        return f'unknown {what}; did you mean "{near}"? allowed: {allowed}'
    return f"unknown {what}; allowed: {allowed}"


# One consistent example portfolio: importing all six templates together is valid.
_EXAMPLES: dict[str, list[dict[str, str]]] = {
    "team.csv": [
        {"email": "ada.admin@example.org", "name": "Ada Admin", "role": "admin"},
        {"email": "casey.csm@example.org", "name": "Casey Lee", "role": "csm"},
    ],
    "accounts.csv": [
        {
            "account_id": "CUST-001",
            "name": "Example Corp",
            "segment": "Mid-Market",
            "contract_start": "2026-01-15",
            "industry": "Software",
            "employees": "250",
            "plan": "Business",
            "channel": "sales",
            "region": "EMEA",
            "arr": "48000",
            "licensed_seats": "40",
            "csm_email": "casey.csm@example.org",
        }
    ],
    "events.csv": [
        {
            "account_id": "CUST-001",
            "event": "login",
            "timestamp": "2026-01-16T09:30:00Z",
            "user_id": "user-17",
            "properties": '{"plan": "business"}',
        }
    ],
    "milestones.csv": [
        {
            "account_id": "CUST-001",
            "milestone": "kickoff_complete",
            "due_date": "2026-01-22",
            "completed_at": "2026-01-20T15:00:00Z",
        }
    ],
    "outcomes.csv": [{"account_id": "CUST-001", "date": "2027-01-15", "type": "renewed", "arr_change": "0"}],
    "checklist.csv": [
        {
            "account_id": "CUST-001",
            "category": "Technical Setup",
            "criterion": "SSO configured",
            "target": "yes",
            "actual": "no",
            "status": "in progress",
            "owner_email": "casey.csm@example.org",
            "due_date": "2026-02-01",
        }
    ],
}


def template_csv(entity: str) -> bytes:
    """A template for ENTITY (a contract file name): every column of the contract, required
    ones first, and an example row."""
    spec = _specs()[entity]
    cols = [c.name for c in spec if c.required] + [c.name for c in spec if not c.required]
    if entity == "checklist.csv":
        cols = [c for c in cols if c not in ("note", "done_at")]  # beyond the contract: export's own
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in _EXAMPLES[entity]:
        w.writerow({c: row.get(c, "") for c in cols})
    return buf.getvalue().encode("utf-8")
