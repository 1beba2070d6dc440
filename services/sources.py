"""Data page services for the configured syncs from SQL sources (db/sync.py): admins only
see them (with the source's password hidden) and run one now."""

from __future__ import annotations

import logging
from typing import Any

from db.session import session_scope
from db.sync import SyncError, SyncResult
from db.sync_config import overview, run_configured
from services.access import User, require_admin

__all__ = ["SyncError", "run_source_now", "sources_overview"]
log = logging.getLogger(__name__)


def sources_overview(user: User, *, url: str | None = None) -> list[dict[str, Any]]:
    """The configured syncs with their last runs (admins only)."""
    require_admin(user, "see the configured sources")
    with session_scope(url) as s:
        return overview(s)


def run_source_now(user: User, name: str, *, url: str | None = None, progress: Any = None) -> SyncResult:
    """Run a configured sync now (admins only); the result says what happened (a failed
    run wrote nothing). Raises PermissionDenied, or SyncError if there is no such sync."""
    require_admin(user, "run a sync")
    return run_configured(name, url=url, actor=user.email, progress=progress)
