"""Who may do what (PRODUCT.md §6), checked in the service layer itself: every role against
every write, allowed and refused, called directly (not through the UI)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from db.demo import TEAM
from db.models import Account, ImportRun, Intervention, SettingVersion, SuccessPlan, TeamMember
from db.session import session_scope
from services.access import (
    NotInTeam,
    PermissionDenied,
    User,
    can_edit_account,
    demo_admin,
    require_admin,
    user_for_email,
)
from services.data import run_import
from services.plans import (
    ItemChange,
    ValidationFailed,
    add_intervention,
    apply_template,
    in_session,
    save_checklist,
    save_plan,
)
from services.settings import save_milestone, save_team_member, update_setting
from tests.conftest import AS_OF
from tests.services import ADMIN, ALEX, LEADER, PRIYA, REVOPS, count, item, items, log_rows, member, owned_accounts

NEW_TEAM_CSV = b"email,name,role\nnew.csm@example.com,New Person,csm\n"


def _user(url: str, who: str) -> User:
    return demo_admin() if who == "demo admin" else member(url, who)


def _try_every_account_write(url: str, user: User, account_id: int) -> dict[str, str]:
    """Attempt each account write once; returns 'ok' or 'denied' per action."""
    first = items(url, account_id)[0]
    with session_scope(url) as s:
        plan = s.execute(select(SuccessPlan).where(SuccessPlan.account_id == account_id)).scalar_one()
    attempts = {
        "save_checklist": lambda: in_session(
            save_checklist,
            user,
            url=url,
            account_id=account_id,
            changes=[ItemChange(first.id, first.version, {"note": "called after the kickoff"})],
        ),
        "save_plan": lambda: in_session(
            save_plan,
            user,
            url=url,
            account_id=account_id,
            version=plan.version,
            values={"goals": "Weekly exec dashboard"},
        ),
        "add_intervention": lambda: in_session(
            add_intervention,
            user,
            url=url,
            account_id=account_id,
            type="extra training",
            on=AS_OF,
            note="two sessions booked",
        ),
        "apply_template": lambda: in_session(apply_template, user, url=url, account_id=account_id),
    }
    out = {}
    for action, call in attempts.items():
        try:
            call()
            out[action] = "ok"
        except PermissionDenied:
            out[action] = "denied"
    return out


@pytest.mark.parametrize(
    ("who", "owner", "allowed"),
    [
        (ADMIN, ALEX, True),
        ("demo admin", ALEX, True),
        (ALEX, ALEX, True),  # the account's own CSM
        (PRIYA, ALEX, False),  # another CSM
        (LEADER, ALEX, False),
        (REVOPS, ALEX, False),
    ],
    ids=["admin", "demo-admin", "csm-owner", "csm-not-owner", "leader", "revops"],
)
def test_account_writes_by_role(small_db: str, who: str, owner: str, allowed: bool) -> None:
    url = small_db
    account_id = owned_accounts(url, owner)[0]
    user = _user(url, who)
    before_items = {it.id: (it.note, it.version) for it in items(url, account_id)}
    before_ivs = count(url, Intervention)

    result = _try_every_account_write(url, user, account_id)

    expected = "ok" if allowed else "denied"
    assert result == dict.fromkeys(("save_checklist", "save_plan", "add_intervention", "apply_template"), expected)
    after = items(url, account_id)
    first = after[0]
    with session_scope(url) as s:
        plan = s.execute(select(SuccessPlan).where(SuccessPlan.account_id == account_id)).scalar_one()
    if allowed:
        assert first.note == "called after the kickoff"
        assert first.version == before_items[first.id][1] + 1
        assert plan.goals == "Weekly exec dashboard"
        assert count(url, Intervention) == before_ivs + 1
        actors = {r.actor for r in log_rows(url, account_id=account_id)}
        assert actors == {user.email}
        # The account already has a checklist: the template adds nothing.
        assert len(after) == len(before_items)
    else:
        assert {it.id: (it.note, it.version) for it in after} == before_items
        assert plan.goals != "Weekly exec dashboard"
        assert count(url, Intervention) == before_ivs
        assert log_rows(url, account_id=account_id) == []


def test_refusal_says_why(small_db: str) -> None:
    url = small_db
    account_id = owned_accounts(url, ALEX)[0]
    with session_scope(url) as s:
        ext = s.get(Account, account_id).external_id
    with pytest.raises(PermissionDenied, match=rf"priya\.csm@example\.com is not the CSM of {ext}"):
        in_session(apply_template, member(url, PRIYA), url=url, account_id=account_id)
    with pytest.raises(PermissionDenied, match="the leader role can read accounts but not change them"):
        in_session(apply_template, member(url, LEADER), url=url, account_id=account_id)


def test_csm_cannot_touch_another_accounts_items_through_their_own_account(small_db: str) -> None:
    """The account id is the permission boundary: items of other accounts passed along with
    one's own account id are refused, for edits and for removals, and nothing is written."""
    url = small_db
    alex = member(url, ALEX)
    mine = owned_accounts(url, ALEX)[0]
    theirs = items(url, owned_accounts(url, PRIYA)[0])
    edited, removed = theirs[0], theirs[1]

    with pytest.raises(ValidationFailed) as exc:
        in_session(
            save_checklist,
            alex,
            url=url,
            account_id=mine,
            changes=[ItemChange(edited.id, edited.version, {"status": "blocked"})],
        )
    assert [(p.column, p.row) for p in exc.value.problems] == [("item", edited.id)]

    with pytest.raises(ValidationFailed) as exc:
        in_session(save_checklist, alex, url=url, account_id=mine, changes=[], removed=[(removed.id, removed.version)])
    assert [(p.column, p.row) for p in exc.value.problems] == [("item", removed.id)]

    assert item(url, edited.id).status == edited.status
    assert item(url, edited.id).version == edited.version
    assert item(url, removed.id) is not None
    assert log_rows(url, entity="checklist_item") == []


def test_can_edit_account_rules(demo_db: str) -> None:
    alex = member(demo_db, ALEX)
    with session_scope(demo_db) as s:
        own = s.execute(select(Account).where(Account.csm_id == alex.member_id)).scalars().first()
        other = s.execute(select(Account).where(Account.csm_id != alex.member_id)).scalars().first()
    assert can_edit_account(alex, own)
    assert not can_edit_account(alex, other)
    for email in (LEADER, REVOPS):
        assert not can_edit_account(member(demo_db, email), own)
    assert can_edit_account(member(demo_db, ADMIN), other)
    assert can_edit_account(demo_admin(), other)
    # A CSM identity that is not a team member (no member id) owns nothing.
    assert not can_edit_account(User(email=ALEX, name="Alex", role="csm", member_id=None), own)


@pytest.mark.parametrize("who", [LEADER, ALEX, REVOPS])
def test_only_admins_import(small_db: str, who: str) -> None:
    url = small_db
    user = member(url, who)
    members, runs = count(url, TeamMember), count(url, ImportRun)
    with pytest.raises(PermissionDenied, match="only admins can import data"):
        run_import(user, [("team.csv", NEW_TEAM_CSV)], dry_run=False, url=url)
    assert count(url, TeamMember) == members
    assert count(url, ImportRun) == runs

    # Everyone may validate: the dry run reports and writes nothing.
    report = run_import(user, [("team.csv", NEW_TEAM_CSV)], dry_run=True, url=url)
    assert report.ok and not report.written
    assert report.files["team.csv"].rows == 1
    assert count(url, TeamMember) == members


@pytest.mark.parametrize("who", [ADMIN, "demo admin"])
def test_admins_import(small_db: str, who: str) -> None:
    url = small_db
    members = count(url, TeamMember)
    report = run_import(_user(url, who), [("team.csv", NEW_TEAM_CSV)], dry_run=False, url=url)
    assert report.ok and report.written
    assert count(url, TeamMember) == members + 1
    with session_scope(url) as s:
        run = s.execute(select(ImportRun).order_by(ImportRun.id.desc())).scalars().first()
    assert run.status == "imported"
    assert run.actor == _user(url, who).email


def _try_every_settings_write(url: str, user: User) -> dict[str, str]:
    from db.settings_store import get_setting

    with session_scope(url) as s:
        rules = get_setting(s, "risk_rules")
    new_rules = {**rules.value, "no_activity": {"enabled": True, "days": 21}}
    targets = {"SMB": 4, "Mid-Market": 5, "Enterprise": 7, "Strategic": 10}
    attempts = {
        "update_setting": lambda: in_session(
            update_setting, user, url=url, key="risk_rules", value=new_rules, expected_version=rules.version
        ),
        "save_team_member": lambda: in_session(
            save_team_member, user, url=url, email="new.csm@example.com", name="New Person", role="csm"
        ),
        "save_milestone": lambda: in_session(
            save_milestone,
            user,
            url=url,
            key="kickoff_complete",
            name="Kickoff complete",
            phase=1,
            order=1,
            target_days=targets,
            is_value=False,
        ),
    }
    out = {}
    for action, call in attempts.items():
        try:
            call()
            out[action] = "ok"
        except PermissionDenied as exc:
            assert "only admins can" in str(exc)
            out[action] = "denied"
    return out


@pytest.mark.parametrize(
    ("who", "allowed"),
    [(ADMIN, True), (LEADER, False), (ALEX, False), (REVOPS, False)],
    ids=["admin", "leader", "csm", "revops"],
)
def test_settings_writes_by_role(small_db: str, who: str, allowed: bool) -> None:
    url = small_db
    versions = count(url, SettingVersion)
    members = count(url, TeamMember)
    result = _try_every_settings_write(url, member(url, who))
    assert result == dict.fromkeys(
        ("update_setting", "save_team_member", "save_milestone"), "ok" if allowed else "denied"
    )
    settings_log = log_rows(url, context="settings")
    if allowed:
        assert count(url, SettingVersion) == versions + 1
        assert count(url, TeamMember) == members + 1
        assert {r.entity for r in settings_log} == {"setting", "team_member", "milestone_definition"}
    else:
        assert count(url, SettingVersion) == versions
        assert count(url, TeamMember) == members
        assert settings_log == []


def test_require_admin_names_the_role() -> None:
    require_admin(demo_admin(), "change settings")
    with pytest.raises(PermissionDenied, match="only admins can change settings; you are signed in as revops"):
        require_admin(User(email=REVOPS, name="Riley", role="revops", member_id=8), "change settings")


@pytest.mark.parametrize(("email", "name", "role"), TEAM)
def test_user_for_email_maps_every_team_member(demo_db: str, email: str, name: str, role: str) -> None:
    with session_scope(demo_db) as s:
        u = user_for_email(s, email, mode="header")
        m = s.execute(select(TeamMember).where(TeamMember.email == email)).scalar_one()
    assert (u.email, u.name, u.role, u.member_id, u.mode) == (email, name, role, m.id, "header")
    assert u.is_admin == (role == "admin")


def test_user_for_email_ignores_case_and_spaces(demo_db: str) -> None:
    with session_scope(demo_db) as s:
        u = user_for_email(s, "  Alex.CSM@Example.COM ", mode="oidc")
    assert (u.email, u.role, u.mode) == (ALEX, "csm", "oidc")


@pytest.mark.parametrize("email", ["stranger@example.com", "", "alex.csm@example.org", "alex.csm"])
def test_user_for_email_refuses_unknown(demo_db: str, email: str) -> None:
    with session_scope(demo_db) as s, pytest.raises(NotInTeam):
        user_for_email(s, email, mode="header")


def test_user_for_email_refuses_inactive_member(small_db: str) -> None:
    url = small_db
    assert member(url, PRIYA).role == "csm"
    in_session(save_team_member, member(url, ADMIN), url=url, email=PRIYA, name="Priya Raman", role="csm", active=False)
    with pytest.raises(NotInTeam):
        member(url, PRIYA)
    # Reactivated, she is back with her role.
    in_session(save_team_member, member(url, ADMIN), url=url, email=PRIYA, name="Priya Raman", role="csm", active=True)
    assert member(url, PRIYA).role == "csm"


def test_account_view_marks_editability(demo_db: str) -> None:
    """What the pages use to show an account read-only."""
    from services.accounts import account_view
    from services.analytics import Facts

    src = Facts(demo_db)
    own = owned_accounts(demo_db, ALEX)[0]
    other = owned_accounts(demo_db, PRIYA)[0]
    alex = member(demo_db, ALEX)
    assert account_view(src, alex, account_id=own, as_of=AS_OF).can_edit is True
    assert account_view(src, alex, account_id=other, as_of=AS_OF).can_edit is False
    assert account_view(src, member(demo_db, LEADER), account_id=own, as_of=AS_OF).can_edit is False
    assert account_view(src, member(demo_db, ADMIN), account_id=other, as_of=AS_OF).can_edit is True


def test_unknown_account_is_not_a_permission_question(small_db: str) -> None:
    with pytest.raises(KeyError, match="no account with id 999999"):
        in_session(
            add_intervention,
            member(small_db, ADMIN),
            url=small_db,
            account_id=999_999,
            type="other",
            on=date(2026, 6, 1),
        )
    assert count(small_db, Intervention) == 0
