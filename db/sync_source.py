"""Reading the contract's entities from a SQL source (issue 14): the mapping, the source URL
with its secrets hidden, and the query rows as the importer's chunks.

The mapping is TOML with one table per contract entity (team, accounts, milestones,
outcomes, checklist, events), each a `query` that returns the contract's columns under the
contract's names, and optionally a `watermark` column. A query may use one bind parameter,
`:watermark`; it is always bound, never spliced into the SQL.

Query values become the text the CSV validators read (a timestamp its ISO 8601 form, a
date YYYY-MM-DD, a number its digits, a JSON object its JSON, NULL an empty cell), so a row
from a query is checked exactly as the same row in a CSV file. Row numbers are rows of the
query's result, the first is row 1; row 0 is the query's columns.

Secrets: a source URL is shown with its password (and any query parameter that looks like a
secret) hidden; `${VAR}` references in a URL are read from the environment when it is used
and shown as written. Driver error messages are scrubbed of the password before anyone sees
them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import numpy as np

ENTITIES = {
    "team": "team.csv",
    "accounts": "accounts.csv",
    "milestones": "milestones.csv",
    "outcomes": "outcomes.csv",
    "checklist": "checklist.csv",
    "events": "events.csv",
}
ENTITY_OF = {v: k for k, v in ENTITIES.items()}
BATCH_ROWS = 50_000
WATERMARK_TYPES = ("timestamp", "date", "integer", "text")
# What a query's :watermark is bound to on the first run and with --full (no stored value):
# a value of the column's type below any real one. Timestamps: 0001-01-01 00:00:00 (naive, so
# it compares with TIMESTAMP and TIMESTAMP WITH TIME ZONE columns alike); dates: 0001-01-01;
# integers: the lowest 64-bit integer; text: the empty string.
LOWEST: dict[str, Any] = {
    "timestamp": datetime(1, 1, 1),
    "date": date(1, 1, 1),
    "integer": -(2**63),
    "text": "",
}
_SECRET_PARAM = re.compile(r"pass|secret|token|key|credential|auth", re.IGNORECASE)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USERINFO = re.compile(r"(://[^:/@\s]*:)[^@\s/]+@")


class SyncError(Exception):
    """A sync that cannot run or stopped: a message for the user (no secret in it)."""


class MappingError(SyncError):
    """A mapping that cannot be used (named where and why)."""


class SourceError(SyncError):
    """The source refused or failed while being read; nothing was written."""


# ----------------------------------------------------------------------------- the URL


def expand_env(url: str) -> str:
    """The URL with each ${VAR} replaced by the environment's value (SyncError if unset)."""

    def value(m: re.Match) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise SyncError(f"the source URL refers to ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    return _ENV_REF.sub(value, url)


def masked_url(url: str) -> str:
    """The source URL as it may be shown: the password hidden (shown as written when it is
    a ${VAR} reference), secret-looking query parameters hidden too."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        scheme = url.split("://", 1)[0] if "://" in url else ""
        return f"{scheme[:40]}://… (not a SQLAlchemy URL)" if scheme else "(not a SQLAlchemy URL)"
    pw = u.password
    keep_pw = isinstance(pw, str) and _ENV_REF.fullmatch(pw) is not None
    query = {
        k: (v if isinstance(v, str) and _ENV_REF.fullmatch(v) else "***") if _SECRET_PARAM.search(k) else v
        for k, v in u.query.items()
    }
    shown = unquote(u.set(query=query).render_as_string(hide_password=True))  # for reading, not for use
    return shown.replace(":***@", f":{pw}@", 1) if keep_pw else shown


def secrets_of(url: str) -> list[str]:
    """The secret parts of an (expanded) URL, to scrub out of messages."""
    from sqlalchemy.engine import make_url

    out: list[str] = []
    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL: all of it is secret
        return [url]
    if u.password:
        out.append(str(u.password))
    for k, v in u.query.items():
        if _SECRET_PARAM.search(k):
            out.extend([v] if isinstance(v, str) else list(v))
    return [s for s in out if s]


def scrub(message: str, secrets: list[str]) -> str:
    """A message with every secret (as is, and URL-quoted) and any user:password@ replaced by ***."""
    for s in sorted(set(secrets), key=len, reverse=True):
        for form in {s, quote(s, safe=""), quote_plus(s)}:
            if form:
                message = message.replace(form, "***")
    return _USERINFO.sub(r"\1***@", message)


def error_text(exc: BaseException, secrets: list[str]) -> str:
    """The driver's reason, one line, scrubbed (never the SQL or the parameters)."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).strip().splitlines() if ln.strip()]
    detail = lines[0] if lines else type(orig).__name__
    return scrub(detail, secrets)[:300]


# ----------------------------------------------------------------------------- the mapping


@dataclass(frozen=True)
class EntityQuery:
    entity: str  # team | accounts | ... | events
    query: str
    watermark: str | None = None  # the column whose highest value is kept
    watermark_type: str = "timestamp"  # the lowest value's type, for the first run and --full
    uses_watermark: bool = False  # the query has :watermark

    @property
    def contract_name(self) -> str:
        return ENTITIES[self.entity]

    @property
    def label(self) -> str:
        """How problems and progress name it."""
        return f"{self.entity} (query)"


@dataclass(frozen=True)
class Mapping:
    entities: dict[str, EntityQuery]  # by contract file name, in the importer's order
    text: str
    path: str = ""


def parse_mapping(toml_text: str, *, where: str = "the mapping") -> Mapping:
    """The mapping's entity queries, checked (MappingError naming the table and the key)."""
    from sqlalchemy import text

    from db.importer import FILE_ORDER, SPECS

    try:
        data = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{where} is not valid TOML: {exc}") from exc
    unknown = [k for k in data if k not in ENTITIES]
    if unknown:
        raise MappingError(
            f"{where}: unknown table(s) [{'], ['.join(unknown)}]; expected some of {', '.join(ENTITIES)}"
        )
    if not data:
        raise MappingError(f"{where} has no entity table; expected some of {', '.join(ENTITIES)}")
    found: dict[str, EntityQuery] = {}
    for entity, table in data.items():
        at = f"{where}, [{entity}]"
        if not isinstance(table, dict):
            raise MappingError(f"{at}: must be a table with a query")
        extra = [k for k in table if k not in ("query", "watermark", "watermark_type")]
        if extra:
            raise MappingError(f"{at}: unknown key(s) {', '.join(extra)}; allowed: query, watermark, watermark_type")
        query = table.get("query")
        if not isinstance(query, str) or not query.strip():
            raise MappingError(f"{at}: a query (SQL text) is required")
        wm = table.get("watermark")
        if wm is not None and (not isinstance(wm, str) or not wm.strip()):
            raise MappingError(f"{at}: watermark must name a column of the query")
        wm = wm.strip().lower() if wm else None
        params = set(text(query).compile().params)
        others = sorted(params - {"watermark"})
        if others:
            raise MappingError(
                f"{at}: the query uses :{', :'.join(others)}; only :watermark is bound (write \\: for a literal colon)"
            )
        uses = "watermark" in params
        if uses and wm is None:
            raise MappingError(f"{at}: the query uses :watermark but no watermark column is named")
        spec = {c.name: c for c in SPECS[ENTITIES[entity]]}
        kind = spec[wm].kind if wm in spec else None
        default = {"ts": "timestamp", "date": "date", "int": "integer", "float": "integer"}.get(
            kind or "", "text" if kind else "timestamp"
        )
        wtype = table.get("watermark_type", default)
        if wtype not in WATERMARK_TYPES:
            raise MappingError(f"{at}: watermark_type must be one of {', '.join(WATERMARK_TYPES)}")
        found[ENTITIES[entity]] = EntityQuery(entity, query, wm, wtype, uses)
    ordered = {n: found[n] for n in FILE_ORDER if n in found}
    return Mapping(ordered, toml_text)


def load_mapping(path: str | Path) -> Mapping:
    """The mapping in a TOML file."""
    p = Path(path)
    try:
        body = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"the mapping file {p} cannot be read: {exc.strerror or exc}") from exc
    m = parse_mapping(body, where=f"the mapping file {p.name}")
    return Mapping(m.entities, m.text, str(p))


# ----------------------------------------------------------------------------- watermarks


def encode_watermark(v: Any) -> tuple[str, str]:
    """(kind, text) of a watermark value, to store."""
    if isinstance(v, datetime):
        return "datetime", v.isoformat()
    if isinstance(v, date):
        return "date", v.isoformat()
    if isinstance(v, bool):
        return "int", str(int(v))
    if isinstance(v, int):
        return "int", str(v)
    if isinstance(v, Decimal):
        return "decimal", str(v)
    if isinstance(v, float):
        return "float", repr(v)
    return "str", str(v)


def decode_watermark(kind: str, value: str) -> Any:
    """The stored watermark as the value bound to :watermark."""
    return {
        "datetime": datetime.fromisoformat,
        "date": date.fromisoformat,
        "int": int,
        "decimal": Decimal,
        "float": float,
    }.get(kind, str)(value)


# ----------------------------------------------------------------------------- reading


def _text_array(values: tuple, kind: str) -> Any:
    """A column of query values as an Arrow array of the text a CSV cell would hold."""
    import pyarrow as pa
    import pyarrow.compute as pc

    escape = kind in ("text", "email", "json")  # the importer drops one leading ' (export's escape)
    try:  # text (and NULL) only: converted by Arrow, no Python per value
        arr = pa.array(values, type=pa.string(), from_pandas=False)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        arr = None
    if arr is not None:  # (bytes that are UTF-8 are taken as text; others are decoded below)
        if escape:
            quoted = pc.starts_with(arr, "'")
            if pc.any(quoted).as_py():
                arr = pc.if_else(quoted, pc.binary_join_element_wise("'", arr, ""), arr)
        return pc.fill_null(arr, "")
    types = {type(v) for v in values if v is not None}
    if types <= {int}:
        return pc.fill_null(pc.cast(pa.array(values, type=pa.int64()), pa.string()), "")
    if types <= {datetime} and kind != "date":
        return pa.array(["" if v is None else v.isoformat() for v in values], type=pa.string())
    return pa.array([_cell(v, kind, escape) for v in values], type=pa.string())


def _cell(v: Any, kind: str, escape: bool) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return "'" + v if escape and v[:1] == "'" else v
    if isinstance(v, datetime):
        # A DATETIME at midnight for a date column (some warehouses have no DATE type).
        if kind == "date" and (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0):
            return v.date().isoformat()
        return v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, dict | list):
        out = json.dumps(v, ensure_ascii=False, default=str)
        return "'" + out if escape and out[:1] == "'" else out
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).decode("utf-8", errors="replace")
    return str(v)


@dataclass
class QuerySource:
    """One entity's rows from the source: the importer reads it as it reads a file
    (db/importer.py `_read_chunks` takes any source with `chunks`)."""

    eq: EntityQuery
    connection: Any  # a SQLAlchemy Connection to the source
    watermark_value: Any
    secrets: list[str]
    batch_rows: int = BATCH_ROWS
    progress: Callable[[str, int], None] | None = None
    on_batch: Callable[[str, int], None] | None = None  # (entity, rows so far): tests stop the source here
    rows_read: int = 0
    seen_max: Any = None
    _kind_by_col: dict[str, str] = field(default_factory=dict)

    # What the importer takes for the source's size and the bytes read so far (db/uploads.py
    # source_size, on_bytes) are rows here: the expected rows (estimate_rows) and rows read,
    # which is what it needs to tell a large load (db/importer.py _large_pg_load).
    source_size = 0

    def estimate_rows(self) -> int:
        """About how many rows the query returns: PostgreSQL's planner estimate (EXPLAIN, no
        rows read), else 0 (unknown)."""
        from sqlalchemy import text

        if self.connection.dialect.name != "postgresql":
            return 0
        params = {"watermark": self.watermark_value} if self.eq.uses_watermark else {}
        try:
            with self.connection.begin_nested():
                plan = self.connection.execute(text("EXPLAIN (FORMAT JSON) " + self.eq.query), params).scalar()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            return max(int(plan[0]["Plan"]["Plan Rows"]), 0)
        except Exception:  # noqa: BLE001 - no estimate: the query itself reports any problem
            return 0

    def chunks(self, name: str, report: Any, *, chunk_rows: int, on_bytes: Any = None) -> Iterator[Any]:
        """The query's rows in batches as Chunk objects (text cells, row numbers from 1)."""
        import pyarrow as pa
        from sqlalchemy import text

        from db.importer import SPECS, Chunk, ImportReport, Problem, _check_header

        eq = self.eq
        params = {"watermark": self.watermark_value} if eq.uses_watermark else {}
        batch = max(1, min(self.batch_rows, chunk_rows))
        try:
            result = self.connection.execution_options(stream_results=True, yield_per=batch).execute(
                text(eq.query), params
            )
            keys = [str(k).strip().lower() for k in result.keys()]  # noqa: SIM118 (a Result, not a dict)
        except Exception as exc:  # noqa: BLE001 - any driver error: the user gets its reason, scrubbed
            raise SourceError(
                f"the source refused the {eq.entity} query: {error_text(exc, self.secrets)}; nothing was written"
            ) from None
        try:
            wm_idx = None
            if eq.watermark is not None:
                if eq.watermark not in keys:
                    report.add(
                        Problem(name, 0, eq.watermark, "", "the watermark column is not among the query's columns")
                    )
                    return
                wm_idx = keys.index(eq.watermark)
            spec = {c.name: c for c in SPECS[name]}
            # A watermark column beyond the contract's (updated_at, a sequence number) is read, not imported.
            take = [i for i, k in enumerate(keys) if not (i == wm_idx and k not in spec)]
            header = [keys[i] for i in take]
            scratch = ImportReport(dry_run=True)
            fine = _check_header(name, header, scratch)
            for p in scratch.problems:
                report.add(Problem(name, 0, p.column, p.value, p.reason.replace("in the header", "in the query")))
            for w in scratch.warnings:
                report.warnings.append(w.replace(f"{name}:", f"{eq.label}:", 1))
            if not fine:
                return
            kinds = [spec[h].kind if h in spec else "text" for h in header]
            while True:
                try:
                    rows = result.fetchmany(batch)
                except Exception as exc:  # noqa: BLE001
                    raise SourceError(
                        f"the source failed while the {eq.entity} query was read (after {self.rows_read:,} rows): "
                        f"{error_text(exc, self.secrets)}; nothing was written"
                    ) from None
                if not rows:
                    break
                cols = list(zip(*rows, strict=True))
                if wm_idx is not None:
                    self._track(cols[wm_idx])
                start = self.rows_read + 1
                self.rows_read += len(rows)
                table = pa.table({h: _text_array(cols[i], k) for h, i, k in zip(header, take, kinds, strict=True)})
                del rows, cols
                if self.progress:
                    self.progress(eq.entity, self.rows_read)
                if on_bytes:
                    on_bytes(self.rows_read)
                yield Chunk(header, np.arange(start, start + table.num_rows), table=table)
                if self.on_batch:
                    self.on_batch(eq.entity, self.rows_read)
        finally:
            with contextlib.suppress(Exception):  # the source is gone: its error was reported already
                result.close()

    def _track(self, values: tuple) -> None:
        present = [v for v in values if v is not None]
        if not present:
            return
        try:
            top = max(present)
            if self.seen_max is None or top > self.seen_max:
                self.seen_max = top
        except TypeError:
            raise SourceError(
                f"the watermark column {self.eq.watermark} of the {self.eq.entity} query has values of different "
                "types that cannot be compared; nothing was written"
            ) from None
