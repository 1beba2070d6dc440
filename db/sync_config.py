"""Configured syncs (issue 14): stored in the `syncs` table with their source URL, mapping
(the TOML text, copied when saved) and schedule (a crontab line, UTC), run by name, by
`manage.py worker` when their schedule comes round, or from the Data page.

The source URL is kept as given: a `${VAR}` in it is read from the environment when the sync
runs, so the password need not be stored; a literal password is stored (as alert
destinations store theirs) and shown nowhere: the change log, the listing and the page show
the URL with its password hidden.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from db.models import ChangeLog, SyncConfig, SyncRun, utcnow
from db.session import session_scope
from db.sync import SyncResult, run_sync, stored_watermarks, sync_key
from db.sync_source import Mapping, MappingError, SyncError, masked_url, parse_mapping

log = logging.getLogger("db.sync")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")


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
