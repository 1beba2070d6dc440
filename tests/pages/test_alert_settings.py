"""Settings → Alerts and Playbooks (issue 13): an admin adds a destination (shown and logged
with its secret masked), sends a test that a real webhook receiver on 127.0.0.1 gets, sees
it in the delivery log; a playbook edit is a new version of the setting."""

from __future__ import annotations

from db.defaults import DEFAULT_PLAYBOOKS
from db.session import session_scope
from db.settings_store import get_setting
from tests.conftest import AS_OF
from tests.pages import button, open_page, table_with
from tests.pages.test_settings_page import _tab
from tests.services import log_rows
from tests.services.test_notify import Hook

QUERY = {"as_of": AS_OF.isoformat()}


def test_add_a_destination_send_a_test_and_see_the_log(small_db: str, use_db, monkeypatch) -> None:
    use_db(small_db)
    monkeypatch.delenv("NOTIFY_URLS", raising=False)
    monkeypatch.delenv("NOTIFY_EMAIL_URL", raising=False)
    hook = Hook()
    hook.start()
    try:
        at = _tab(open_page("settings", query=QUERY), "Alerts")
        assert any("No destination yet" in i.value for i in at.info)
        secret_url = f"json://user:s3cret-token@127.0.0.1:{hook.port}/cs-alerts"
        next(t for t in at.text_input if t.label == "Name").input("Team webhook")
        next(t for t in at.text_input if t.label == "Apprise URL").input(secret_url)
        button(at, "Add destination").click().run()
        assert not at.exception, [e.value for e in at.exception]
        dests = table_with(at, "name", "destination", "kinds")
        assert dests["name"].tolist() == ["Team webhook"]
        assert "s3cret-token" not in dests["destination"].iloc[0] and "127.0.0.1" in dests["destination"].iloc[0]
        logged = log_rows(small_db, entity="destination")
        assert logged and all("s3cret-token" not in (r.new or "") for r in logged)
        button(at, "Send a test").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("Test sent to 1 destination" in s.value for s in at.success)
        assert [p["title"] for p in hook.posts] == ["Test alert from onboarding analytics"]
        log = table_with(at, "to", "what", "status", "attempts")
        assert log[["what", "status"]].values.tolist() == [["Test alert from onboarding analytics", "sent"]]
        assert "s3cret-token" not in log["to"].iloc[0]
        # A destination apprise cannot send to is refused, with why.
        next(t for t in at.text_input if t.label == "Name").input("Broken")
        next(t for t in at.text_input if t.label == "Apprise URL").input("nonsense://x")
        button(at, "Add destination").click().run()
        assert any("not a URL apprise can send to" in e.value for e in at.error)
    finally:
        hook.stop()


def test_a_playbook_edit_is_a_new_version(small_db: str, use_db) -> None:
    use_db(small_db)
    at = _tab(open_page("settings", query=QUERY), "Playbooks")
    with session_scope(small_db) as s:
        before = get_setting(s, "playbooks")
    by_name = sorted(DEFAULT_PLAYBOOKS, key=lambda k: DEFAULT_PLAYBOOKS[k]["name"].lower())
    assert next(sb for sb in at.selectbox if sb.label == "Playbook").value == by_name[0]
    next(sb for sb in at.selectbox if sb.label == "Playbook").set_value("no_activity").run()
    next(t for t in at.text_input if t.label == "Name").input("Wake a quiet account")
    button(at, "Save playbook").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with session_scope(small_db) as s:
        after = get_setting(s, "playbooks")
    assert after.version == before.version + 1
    assert after.value["no_activity"]["name"] == "Wake a quiet account"
    assert after.value["no_activity"]["steps"] == DEFAULT_PLAYBOOKS["no_activity"]["steps"]
    assert [r.field for r in log_rows(small_db, entity="setting")][-1] == "playbooks.no_activity.name"
