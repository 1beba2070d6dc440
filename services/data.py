"""Data page services: import (admins only), export, data quality, import history."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from sqlalchemy import select

from db import facts as q
from db.exporter import export_zip
from db.importer import ImportBusy, ImportFailed, ImportReport, files_from_uploads, import_files
from db.models import ImportRun
from db.session import get_engine, session_scope
from services.access import User, require_admin
from services.demo_data import ReplaceDemo

__all__ = ["ImportBusy", "ImportFailed", "run_import"]
log = logging.getLogger(__name__)


def run_import(
    user: User,
    uploads: list[tuple[str, bytes]],
    *,
    dry_run: bool,
    progress: Any = None,
    url: str | None = None,
    replace_demo: bool = False,
    account_property: str | None = None,
) -> ImportReport:
    """Validate (dry run) or import uploaded CSV files or a zip of them, events also as
    JSON lines or Parquet (account_property: the JSON lines' property naming the account).

    Any team member may validate: it only reads (no write lock), within the upload limits.
    Only admins import. Raises PermissionDenied, or ImportFailed with a message for the user
    (the detail is logged); nothing is written then."""
    if not dry_run:
        require_admin(user, "import data")
    step = ReplaceDemo(user.email) if replace_demo else None  # remove the demo portfolio first
    try:
        report = import_files(
            files_from_uploads(uploads, account_property=account_property),
            url=url,
            dry_run=dry_run,
            actor=user.email,
            progress=progress,
            source="upload: " + ", ".join(n for n, _ in uploads),
            first_step=step,
        )
        if step and (note := step.note(report)):
            report.warnings.insert(0, note)
        return report
    except ImportFailed:
        raise
    except Exception as exc:  # the user gets a message, the log the traceback
        log.exception("%s by %s failed", "validation" if dry_run else "import", user.email)
        what = "The validation" if dry_run else "The import"
        raise ImportFailed(
            f"{what} stopped on an unexpected error; nothing was written. The details are in the server log."
        ) from exc


def export_all(user: User, *, url: str | None = None, progress: Any = None) -> bytes:
    """The six contract files and the complete backup (backup/) in one zip (admins only: it
    holds every account, person and note)."""
    require_admin(user, "export the data")
    return export_zip(url=url, progress=progress)


def data_quality(url: str | None = None) -> dict:
    with get_engine(url).connect() as conn:
        return q.data_quality(conn)


def import_history(url: str | None = None, limit: int = 20) -> pd.DataFrame:
    with session_scope(url) as s:
        rows = s.execute(select(ImportRun).order_by(ImportRun.started_at.desc()).limit(limit)).scalars().all()
        return pd.DataFrame(
            [
                {
                    "finished": r.finished_at,
                    "by": r.actor,
                    "status": r.status,
                    "problems": r.problems,
                    "duplicates skipped": r.duplicates_skipped,
                    "source": r.source,
                }
                for r in rows
            ],
            columns=["finished", "by", "status", "problems", "duplicates skipped", "source"],
        )
