"""Playbooks acted on (issue 13): a play opens when its trigger fires (once per account,
playbook and episode; never two open), creates its tasks with owners and due dates, closes
when its tasks are done, by a person with an outcome and a note, or by itself when the
trigger has cleared; every role against every action, in the service layer."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from db.defaults import DEFAULT_PLAYBOOKS
from db.models import Account, Play, PlayTask, RiskTrigger, TeamMember
from db.session import session_scope
from services.access import PermissionDenied, demo_admin
from services.health import snapshot
from services.plans import StaleVersion, ValidationFailed
from services.plays import (
    account_plays,
    bucket,
    close_play,
    complete_task,
    overdue_by_owner,
    reassign_task,
    snooze_task,
    sync_plays,
    tasks,
    validate_playbooks,
)
from services.settings import update_setting
from tests.conftest import AS_OF
from tests.services import ADMIN, ALEX, LEADER, PRIYA, REVOPS, clear_plays, log_rows, member, owned_accounts


@pytest.fixture(autouse=True)
def _no_plays_yet(small_db: str) -> None:
    """The demo portfolio comes with plays; these tests start from none."""
    clear_plays(small_db)


def _plays(url: str, **where) -> list[Play]:
    with session_scope(url) as s:
        q = select(Play)
        for k, v in where.items():
            q = q.where(getattr(Play, k) == v)
        return list(s.execute(q.order_by(Play.id)).scalars())


def _tasks_of(url: str, play_id: int) -> list[PlayTask]:
    with session_scope(url) as s:
        return list(s.execute(select(PlayTask).where(PlayTask.play_id == play_id).order_by(PlayTask.step)).scalars())


def _fired(rows: list[tuple[int, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"account_id": [a for a, _ in rows], "rule": [r for _, r in rows], "reason": [f"{r} fired" for _, r in rows]}
    )


def _accounts(url: str) -> pd.DataFrame:
    with session_scope(url) as s:
        rows = s.execute(select(Account.id, Account.segment, Account.csm_id, Account.contract_start)).all()
    return pd.DataFrame(rows, columns=["account_id", "segment", "csm_id", "contract_start"])


def _sync(url: str, as_of, fired: list[tuple[int, str]], live: set[int] | None = None):
    acc = _accounts(url)
    with session_scope(url) as s:
        # The trigger log is what sets each episode: open one per fired (account, rule).
        have = {
            (t.account_id, t.rule)
            for t in s.execute(select(RiskTrigger).where(RiskTrigger.resolved.is_(None))).scalars()
        }
        for t in s.execute(select(RiskTrigger).where(RiskTrigger.resolved.is_(None))).scalars():
            if (t.account_id, t.rule) not in set(fired):
                t.resolved = as_of
        for a, r in fired:
            if (a, r) not in have:
                s.add(RiskTrigger(account_id=a, rule=r, opened=as_of))
        run = sync_plays(s, as_of=as_of, fired=_fired(fired), accounts=acc, live=live or set(acc["account_id"]))
        s.commit()
        return len(run.opened), len(run.auto_resolved), run.tasks_created


def _only_rule_playbooks(url: str) -> None:
    """The default playbooks without the kickoff play (contract starts would open plays of their own)."""
    pbs = {k: v for k, v in DEFAULT_PLAYBOOKS.items() if k != "kickoff"}
    with session_scope(url) as s:
        update_setting(s, demo_admin(), key="playbooks", value=pbs)


def test_the_snapshot_opens_a_play_per_fired_trigger_with_its_tasks(small_db: str) -> None:
    snapshot(url=small_db, as_of=AS_OF)
    with session_scope(small_db) as s:
        open_triggers = s.execute(
            select(RiskTrigger.account_id, RiskTrigger.rule).where(RiskTrigger.resolved.is_(None))
        ).all()
        starts = dict(s.execute(select(Account.id, Account.contract_start)).all())
    plays = _plays(small_db, status="open")
    by_key = {(p.account_id, p.rule) for p in plays}
    assert open_triggers and {(a, r) for a, r in open_triggers} <= by_key
    kickoff = {p.account_id for p in plays if p.playbook == "kickoff"}
    assert kickoff == {a for a, d in starts.items() if 0 <= (AS_OF - d).days < 14}
    p = next(p for p in plays if p.playbook != "kickoff")
    steps = DEFAULT_PLAYBOOKS[p.playbook]["steps"]
    got = _tasks_of(small_db, p.id)
    assert [t.title for t in got] == [st["title"] for st in steps]
    assert [t.due for t in got] == [AS_OF + timedelta(days=st["due_days"]) for st in steps]
    assert all(t.status == "open" for t in got)
    # Running it again the same day opens nothing more.
    n = len(_plays(small_db))
    snapshot(url=small_db, as_of=AS_OF)
    assert len(_plays(small_db)) == n
    assert [r.new for r in log_rows(small_db, entity="play", entity_id=str(p.id))] == ["open"]


def test_owners_follow_the_step_csm_leader_named_round_robin_least_loaded(small_db: str) -> None:
    accts = owned_accounts(small_db, ALEX)[:2] + owned_accounts(small_db, PRIYA)[:2]
    pbs = {
        "no_activity": {
            "name": "Owners",
            "enabled": True,
            "trigger": {"rule": "no_activity"},
            "auto_resolve_days": 7,
            "steps": [
                {"title": "csm", "deliver": "enhanced support", "owner": "csm", "due_days": 1},
                {"title": "leader", "deliver": "executive sponsorship", "owner": "leader", "due_days": 2},
                {"title": "named", "deliver": "extra training", "owner": f"member:{PRIYA}", "due_days": 3},
                {"title": "rr", "deliver": "setup workshop", "owner": "round robin", "due_days": 4},
                {"title": "ll", "deliver": "activation email", "owner": "least loaded", "due_days": 5},
            ],
        }
    }
    with session_scope(small_db) as s:
        update_setting(s, demo_admin(), key="playbooks", value=pbs)
        ids = {m.email: m.id for m in s.execute(select(TeamMember)).scalars()}
        csm_of = dict(s.execute(select(Account.id, Account.csm_id)).all())
        seg_of = dict(s.execute(select(Account.id, Account.segment)).all())
        seg_csms = {
            seg: sorted({c for a, c in csm_of.items() if seg_of[a] == seg and c is not None})
            for seg in set(seg_of.values())
        }
    assert _sync(small_db, AS_OF, [(a, "no_activity") for a in accts])[0] == 4
    rr_given: dict[str, list[int]] = {}
    for p in _plays(small_db):
        t = {x.title: x.owner_id for x in _tasks_of(small_db, p.id)}
        assert t["csm"] == csm_of[p.account_id]
        assert t["leader"] == ids[LEADER]
        assert t["named"] == ids[PRIYA]
        assert t["rr"] in seg_csms[seg_of[p.account_id]]
        assert t["ll"] in seg_csms[seg_of[p.account_id]]
        rr_given.setdefault(seg_of[p.account_id], []).append(t["rr"])
    # Round robin takes turns within a segment.
    for seg, got in rr_given.items():
        cands = seg_csms[seg]
        assert len(set(got)) == min(len(got), len(cands)), (seg, got, cands)


def test_one_open_play_per_account_and_playbook_and_once_per_episode(small_db: str) -> None:
    _only_rule_playbooks(small_db)
    a = owned_accounts(small_db, ALEX)[0]
    assert _sync(small_db, AS_OF, [(a, "no_activity")])[0] == 1
    # Still firing next day: the open play stays the only one.
    assert _sync(small_db, AS_OF + timedelta(days=1), [(a, "no_activity")])[0] == 0
    (p,) = _plays(small_db)
    close_play_as(small_db, ALEX, p.id, "not needed", "Customer on holiday, not a risk")
    # Closed by a person while the trigger keeps firing: not reopened for the same episode.
    assert _sync(small_db, AS_OF + timedelta(days=2), [(a, "no_activity")])[0] == 0
    # The trigger clears and fires again later: a new episode opens a new play.
    _sync(small_db, AS_OF + timedelta(days=3), [])
    assert _sync(small_db, AS_OF + timedelta(days=4), [(a, "no_activity")])[0] == 1
    assert [p.status for p in _plays(small_db)] == ["closed", "open"]
    # The database itself refuses a second open play (concurrent runs).
    with pytest.raises(IntegrityError), session_scope(small_db) as s:
        s.add(
            Play(
                account_id=a,
                playbook="no_activity",
                playbook_name="dup",
                episode=AS_OF,
                opened_on=AS_OF,
            )
        )
        s.commit()


def test_auto_resolves_when_the_trigger_has_cleared_for_n_days(small_db: str) -> None:
    _only_rule_playbooks(small_db)
    a = owned_accounts(small_db, ALEX)[0]
    _sync(small_db, AS_OF, [(a, "no_activity")])
    days = DEFAULT_PLAYBOOKS["no_activity"]["auto_resolve_days"]
    _sync(small_db, AS_OF + timedelta(days=1), [])  # cleared from day 1
    assert _sync(small_db, AS_OF + timedelta(days=days), [])[1] == 0
    assert _sync(small_db, AS_OF + timedelta(days=days + 1), [])[1] == 1
    (p,) = _plays(small_db)
    assert (p.status, p.outcome, p.closed_by) == ("closed", "auto-resolved", "system")
    assert {t.status for t in _tasks_of(small_db, p.id)} == {"cancelled"}
    # Firing again before N days keeps the play open and forgets that it had cleared.
    b = owned_accounts(small_db, ALEX)[1]
    _sync(small_db, AS_OF, [(b, "low_adoption")])
    _sync(small_db, AS_OF + timedelta(days=1), [])
    _sync(small_db, AS_OF + timedelta(days=2), [(b, "low_adoption")])
    (q,) = _plays(small_db, account_id=b)
    assert (q.status, q.cleared_on) == ("open", None)


def close_play_as(url: str, email: str, play_id: int, outcome: str, note: str):
    with session_scope(url) as s:
        v = s.get(Play, play_id).version
        return close_play(
            s, member(url, email), play_id=play_id, outcome=outcome, note=note, on=AS_OF, expected_version=v
        )


def test_completing_every_task_completes_the_play(small_db: str) -> None:
    _only_rule_playbooks(small_db)
    a = owned_accounts(small_db, ALEX)[0]
    _sync(small_db, AS_OF, [(a, "no_activity")])
    (p,) = _plays(small_db)
    ts = _tasks_of(small_db, p.id)
    alex = member(small_db, ALEX)
    with session_scope(small_db) as s:
        complete_task(s, alex, task_id=ts[0].id, on=AS_OF, expected_version=ts[0].version)
    assert _plays(small_db)[0].status == "open"
    with session_scope(small_db) as s:
        complete_task(s, alex, task_id=ts[1].id, on=AS_OF)
        with pytest.raises(ValidationFailed, match="already done"):
            complete_task(s, alex, task_id=ts[1].id, on=AS_OF)
    (p,) = _plays(small_db)
    assert (p.status, p.outcome, p.closed_by) == ("closed", "completed", ALEX)
    assert [(r.field, r.new) for r in log_rows(small_db, entity="task", entity_id=str(ts[0].id))] == [
        ("status", "done")
    ]
    assert account_plays_row(small_db, a)[["tasks", "tasks_done", "outcome"]].tolist() == [2, 2, "completed"]


def account_plays_row(url: str, account_id: int) -> pd.Series:
    with session_scope(url) as s:
        return account_plays(s, account_id=account_id).iloc[0]


@pytest.mark.parametrize(
    ("who", "own", "allowed"),
    [
        (ALEX, True, True),
        (ALEX, False, False),
        (LEADER, False, True),
        (ADMIN, False, True),
        (REVOPS, False, False),
    ],
)
def test_who_may_act_on_plays_and_tasks(small_db: str, who: str, own: bool, allowed: bool) -> None:
    _only_rule_playbooks(small_db)
    a = owned_accounts(small_db, ALEX if own or who != ALEX else PRIYA)[0]
    _sync(small_db, AS_OF, [(a, "no_activity")])
    (p,) = _plays(small_db)
    t1, t2 = _tasks_of(small_db, p.id)
    user = member(small_db, who)
    with session_scope(small_db) as s:
        priya = s.execute(select(TeamMember.id).where(TeamMember.email == PRIYA)).scalar_one()
    actions = {
        "complete": lambda s: complete_task(s, user, task_id=t1.id, on=AS_OF),
        "snooze": lambda s: snooze_task(s, user, task_id=t2.id, until=AS_OF + timedelta(days=3), today=AS_OF),
        "reassign": lambda s: reassign_task(s, user, task_id=t2.id, owner_id=priya),
        "close": lambda s: close_play(s, user, play_id=p.id, outcome="resolved", note="Back in use", on=AS_OF),
    }
    got = {}
    for name, act in actions.items():
        with session_scope(small_db) as s:
            try:
                act(s)
                got[name] = "ok"
            except PermissionDenied:
                got[name] = "denied"
    assert got == dict.fromkeys(actions, "ok" if allowed else "denied")
    changed = log_rows(small_db, entity="task") + log_rows(small_db, entity="play", field="close_note")
    assert bool(changed) == allowed


def test_bad_actions_say_what_is_wrong(small_db: str) -> None:
    _only_rule_playbooks(small_db)
    a = owned_accounts(small_db, ALEX)[0]
    _sync(small_db, AS_OF, [(a, "no_activity")])
    (p,) = _plays(small_db)
    t = _tasks_of(small_db, p.id)[0]
    alex = member(small_db, ALEX)
    with session_scope(small_db) as s:
        revops = s.execute(select(TeamMember.id).where(TeamMember.email == REVOPS)).scalar_one()
        with pytest.raises(ValidationFailed, match="must be after"):
            snooze_task(s, alex, task_id=t.id, until=AS_OF, today=AS_OF)
        with pytest.raises(ValidationFailed, match="revops"):
            reassign_task(s, alex, task_id=t.id, owner_id=revops)
        with pytest.raises(ValidationFailed, match="not an active member"):
            reassign_task(s, alex, task_id=t.id, owner_id=10_000)
        with pytest.raises(ValidationFailed, match="why it is closed"):
            close_play(s, alex, play_id=p.id, outcome="resolved", note="  ", on=AS_OF)
        with pytest.raises(ValidationFailed, match="choose one of"):
            close_play(s, alex, play_id=p.id, outcome="auto-resolved", note="x", on=AS_OF)
        with pytest.raises(StaleVersion):
            complete_task(s, alex, task_id=t.id, on=AS_OF, expected_version=t.version + 1)
    assert _tasks_of(small_db, p.id)[0].status == "open"


def test_my_work_buckets_and_overdue_counts(small_db: str) -> None:
    _only_rule_playbooks(small_db)
    a = owned_accounts(small_db, ALEX)[0]
    _sync(small_db, AS_OF, [(a, "no_activity")])
    (p,) = _plays(small_db)
    t1, t2 = _tasks_of(small_db, p.id)  # due in 1 and 3 days
    alex = member(small_db, ALEX)
    later = AS_OF + timedelta(days=2)
    with session_scope(small_db) as s:
        mine = tasks(s, today=later, owner_ids=[alex.member_id])
        assert mine["task_id"].tolist() == [t1.id, t2.id]
        assert mine["bucket"].tolist() == ["overdue", "this week"]
        assert overdue_by_owner(s, today=later)[["owner", "overdue"]].values.tolist() == [["Alex Moreno", 1]]
        snooze_task(s, alex, task_id=t1.id, until=AS_OF + timedelta(days=5), today=later)
        assert tasks(s, today=later, owner_ids=[alex.member_id])["bucket"].tolist() == ["snoozed", "this week"]
        assert overdue_by_owner(s, today=later).empty
    assert bucket(AS_OF, None, "open", AS_OF) == "today"
    assert bucket(AS_OF + timedelta(days=9), None, "open", AS_OF) == "later"


def test_playbooks_setting_is_validated_and_versioned(small_db: str) -> None:
    assert validate_playbooks(DEFAULT_PLAYBOOKS, members=None) == []
    bad = {
        "x": {
            "name": "",
            "trigger": {"rule": "sunspots"},
            "auto_resolve_days": -1,
            "steps": [{"title": "t", "deliver": "pizza", "owner": "member:nobody@example.com", "due_days": 1.5}],
        }
    }
    fields = {(p.row, p.column) for p in validate_playbooks(bad, members={ALEX})}
    assert fields == {
        ("playbook x", "name"),
        ("playbook x", "trigger"),
        ("playbook x", "auto_resolve_days"),
        ("playbook x step 1", "deliver"),
        ("playbook x step 1", "owner"),
        ("playbook x step 1", "due_days"),
    }
    with session_scope(small_db) as s, pytest.raises(ValidationFailed):
        update_setting(s, demo_admin(), key="playbooks", value=bad)
    changed = {**DEFAULT_PLAYBOOKS, "no_activity": {**DEFAULT_PLAYBOOKS["no_activity"], "auto_resolve_days": 3}}
    with session_scope(small_db) as s:
        assert update_setting(s, demo_admin(), key="playbooks", value=changed) >= 1
    assert [r.field for r in log_rows(small_db, entity="setting")][-1] == "playbooks.no_activity.auto_resolve_days"
    with session_scope(small_db) as s:
        n = s.execute(select(func.count()).select_from(Play)).scalar_one()
    assert n == 0
