"""Settings: shows the team, milestones and the health model's version, one tab at a time
(only the chosen tab is drawn; the choice is the `settings_tab` query parameter); an admin's
change through the form is saved as a new version (and only what was changed changes);
invalid values are refused; other roles read only."""

from __future__ import annotations

import copy
import json

from db.defaults import DEFAULT_HEALTH_MODEL, DEFAULT_MILESTONES
from db.demo import TEAM
from db.models import SEGMENTS
from db.session import session_scope
from db.settings_store import get_setting
from tests.conftest import AS_OF
from tests.pages import button, open_page, table_with, texts, unescape
from tests.services import log_rows, member

QUERY = {"as_of": AS_OF.isoformat()}
HEALTH = {**QUERY, "settings_tab": "Health model"}
MILESTONES = {**QUERY, "settings_tab": "Milestones"}
RULES = {**QUERY, "settings_tab": "Risk rules"}


def _tab(at, label: str):
    """Choose a tab as the user does: the tab's state and the URL it is bound to; run."""
    at.session_state["settings_tab"] = label
    at.query_params["settings_tab"] = label
    return at.run()


def _number(at, label: str):
    return next(n for n in at.number_input if n.label == label)


def _health(url: str):
    with session_scope(url) as s:
        return get_setting(s, "health_model")


def test_shows_team_milestones_and_versions(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query=QUERY)
    assert texts(at.title) == ["Settings"]
    assert not [i for i in at.main.info if "Read-only" in i.value], "the admin is not read-only"
    team = table_with(at, "email", "name", "role", "active")
    assert sorted(zip(team["email"], team["name"], team["role"], strict=True)) == sorted(TEAM)
    # Only the chosen tab (Team, the first) is drawn: no milestone table, no health form.
    assert [list(d.value.columns) for d in at.dataframe] == [
        ["email", "name", "role", "active", "digest", "digest_scope"]
    ]
    assert not at.number_input and "Save health model" not in [b.label for b in at.form_submit_button]
    _tab(at, "Milestones")
    assert not [d for d in at.dataframe if "email" in d.value.columns], "the Team tab is not drawn any more"
    ms = table_with(at, "key", "name", "phase", "order", *SEGMENTS)
    assert ms["key"].tolist() == [m["key"] for m in DEFAULT_MILESTONES]
    for seg in SEGMENTS:
        assert ms[seg].tolist() == [m["target_days"][seg] for m in DEFAULT_MILESTONES]
    _tab(at, "Health model")
    captions = texts(at.caption)
    assert any(c.startswith("Version 1.") and "health snapshot" in c for c in captions)
    w = DEFAULT_HEALTH_MODEL["weights"]
    assert [_number(at, f"{k.capitalize()} weight").value for k in w] == list(w.values())
    assert "Weights add up to 100 (must be 100)." in captions
    _tab(at, "Risk rules")
    assert any(c.startswith("Version 1.") and "Rules" in c for c in texts(at.caption))


def test_admin_changes_the_weights_through_the_form(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query=HEALTH)
    _number(at, "Milestone weight").set_value(40)
    _number(at, "Adoption weight").set_value(20)
    _number(at, "Engagement weight").set_value(20)
    button(at, "Save health model").click().run()
    assert not at.exception
    assert not at.error, texts(at.error)

    cur = _health(small_db)
    assert cur.version == 2
    expected = copy.deepcopy(DEFAULT_HEALTH_MODEL)
    expected["weights"] = {"milestone": 40, "adoption": 20, "engagement": 20, "value": 20}
    # Only what the admin changed: every other parameter keeps its stored value.
    assert cur.value == json.loads(json.dumps(expected))
    assert {r.field for r in log_rows(small_db, entity="setting")} == {
        "health_model.weights.milestone",
        "health_model.weights.adoption",
        "health_model.weights.engagement",
    }
    assert any(c.startswith("Version 2.") for c in texts(at.caption))
    _tab(at, "Change log")
    log = table_with(at, "at", "who", "what", "field", "old", "new")
    assert {(r.who, r.field, r.old, r.new) for r in log.itertuples()} >= {
        ("demo-admin@localhost", "health_model.weights.milestone", "30", "40")
    }


def test_admin_changes_late_credit_and_engagement_days(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query=HEALTH)
    assert _number(at, "Active days for full engagement points").value == 10
    assert _number(at, "Share of points for a late milestone (%)").value == 50
    _number(at, "Active days for full engagement points").set_value(8)
    _number(at, "Share of points for a late milestone (%)").set_value(30)
    button(at, "Save health model").click().run()
    assert not at.exception
    assert not at.error, texts(at.error)
    cur = _health(small_db)
    assert cur.version == 2
    assert (cur.value["engagement_full_days"], cur.value["late_credit"]) == (8, 0.3)
    assert {r.field for r in log_rows(small_db, entity="setting")} == {
        "health_model.engagement_full_days",
        "health_model.late_credit",
    }


def test_more_active_days_than_the_window_are_refused(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query=HEALTH)
    _number(at, "Engagement window (days)").set_value(7)
    button(at, "Save health model").click().run()
    errors = [unescape(e) for e in texts(at.error)]
    assert len(errors) == 1 and "engagement_full_days: must be a whole number of days from 1 to 7" in errors[0]
    assert _health(small_db).version == 1


def test_weights_not_adding_up_are_refused(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query=HEALTH)
    _number(at, "Milestone weight").set_value(50)
    button(at, "Save health model").click().run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and errors[0].startswith("Not saved") and "the four weights must add up to 100" in errors[0]
    assert _health(small_db).version == 1


def test_admin_adds_a_team_member(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query=QUERY)
    form = next(f for f in at.form if f.proto.form.form_id.endswith("member"))
    form.text_input[0].set_value("nia.new@example.com")
    form.text_input[1].set_value("Nia New")
    form.selectbox[0].set_value("revops")
    button(at, "Save member").click().run()
    assert not at.exception
    assert member(small_db, "nia.new@example.com").role == "revops"
    team = table_with(at, "email", "role")
    assert ("nia.new@example.com", "revops") in set(zip(team["email"], team["role"], strict=True))


def test_other_roles_read_only(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query=HEALTH, as_user="dana.leader@example.com")
    assert [i for i in texts(at.main.info) if "Read-only" in i and "leader" in i]
    assert button(at, "Save health model").disabled
    assert at.number_input and all(n.disabled for n in at.number_input)
    # Still shows everything.
    _tab(at, "Team")
    assert "Save member" not in [b.label for b in at.form_submit_button]
    assert len(table_with(at, "email", "role")) == len(TEAM)


def _milestone(url: str, key: str) -> tuple[str, dict]:
    from sqlalchemy import select

    from db.models import MilestoneDefinition

    with session_scope(url) as s:
        m = s.execute(select(MilestoneDefinition).where(MilestoneDefinition.key == key)).scalar_one()
        return m.name, json.loads(m.target_days)


def test_admin_changes_milestone_target_days(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query=MILESTONES)
    at.session_state["ms_editor"] = {
        "edited_rows": {1: {"SMB": 9, "name": "Technical setup complete"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    button(at, "Save milestones").click().run()
    assert not at.exception and not at.error, texts(at.error)
    name, targets = _milestone(small_db, "technical_setup_done")
    assert (name, targets["SMB"], targets["Enterprise"]) == ("Technical setup complete", 9, 30)
    assert {(r.entity_id, r.field) for r in log_rows(small_db, entity="milestone_definition")} == {
        ("technical_setup_done", "name"),
        ("technical_setup_done", "target_days"),
    }
    assert table_with(at, "key", "name", "SMB")["SMB"].tolist()[1] == 9


def test_milestone_edits_are_saved_together_or_not_at_all(small_db: str, use_db) -> None:
    """One valid and one invalid row (a cleared target day): the page says "Not saved", so
    nothing may be saved, not the rows that happened to come before the invalid one."""
    use_db(small_db)
    at = open_page("settings", query=MILESTONES)
    at.session_state["ms_editor"] = {
        "edited_rows": {0: {"name": "Kickoff held"}, 1: {"SMB": None}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    button(at, "Save milestones").click().run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and errors[0].startswith("Not saved") and "target SMB" in errors[0]
    assert _milestone(small_db, "kickoff_complete")[0] == "Kickoff complete"
    assert log_rows(small_db, entity="milestone_definition") == []


def test_shares_are_edited_in_percent_and_stored_as_before(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query=RULES)
    rules_shown = {n.label: n.value for n in at.number_input}
    assert rules_shown["Share X (%)"] == 50
    at = open_page("settings", query=HEALTH)
    shown = {n.label: n.value for n in at.number_input}
    assert shown["Adoption for full points (%)"] == 80
    assert shown["Share of points for a late milestone (%)"] == 50
    # No fraction anywhere: every share reads as a whole percent.
    shown.update(rules_shown)
    assert not [(k, v) for k, v in shown.items() if isinstance(v, float) and 0 < v < 1], shown

    # Saving untouched percentages keeps the stored shares exactly; a changed one is stored as a share.
    _number(at, "Adoption for full points (%)").set_value(70)
    button(at, "Save health model").click().run()
    assert not at.exception and not at.error, texts(at.error)
    cur = _health(small_db)
    assert (cur.version, cur.value["adoption_full_share"], cur.value["late_credit"]) == (2, 0.7, 0.5)
    assert {r.field for r in log_rows(small_db, entity="setting")} == {"health_model.adoption_full_share"}

    at = _tab(at, "Risk rules")
    _number(at, "Share X (%)").set_value(40)
    button(at, "Save risk rules").click().run()
    assert not at.exception and not at.error, texts(at.error)
    with session_scope(small_db) as s:
        rules = get_setting(s, "risk_rules")
    assert (rules.version, rules.value["low_adoption"]["threshold"]) == (2, 0.4)
