"""Success plans: a checklist edit saved from the editor persists and shows in History; a bad
value is reported per cell and nothing is saved; a save on a stale version shows the
conflict and keeps the edits; CSMs see other CSMs' plans read-only."""

from __future__ import annotations

from sqlalchemy import select

from db.models import ChecklistItem, SuccessPlan
from db.session import session_scope
from services.plans import ItemChange, in_session, save_checklist
from tests.conftest import AS_OF
from tests.pages import button, open_page, table_with, texts
from tests.services import ADMIN, ALEX, PRIYA, external_id, item, items, log_rows, member, owned_accounts

QUERY = {"as_of": AS_OF.isoformat()}
NO_EDITS = {"edited_rows": {}, "added_rows": [], "deleted_rows": []}


def _open_as_alex(url: str):
    aid = owned_accounts(url, ALEX)[0]
    at = open_page("success_plans", query={**QUERY, "account": external_id(url, aid)}, as_user=ALEX)
    return at, aid


def _edit_and_save(at, key: str, state: dict) -> None:
    """Type into the editor (its edit state), let the page see the edits, click Save."""
    at.session_state[key] = {**NO_EDITS, **state}
    at.run()
    assert not at.exception
    save = at.button(key="save_checklist")
    assert not save.disabled
    save.click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_editor_shows_the_accounts_checklist(small_db: str, use_db) -> None:
    use_db(small_db)
    at, aid = _open_as_alex(small_db)
    assert at.selectbox[0].value == external_id(small_db, aid)
    editor = at.data_editor[0]
    assert editor.key == f"cl_editor_{aid}_0"
    assert editor.editing_mode == "dynamic"
    shown = editor.value
    stored = items(small_db, aid)
    assert shown["criterion"].tolist() == [i.criterion for i in stored]
    assert shown["status"].tolist() == [i.status for i in stored]
    assert set(shown["owner"]) == {ALEX}
    done = sum(i.status == "done" for i in stored)
    assert f"{done} of {len(stored)} criteria done" in " ".join(texts(at.caption))
    assert not at.button(key="save_checklist").value


def test_saving_a_cell_persists_and_shows_in_history(small_db: str, use_db) -> None:
    use_db(small_db)
    at, aid = _open_as_alex(small_db)
    key = at.data_editor[0].key
    target = items(small_db, aid)[1]
    new_status = "blocked" if target.status != "blocked" else "in progress"

    at.session_state[key] = {**NO_EDITS, "edited_rows": {1: {"status": new_status, "note": "IT approval pending"}}}
    at.run()
    assert "**1 unsaved change(s)**" in " ".join(texts(at.caption))
    at.button(key="save_checklist").click().run()
    assert not at.exception

    now = item(small_db, target.id)
    assert (now.status, now.note, now.version) == (new_status, "IT approval pending", target.version + 1)
    assert [(r.field, r.old, r.new, r.actor) for r in log_rows(small_db, entity="checklist_item")] == [
        ("status", target.status, new_status, ALEX),
        ("note", target.note, "IT approval pending", ALEX),
    ]
    hist = table_with(at, "at", "who", "field", "old", "new")
    assert {(r.who, r.field, r.old, r.new) for r in hist.itertuples()} == {
        (ALEX, "status", target.status, new_status),
        (ALEX, "note", target.note, "IT approval pending"),
    }
    # The editor reloaded from the database: fresh key, no pending edits, the new value shown.
    editor = at.data_editor[0]
    assert editor.key == f"cl_editor_{aid}_1"
    assert editor.value["status"].iloc[1] == new_status
    assert "unsaved" not in " ".join(texts(at.caption))


def test_a_bad_value_is_reported_per_cell_and_nothing_is_saved(small_db: str, use_db) -> None:
    use_db(small_db)
    at, aid = _open_as_alex(small_db)
    key = at.data_editor[0].key
    stored = items(small_db, aid)
    # Row 3 takes row 1's criterion (same category); row 5 gets a note and a good target.
    assert stored[0].category == stored[2].category
    _edit_and_save(
        at, key, {"edited_rows": {2: {"criterion": stored[0].criterion}, 4: {"target": "6+", "note": "x" * 5001}}}
    )

    assert [e for e in texts(at.error) if e.startswith("Not saved") and "nothing was written" in e]
    problems = table_with(at, "row", "column", "value", "problem")
    assert [(str(r.row), r.column, r.problem) for r in problems.itertuples()] == [
        ("5", "note", "longer than 5000 characters"),
        ("3", "criterion", "this criterion already exists in that category"),
    ]
    assert len(problems) == 2
    assert [(i.id, i.version, i.criterion, i.target, i.note) for i in items(small_db, aid)] == [
        (i.id, i.version, i.criterion, i.target, i.note) for i in stored
    ]
    assert log_rows(small_db, entity="checklist_item") == []
    # The edits stay in the editor to be fixed.
    assert at.session_state[key]["edited_rows"]


def test_a_stale_save_shows_the_conflict_and_keeps_the_edits(small_db: str, use_db) -> None:
    use_db(small_db)
    at, aid = _open_as_alex(small_db)
    key = at.data_editor[0].key
    target = items(small_db, aid)[3]
    # Meanwhile an admin changes the same item from another session.
    in_session(
        save_checklist,
        member(small_db, ADMIN),
        url=small_db,
        account_id=aid,
        changes=[ItemChange(target.id, target.version, {"status": "n/a"})],
    )

    _edit_and_save(at, key, {"edited_rows": {3: {"note": "customer wants a second session"}}})

    assert [e for e in texts(at.error) if e.startswith("Not saved") and "someone else saved" in e]
    conflict = table_with(at, "criterion", "field", "now", "changed_by")
    assert [(r.criterion, r.field, r.now, r.changed_by) for r in conflict.itertuples()] == [
        (target.criterion, "status", "n/a", ADMIN)
    ]
    assert conflict["you had"].tolist() == [target.status]
    # Nothing of Alex's save was written; his edit is still in the table.
    now = item(small_db, target.id)
    assert (now.status, now.note, now.version) == ("n/a", target.note, target.version + 1)
    assert at.session_state[key]["edited_rows"] == {3: {"note": "customer wants a second session"}}
    assert "**1 unsaved change(s)**" in " ".join(texts(at.caption))

    # Reload discards the edits and shows their version.
    button(at, "Reload (discard my unsaved edits)").click().run()
    assert not any(e.startswith("Not saved") for e in texts(at.error))
    assert at.data_editor[0].value["status"].iloc[3] == "n/a"


def test_another_csm_sees_the_plan_read_only(small_db: str, use_db) -> None:
    use_db(small_db)
    aid = owned_accounts(small_db, ALEX)[0]
    at = open_page("success_plans", query={**QUERY, "account": external_id(small_db, aid)}, as_user=PRIYA)
    assert [i for i in texts(at.main.info) if "Read-only" in i and "another CSM" in i]
    assert at.data_editor[0].editing_mode == "fixed"
    assert at.button(key="save_checklist").disabled
    assert button(at, "Save plan").disabled


def test_save_plan_from_the_form(small_db: str, use_db) -> None:
    use_db(small_db)
    at, aid = _open_as_alex(small_db)
    next(t for t in at.text_input if t.label == "Champion").set_value("Ana Ruiz (Head of Ops)")
    button(at, "Save plan").click().run()
    assert not at.exception
    with session_scope(small_db) as s:
        plan = s.execute(select(SuccessPlan).where(SuccessPlan.account_id == aid)).scalar_one()
    assert (plan.champion, plan.version) == ("Ana Ruiz (Head of Ops)", 2)
    hist = table_with(at, "who", "field", "new")
    assert ("Success plan", "champion", "Ana Ruiz (Head of Ops)") in {
        (r.what, r.field, r.new) for r in hist.itertuples()
    }


def test_apply_the_template_to_an_empty_checklist(small_db: str, use_db) -> None:
    use_db(small_db)
    aid = owned_accounts(small_db, ALEX)[0]
    in_session(
        save_checklist,
        member(small_db, ALEX),
        url=small_db,
        account_id=aid,
        changes=[],
        removed=[(i.id, i.version) for i in items(small_db, aid)],
    )
    at, _ = _open_as_alex(small_db)
    assert any("no checklist yet" in i.value for i in at.info)
    template = next(b for b in at.button if b.label.startswith("Apply the") and b.label.endswith("template"))
    template.click().run()
    assert not at.exception
    assert len(items(small_db, aid)) == 12
    assert len(at.data_editor[0].value) == 12
    with session_scope(small_db) as s:
        assert (
            s.execute(select(ChecklistItem.owner_id).where(ChecklistItem.account_id == aid)).scalars().all()
            == [member(small_db, ALEX).member_id] * 12
        )


def test_the_account_picker_lists_a_page_narrowed_by_the_search(demo_db: str, use_db) -> None:
    """The browser gets a page of options, not every account: the CSM's own first, the
    deep-linked account kept, a search over id, name and CSM narrows the list."""
    from services.analytics import Facts

    use_db(demo_db)
    accounts = Facts(demo_db).accounts().sort_values("external_id")
    assert len(accounts) > 50
    own = owned_accounts(demo_db, ALEX)
    mine = accounts[accounts["account_id"].isin(own)]["external_id"].tolist()
    others = accounts[~accounts["account_id"].isin(own)]
    assert len(mine) < 50 < len(mine) + len(others)
    last = others["external_id"].iloc[-1]  # not among the first 50 listed
    at = open_page("success_plans", query={**QUERY, "account": last}, as_user=ALEX)
    box = at.selectbox[0]
    assert box.value == last
    assert len(box.options) == 51 and box.options[0].startswith(f"{last} · ")
    assert [o.split(" · ")[0] for o in box.options[1 : 1 + len(mine[:50])]] == mine[:50]
    assert "The first 50 of" in " ".join(texts(at.caption))

    target = accounts.iloc[len(accounts) // 2]
    at.text_input(key="sp_search").set_value(target["name"].upper()).run()
    assert not at.exception
    box = at.selectbox[0]
    listed = [o.split(" · ")[0] for o in box.options]
    assert box.value == last and listed[0] == last  # nothing changes until one is picked
    want = accounts[accounts["name"].str.lower().str.contains(target["name"].lower(), regex=False)]
    assert target["external_id"] in listed and set(listed[1:]) <= set(want["external_id"])
    assert f"{len(want):,} account" in " ".join(texts(at.caption))
    box.set_value(target["external_id"]).run()
    assert at.query_params["account"] == target["external_id"]
    assert at.selectbox[0].value == target["external_id"]

    at.text_input(key="sp_search").set_value("no such account anywhere").run()
    assert not at.exception
    assert "0 accounts match" in " ".join(texts(at.caption))
    assert at.selectbox[0].value == target["external_id"]
