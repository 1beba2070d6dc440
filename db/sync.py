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

Configured syncs (the `syncs` table) keep the source URL as given: a `${VAR}` in it is read
from the environment when the sync runs, so the password need not be stored; a literal
password is stored (as alert destinations store theirs) and shown nowhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from db.import_lock import ImportBusy, ImportFailed
from db.importer import ImportReport, import_files
from db.models import ChangeLog, SyncConfig, SyncRun, SyncWatermark, utcnow
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
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")


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


# ----------------------------------------------------------------------------- configured syncs


def _change(actor: str, name: str, fld: str, old: str | None, new: str | None) -> ChangeLog:
    return ChangeLog(actor=actor, entity="sync", entity_id=name[:100], field=fld, old=old, new=new, context="settings")


def save_sync(
    session: Session,
    *,
    actor: str,
    name: str,
    source_url: str,
    mapping_text: str,
    mapping_path: str = "",
    schedule: str = "",
) -> SyncConfig:
    """Add or replace a configured sync (SyncError naming what is wrong); the change log
    shows the source with its password hidden. The caller commits."""
    from sqlalchemy.engine import make_url

    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise SyncError(
            "a sync's name is 1 to 100 letters, digits, spaces, '_', '.' or '-', starting with a letter or digit"
        )
    try:
        make_url(source_url)
    except Exception:  # noqa: BLE001
        raise SyncError("the source is not a SQLAlchemy URL (dialect+driver://user:password@host/database)") from None
    parse_mapping(mapping_text, where=f"the mapping of {name}")
    schedule = (schedule or "").strip()
    if schedule:
        _trigger(schedule)
    row = session.execute(select(SyncConfig).where(SyncConfig.name == name)).scalar_one_or_none()
    shown = masked_url(source_url)
    if row is None:
        row = SyncConfig(
            name=name,
            source_url=source_url,
            mapping_text=mapping_text,
            mapping_path=mapping_path[:1000],
            schedule=schedule,
            created_by=actor[:254],
        )
        session.add(row)
        session.add(_change(actor, name, "added", None, f"{shown}; schedule {schedule or 'none'}"))
    else:
        old_shown = masked_url(row.source_url)
        if row.source_url != source_url:
            # Both masked: a changed password shows as a change of the source, never the password.
            session.add(_change(actor, name, "source", old_shown, shown))
        if row.mapping_text != mapping_text:
            session.add(_change(actor, name, "mapping", row.mapping_path or "(text)", mapping_path or "(text)"))
        if row.schedule != schedule:
            session.add(_change(actor, name, "schedule", row.schedule or None, schedule or None))
        row.source_url, row.mapping_text, row.mapping_path, row.schedule = (
            source_url,
            mapping_text,
            mapping_path[:1000],
            schedule,
        )
        row.updated_at = utcnow()
        row.version += 1
    session.flush()
    return row


def remove_sync(session: Session, *, actor: str, name: str) -> None:
    """Remove a configured sync and its watermarks (its runs stay as history)."""
    row = session.execute(select(SyncConfig).where(SyncConfig.name == name)).scalar_one_or_none()
    if row is None:
        raise SyncError(f"no configured sync named {name!r}")
    session.add(_change(actor, name, "removed", masked_url(row.source_url), None))
    for w in stored_watermarks(session, sync_key(name, "")).values():
        session.delete(w)
    session.delete(row)
    session.flush()


def get_sync(session: Session, name: str) -> SyncConfig:
    row = session.execute(select(SyncConfig).where(SyncConfig.name == name)).scalar_one_or_none()
    if row is None:
        names = session.execute(select(SyncConfig.name).order_by(SyncConfig.name)).scalars().all()
        raise SyncError(f"no configured sync named {name!r}; configured: {', '.join(names) or 'none'}")
    return row


def run_configured(name: str, *, url: str | None = None, actor: str = "cli", **kw: Any) -> SyncResult:
    """Run a configured sync by name (SyncError if there is none or its mapping is unusable)."""
    with session_scope(url) as s:
        row = get_sync(s, name)
        source, text, path = row.source_url, row.mapping_text, row.mapping_path
    mapping = parse_mapping(text, where=f"the mapping of {name}")
    mapping = Mapping(mapping.entities, mapping.text, path)
    return run_sync(source, mapping, url=url, actor=actor, name=name, **kw)


def last_runs(session: Session) -> dict[str, SyncRun]:
    """Each configured sync's latest run."""
    out: dict[str, SyncRun] = {}
    for r in session.execute(
        select(SyncRun).where(SyncRun.sync_name.is_not(None)).order_by(SyncRun.sync_name, SyncRun.id.desc())
    ).scalars():
        out.setdefault(r.sync_name, r)
    return out


def overview(session: Session) -> list[dict[str, Any]]:
    """The configured syncs as they may be shown: source with the password hidden, mapping,
    schedule, and the last run (time, status, rows read and written, watermarks, problems)."""
    runs = last_runs(session)
    out = []
    for c in session.execute(select(SyncConfig).order_by(SyncConfig.name)).scalars():
        r = runs.get(c.name)
        try:
            entities = ", ".join(eq.entity for eq in parse_mapping(c.mapping_text).entities.values())
        except MappingError:
            entities = "(mapping unusable)"
        wms = json.loads(r.watermarks) if r else {}
        out.append(
            {
                "name": c.name,
                "source": masked_url(c.source_url),
                "mapping": (c.mapping_path or "(stored text)") + f": {entities}",
                "mapping_text": c.mapping_text,
                "schedule": c.schedule or "by hand",
                "last_run": _aware(r.finished_at or r.started_at) if r else None,
                "status": r.status if r else "never run",
                "rows_read": r.rows_read if r else None,
                "rows_written": r.rows_written if r else None,
                "watermark": "; ".join(f"{e}.{w['column']} = {w['value']}" for e, w in wms.items()),
                "problems": r.problems if r else None,
                "message": r.message if r else "",
                "problem_list": json.loads(r.problem_list) if r else [],
            }
        )
    return out


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _trigger(schedule: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(schedule, timezone="UTC")
    except ValueError as exc:
        raise SyncError(
            f"the schedule {schedule!r} is not a crontab line (minute hour day month weekday, UTC; e.g. '0 2 * * *'): {exc}"
        ) from None


def due_syncs(session: Session, *, now: datetime | None = None) -> list[str]:
    """Configured syncs whose schedule has come round since their last run (or since they
    were saved): the worker runs these (once, however many times it came round)."""
    now = now or utcnow()
    runs = last_runs(session)
    due = []
    for c in session.execute(select(SyncConfig).where(SyncConfig.schedule != "").order_by(SyncConfig.name)).scalars():
        r = runs.get(c.name)
        since = _aware(r.started_at) if r is not None and not r.dry_run else _aware(c.updated_at)
        try:
            nxt = _trigger(c.schedule).get_next_fire_time(None, since + timedelta(microseconds=1))
        except SyncError:
            continue
        if nxt is not None and nxt <= now:
            due.append(c.name)
    return due


def run_due(*, url: str | None = None, now: datetime | None = None, actor: str = "worker") -> list[SyncResult]:
    """Run every configured sync that is due (manage.py worker, once a minute), one at a time."""
    with session_scope(url) as s:
        names = due_syncs(s, now=now)
    out = []
    for name in names:
        try:
            out.append(run_configured(name, url=url, actor=f"{actor}: sync {name}"))
        except SyncError as exc:  # removed meanwhile, or its stored mapping no longer parses
            log.warning("scheduled sync %s did not run: %s", name, exc)
    return out
