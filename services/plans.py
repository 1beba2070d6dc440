"""Success-plan writes: the checklist, the plan itself and interventions.

Every write checks the role, checks the version it was made against (optimistic locking:
a save on a stale version is refused with what changed meanwhile), validates every cell,
writes the change log, and commits in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import Session

from db.models import (
    CHECKLIST_CATEGORIES,
    CHECKLIST_STATUSES,
    INTERVENTION_TYPES,
    ChangeLog,
    ChecklistItem,
    Intervention,
    SuccessPlan,
    TeamMember,
    utcnow,
)
from db.session import bump_data_version, session_scope
from services.access import User, require_account_edit

EDITABLE = ("category", "criterion", "target", "actual", "status", "owner", "due_date", "note")
# Checklist fields that analyses read (see save_checklist's cache note).
ANALYTIC_FIELDS = {"status", "category", "due_date", "item"}
PLAN_FIELDS = ("goals", "success_30", "success_60", "success_90", "champion", "admin_contact", "executive_sponsor")
MAX_TEXT = {"criterion": 300, "target": 100, "actual": 100, "note": 5000}


@dataclass
class CellProblem:
    row: int | str  # position in the editor (1-based) or "new 1"
    column: str
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.column}: {self.reason} (value {self.value!r})"


class ValidationFailed(Exception):
    def __init__(self, problems: list[CellProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Conflict:
    item_id: int | None
    criterion: str
    field: str
    yours_based_on: Any
    now: Any
    changed_by: str
    changed_at: datetime | None


class StaleVersion(Exception):
    """Someone saved in between; nothing was written."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        super().__init__(f"{len(conflicts)} change(s) were saved by someone else since you opened this")
        self.conflicts = conflicts


@dataclass
class ItemChange:
    """One edited row: the item id, the version it was loaded at, and the new values."""

    item_id: int
    version: int
    values: dict[str, Any]
    base: dict[str, Any] | None = None  # what the editor showed (to explain a conflict)


@dataclass
class SaveResult:
    changed: int = 0
    added: int = 0
    removed: int = 0
    log_entries: int = 0
    versions: dict[int, int] = field(default_factory=dict)


def _team_by_email(session: Session) -> dict[str, int]:
    return {e.lower(): i for e, i in session.execute(select(TeamMember.email, TeamMember.id))}


def _clean(values: dict[str, Any], row: int | str, team: dict[str, int], problems: list[CellProblem]) -> dict[str, Any]:
    """Validate and normalise one row's values (only the keys present)."""
    out: dict[str, Any] = {}
    for col, v in values.items():
        if col not in EDITABLE:
            continue
        if isinstance(v, float) and v != v:  # NaN from the editor
            v = None
        if col in ("criterion", "target", "actual", "note"):
            s = "" if v is None else str(v)
            if col == "criterion" and not s.strip():
                problems.append(CellProblem(row, col, v, "a criterion is required"))
                continue
            if len(s) > MAX_TEXT[col]:
                problems.append(CellProblem(row, col, s[:40] + "…", f"longer than {MAX_TEXT[col]} characters"))
                continue
            out[col] = s.strip() if col == "criterion" else s
        elif col == "category":
            if v not in CHECKLIST_CATEGORIES:
                problems.append(CellProblem(row, col, v, f"choose one of {', '.join(CHECKLIST_CATEGORIES)}"))
                continue
            out[col] = v
        elif col == "status":
            if v not in CHECKLIST_STATUSES:
                problems.append(CellProblem(row, col, v, f"choose one of {', '.join(CHECKLIST_STATUSES)}"))
                continue
            out[col] = v
        elif col == "owner":
            if v in (None, ""):
                out["owner_id"] = None
                continue
            oid = team.get(str(v).strip().lower())
            if oid is None:
                problems.append(CellProblem(row, col, v, "not a member of the team (use their email)"))
                continue
            out["owner_id"] = oid
        elif col == "due_date":
            if v in (None, ""):
                out[col] = None
                continue
            if isinstance(v, datetime):
                v = v.date()
            if isinstance(v, str):
                try:
                    v = date.fromisoformat(v.strip())
                except ValueError:
                    problems.append(CellProblem(row, col, v, "not a date (YYYY-MM-DD)"))
                    continue
            if not isinstance(v, date):
                problems.append(CellProblem(row, col, v, "not a date (YYYY-MM-DD)"))
                continue
            if not date(2000, 1, 1) <= v <= date(2100, 12, 31):
                problems.append(CellProblem(row, col, v.isoformat(), "outside 2000-2100"))
                continue
            out[col] = v
    return out


def _fmt(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, date | datetime):
        return v.isoformat()
    return str(v)


def _owner_email(session: Session, owner_id: int | None) -> str | None:
    if owner_id is None:
        return None
    m = session.get(TeamMember, owner_id)
    return m.email if m else None


def save_checklist(
    session: Session,
    user: User,
    *,
    account_id: int,
    changes: list[ItemChange],
    added: list[dict[str, Any]] | None = None,
    removed: list[tuple[int, int]] | None = None,
    removed_base: dict[int, dict[str, Any]] | None = None,
    context: str = "checklist edit",
) -> SaveResult:
    """Apply checklist edits atomically.

    changes: edited rows with the version each was loaded at; added: new rows' values;
    removed: (item_id, version) pairs. Raises PermissionDenied, ValidationFailed (a
    problem per bad cell) or StaleVersion (what changed meanwhile); nothing is written then.
    """
    require_account_edit(session, user, account_id)
    added = added or []
    removed = removed or []
    team = _team_by_email(session)
    problems: list[CellProblem] = []
    # Problems name the row as the editor shows it: the account's items by position, 1-based.
    editor_row = {
        iid: n
        for n, iid in enumerate(
            session.execute(
                select(ChecklistItem.id)
                .where(ChecklistItem.account_id == account_id)
                .order_by(ChecklistItem.position, ChecklistItem.id)
            ).scalars(),
            start=1,
        )
    }
    row_of = {c.item_id: editor_row.get(c.item_id, i + 1) for i, c in enumerate(changes)}
    cleaned = [(c, _clean(c.values, row_of[c.item_id], team, problems)) for c in changes]
    new_rows = []
    for i, values in enumerate(added):
        v = _clean({"status": "not started", **values}, f"new {i + 1}", team, problems)
        if "criterion" not in v and not any(p.row == f"new {i + 1}" and p.column == "criterion" for p in problems):
            problems.append(CellProblem(f"new {i + 1}", "criterion", None, "a criterion is required"))
        if "category" not in v and not any(p.row == f"new {i + 1}" and p.column == "category" for p in problems):
            problems.append(CellProblem(f"new {i + 1}", "category", None, "a category is required"))
        new_rows.append(v)

    ids = [c.item_id for c in changes] + [i for i, _ in removed]
    current = (
        {
            it.id: it
            for it in session.execute(select(ChecklistItem).where(ChecklistItem.id.in_(ids))).scalars()  # type: ignore[union-attr]
        }
        if ids
        else {}
    )
    for c in changes:
        it = current.get(c.item_id)
        if it is None or it.account_id != account_id:
            problems.append(
                CellProblem(c.item_id, "item", c.item_id, "this item no longer exists (removed by someone else)")
            )
    for iid, _ in removed:
        it = current.get(iid)
        if it is not None and it.account_id != account_id:
            # The permission check above covers account_id only: never delete another account's item.
            problems.append(CellProblem(iid, "item", iid, "not an item of this account"))

    # Criteria must stay unique per category within the account.
    existing_keys = {
        (cat, crit.lower()): iid
        for iid, cat, crit in session.execute(
            select(ChecklistItem.id, ChecklistItem.category, ChecklistItem.criterion).where(
                ChecklistItem.account_id == account_id
            )
        )
    }
    removed_ids = {i for i, _ in removed}
    final_keys: dict[tuple, Any] = {k: v for k, v in existing_keys.items() if v not in removed_ids}
    for c, v in cleaned:
        it = current.get(c.item_id)
        if it is None:
            continue
        old_key = (it.category, it.criterion.lower())
        new_key = (v.get("category", it.category), v.get("criterion", it.criterion).lower())
        if new_key != old_key:
            if final_keys.get(new_key) not in (None, c.item_id):
                problems.append(
                    CellProblem(
                        row_of[c.item_id], "criterion", new_key[1], "this criterion already exists in that category"
                    )
                )
            final_keys.pop(old_key, None)
            final_keys[new_key] = c.item_id
    for i, v in enumerate(new_rows):
        if "criterion" in v and "category" in v:
            key = (v["category"], v["criterion"].lower())
            if key in final_keys:
                problems.append(
                    CellProblem(
                        f"new {i + 1}", "criterion", v["criterion"], "this criterion already exists in that category"
                    )
                )
            final_keys[key] = "new"
    if problems:
        raise ValidationFailed(problems)

    conflicts = []
    for c in changes:
        it = current[c.item_id]
        if it.version != c.version:
            conflicts.extend(_what_changed(session, it, c.base))
    for iid, ver in removed:
        it = current.get(iid)
        if it is None:
            conflicts.extend(_what_changed(session, None, None))
        elif it.version != ver:
            conflicts.extend(_what_changed(session, it, (removed_base or {}).get(iid)))
    if conflicts:
        raise StaleVersion(conflicts)

    now = utcnow()
    result = SaveResult()
    logs: list[ChangeLog] = []
    # Removals first: a kept item may take over a removed item's criterion in the same save.
    for iid, ver in removed:
        it = current.get(iid)
        if it is None:
            continue
        res = session.execute(
            ChecklistItem.__table__.delete().where(ChecklistItem.id == iid, ChecklistItem.version == ver)
        )
        if res.rowcount != 1:
            session.rollback()
            raise StaleVersion(_what_changed(session, session.get(ChecklistItem, iid), (removed_base or {}).get(iid)))
        logs.append(_log(user, it, "item", f"{it.category}: {it.criterion}", None, now, context="checklist remove"))
        result.removed += 1
    for c, v in cleaned:
        it = current[c.item_id]
        diffs = {}
        for col, new in v.items():
            old = getattr(it, col)
            if old != new:
                diffs[col] = (old, new)
        if not diffs:
            continue
        # Compare-and-set on the version: a concurrent writer cannot slip in between.
        values = {col: new for col, (_, new) in diffs.items()}
        if "status" in diffs:
            values["done_at"] = now if diffs["status"][1] == "done" else None
        # Taken before the update, which also refreshes `it` in the session.
        new_version = it.version + 1
        values["version"] = new_version
        res = session.execute(
            update(ChecklistItem).where(ChecklistItem.id == it.id, ChecklistItem.version == c.version).values(**values)
        )
        if res.rowcount != 1:
            session.rollback()
            raise StaleVersion(_what_changed(session, session.get(ChecklistItem, it.id), c.base))
        result.changed += 1
        result.versions[it.id] = new_version
        for col, (old, new) in diffs.items():
            if col == "owner_id":
                logs.append(
                    _log(user, it, "owner", _owner_email(session, old), _owner_email(session, new), now, context)
                )
            else:
                logs.append(_log(user, it, col, _fmt(old), _fmt(new), now, context))
    pos = int(
        session.execute(
            select(func.coalesce(func.max(ChecklistItem.position), -1)).where(ChecklistItem.account_id == account_id)
        ).scalar_one()
    )
    for v in new_rows:
        pos += 1
        item = ChecklistItem(
            account_id=account_id,
            category=v["category"],
            criterion=v["criterion"],
            target=v.get("target", ""),
            actual=v.get("actual", ""),
            status=v.get("status", "not started"),
            owner_id=v.get("owner_id"),
            due_date=v.get("due_date"),
            note=v.get("note", ""),
            position=pos,
            done_at=now if v.get("status") == "done" else None,
        )
        session.add(item)
        session.flush()
        logs.append(_log(user, item, "item", None, f"{item.category}: {item.criterion}", now, context="checklist add"))
        result.added += 1
        result.versions[item.id] = 1
    for entry in logs:
        session.add(entry)
    result.log_entries = len(logs)
    if logs:
        # Only status, category, due date, adding and removing change what the analyses read
        # (health's value criteria, the done/blocked/overdue counts); notes, targets and
        # actuals do not, so saving them keeps every cached analysis.
        analytic = result.added or result.removed or any(e.field in ANALYTIC_FIELDS for e in logs)
        bump_data_version(session, scope="plans" if analytic else "notes")
    session.commit()
    return result


def _log(
    user: User, it: ChecklistItem, fld: str, old: Any, new: Any, now: datetime, context: str = "checklist edit"
) -> ChangeLog:
    return ChangeLog(
        at=now,
        actor=user.email,
        entity="checklist_item",
        entity_id=str(it.id),
        account_id=it.account_id,
        field=fld,
        old=old,
        new=new,
        context=context[:100],
    )


def item_values(session: Session, it: ChecklistItem) -> dict[str, Any]:
    """An item's editable values as the editor shows them (owner as email, dates as date)."""
    return {
        "category": it.category,
        "criterion": it.criterion,
        "target": it.target,
        "actual": it.actual,
        "status": it.status,
        "owner": _owner_email(session, it.owner_id),
        "due_date": it.due_date,
        "note": it.note,
    }


def _what_changed(session: Session, it: ChecklistItem | None, base: dict[str, Any] | None) -> list[Conflict]:
    """The fields of an item that differ now from what the editor was showing, with who
    changed them last (from the change log)."""
    if it is None:
        return [Conflict(None, "(removed)", "item", "present", "removed", "someone else", None)]
    now = item_values(session, it)
    base = base or {}
    out = []
    for fld, cur in now.items():
        if fld in base and _fmt(_norm_cell(base[fld])) != _fmt(_norm_cell(cur)):
            last = session.execute(
                select(ChangeLog)
                .where(ChangeLog.entity == "checklist_item", ChangeLog.entity_id == str(it.id), ChangeLog.field == fld)
                .order_by(ChangeLog.at.desc(), ChangeLog.id.desc())  # type: ignore[union-attr]
                .limit(1)
            ).scalar_one_or_none()
            out.append(
                Conflict(
                    it.id,
                    it.criterion,
                    fld,
                    _fmt(_norm_cell(base[fld])),
                    _fmt(cur),
                    last.actor if last else "someone else",
                    last.at if last else None,
                )
            )
    return out or [Conflict(it.id, it.criterion, "(saved again)", None, None, "someone else", None)]


def _norm_cell(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, datetime):
        return v.date()
    if v == "":
        return None
    return v


def checklist_history(session: Session, *, account_id: int, limit: int = 200) -> list[ChangeLog]:
    return list(
        session.execute(
            select(ChangeLog)
            .where(ChangeLog.account_id == account_id, ChangeLog.entity.in_(["checklist_item", "success_plan"]))  # type: ignore[attr-defined]
            .order_by(ChangeLog.at.desc(), ChangeLog.id.desc())  # type: ignore[union-attr]
            .limit(limit)
        ).scalars()
    )


def history_subjects(session: Session, *, account_id: int, rows: list[ChangeLog]) -> list[str]:
    """What each history row is about, as a reader names it: the checklist item's criterion
    (also for an item removed since, from its add or remove entry), or "Success plan"."""
    names = {
        str(i): c
        for i, c in session.execute(
            select(ChecklistItem.id, ChecklistItem.criterion).where(ChecklistItem.account_id == account_id)
        )
    }
    for r in rows:
        if r.entity == "checklist_item" and r.field == "item" and r.entity_id not in names:
            label = r.old or r.new or ""
            names[r.entity_id] = label.split(": ", 1)[-1]
    out = []
    for r in rows:
        if r.entity == "success_plan":
            out.append("Success plan")
        elif r.entity_id == "template":
            out.append("Checklist template")
        else:
            out.append(names.get(r.entity_id, f"item {r.entity_id}"))
    return out


def named_history(session: Session, *, account_id: int, limit: int = 200) -> list[tuple[ChangeLog, str]]:
    """The checklist and plan history, newest first, each row with what it is about."""
    rows = checklist_history(session, account_id=account_id, limit=limit)
    return list(zip(rows, history_subjects(session, account_id=account_id, rows=rows), strict=True))


def save_plan(session: Session, user: User, *, account_id: int, version: int, values: dict[str, str]) -> int:
    """Save the success plan's goals, 30/60/90-day definitions and stakeholders."""
    require_account_edit(session, user, account_id)
    plan = session.execute(select(SuccessPlan).where(SuccessPlan.account_id == account_id)).scalar_one_or_none()
    if plan is None:
        plan = SuccessPlan(account_id=account_id)
        session.add(plan)
        session.flush()
    problems = []
    clean = {}
    for k, v in values.items():
        if k not in PLAN_FIELDS:
            continue
        s = "" if v is None else str(v)
        limit = 200 if k in ("champion", "admin_contact", "executive_sponsor") else 5000
        if len(s) > limit:
            problems.append(CellProblem("plan", k, s[:40] + "…", f"longer than {limit} characters"))
        clean[k] = s.strip() if limit == 200 else s
    if problems:
        raise ValidationFailed(problems)
    if plan.version != version:
        # What changed meanwhile: the saves after the version the editor was opened at (each
        # save bumps the version once and logs its fields with one timestamp).
        saves_since = plan.version - version if plan.version > version else None
        saves: list[datetime] = []
        conflicts = []
        for r in session.execute(
            select(ChangeLog)
            .where(ChangeLog.entity == "success_plan", ChangeLog.entity_id == str(plan.id))
            .order_by(ChangeLog.at.desc(), ChangeLog.id.desc())  # type: ignore[union-attr]
            .limit(200)
        ).scalars():
            if r.at not in saves:
                if saves_since is not None and len(saves) == saves_since:
                    break
                saves.append(r.at)
            conflicts.append(Conflict(None, "success plan", r.field, r.old, r.new, r.actor, r.at))
        raise StaleVersion(
            conflicts or [Conflict(None, "success plan", "(version)", version, plan.version, "someone else", None)]
        )
    now = utcnow()
    diffs = {k: (getattr(plan, k), v) for k, v in clean.items() if getattr(plan, k) != v}
    if not diffs:
        return plan.version
    res = session.execute(
        update(SuccessPlan)
        .where(SuccessPlan.id == plan.id, SuccessPlan.version == version)
        .values(**{k: v for k, (_, v) in diffs.items()}, version=version + 1, updated_at=now)
    )
    if res.rowcount != 1:
        session.rollback()
        raise StaleVersion([Conflict(None, "success plan", "(version)", version, None, "someone else", None)])
    for k, (old, new) in diffs.items():
        session.add(
            ChangeLog(
                at=now,
                actor=user.email,
                entity="success_plan",
                entity_id=str(plan.id),
                account_id=account_id,
                field=k,
                old=old,
                new=new,
                context="plan edit",
            )
        )
    # Stakeholders feed the no-champion rule; goals and definitions feed no analysis.
    bump_data_version(
        session, scope="plans" if set(diffs) & {"champion", "admin_contact", "executive_sponsor"} else "notes"
    )
    session.commit()
    return version + 1


def check_intervention(*, type: str, on: Any, note: str | None, outcome: str | None) -> None:
    """Raise ValidationFailed unless this is a loggable intervention: a known type, a date
    and a note saying what was done (a blank entry tells the next reader nothing)."""
    problems = []
    if type not in INTERVENTION_TYPES:
        problems.append(CellProblem("intervention", "type", type, f"choose one of {', '.join(INTERVENTION_TYPES)}"))
    if not isinstance(on, date):
        problems.append(CellProblem("intervention", "date", on, "not a date"))
    if not (note or "").strip():
        problems.append(
            CellProblem("intervention", "note", note, "write what was done and with whom (the note is required)")
        )
    if len(note or "") > 5000:
        problems.append(CellProblem("intervention", "note", (note or "")[:40], "longer than 5000 characters"))
    if len(outcome or "") > 5000:
        problems.append(CellProblem("intervention", "outcome", (outcome or "")[:40], "longer than 5000 characters"))
    if problems:
        raise ValidationFailed(problems)


def add_intervention(
    session: Session,
    user: User,
    *,
    account_id: int,
    type: str,
    on: date,
    note: str = "",
    outcome: str = "",
    rule: str | None = None,
) -> Intervention:
    """Log an intervention on an account (its CSM or an admin)."""
    require_account_edit(session, user, account_id)
    check_intervention(type=type, on=on, note=note, outcome=outcome)
    iv = Intervention(
        account_id=account_id,
        type=type,
        date=on,
        note=note or "",  # kept as written (like every free text); blank is refused above
        outcome=outcome or "",
        rule=rule,
        created_by=user.email,
    )
    session.add(iv)
    session.flush()
    session.add(
        ChangeLog(
            actor=user.email,
            entity="intervention",
            entity_id=str(iv.id),
            account_id=account_id,
            field="intervention",
            old=None,
            new=f"{type} on {on.isoformat()}",
            context="intervention",
        )
    )
    bump_data_version(session, scope="notes")
    session.commit()
    return iv


def in_session(fn, *args: Any, url: str | None = None, **kwargs: Any) -> Any:
    """Run a service write in its own session (for the pages, which hold no sessions)."""
    with session_scope(url) as session:
        return fn(session, *args, **kwargs)


def apply_template(session: Session, user: User, *, account_id: int) -> int:
    """Give an account with an empty checklist its segment's template; returns items added."""
    from db.templates import apply_new_account_defaults

    require_account_edit(session, user, account_id)
    have = session.execute(
        select(func.count()).select_from(ChecklistItem).where(ChecklistItem.account_id == account_id)
    ).scalar_one()
    if have:
        return 0
    apply_new_account_defaults(session, milestones_for=[], checklist_for=[account_id], plan_for=[account_id])
    n = session.execute(
        select(func.count()).select_from(ChecklistItem).where(ChecklistItem.account_id == account_id)
    ).scalar_one()
    session.add(
        ChangeLog(
            actor=user.email,
            entity="checklist_item",
            entity_id="template",
            account_id=account_id,
            field="template",
            old=None,
            new=f"{n} items",
            context="checklist template",
        )
    )
    bump_data_version(session, scope="plans")
    session.commit()
    return int(n)
