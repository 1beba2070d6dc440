"""Sync from a SQL source (issue 14): the mapping's entity queries are read in batches and
go through the import itself (db/importer.py: the same validation, upsert, change log,
problem report and version bumps, in one transaction: any invalid row and nothing is
written), then the run is recorded.

Watermarks: an entity query with `watermark = "column"` keeps the highest value of that
column seen by the last run that committed (stored in that run's transaction, so a rejected,
failed or dry run changes none). The next run binds it to `:watermark`; the first run and
`--full` bind the lowest value of the watermark's type (db/sync_source.py LOWEST), so the
query reads everything. A configured sync keys its watermarks by its name; a sync given on
the command line by its source URL (password hidden).

Configured syncs (stored, scheduled, shown on the Data page) are in db/sync_config.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from db.import_lock import ImportBusy, ImportFailed
from db.importer import ImportReport, import_files
from db.models import SyncRun, SyncWatermark, utcnow
from db.session import session_scope
from db.sync_source import (
    BATCH_ROWS,
    ENTITY_OF,
    LOWEST,
    Mapping,
    MappingError,
    QuerySource,
    SourceError,
    SyncError,
    decode_watermark,
    encode_watermark,
    error_text,
    expand_env,
    load_mapping,
    masked_url,
    parse_mapping,
    secrets_of,
)

__all__ = ["MappingError", "SourceError", "SyncError", "SyncResult", "load_mapping", "parse_mapping", "run_sync"]
log = logging.getLogger(__name__)
PROBLEMS_KEPT = 200  # problems recorded with a run (the run's report has them all, up to the import's limit)


@dataclass
class SyncResult:
    status: str  # synced | rejected | dry run | failed
    message: str
    source: str  # the URL, password hidden
    sync_key: str
    sync_name: str | None = None
    dry_run: bool = False
    full: bool = False
    report: ImportReport | None = None
    rows_read: dict[str, int] = field(default_factory=dict)  # entity -> rows the query returned
    watermarks: dict[str, dict[str, str]] = field(default_factory=dict)  # entity -> column, kind, value
    run_id: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("synced", "dry run")

    @property
    def rows_written(self) -> int:
        if self.report is None or not self.report.written:
            return 0
        return sum(f.inserted + f.updated for f in self.report.files.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ok": self.ok,
            "message": self.message,
            "source": self.source,
            "sync": self.sync_name,
            "dry_run": self.dry_run,
            "full": self.full,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "watermarks": self.watermarks,
            "entities": _entity_counts(self),
            "problem_count": self.report.problem_count if self.report else 0,
            "problems": [vars(p) for p in self.report.problems] if self.report else [],
            "warnings": self.report.warnings if self.report else [],
            "seconds": round(self.seconds, 2),
        }


def sync_key(name: str | None, masked: str) -> str:
    """Whose watermarks: a configured sync's name, else the source URL (password hidden)."""
    return f"sync:{name}" if name else f"source:{masked}"[:300]


def stored_watermarks(session: Session, key: str) -> dict[str, SyncWatermark]:
    return {w.entity: w for w in session.execute(select(SyncWatermark).where(SyncWatermark.sync_key == key)).scalars()}


def run_sync(
    source_url: str,
    mapping: Mapping,
    *,
    url: str | None = None,
    dry_run: bool = False,
    full: bool = False,
    actor: str = "cli",
    name: str | None = None,
    progress: Callable[[str, int], None] | None = None,
    batch_rows: int = BATCH_ROWS,
    on_batch: Callable[[str, int], None] | None = None,
) -> SyncResult:
    """Read the mapping's queries from the source and import the rows atomically; record the
    run. Never raises for the source or the data: the result says what happened (a failed
    run wrote nothing). progress(entity, rows read so far) after each batch."""
    t0 = time.perf_counter()
    masked = masked_url(source_url)
    key = sync_key(name, masked)
    res = SyncResult("failed", "", masked, key, name, dry_run, full)
    secrets: list[str] = []
    sources: dict[str, QuerySource] = {}
    try:
        expanded = expand_env(source_url)
        secrets = secrets_of(expanded)
        with session_scope(url) as s:
            stored = {e: (w.column, w.kind, w.value) for e, w in stored_watermarks(s, key).items()}
        engine = _source_engine(expanded, secrets)
        try:
            try:
                conn = engine.connect()
            except Exception as exc:  # noqa: BLE001 - any driver: its reason, scrubbed
                raise SourceError(
                    f"cannot connect to the source {masked}: {error_text(exc, secrets)}; nothing was written"
                ) from None
            try:
                for cname, eq in mapping.entities.items():
                    wm = None
                    if eq.uses_watermark:
                        old = stored.get(eq.entity)
                        use_old = not full and old is not None and old[0] == eq.watermark
                        wm = decode_watermark(old[1], old[2]) if use_old else LOWEST[eq.watermark_type]
                    sources[cname] = QuerySource(
                        eq, conn, wm, secrets, batch_rows=batch_rows, progress=progress, on_batch=on_batch
                    )
                if "events.csv" in sources:  # a large load into PostgreSQL builds its indexes once, at the end
                    sources["events.csv"].source_size = sources["events.csv"].estimate_rows()

                def keep_watermarks(session: Session) -> None:
                    _store_watermarks(session, key, mapping, sources, stored, full=full)

                report = import_files(
                    dict(sources),
                    url=url,
                    dry_run=dry_run,
                    actor=actor,
                    source=(f"sync {name}: " if name else "sync: ") + masked[:280],
                    last_step=keep_watermarks,
                )
            finally:
                with contextlib.suppress(Exception):  # a connection the source dropped
                    # End the source's read transaction as the queries ran (a query's own side
                    # effects, such as a sequence it advances, stay), then let the connection go.
                    conn.commit()
                with contextlib.suppress(Exception):
                    conn.close()
        finally:
            engine.dispose()
        res.report = report
        _relabel(report)
        if report.written:
            res.status = "synced"
        elif report.ok:
            res.status = "dry run"
        else:
            res.status = "rejected"
        res.watermarks = _watermarks_after(mapping, sources, stored, written=report.written, full=full)
        res.message = _message(res, report)
    except (SyncError, ImportBusy, ImportFailed) as exc:
        res.status = "failed"
        res.message = scrub_message(str(exc), secrets)
        with session_scope(url) as s:
            res.watermarks = {
                e: {"column": w.column, "kind": w.kind, "value": w.value} for e, w in stored_watermarks(s, key).items()
            }
    res.rows_read = {q.eq.entity: q.rows_read for q in sources.values()}
    res.seconds = time.perf_counter() - t0
    res.run_id = _record(url, res, actor)
    log.info("sync %s: %s: %s", key, res.status, res.message)
    return res


def scrub_message(message: str, secrets: list[str]) -> str:
    from db.sync_source import scrub

    return scrub(message, secrets)


def _source_engine(expanded: str, secrets: list[str]) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    from sqlalchemy.pool import NullPool

    try:
        return create_engine(expanded, poolclass=NullPool)
    except NoSuchModuleError:
        dialect = expanded.split("://", 1)[0]
        raise SyncError(
            f"no SQLAlchemy driver for {dialect!r} is installed; install the source's extra (README: "
            "Sync from a warehouse)"
        ) from None
    except ArgumentError:
        raise SyncError("the source is not a SQLAlchemy URL (dialect+driver://user:password@host/database)") from None
    except Exception as exc:  # noqa: BLE001 - a driver that refuses its URL's options
        raise SyncError(f"the source URL cannot be used: {error_text(exc, secrets)}") from None


def _relabel(report: ImportReport) -> None:
    """Problems and counts name the entity's query, not a file."""
    label = {cname: f"{entity} (query)" for cname, entity in ENTITY_OF.items()}
    for p in report.problems:
        p.file = label.get(p.file, p.file)
        p.reason = p.reason.replace("accounts.csv", "the accounts query").replace("team.csv", "the team query")
    for cname, fr in report.files.items():
        fr.file = label.get(cname, fr.file)


def _watermarks_after(
    mapping: Mapping, sources: dict[str, QuerySource], stored: dict[str, tuple], *, written: bool, full: bool
) -> dict[str, dict[str, str]]:
    """Per entity: the watermark the next run reads from (what a dry run would store)."""
    out: dict[str, dict[str, str]] = {}
    for cname, eq in mapping.entities.items():
        if eq.watermark is None:
            continue
        new = _new_watermark(eq, sources.get(cname), stored.get(eq.entity), full=full)
        if new is not None:
            out[eq.entity] = {"column": eq.watermark, "kind": new[0], "value": new[1]}
    return out


def _new_watermark(eq: Any, src: QuerySource | None, old: tuple | None, *, full: bool) -> tuple[str, str] | None:
    """(kind, value) after a run: the highest seen, never below the stored one (unless --full)."""
    same = old is not None and old[0] == eq.watermark
    seen = src.seen_max if src is not None else None
    if seen is None:
        return (old[1], old[2]) if same else None
    if same and not full:
        try:
            if decode_watermark(old[1], old[2]) > seen:
                return old[1], old[2]
        except (TypeError, ValueError):
            pass  # the column changed type: the new values count
    return encode_watermark(seen)


def _store_watermarks(
    session: Session, key: str, mapping: Mapping, sources: dict[str, QuerySource], stored: dict, *, full: bool
) -> None:
    """In the import's transaction: the watermarks the run reached."""
    existing = stored_watermarks(session, key)
    for cname, eq in mapping.entities.items():
        if eq.watermark is None:
            continue
        new = _new_watermark(eq, sources.get(cname), stored.get(eq.entity), full=full)
        if new is None:
            continue
        w = existing.get(eq.entity)
        if w is None:
            session.add(SyncWatermark(sync_key=key, entity=eq.entity, column=eq.watermark, kind=new[0], value=new[1]))
        elif (w.column, w.kind, w.value) != (eq.watermark, *new):
            w.column, w.kind, w.value, w.updated_at = eq.watermark, new[0], new[1], utcnow()
    session.flush()


def _entity_counts(res: SyncResult) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    files = res.report.files if res.report else {}
    for cname, fr in files.items():
        entity = ENTITY_OF.get(cname, cname)
        out[entity] = {
            "rows_read": res.rows_read.get(entity, 0),
            "inserted": fr.inserted,
            "updated": fr.updated,
            "unchanged": fr.unchanged,
            "duplicates_skipped": fr.duplicates_skipped,
            "problems": fr.problems,
        }
    for entity, n in res.rows_read.items():
        out.setdefault(entity, {"rows_read": n})
    return out


def _message(res: SyncResult, report: ImportReport) -> str:
    read = sum(q for q in res.rows_read.values()) if res.rows_read else sum(f.rows for f in report.files.values())
    if res.status == "synced":
        new = sum(f.inserted for f in report.files.values())
        upd = sum(f.updated for f in report.files.values())
        return (
            f"synced: {read:,} row(s) read, {new + upd:,} written ({new:,} new, {upd:,} updated), "
            f"{report.duplicates_skipped:,} duplicate event(s) skipped"
        )
    if res.status == "dry run":
        return f"dry run: {read:,} row(s) read and valid; nothing was written"
    return f"{report.problem_count:,} problem(s); nothing was written"


def _record(url: str | None, res: SyncResult, actor: str) -> int | None:
    """The run's record (its own transaction: a rejected or failed run is recorded too)."""
    res.rows_read = res.rows_read or {}
    problems = res.report.problems[:PROBLEMS_KEPT] if res.report else []
    try:
        with session_scope(url) as s:
            run = SyncRun(
                sync_key=res.sync_key,
                sync_name=res.sync_name,
                source=res.source[:500],
                actor=actor[:254],
                started_at=utcnow() - timedelta(seconds=res.seconds),
                finished_at=utcnow(),
                status=res.status,
                dry_run=res.dry_run,
                full=res.full,
                rows_read=sum(res.rows_read.values()),
                rows_written=res.rows_written,
                entities=json.dumps(_entity_counts(res)),
                watermarks=json.dumps(res.watermarks),
                problems=res.report.problem_count if res.report else 0,
                problem_list=json.dumps([vars(p) for p in problems], default=str),
                message=res.message,
            )
            s.add(run)
            s.flush()
            return int(run.id)
    except Exception:  # noqa: BLE001 - the database is failing: the run's outcome was reported already
        log.warning("could not record the sync run of %s", res.sync_key)
        return None
