"""My work (issue 13): a CSM sees their open tasks by when they are due, with the counts of
the service's own buckets; ticking Done completes the task (and the play with its last
task); picking an owner reassigns; a leader starts on the team's tasks; the URL keeps who
and which tasks."""

from __future__ import annotations

from sqlalchemy import select

from db.models import Account, Play, PlayTask
from db.session import session_scope
from services.plays import member_ids, overdue_by_owner, tasks
from tests.conftest import AS_OF
from tests.pages import button, metrics, open_page, table_with, texts
from tests.services import ALEX, LEADER, PRIYA, log_rows

QUERY = {"as_of": AS_OF.isoformat()}
NO_EDITS = {"edited_rows": {}, "added_rows": [], "deleted_rows": []}


def _theirs(url: str, email: str):
    with session_scope(url) as s:
        return tasks(s, today=AS_OF, owner_ids=[member_ids(s)[email]])


def test_a_csm_sees_their_tasks_and_ticks_one_done(small_db: str, use_db) -> None:
    use_db(small_db)
    mine = _theirs(small_db, ALEX)
    assert len(mine), "the demo portfolio opens plays with tasks for Alex"
    at = open_page("my_work", query=QUERY, as_user=ALEX)
    m = metrics(at)
    b = mine["bucket"].value_counts()
    assert m["Overdue"] == f"{int(b.get('overdue', 0)):,}"
    assert m["Due today"] == f"{int(b.get('today', 0)):,}"
    assert m["Due in the next 7 days"] == f"{int(b.get('this week', 0)):,}"
    assert at.selectbox[0].value == ALEX
    # The table shows each task with its account, play, due date and owner (overdue first).
    shown = table_with(at, "Done", "When", "Due", "Name", "Play", "Task", "Owner")
    order = {"overdue": 0, "today": 1, "this week": 2, "later": 3, "snoozed": 4}
    want = mine.assign(_o=mine["bucket"].map(order)).sort_values(["_o", "due", "external_id", "step"]).head(100)
    assert shown["Task"].tolist() == want["title"].tolist()
    assert shown["Name"].tolist() == want["account"].tolist()
    assert shown["Play"].tolist() == want["playbook"].tolist()
    assert shown["When"].str.lower().tolist() == want["bucket"].tolist()
    assert [d.date() for d in shown["Due"]] == want["due"].tolist()
    assert set(shown["Owner"]) == {ALEX}
    assert shown.index.tolist() == want["task_id"].tolist()
    # Tick Done on the first row of the table (overdue first, then by due date).
    order = {"overdue": 0, "today": 1, "this week": 2, "later": 3, "snoozed": 4}
    first = mine.assign(_o=mine["bucket"].map(order)).sort_values(["_o", "due", "external_id", "step"]).iloc[0]
    at.session_state["my_work_editor_0"] = {**NO_EDITS, "edited_rows": {0: {"Done": True}}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Saved 1 change" in s.value for s in at.success)
    with session_scope(small_db) as s:
        t = s.get(PlayTask, int(first["task_id"]))
        assert (t.status, t.done_by) == ("done", ALEX)
    assert [r.new for r in log_rows(small_db, entity="task", entity_id=str(first["task_id"]))] == ["done"]
    assert int(first["task_id"]) not in set(_theirs(small_db, ALEX)["task_id"])


def test_reassign_from_the_table(small_db: str, use_db) -> None:
    use_db(small_db)
    first = _theirs(small_db, ALEX)
    at = open_page("my_work", query={**QUERY, "due": "open"}, as_user=ALEX)
    order = {"overdue": 0, "today": 1, "this week": 2, "later": 3, "snoozed": 4}
    top = first.assign(_o=first["bucket"].map(order)).sort_values(["_o", "due", "external_id", "step"]).iloc[0]
    at.session_state["my_work_editor_0"] = {**NO_EDITS, "edited_rows": {0: {"Owner": PRIYA}}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    with session_scope(small_db) as s:
        assert s.get(PlayTask, int(top["task_id"])).owner_id == member_ids(s)[PRIYA]
    assert int(top["task_id"]) in set(_theirs(small_db, PRIYA)["task_id"])


def test_a_leader_starts_on_the_teams_tasks_and_the_url_keeps_the_owner(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("my_work", query=QUERY, as_user=LEADER)
    assert at.selectbox[0].value == "all"
    with session_scope(small_db) as s:
        every = tasks(s, today=AS_OF)
        n_open = s.execute(select(PlayTask).where(PlayTask.status == "open")).scalars().all()
    assert len(every) == len(n_open)
    m = metrics(at)
    assert m["Overdue"] == f"{int((every['bucket'] == 'overdue').sum()):,}"
    at.selectbox[0].set_value(PRIYA).run()
    assert at.query_params["owner"] == PRIYA
    again = open_page("my_work", query={**QUERY, "owner": PRIYA}, as_user=LEADER)
    assert again.selectbox[0].value == PRIYA


def test_the_account_shows_its_plays_and_closes_one(small_db: str, use_db) -> None:
    use_db(small_db)
    with session_scope(small_db) as s:
        alex = member_ids(s)[ALEX]
        play = (
            s.execute(
                select(Play)
                .join(Account, Account.id == Play.account_id)
                .where(Play.status == "open", Account.csm_id == alex)
                .order_by(Play.id)
            )
            .scalars()
            .first()
        )
        ext = s.get(Account, play.account_id).external_id
        n_open = len(s.execute(select(Play).where(Play.account_id == play.account_id, Play.status == "open")).all())
    at = open_page("accounts", query={**QUERY, "account": ext}, as_user=ALEX)
    assert f"Plays ({n_open} open)" in texts(at.subheader)
    plays = table_with(at, "playbook", "reason", "state", "progress")
    assert play.reason in plays["reason"].tolist()
    form_play = next(sb for sb in at.selectbox if sb.label == "Play")
    form_play.set_value(play.id)
    next(sb for sb in at.selectbox if sb.label == "Outcome").set_value("not needed")
    next(t for t in at.text_input if t.label == "Note (required)").input("Customer paused the project")
    button(at, "Close the play").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with session_scope(small_db) as s:
        p = s.get(Play, play.id)
        assert (p.status, p.outcome, p.close_note, p.closed_by) == (
            "closed",
            "not needed",
            "Customer paused the project",
            ALEX,
        )
        assert {t.status for t in s.execute(select(PlayTask).where(PlayTask.play_id == play.id)).scalars()} <= {
            "done",
            "cancelled",
        }


def test_portfolio_counts_overdue_tasks_per_csm(small_db: str, use_db) -> None:
    use_db(small_db)
    with session_scope(small_db) as s:
        want = overdue_by_owner(s, today=AS_OF).set_index("owner")["overdue"]
    assert want.sum() > 0, "the demo has overdue tasks"
    at = open_page("portfolio", query={**QUERY, "breakdown": "By CSM"})
    csm = table_with(at, "csm_name", "overdue_tasks")
    got = csm.set_index("csm_name")["overdue_tasks"]
    assert {k: int(v) for k, v in got.items() if v} == {k: int(v) for k, v in want.items() if k in got.index}
