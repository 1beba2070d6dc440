"""Admin settings: validation, versions with the change log, stale versions, team and roles,
milestone definitions, and a health-model change reaching the next health snapshot."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from db.defaults import DEFAULT_HEALTH_MODEL, DEFAULT_MILESTONES, DEFAULT_RISK_RULES, DEFAULT_SETTINGS
from db.models import HealthSnapshot, MilestoneDefinition, SettingVersion, TeamMember
from db.session import session_scope
from db.settings_store import get_setting
from services.access import User
from services.plans import StaleVersion, ValidationFailed, in_session
from services.settings import save_milestone, save_team_member, update_setting
from tests.conftest import AS_OF
from tests.services import ADMIN, PRIYA, count, log_rows, member

TARGETS = {"SMB": 3, "Mid-Market": 5, "Enterprise": 7, "Strategic": 10}


def _setting(url: str, key: str):
    with session_scope(url) as s:
        return get_setting(s, key)


def _update(url: str, key: str, value, expected_version=None, who: str = ADMIN) -> int:
    return in_session(
        update_setting, member(url, who), url=url, key=key, value=value, expected_version=expected_version
    )


def _model(**changes) -> dict:
    m = copy.deepcopy(DEFAULT_HEALTH_MODEL)
    for k, v in changes.items():
        m[k] = v
    return m


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            _model(weights={"milestone": 30, "adoption": 25, "engagement": 25, "value": 10}),
            {("weights", "total", "the four weights must add up to 100")},
        ),
        (
            _model(weights={"milestone": -10, "adoption": 45, "engagement": 45, "value": 20}),
            {("weights", "milestone", "must be a number of points, 0 or more")},
        ),
        (
            _model(weights={"milestone": "30", "adoption": 25, "engagement": 25, "value": 20}),
            {("weights", "milestone", "must be a number of points, 0 or more")},
        ),
        (
            _model(bands={"excellent": 60, "on_track": 80, "at_risk": 40}),
            {("bands", "thresholds", "need 100 ≥ Excellent > On Track > At Risk > 0")},
        ),
        (
            _model(bands={"excellent": 110, "on_track": 60, "at_risk": 40}),
            {("bands", "thresholds", "need 100 ≥ Excellent > On Track > At Risk > 0")},
        ),
        (
            _model(bands={"excellent": 80, "on_track": 60}),
            {("bands", "thresholds", "need 100 ≥ Excellent > On Track > At Risk > 0")},
        ),
        (
            _model(adoption_full_share=1.5, adoption_window_days=0, late_credit=-0.1),
            {
                ("model", "adoption_full_share", "must be between 0.01 and 1"),
                ("model", "adoption_window_days", "must be a whole number of days from 1 to 90"),
                ("model", "late_credit", "must be between 0 and 1"),
            },
        ),
    ],
    ids=[
        "weights-sum-90",
        "negative-weight",
        "weight-not-a-number",
        "bands-out-of-order",
        "band-over-100",
        "band-missing",
        "model-parameters",
    ],
)
def test_health_model_validation(small_db: str, value: dict, expected: set) -> None:
    with pytest.raises(ValidationFailed) as exc:
        _update(small_db, "health_model", value)
    assert {(p.row, p.column, p.reason) for p in exc.value.problems} == expected
    assert _setting(small_db, "health_model").version == 1
    assert log_rows(small_db, context="settings") == []


def _rules(**changes) -> dict:
    r = copy.deepcopy(DEFAULT_RISK_RULES)
    for rule, params in changes.items():
        r[rule] = {**r[rule], **params}
    return r


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (_rules(no_activity={"days": 0}), {("no_activity", "days", "must be between 1 and 365")}),
        (_rules(low_adoption={"threshold": 1.5}), {("low_adoption", "threshold", "must be between 0 and 1")}),
        (_rules(health_drop={"points": "15"}), {("health_drop", "points", "must be between 1 and 100")}),
        (_rules(milestone_overdue={"days": True}), {("milestone_overdue", "days", "must be between 0 and 365")}),
        (_rules(no_champion={"enabled": "yes"}), {("no_champion", "enabled", "must be true or false")}),
        (
            _rules(ttfv_overdue={"grace_days": 400}, health_drop={"days": 91}),
            {
                ("ttfv_overdue", "grace_days", "must be between 0 and 365"),
                ("health_drop", "days", "must be between 1 and 90"),
            },
        ),
    ],
    ids=["no-activity-0", "threshold-over-1", "points-text", "days-bool", "enabled-text", "two-bad"],
)
def test_risk_rule_validation(small_db: str, value: dict, expected: set) -> None:
    with pytest.raises(ValidationFailed) as exc:
        _update(small_db, "risk_rules", value)
    assert {(p.row, p.column, p.reason) for p in exc.value.problems} == expected
    assert _setting(small_db, "risk_rules").value == DEFAULT_RISK_RULES


def test_unknown_setting_and_bad_week_start(small_db: str) -> None:
    with pytest.raises(KeyError):
        _update(small_db, "colour_scheme", {"dark": True})
    with pytest.raises(ValidationFailed) as exc:
        _update(small_db, "analysis", {"week_start": "friday"})
    assert [(p.column, p.value) for p in exc.value.problems] == [("week_start", "friday")]


def test_a_valid_change_is_a_new_version_with_its_change_log(small_db: str) -> None:
    url = small_db
    new = _model(weights={"milestone": 40, "adoption": 20, "engagement": 20, "value": 20}, late_credit=0.25)
    v = _update(url, "health_model", new, expected_version=1)
    assert v == 2
    cur = _setting(url, "health_model")
    assert (cur.version, cur.value) == (2, new)
    with session_scope(url) as s:
        versions = s.execute(
            select(SettingVersion.version, SettingVersion.changed_by)
            .where(SettingVersion.key == "health_model")
            .order_by(SettingVersion.version)
        ).all()
    assert [tuple(r) for r in versions] == [(1, "system"), (2, ADMIN)], "the old version is kept"

    log = {r.field: (r.old, r.new, r.actor, r.entity_id) for r in log_rows(url, entity="setting")}
    assert log == {
        "health_model.weights.milestone": ("30", "40", ADMIN, "health_model@v2"),
        "health_model.weights.adoption": ("25", "20", ADMIN, "health_model@v2"),
        "health_model.weights.engagement": ("25", "20", ADMIN, "health_model@v2"),
        "health_model.late_credit": ("0.5", "0.25", ADMIN, "health_model@v2"),
    }

    # Saving the same value again is not a new version.
    assert _update(url, "health_model", new, expected_version=2) == 2
    assert count(url, SettingVersion) == len(DEFAULT_SETTINGS) + 1  # the defaults, and this one
    assert len(log_rows(url, entity="setting")) == 4


def test_a_stale_expected_version_is_refused(small_db: str) -> None:
    url = small_db
    _update(url, "risk_rules", _rules(no_activity={"days": 21}), expected_version=1)
    # A second admin opened the form at version 1 and saves something else.
    with pytest.raises(StaleVersion) as exc:
        _update(url, "risk_rules", _rules(milestone_overdue={"days": 3}), expected_version=1)
    [c] = exc.value.conflicts
    assert (c.criterion, c.yours_based_on, c.now) == ("risk_rules", 1, 2)
    cur = _setting(url, "risk_rules")
    assert cur.version == 2
    assert cur.value["no_activity"]["days"] == 21
    assert cur.value["milestone_overdue"]["days"] == DEFAULT_RISK_RULES["milestone_overdue"]["days"]


def test_save_team_member_adds_and_changes_roles(small_db: str) -> None:
    url = small_db
    admin = member(url, ADMIN)
    m = in_session(save_team_member, admin, url=url, email="  Nia.New@Example.com ", name="Nia New", role="csm")
    assert (m.email, m.name, m.role, m.active) == ("nia.new@example.com", "Nia New", "csm", True)
    assert member(url, "nia.new@example.com").role == "csm"

    in_session(save_team_member, admin, url=url, email="nia.new@example.com", name="Nia New", role="leader")
    assert member(url, "nia.new@example.com").role == "leader"
    in_session(save_team_member, admin, url=url, email=PRIYA, name="Priya Raman-Shah", role="revops")
    assert (member(url, PRIYA).name, member(url, PRIYA).role) == ("Priya Raman-Shah", "revops")

    log = [(r.entity_id, r.field, r.old, r.new, r.actor) for r in log_rows(url, entity="team_member")]
    assert log == [
        ("nia.new@example.com", "member", None, "Nia New (csm)", ADMIN),
        ("nia.new@example.com", "role", "csm", "leader", ADMIN),
        (PRIYA, "name", "Priya Raman", "Priya Raman-Shah", ADMIN),
        (PRIYA, "role", "csm", "revops", ADMIN),
    ]

    members = count(url, TeamMember)
    with pytest.raises(ValidationFailed) as exc:
        in_session(save_team_member, admin, url=url, email="not-an-email", name=" ", role="owner")
    assert {p.column for p in exc.value.problems} == {"email", "name", "role"}
    assert count(url, TeamMember) == members


def test_save_milestone_validates_target_days(small_db: str) -> None:
    url = small_db
    admin = member(url, ADMIN)
    with pytest.raises(ValidationFailed) as exc:
        in_session(
            save_milestone,
            admin,
            url=url,
            key="kickoff_complete",
            name="",
            phase=6,
            order=0,
            target_days={"SMB": -1, "Mid-Market": 731, "Enterprise": "7", "Strategic": None},
            is_value=False,
        )
    assert {(p.column, p.reason) for p in exc.value.problems} == {
        ("name", "a name is required"),
        ("phase", "a phase from 1 to 5"),
        ("order", "a whole number from 1"),
        ("target SMB", "whole days from 0 to 730"),
        ("target Mid-Market", "whole days from 0 to 730"),
        ("target Enterprise", "whole days from 0 to 730"),
        ("target Strategic", "whole days from 0 to 730"),
    }
    with pytest.raises(ValidationFailed) as exc:
        in_session(
            save_milestone,
            admin,
            url=url,
            key="go_live",
            name="Go live",
            phase=2,
            order=7,
            target_days=TARGETS,
            is_value=False,
        )
    assert [(p.column, p.reason) for p in exc.value.problems] == [("key", "unknown milestone")]
    with session_scope(url) as s:
        kick = s.execute(select(MilestoneDefinition).where(MilestoneDefinition.key == "kickoff_complete")).scalar_one()
    assert json.loads(kick.target_days) == DEFAULT_MILESTONES[0]["target_days"]
    assert log_rows(url, entity="milestone_definition") == []


def test_save_milestone_changes_are_logged_and_unchanged_fields_are_not(small_db: str) -> None:
    url = small_db
    admin = member(url, ADMIN)
    d = DEFAULT_MILESTONES[1]
    # Saving exactly what is stored logs nothing.
    in_session(
        save_milestone,
        admin,
        url=url,
        key=d["key"],
        name=d["name"],
        phase=d["phase"],
        order=d["order"],
        target_days=d["target_days"],
        is_value=d["is_value"],
    )
    assert log_rows(url, entity="milestone_definition") == []

    new_targets = {**d["target_days"], "SMB": 10}
    in_session(
        save_milestone,
        admin,
        url=url,
        key=d["key"],
        name="Technical setup complete",
        phase=d["phase"],
        order=d["order"],
        target_days=new_targets,
        is_value=d["is_value"],
    )
    with session_scope(url) as s:
        row = s.execute(select(MilestoneDefinition).where(MilestoneDefinition.key == d["key"])).scalar_one()
    assert (row.name, json.loads(row.target_days)) == ("Technical setup complete", new_targets)
    log = {r.field: (r.old, r.new) for r in log_rows(url, entity="milestone_definition")}
    assert log == {
        "name": ("Technical setup done", "Technical setup complete"),
        "target_days": (json.dumps(d["target_days"]), json.dumps(new_targets)),
    }


def test_a_weight_change_applies_from_the_next_snapshot(small_db: str) -> None:
    from services.analytics import Facts, health_table
    from services.health import snapshot

    url = small_db
    week_ago = AS_OF - timedelta(days=7)
    n_old = snapshot(url=url, as_of=week_ago)
    snapshot(url=url, as_of=AS_OF)
    before = _snapshots(url, AS_OF)
    assert n_old > 0 and len(before) > 0
    assert {r.model_version for r in before.values()} == {1}

    new = _model(weights={"milestone": 40, "adoption": 20, "engagement": 20, "value": 20})
    assert _update(url, "health_model", new, expected_version=1) == 2
    n_new = snapshot(url=url, as_of=AS_OF)

    after = _snapshots(url, AS_OF)
    assert len(after) == n_new == len(before)
    assert {r.model_version for r in after.values()} == {2}
    # Older snapshots keep the version they were computed with.
    old_rows = _snapshots(url, week_ago)
    assert len(old_rows) == n_old
    assert {r.model_version for r in old_rows.values()} == {1}
    # The new weights were used: each component's points scale with its weight (both rounded to 0.1).
    for aid, b in before.items():
        a = after[aid]
        assert a.milestone == pytest.approx(b.milestone * 40 / 30, abs=0.1)
        assert a.adoption == pytest.approx(b.adoption * 20 / 25, abs=0.1)
        assert a.engagement == pytest.approx(b.engagement * 20 / 25, abs=0.1)
        assert a.value == pytest.approx(b.value, abs=0.1)
        assert a.total == pytest.approx(a.milestone + a.adoption + a.engagement + a.value, abs=0.2)
    assert any(abs(after[a].total - before[a].total) > 1 for a in before), "some score moved"
    # And the live health table (what the pages show) agrees with the stored snapshot.
    h = health_table(Facts(url), as_of=AS_OF).set_index("account_id")
    for aid, a in after.items():
        assert h.at[aid, "total"] == pytest.approx(a.total)
        assert h.at[aid, "model_version"] == 2


def _snapshots(url: str, day) -> dict[int, HealthSnapshot]:
    with session_scope(url) as s:
        return {r.account_id: r for r in s.execute(select(HealthSnapshot).where(HealthSnapshot.date == day)).scalars()}


def test_a_non_admin_user_object_cannot_bypass_with_a_made_up_identity(small_db: str) -> None:
    """The role on the User decides; a forged member id does not make a leader an admin."""
    from services.access import PermissionDenied

    fake = User(email="dana.leader@example.com", name="Dana", role="leader", member_id=1)
    with pytest.raises(PermissionDenied):
        in_session(update_setting, fake, url=small_db, key="health_model", value=_model(), expected_version=1)
    assert _setting(small_db, "health_model").version == 1
