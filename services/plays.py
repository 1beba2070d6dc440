"""Playbooks acted on: plays opened when a trigger fires, their tasks, and closing them.

A playbook (the versioned setting "playbooks", db/defaults.py) names a trigger (a risk rule,
or "contract_start" for the kickoff play) and ordered steps, each with what to deliver, an
owner and a due offset in days from the play's start. `sync_plays` runs with the health
snapshot (services/health.py) in the same transaction as the risk-trigger log:

- a play opens when its trigger fires on a live account, once per account, playbook and
  firing episode (the day the trigger's current firing began), and never while another
  play of that playbook is open on the account (a partial unique index backs this up);
- it creates its tasks, each with an owner and a due date;
- it closes when every task is done ("completed"), when a person closes it with an outcome
  and a note, or when its trigger has not fired for the playbook's `auto_resolve_days`
  ("auto-resolved"). A closed play's open tasks are cancelled.

Who may act (PRODUCT.md §6, as for interventions): a CSM on the accounts they own, leaders
and admins on every account; revops reads. Every change is in the change log.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

import pandas as pd
from sqlalchemy import case, func, insert, select
from sqlmodel import Session

from db.defaults import DELIVERABLES, OWNER_KINDS
from db.models import PERSON_OUTCOMES, Account, ChangeLog, Play, PlayTask, RiskTrigger, TeamMember, utcnow
from db.session import bump_data_version
from db.settings_store import get_setting
from services.access import User, can_act_on_plays, require_account_edit
from services.plans import CellProblem, Conflict, StaleVersion, ValidationFailed

CONTRACT_START = "contract_start"
KICKOFF_WINDOW_DAYS = 14
RULES = ("milestone_overdue", "no_activity", "low_adoption", "health_drop", "no_champion", "ttfv_overdue")
TRIGGERS = (CONTRACT_START, *RULES)


# ----------------------------------------------------------------------------- playbooks


def playbooks(db: Any) -> tuple[dict[str, dict[str, Any]], int]:
    """The current playbooks (keyed by playbook) and the setting's version."""
    s = get_setting(db, "playbooks")
    return s.value, s.version


def validate_playbooks(value: Any, members: set[str] | None = None) -> list[CellProblem]:
    """What is wrong with a playbooks setting, by playbook and field. `members`: the team's
    emails, to check named owners (not checked when None)."""
    problems: list[CellProblem] = []
    if not isinstance(value, dict):
        return [CellProblem("playbooks", "(all)", value, "must be a mapping of playbook key to playbook")]
    for key, pb in value.items():
        row = f"playbook {key}"
        if not isinstance(pb, dict):
            problems.append(CellProblem(row, "(all)", pb, "must be a playbook"))
            continue
        if not str(key).strip() or len(str(key)) > 60:
            problems.append(CellProblem(row, "key", key, "a key of 1 to 60 characters is required"))
        name = str(pb.get("name") or "").strip()
        if not name or len(name) > 200:
            problems.append(CellProblem(row, "name", pb.get("name"), "a name of 1 to 200 characters is required"))
        if not isinstance(pb.get("enabled", True), bool):
            problems.append(CellProblem(row, "enabled", pb.get("enabled"), "must be true or false"))
        trig = pb.get("trigger") or {}
        rule = trig.get("rule") if isinstance(trig, dict) else None
        if rule not in TRIGGERS:
            problems.append(CellProblem(row, "trigger", rule, f"choose one of {', '.join(TRIGGERS)}"))
        elif rule == CONTRACT_START:
            w = trig.get("within_days", KICKOFF_WINDOW_DAYS)
            if not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= 365:
                problems.append(CellProblem(row, "trigger.within_days", w, "must be a whole number of days, 1 to 365"))
        auto = pb.get("auto_resolve_days")
        if auto is not None and (not isinstance(auto, int) or isinstance(auto, bool) or not 0 <= auto <= 365):
            problems.append(
                CellProblem(row, "auto_resolve_days", auto, "must be empty or a whole number of days, 0 to 365")
            )
        steps = pb.get("steps")
        if not isinstance(steps, list) or not steps:
            problems.append(CellProblem(row, "steps", steps, "at least one step is required"))
            continue
        for i, st in enumerate(steps, start=1):
            srow = f"{row} step {i}"
            if not isinstance(st, dict):
                problems.append(CellProblem(srow, "(all)", st, "must be a step"))
                continue
            title = str(st.get("title") or "").strip()
            if not title or len(title) > 200:
                problems.append(
                    CellProblem(srow, "title", st.get("title"), "a title of 1 to 200 characters is required")
                )
            if st.get("deliver") not in DELIVERABLES:
                problems.append(
                    CellProblem(srow, "deliver", st.get("deliver"), f"choose one of {', '.join(DELIVERABLES)}")
                )
            owner = st.get("owner")
            if isinstance(owner, str) and owner.startswith("member:"):
                email = owner.removeprefix("member:").strip().lower()
                if not email or (members is not None and email not in members):
                    problems.append(CellProblem(srow, "owner", owner, "names no member of the team"))
            elif owner not in OWNER_KINDS:
                problems.append(
                    CellProblem(srow, "owner", owner, f"choose one of {', '.join(OWNER_KINDS)} or member:<email>")
                )
            due = st.get("due_days")
            if not isinstance(due, int) or isinstance(due, bool) or not 0 <= due <= 365:
                problems.append(CellProblem(srow, "due_days", due, "must be a whole number of days, 0 to 365"))
    return problems


# ----------------------------------------------------------------------------- owners


@dataclass
class _Owners:
    """Picks each step's owner. Round robin goes on from the number of tasks the same
    playbook step has given so far; least loaded counts open tasks, updated as it assigns."""

    session: Session
    accounts: dict[int, tuple[str, int | None]]  # account_id -> (segment, csm_id)
    members: dict[int, TeamMember]
    leader: int | None
    csms_by_segment: dict[str, list[int]]
    all_csms: list[int]
    open_load: dict[int, int]
    turns: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, accounts: dict[int, tuple[str, int | None]]) -> _Owners:
        members = {m.id: m for m in session.execute(select(TeamMember)).scalars() if m.active}
        leaders = sorted(i for i, m in members.items() if m.role == "leader")
        csms = sorted(i for i, m in members.items() if m.role == "csm")
        by_seg: dict[str, set[int]] = defaultdict(set)
        for seg, csm in accounts.values():
            if csm in members and members[csm].role == "csm":
                by_seg[seg].add(csm)
        load = dict(
            session.execute(
                select(PlayTask.owner_id, func.count())
                .where(PlayTask.status == "open", PlayTask.owner_id.is_not(None))
                .group_by(PlayTask.owner_id)
            ).all()
        )
        return cls(
            session,
            accounts,
            members,
            leaders[0] if leaders else None,
            {s: sorted(v) for s, v in by_seg.items()},
            csms,
            {i: int(load.get(i, 0)) for i in members},
        )

    def _candidates(self, account_id: int) -> list[int]:
        seg = self.accounts.get(account_id, ("", None))[0]
        return self.csms_by_segment.get(seg) or self.all_csms

    def pick(self, owner: str, *, account_id: int, playbook: str, step: int) -> int | None:
        csm = self.accounts.get(account_id, ("", None))[1]
        if owner == "csm":
            chosen = csm if csm in self.members else self.leader
        elif owner == "leader":
            chosen = self.leader
        elif owner.startswith("member:"):
            email = owner.removeprefix("member:").strip().lower()
            chosen = next((i for i, m in self.members.items() if m.email.lower() == email), None)
        elif owner == "round robin":
            cands = self._candidates(account_id)
            if not cands:
                chosen = self.leader
            else:
                k = (playbook, step)
                if k not in self.turns:
                    self.turns[k] = int(
                        self.session.execute(
                            select(func.count())
                            .select_from(PlayTask)
                            .join(Play, Play.id == PlayTask.play_id)
                            .where(Play.playbook == playbook, PlayTask.step == step)
                        ).scalar_one()
                    )
                chosen = cands[self.turns[k] % len(cands)]
                self.turns[k] += 1
        elif owner == "least loaded":
            cands = self._candidates(account_id)
            chosen = min(cands, key=lambda i: (self.open_load.get(i, 0), i)) if cands else self.leader
        else:
            chosen = csm if csm in self.members else self.leader
        if chosen is not None:
            self.open_load[chosen] = self.open_load.get(chosen, 0) + 1
        return chosen


# ----------------------------------------------------------------------------- sync


@dataclass
class PlayRun:
    """What one evaluation did."""

    opened: list[Any] = field(default_factory=list)  # the plays opened (their column values)
    auto_resolved: list[Play] = field(default_factory=list)
    tasks_created: int = 0
    notifications: list[Any] = field(default_factory=list)  # the play-opened alerts written


def _log(actor: str, entity: str, entity_id: int, account_id: int, fld: str, old: Any, new: Any, context: str):
    return ChangeLog(
        actor=actor,
        entity=entity,
        entity_id=str(entity_id),
        account_id=account_id,
        field=fld,
        old=None if old is None else str(old),
        new=None if new is None else str(new),
        context=context[:100],
    )


def _close(session: Session, play: Play, *, on: date, outcome: str, note: str, actor: str) -> None:
    old = play.status
    play.status, play.outcome, play.close_note = "closed", outcome, note
    play.closed_on, play.closed_at, play.closed_by = on, utcnow(), actor
    play.version += 1
    session.add(_log(actor, "play", play.id, play.account_id, "status", old, f"closed: {outcome}", play.playbook_name))
    if note:
        session.add(_log(actor, "play", play.id, play.account_id, "close_note", None, note, play.playbook_name))
    for t in session.execute(select(PlayTask).where(PlayTask.play_id == play.id, PlayTask.status == "open")).scalars():
        t.status = "cancelled"
        t.version += 1
        session.add(_log(actor, "task", t.id, t.account_id, "status", "open", "cancelled", play.playbook_name))


def firing(
    *,
    fired: pd.DataFrame,
    accounts: pd.DataFrame,
    live: set[int],
    as_of: date,
    pbs: dict[str, dict[str, Any]],
    episodes: dict[tuple[int, str], date],
) -> dict[str, dict[int, tuple[date, str]]]:
    """For each enabled playbook, the live accounts its trigger fires on as of the date:
    account_id -> (episode, reason)."""
    out: dict[str, dict[int, tuple[date, str]]] = {}
    by_rule: dict[str, dict[int, str]] = defaultdict(dict)
    for a, r, why in zip(fired["account_id"], fired["rule"], fired["reason"], strict=True):
        if int(a) in live:
            by_rule[str(r)][int(a)] = str(why)
    for key, pb in pbs.items():
        if not pb.get("enabled", True):
            continue
        rule = (pb.get("trigger") or {}).get("rule")
        if rule == CONTRACT_START:
            within = int(pb["trigger"].get("within_days", KICKOFF_WINDOW_DAYS))
            got: dict[int, tuple[date, str]] = {}
            for a, start in zip(accounts["account_id"], accounts["contract_start"], strict=True):
                if pd.isna(start) or int(a) not in live:
                    continue
                d0 = pd.Timestamp(start).date()
                age = (as_of - d0).days
                if 0 <= age < within:
                    got[int(a)] = (d0, f"Contract started on {d0:%d %b %Y} (day {age})")
            out[key] = got
        else:
            out[key] = {a: (episodes.get((a, rule), as_of), why) for a, why in by_rule.get(rule, {}).items()}
    return out


def sync_plays(
    session: Session,
    *,
    as_of: date,
    fired: pd.DataFrame,
    accounts: pd.DataFrame,
    live: set[int],
    actor: str = "system",
) -> PlayRun:
    """Open, keep and auto-resolve plays as of a date (see the module's docstring), in the
    caller's transaction. fired: account_id, rule, reason (services.analytics.trigger_table);
    accounts: account_id, segment, csm_id, contract_start; live: accounts not churned."""
    pbs, version = playbooks(session)
    session.flush()
    episodes = {
        (int(a), str(r)): d
        for a, r, d in session.execute(
            select(RiskTrigger.account_id, RiskTrigger.rule, RiskTrigger.opened).where(RiskTrigger.resolved.is_(None))
        ).all()
    }
    now = firing(fired=fired, accounts=accounts, live=live, as_of=as_of, pbs=pbs, episodes=episodes)
    run = PlayRun()
    open_plays = {
        (p.account_id, p.playbook): p for p in session.execute(select(Play).where(Play.status == "open")).scalars()
    }
    # Plays already run for an episode (closed ones included): not opened twice.
    keys = [(a, k, ep) for k, got in now.items() for a, (ep, _) in got.items() if (a, k) not in open_plays]
    done: set[tuple[int, str, date]] = set()
    if keys:
        for a, k, ep in session.execute(
            select(Play.account_id, Play.playbook, Play.episode).where(
                Play.playbook.in_(sorted({k for _, k, _ in keys}))
            )
        ).all():
            done.add((int(a), str(k), ep))
    # Still firing: an open play stays open (and is no longer "cleared").
    for (a, k), p in open_plays.items():
        if k in now and a in now[k]:
            if p.cleared_on is not None:
                p.cleared_on = None
            continue
        pb = pbs.get(k)
        rule = (pb or {}).get("trigger", {}).get("rule")
        if pb is None or rule == CONTRACT_START or p.opened_on > as_of:
            continue  # a one-off trigger (or a playbook since removed) closes with its tasks or by hand
        if p.cleared_on is None or p.cleared_on > as_of:
            p.cleared_on = as_of
        auto = pb.get("auto_resolve_days")
        if auto is not None and (as_of - p.cleared_on).days >= int(auto):
            _close(
                session,
                p,
                on=as_of,
                outcome="auto-resolved",
                note=f"{rule} has not fired since {p.cleared_on:%d %b %Y}",
                actor=actor,
            )
            run.auto_resolved.append(p)
    acc = {
        int(a): (str(s), None if pd.isna(c) else int(c))
        for a, s, c in zip(accounts["account_id"], accounts["segment"], accounts["csm_id"], strict=True)
    }
    owners = _Owners.load(session, acc)
    # New plays, their tasks, their change-log rows and alerts: bulk Core inserts (tens of
    # thousands of rows on a first run over a large portfolio; ORM objects cost ~2 ms each).
    plays_rows: list[dict[str, Any]] = []
    steps_of: list[list[dict[str, Any]]] = []
    for k, got in now.items():
        pb = pbs[k]
        for a, (ep, why) in sorted(got.items()):
            if (a, k) in open_plays or (a, k, ep) in done:
                continue
            plays_rows.append(
                {
                    "account_id": a,
                    "playbook": k,
                    "playbook_name": str(pb["name"]),
                    "playbook_version": version,
                    "rule": pb["trigger"]["rule"],
                    "reason": why,
                    "episode": ep,
                    "opened_on": as_of,
                    "opened_at": utcnow(),
                    "status": "open",
                    "close_note": "",
                    "version": 1,
                }
            )
            steps_of.append(
                [
                    {
                        "account_id": a,
                        "step": i,
                        "title": str(st["title"]),
                        "deliver": str(st.get("deliver") or ""),
                        "owner_id": owners.pick(str(st.get("owner") or "csm"), account_id=a, playbook=k, step=i),
                        "due": as_of + timedelta(days=int(st.get("due_days") or 0)),
                        "status": "open",
                        "version": 1,
                    }
                    for i, st in enumerate(pb["steps"], start=1)
                ]
            )
    if plays_rows:
        table = Play.__table__
        ids = (
            session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), plays_rows)
            .scalars()
            .all()
        )
        task_rows, log_rows = [], []
        for pid, row, steps in zip(ids, plays_rows, steps_of, strict=True):
            row["id"] = pid
            for t in steps:
                t["play_id"] = pid
            task_rows += steps
            log_rows.append(
                {
                    "actor": actor,
                    "entity": "play",
                    "entity_id": str(pid),
                    "account_id": row["account_id"],
                    "field": "status",
                    "old": None,
                    "new": "open",
                    "context": row["playbook_name"][:100],
                    "at": utcnow(),
                }
            )
        session.execute(insert(PlayTask.__table__), task_rows)
        session.execute(insert(ChangeLog.__table__), log_rows)
        run.opened = [SimpleNamespace(**r) for r in plays_rows]
        run.tasks_created = len(task_rows)
        # The alert to each play's owner, in this transaction (the outbox).
        from services.notify import enqueue_many, play_opened

        accounts_by_id = {}
        want = sorted({r["account_id"] for r in plays_rows})
        for i in range(0, len(want), 500):
            accounts_by_id.update(
                {a.id: a for a in session.execute(select(Account).where(Account.id.in_(want[i : i + 500]))).scalars()}
            )
        names = {i: m.name for i, m in owners.members.items()}
        msgs = [
            play_opened(p, [SimpleNamespace(**t) for t in steps], accounts_by_id[p.account_id], names)
            for p, steps in zip(run.opened, steps_of, strict=True)
        ]
        run.notifications = enqueue_many(session, msgs, new=True)
    if run.opened or run.auto_resolved:
        bump_data_version(session, scope="notes")
    return run


# ----------------------------------------------------------------------------- acting on plays and tasks


def can_act(user: User, account: Account) -> bool:
    """Plays and tasks: a CSM on their own accounts, leaders and admins on all."""
    return can_act_on_plays(user, account)


def _require_act(session: Session, user: User, account_id: int) -> Account:
    return require_account_edit(session, user, account_id, plays=True)


def _check_version(obj: Play | PlayTask, expected: int | None, what: str) -> None:
    if expected is not None and obj.version != expected:
        raise StaleVersion([Conflict(None, what, "(version)", expected, obj.version, "someone else", None)])


def _open_task(session: Session, user: User, task_id: int, expected_version: int | None, action: str) -> PlayTask:
    """The task, if it exists, the user may act on it, nobody changed it since `expected_version`
    and it is still open; otherwise the exception that says which of these is not so."""
    t = session.get(PlayTask, task_id)
    if t is None:
        raise KeyError(f"no task with id {task_id}")
    _require_act(session, user, t.account_id)
    _check_version(t, expected_version, "task")
    if t.status != "open":
        reason = f"is already {t.status}" if action == "done" else f"is {t.status}: only an open task can be {action}"
        raise ValidationFailed([CellProblem(f"task {t.id}", "status", t.status, reason)])
    return t


def _play_name(session: Session, play_id: int) -> str:
    return session.execute(select(Play.playbook_name).where(Play.id == play_id)).scalar_one()


def complete_task(
    session: Session, user: User, *, task_id: int, on: date, expected_version: int | None = None
) -> PlayTask:
    """Mark a task done; the play completes when it was its last open task."""
    t = _open_task(session, user, task_id, expected_version, "done")
    name = _play_name(session, t.play_id)
    t.status, t.done_at, t.done_by, t.snoozed_until = "done", utcnow(), user.email, None
    t.version += 1
    session.add(_log(user.email, "task", t.id, t.account_id, "status", "open", "done", name))
    session.flush()
    left = session.execute(
        select(func.count()).select_from(PlayTask).where(PlayTask.play_id == t.play_id, PlayTask.status == "open")
    ).scalar_one()
    play = session.get(Play, t.play_id)
    if not left and play is not None and play.status == "open":
        _close(session, play, on=on, outcome="completed", note="", actor=user.email)
    bump_data_version(session, scope="notes")
    session.commit()
    return t


def snooze_task(
    session: Session, user: User, *, task_id: int, until: date, today: date, expected_version: int | None = None
) -> PlayTask:
    """Hide an open task from the due lists (and its overdue alert) until a later date."""
    t = _open_task(session, user, task_id, expected_version, "snoozed")
    if until <= today:
        raise ValidationFailed([CellProblem(f"task {t.id}", "snoozed until", until, f"must be after {today:%d %b %Y}")])
    old = t.snoozed_until
    t.snoozed_until = until
    t.version += 1
    session.add(
        _log(user.email, "task", t.id, t.account_id, "snoozed_until", old, until, _play_name(session, t.play_id))
    )
    bump_data_version(session, scope="notes")
    session.commit()
    return t


def reassign_task(
    session: Session, user: User, *, task_id: int, owner_id: int, expected_version: int | None = None
) -> PlayTask:
    """Give an open task to another active member of the team."""
    t = _open_task(session, user, task_id, expected_version, "reassigned")
    to = session.get(TeamMember, owner_id)
    if to is None or not to.active:
        raise ValidationFailed([CellProblem(f"task {t.id}", "owner", owner_id, "is not an active member of the team")])
    if to.role == "revops":
        raise ValidationFailed(
            [CellProblem(f"task {t.id}", "owner", to.email, "revops members read but do not own tasks")]
        )
    old = session.get(TeamMember, t.owner_id).email if t.owner_id else None
    t.owner_id = owner_id
    t.version += 1
    session.add(_log(user.email, "task", t.id, t.account_id, "owner", old, to.email, _play_name(session, t.play_id)))
    bump_data_version(session, scope="notes")
    session.commit()
    return t


def close_play(
    session: Session,
    user: User,
    *,
    play_id: int,
    outcome: str,
    note: str,
    on: date,
    expected_version: int | None = None,
) -> Play:
    """A person closes a play with an outcome and a note; its open tasks are cancelled."""
    p = session.get(Play, play_id)
    if p is None:
        raise KeyError(f"no play with id {play_id}")
    _require_act(session, user, p.account_id)
    _check_version(p, expected_version, "play")
    problems = []
    if p.status != "open":
        problems.append(CellProblem(f"play {p.id}", "status", p.status, f"is already closed ({p.outcome})"))
    if outcome not in PERSON_OUTCOMES:
        problems.append(CellProblem(f"play {p.id}", "outcome", outcome, f"choose one of {', '.join(PERSON_OUTCOMES)}"))
    note = (note or "").strip()
    if not note:
        problems.append(CellProblem(f"play {p.id}", "note", note, "say in a few words why it is closed"))
    elif len(note) > 2000:
        problems.append(CellProblem(f"play {p.id}", "note", note[:40] + "…", "must be 2,000 characters or fewer"))
    if problems:
        raise ValidationFailed(problems)
    _close(session, p, on=on, outcome=outcome, note=note, actor=user.email)
    bump_data_version(session, scope="notes")
    session.commit()
    return p


# ----------------------------------------------------------------------------- reading


def member_ids(db: Session) -> dict[str, int]:
    """Team members' ids by email (lower case)."""
    return {str(e).lower(): int(i) for e, i in db.execute(select(TeamMember.email, TeamMember.id)).all()}


TASK_COLUMNS = [
    "task_id",
    "version",
    "account_id",
    "external_id",
    "account",
    "play_id",
    "playbook",
    "reason",
    "step",
    "title",
    "deliver",
    "owner_id",
    "owner",
    "due",
    "snoozed_until",
    "status",
    "bucket",
]


def bucket(due: date, snoozed_until: date | None, status: str, today: date) -> str:
    """Where a task sits on My work: overdue, today, this week (the next 7 days), later,
    snoozed, or its status once it is no longer open."""
    if status != "open":
        return status
    if snoozed_until is not None and snoozed_until > today:
        return "snoozed"
    if due < today:
        return "overdue"
    if due == today:
        return "today"
    if due <= today + timedelta(days=7):
        return "this week"
    return "later"


def tasks(
    db: Session,
    *,
    today: date,
    owner_ids: list[int] | None = None,
    account_id: int | None = None,
    status: str | None = "open",
) -> pd.DataFrame:
    """Tasks with their account, play and owner, soonest due first. owner_ids: only theirs
    (None: everyone's); account_id: one account's; status: open (default), done,
    cancelled or None for all."""
    q = (
        select(
            PlayTask.id,
            PlayTask.version,
            PlayTask.account_id,
            Account.external_id,
            Account.name,
            PlayTask.play_id,
            Play.playbook_name,
            Play.reason,
            PlayTask.step,
            PlayTask.title,
            PlayTask.deliver,
            PlayTask.owner_id,
            TeamMember.name,
            PlayTask.due,
            PlayTask.snoozed_until,
            PlayTask.status,
        )
        .join(Play, Play.id == PlayTask.play_id)
        .join(Account, Account.id == PlayTask.account_id)
        .join(TeamMember, TeamMember.id == PlayTask.owner_id, isouter=True)
    )
    if owner_ids is not None:
        q = q.where(PlayTask.owner_id.in_(owner_ids))
    if account_id is not None:
        q = q.where(PlayTask.account_id == account_id)
    if status is not None:
        q = q.where(PlayTask.status == status)
    rows = db.execute(q.order_by(PlayTask.due, Account.external_id, PlayTask.step)).all()
    df = pd.DataFrame([(*r, None) for r in rows], columns=TASK_COLUMNS)
    if len(df):
        df["owner"] = df["owner"].fillna("Unassigned")
        df["bucket"] = [
            bucket(d, s, st, today) for d, s, st in zip(df["due"], df["snoozed_until"], df["status"], strict=True)
        ]
    return df


PLAY_COLUMNS = [
    "play_id",
    "version",
    "playbook",
    "playbook_key",
    "reason",
    "opened_on",
    "status",
    "outcome",
    "closed_on",
    "close_note",
    "closed_by",
    "tasks",
    "tasks_done",
]


def account_plays(db: Session, *, account_id: int) -> pd.DataFrame:
    """An account's plays, newest first, with their task counts."""
    done = func.sum(case((PlayTask.status == "done", 1), else_=0))
    rows = db.execute(
        select(
            Play.id,
            Play.version,
            Play.playbook_name,
            Play.playbook,
            Play.reason,
            Play.opened_on,
            Play.status,
            Play.outcome,
            Play.closed_on,
            Play.close_note,
            Play.closed_by,
            func.count(PlayTask.id),
            done,
        )
        .join(PlayTask, PlayTask.play_id == Play.id, isouter=True)
        .where(Play.account_id == account_id)
        .group_by(Play.id)
        .order_by(Play.opened_on.desc(), Play.id.desc())
    ).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=PLAY_COLUMNS)


def overdue_by_owner(db: Session, *, today: date, account_ids: Any = None) -> pd.DataFrame:
    """Open tasks past due (not snoozed) per owner: owner_id, owner, overdue. account_ids:
    only those accounts' tasks (a filtered view)."""
    rows = db.execute(
        select(PlayTask.account_id, PlayTask.owner_id, TeamMember.name)
        .join(TeamMember, TeamMember.id == PlayTask.owner_id, isouter=True)
        .where(
            PlayTask.status == "open",
            PlayTask.due < today,
            (PlayTask.snoozed_until.is_(None)) | (PlayTask.snoozed_until <= today),
        )
    ).all()
    t = pd.DataFrame([tuple(r) for r in rows], columns=["account_id", "owner_id", "owner"])
    if account_ids is not None:
        t = t[t["account_id"].isin(set(int(a) for a in account_ids))]
    t["owner"] = t["owner"].fillna("Unassigned")
    df = (
        t.groupby(["owner_id", "owner"], dropna=False).size().rename("overdue").reset_index()
        if len(t)
        else pd.DataFrame(columns=["owner_id", "owner", "overdue"])
    )
    df["owner"] = df["owner"].fillna("Unassigned")
    return df.sort_values(["overdue", "owner"], ascending=[False, True]).reset_index(drop=True)


def demo_work(*, url: str | None = None, as_of: date, seed: int = 42) -> int:
    """The demo team's work on its plays: most tasks due a week or more before the as-of date
    done by their owner, a few plays closed by hand; the rest stays open (some overdue).
    Deterministic for a seed; set-based (the demo has tens of thousands of tasks at 100,000
    accounts). Returns the tasks marked done."""
    import random

    from sqlalchemy import bindparam, update

    from db.session import session_scope

    rng = random.Random(seed)
    with session_scope(url) as s:
        emails = {i: e for e, i in member_ids(s).items()}
        cutoff = as_of - timedelta(days=7)
        rows = s.execute(
            select(PlayTask.id, PlayTask.play_id, PlayTask.owner_id, PlayTask.due, PlayTask.account_id)
            .join(Play, Play.id == PlayTask.play_id)
            .where(PlayTask.status == "open", Play.status == "open", PlayTask.due <= cutoff)
            .order_by(PlayTask.id)
        ).all()
        done = [
            {"tid": tid, "by": emails.get(owner, "system"), "at": utcnow() - timedelta(days=(as_of - due).days)}
            for tid, _pid, owner, due, _a in rows
            if rng.random() < 0.7
        ]
        account_of = {tid: a for tid, _p, _o, _d, a in rows}
        play_account = {pid: a for _t, pid, _o, _d, a in rows}
        if done:
            s.execute(
                update(PlayTask.__table__)
                .where(PlayTask.__table__.c.id == bindparam("tid"))
                .values(status="done", done_by=bindparam("by"), done_at=bindparam("at"), version=2),
                done,
            )
        by_play = {tid: pid for tid, pid, _o, _d, _a in rows}
        touched = sorted({by_play[d["tid"]] for d in done})
        closing: list[dict[str, Any]] = []
        for i in range(0, len(touched), 500):
            chunk = touched[i : i + 500]
            left = dict(
                s.execute(
                    select(PlayTask.play_id, func.count())
                    .where(PlayTask.play_id.in_(chunk), PlayTask.status == "open")
                    .group_by(PlayTask.play_id)
                ).all()
            )
            who = dict(
                s.execute(
                    select(PlayTask.play_id, func.max(PlayTask.done_by))
                    .where(PlayTask.play_id.in_(chunk), PlayTask.status == "done")
                    .group_by(PlayTask.play_id)
                ).all()
            )
            for pid in chunk:
                if not left.get(pid):
                    closing.append({"pid": pid, "outcome": "completed", "note": "", "by": who.get(pid) or "system"})
                elif rng.random() < 0.15:
                    note = "Customer back on track after the call"
                    closing.append({"pid": pid, "outcome": "resolved", "note": note, "by": who.get(pid) or "system"})
        if closing:
            t = Play.__table__
            on = as_of - timedelta(days=1)
            s.execute(
                update(t)
                .where(t.c.id == bindparam("pid"))
                .values(
                    status="closed",
                    outcome=bindparam("outcome"),
                    close_note=bindparam("note"),
                    closed_by=bindparam("by"),
                    closed_on=on,
                    closed_at=utcnow(),
                    version=2,
                ),
                closing,
            )
            cancelled = [{"pid": c["pid"]} for c in closing if c["outcome"] != "completed"]
            if cancelled:
                pt = PlayTask.__table__
                s.execute(
                    update(pt)
                    .where(pt.c.play_id == bindparam("pid"), pt.c.status == "open")
                    .values(status="cancelled", version=pt.c.version + 1),
                    cancelled,
                )
        log = [
            {
                "actor": d["by"],
                "entity": "task",
                "entity_id": str(d["tid"]),
                "account_id": account_of[d["tid"]],
                "field": "status",
                "old": "open",
                "new": "done",
                "context": "demo",
                "at": d["at"],
            }
            for d in done
        ] + [
            {
                "actor": c["by"],
                "entity": "play",
                "entity_id": str(c["pid"]),
                "account_id": play_account[c["pid"]],
                "field": "status",
                "old": "open",
                "new": f"closed: {c['outcome']}",
                "context": "demo",
                "at": utcnow(),
            }
            for c in closing
        ]
        if log:
            s.execute(insert(ChangeLog.__table__), log)
        bump_data_version(s, scope="notes")
        s.commit()
    return len(done)
