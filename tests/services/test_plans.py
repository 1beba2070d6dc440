"""Success-plan writes: per-cell validation, the change log, optimistic locking between two
people editing the same item, adding and removing items, templates, the plan and
interventions. Each save is made in its own session, as the pages make them."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from db.defaults import DEFAULT_CHECKLIST
from db.importer import import_files
from db.models import Account, AccountMilestone, ChangeLog, Intervention, SuccessPlan
from db.session import session_scope
from db.settings_store import get_setting
from services.plans import (
    ItemChange,
    StaleVersion,
    ValidationFailed,
    add_intervention,
    apply_template,
    checklist_history,
    in_session,
    save_checklist,
    save_plan,
)
from services.settings import update_setting
from tests.services import ADMIN, ALEX, PRIYA, base_of, count, item, items, log_rows, member, owned_accounts


@pytest.fixture
def alex_account(small_db: str) -> int:
    return owned_accounts(small_db, ALEX)[0]


def _save(url: str, who: str, account_id: int, changes=(), added=(), removed=(), removed_base=None):
    return in_session(
        save_checklist,
        member(url, who),
        url=url,
        account_id=account_id,
        changes=list(changes),
        added=list(added),
        removed=list(removed),
        removed_base=removed_base,
    )


def _snapshot(url: str, account_id: int) -> list[tuple]:
    return [
        (
            it.id,
            it.version,
            it.category,
            it.criterion,
            it.target,
            it.actual,
            it.status,
            it.owner_id,
            it.due_date,
            it.note,
            it.done_at,
        )
        for it in items(url, account_id)
    ]


# ----------------------------------------------------------------------------- validation


def test_every_bad_cell_is_reported_and_nothing_is_written(small_db: str, alex_account: int) -> None:
    url = small_db
    it = items(url, alex_account)
    before = _snapshot(url, alex_account)
    # Listed out of order: problems name the row as the editor shows it (1-based), not the
    # position in the list of changes.
    changes = [
        ItemChange(it[6].id, it[6].version, {"status": "finished"}),
        ItemChange(it[1].id, it[1].version, {"category": "Onboarding"}),
        ItemChange(it[0].id, it[0].version, {"owner": "ghost@example.com"}),
        ItemChange(it[3].id, it[3].version, {"criterion": "   "}),
        ItemChange(it[4].id, it[4].version, {"note": "x" * 5001}),
        ItemChange(it[5].id, it[5].version, {"due_date": "2026-02-30"}),
        ItemChange(it[2].id, it[2].version, {"due_date": "next week", "target": "t" * 101}),
        # A valid edit in the same save is not written either.
        ItemChange(it[7].id, it[7].version, {"actual": "3 dashboards"}),
    ]
    with pytest.raises(ValidationFailed) as exc:
        _save(url, ALEX, alex_account, changes)
    got = {(p.row, p.column): p.reason for p in exc.value.problems}
    assert set(got) == {
        (7, "status"),
        (2, "category"),
        (1, "owner"),
        (4, "criterion"),
        (5, "note"),
        (6, "due_date"),
        (3, "due_date"),
        (3, "target"),
    }
    assert len(exc.value.problems) == 8, "one problem per bad cell"
    assert got[(7, "status")] == "choose one of not started, in progress, done, blocked, n/a"
    assert got[(2, "category")] == "choose one of Technical Setup, User Adoption, Value Realization, Engagement"
    assert got[(1, "owner")] == "not a member of the team (use their email)"
    assert got[(4, "criterion")] == "a criterion is required"
    assert got[(5, "note")] == "longer than 5000 characters"
    assert got[(6, "due_date")] == "not a date (YYYY-MM-DD)"
    assert got[(3, "due_date")] == "not a date (YYYY-MM-DD)"
    assert got[(3, "target")] == "longer than 100 characters"
    by_cell = {(p.row, p.column): p.value for p in exc.value.problems}
    assert by_cell[(7, "status")] == "finished"
    assert by_cell[(1, "owner")] == "ghost@example.com"
    assert "row 7, status" in str(exc.value)

    assert _snapshot(url, alex_account) == before
    assert log_rows(url, account_id=alex_account) == []


def test_new_rows_are_validated_too(small_db: str, alex_account: int) -> None:
    url = small_db
    before = _snapshot(url, alex_account)
    with pytest.raises(ValidationFailed) as exc:
        _save(
            url,
            ALEX,
            alex_account,
            added=[
                {"target": "1"},  # neither category nor criterion
                {"category": "Engagement", "criterion": "QBR booked", "status": "waiting", "due_date": "1999-12-31"},
            ],
        )
    got = {(p.row, p.column): p.reason for p in exc.value.problems}
    assert got == {
        ("new 1", "criterion"): "a criterion is required",
        ("new 1", "category"): "a category is required",
        ("new 2", "status"): "choose one of not started, in progress, done, blocked, n/a",
        ("new 2", "due_date"): "outside 2000-2100",
    }
    assert _snapshot(url, alex_account) == before


def test_duplicate_criterion_in_a_category_is_refused(small_db: str, alex_account: int) -> None:
    url = small_db
    it = items(url, alex_account)
    adoption = [x for x in it if x.category == "User Adoption"]
    before = _snapshot(url, alex_account)

    # A new row repeating an existing criterion (any case, any spaces).
    with pytest.raises(ValidationFailed) as exc:
        _save(
            url,
            ALEX,
            alex_account,
            added=[{"category": "User Adoption", "criterion": f"  {adoption[0].criterion.upper()} "}],
        )
    assert [(p.row, p.column, p.reason) for p in exc.value.problems] == [
        ("new 1", "criterion", "this criterion already exists in that category")
    ]

    # Renaming an item to another item's criterion in the same category.
    with pytest.raises(ValidationFailed) as exc:
        _save(
            url,
            ALEX,
            alex_account,
            [ItemChange(adoption[1].id, adoption[1].version, {"criterion": adoption[0].criterion})],
        )
    row = [x.id for x in it].index(adoption[1].id) + 1
    assert [(p.row, p.column, p.reason) for p in exc.value.problems] == [
        (row, "criterion", "this criterion already exists in that category")
    ]

    # Two new rows with the same criterion.
    with pytest.raises(ValidationFailed) as exc:
        _save(
            url,
            ALEX,
            alex_account,
            added=[
                {"category": "Engagement", "criterion": "QBR booked"},
                {"category": "Engagement", "criterion": "qbr booked"},
            ],
        )
    assert [(p.row, p.reason) for p in exc.value.problems] == [
        ("new 2", "this criterion already exists in that category")
    ]
    assert _snapshot(url, alex_account) == before

    # The same criterion in another category is a different item.
    res = _save(url, ALEX, alex_account, added=[{"category": "Engagement", "criterion": adoption[0].criterion}])
    assert res.added == 1
    # Swapping criteria is not a duplicate once removed items are taken out: remove one, rename the other.
    res = _save(
        url,
        ALEX,
        alex_account,
        [ItemChange(adoption[1].id, adoption[1].version, {"criterion": adoption[0].criterion})],
        removed=[(adoption[0].id, adoption[0].version)],
    )
    assert (res.changed, res.removed) == (1, 1)
    assert item(url, adoption[1].id).criterion == adoption[0].criterion


# ----------------------------------------------------------------------------- the change log


def test_edits_are_logged_with_old_and_new_values(small_db: str, alex_account: int) -> None:
    url = small_db
    alex, priya = member(url, ALEX), member(url, PRIYA)
    it = next(x for x in items(url, alex_account) if x.status != "done")
    assert it.owner_id == alex.member_id and it.done_at is None
    new_due = (it.due_date or date(2026, 7, 1)) + timedelta(days=10)

    res = _save(
        url,
        ALEX,
        alex_account,
        [
            ItemChange(
                it.id,
                it.version,
                {
                    "status": "done",
                    "owner": PRIYA.upper(),
                    "due_date": new_due.isoformat(),
                    "note": "signed off on the call",
                    "target": it.target,
                },
            )
        ],
    )
    assert (res.changed, res.log_entries, res.versions) == (1, 4, {it.id: it.version + 1}), (
        "an unchanged target is not logged"
    )
    now = item(url, it.id)
    assert (now.status, now.owner_id, now.due_date, now.note, now.version) == (
        "done",
        priya.member_id,
        new_due,
        "signed off on the call",
        it.version + 1,
    )
    assert now.done_at is not None

    log = {r.field: r for r in log_rows(url, entity="checklist_item", entity_id=str(it.id))}
    assert set(log) == {"status", "owner", "due_date", "note"}
    assert (log["status"].old, log["status"].new) == (it.status, "done")
    assert (log["owner"].old, log["owner"].new) == (ALEX, PRIYA)
    assert (log["due_date"].old, log["due_date"].new) == (
        it.due_date.isoformat() if it.due_date else None,
        new_due.isoformat(),
    )
    assert (log["note"].old, log["note"].new) == (it.note, "signed off on the call")
    for r in log.values():
        assert (r.actor, r.account_id, r.context) == (ALEX, alex_account, "checklist edit")

    # Leaving done clears done_at; clearing the owner logs the email going away.
    _save(url, ALEX, alex_account, [ItemChange(it.id, now.version, {"status": "in progress", "owner": None})])
    again = item(url, it.id)
    assert (again.status, again.done_at, again.owner_id) == ("in progress", None, None)
    owner_log = log_rows(url, entity="checklist_item", entity_id=str(it.id), field="owner")
    assert [(r.old, r.new) for r in owner_log] == [(ALEX, PRIYA), (PRIYA, None)]

    # The history the Success plans page shows, newest first.
    with session_scope(url) as s:
        hist = checklist_history(s, account_id=alex_account)
    assert [(h.field, h.old, h.new) for h in hist[:2]] == [("owner", PRIYA, None), ("status", "done", "in progress")]
    assert len(hist) == 6


def test_a_save_without_differences_changes_nothing(small_db: str, alex_account: int) -> None:
    url = small_db
    it = items(url, alex_account)[0]
    res = _save(url, ALEX, alex_account, [ItemChange(it.id, it.version, {"status": it.status, "note": it.note})])
    assert (res.changed, res.log_entries) == (0, 0)
    assert item(url, it.id).version == it.version


# ----------------------------------------------------------------------------- two people, one item


def test_second_save_on_a_stale_version_is_refused_with_what_changed(small_db: str, alex_account: int) -> None:
    url = small_db
    it = next(x for x in items(url, alex_account) if x.status not in ("blocked",))
    # Both open the checklist: same item, same version, same values on screen.
    admin_base, alex_base = base_of(url, it), base_of(url, it)

    first = _save(url, ADMIN, alex_account, [ItemChange(it.id, it.version, {"status": "blocked"}, admin_base)])
    assert first.versions == {it.id: it.version + 1}

    with pytest.raises(StaleVersion) as exc:
        _save(
            url,
            ALEX,
            alex_account,
            [
                ItemChange(
                    it.id,
                    it.version,
                    {"note": "customer asked for a second training", "status": "in progress"},
                    alex_base,
                )
            ],
        )
    [conflict] = exc.value.conflicts
    assert conflict.item_id == it.id
    assert conflict.criterion == it.criterion
    assert conflict.field == "status"
    assert conflict.yours_based_on == it.status
    assert conflict.now == "blocked"
    assert conflict.changed_by == ADMIN
    assert conflict.changed_at is not None
    assert "saved by someone else" in str(exc.value)

    # Nothing of the second save was written.
    now = item(url, it.id)
    assert (now.status, now.note, now.version) == ("blocked", it.note, it.version + 1)
    assert [(r.actor, r.field) for r in log_rows(url, entity="checklist_item", entity_id=str(it.id))] == [
        (ADMIN, "status")
    ]

    # After reloading, the same edit goes through on the new version.
    res = _save(
        url,
        ALEX,
        alex_account,
        [ItemChange(it.id, now.version, {"note": "customer asked for a second training"}, base_of(url, now))],
    )
    assert res.changed == 1
    assert item(url, it.id).note == "customer asked for a second training"


def test_stale_save_refused_even_for_other_rows_of_the_same_save(small_db: str, alex_account: int) -> None:
    """One stale row refuses the whole save (it is one transaction)."""
    url = small_db
    a, b = items(url, alex_account)[:2]
    base_a = base_of(url, a)
    _save(url, ADMIN, alex_account, [ItemChange(a.id, a.version, {"actual": "95%"}, base_a)])
    with pytest.raises(StaleVersion) as exc:
        _save(
            url,
            ALEX,
            alex_account,
            [
                ItemChange(b.id, b.version, {"note": "fresh"}, base_of(url, b)),
                ItemChange(a.id, a.version, {"note": "stale"}, base_a),
            ],
        )
    assert [(c.field, c.now, c.changed_by) for c in exc.value.conflicts] == [("actual", "95%", ADMIN)]
    assert item(url, b.id).note == b.note
    assert item(url, b.id).version == b.version


def test_removing_an_item_someone_just_changed_is_refused(small_db: str, alex_account: int) -> None:
    url = small_db
    it = items(url, alex_account)[3]
    base = base_of(url, it)
    _save(url, ADMIN, alex_account, [ItemChange(it.id, it.version, {"target": "10+"}, base)])
    with pytest.raises(StaleVersion) as exc:
        _save(url, ALEX, alex_account, removed=[(it.id, it.version)], removed_base={it.id: base})
    assert [(c.field, c.now, c.changed_by) for c in exc.value.conflicts] == [("target", "10+", ADMIN)]
    assert item(url, it.id) is not None

    # And editing an item someone removed meanwhile is refused, nothing written.
    other = items(url, alex_account)[4]
    _save(url, ADMIN, alex_account, removed=[(other.id, other.version)])
    with pytest.raises(ValidationFailed) as exc2:
        _save(url, ALEX, alex_account, [ItemChange(other.id, other.version, {"note": "x"})])
    assert exc2.value.problems[0].reason == "this item no longer exists (removed by someone else)"


# ----------------------------------------------------------------------------- add and remove


def test_add_and_remove_items(small_db: str, alex_account: int) -> None:
    url = small_db
    before = items(url, alex_account)
    gone = before[-1]
    res = _save(
        url,
        ALEX,
        alex_account,
        added=[
            {
                "category": "Engagement",
                "criterion": "QBR booked",
                "target": "Yes",
                "status": "done",
                "owner": PRIYA,
                "due_date": "2026-07-15",
                "note": "with the CFO",
            },
            {"category": "Technical Setup", "criterion": "SSO configured"},
        ],
        removed=[(gone.id, gone.version)],
    )
    assert (res.added, res.removed, res.changed) == (2, 1, 0)
    after = items(url, alex_account)
    assert len(after) == len(before) + 1
    assert item(url, gone.id) is None
    qbr, sso = after[-2], after[-1]
    assert (qbr.criterion, qbr.target, qbr.status, qbr.owner_id, qbr.due_date, qbr.note, qbr.version) == (
        "QBR booked",
        "Yes",
        "done",
        member(url, PRIYA).member_id,
        date(2026, 7, 15),
        "with the CFO",
        1,
    )
    assert qbr.done_at is not None
    assert (sso.status, sso.owner_id, sso.done_at) == ("not started", None, None)
    assert sso.position == qbr.position + 1 > max(x.position for x in before)

    log = log_rows(url, account_id=alex_account)
    assert sorted((r.context, r.old, r.new) for r in log) == sorted(
        [
            ("checklist remove", f"{gone.category}: {gone.criterion}", None),
            ("checklist add", None, "Engagement: QBR booked"),
            ("checklist add", None, "Technical Setup: SSO configured"),
        ]
    )
    assert {r.actor for r in log} == {ALEX}


# ----------------------------------------------------------------------------- templates


def test_a_new_imported_account_gets_the_template(small_db: str) -> None:
    url = small_db
    csv = b"account_id,name,segment,contract_start,csm_email\nACC-NEW-1,Brand New Co,Mid-Market,2026-06-01,alex.csm@example.com\n"
    report = import_files({"accounts.csv": csv}, url=url, actor="test")
    assert report.ok and report.written
    with session_scope(url) as s:
        acc = s.execute(select(Account).where(Account.external_id == "ACC-NEW-1")).scalar_one()
        ms = {
            m.milestone_key: m.due_date
            for m in s.execute(select(AccountMilestone).where(AccountMilestone.account_id == acc.id)).scalars()
        }
        plan = s.execute(select(SuccessPlan).where(SuccessPlan.account_id == acc.id)).scalar_one()
    got = items(url, acc.id)
    assert [(i.category, i.criterion, i.target, i.metric) for i in got] == [
        (d["category"], d["criterion"], d["target"], d["metric"]) for d in DEFAULT_CHECKLIST
    ]
    assert len(got) == 12
    assert {(i.status, i.owner_id, i.version) for i in got} == {("not started", member(url, ALEX).member_id, 1)}
    # Items are due when the milestone their category leads to is due (Mid-Market targets).
    due = {i.category: i.due_date for i in got}
    assert due["Technical Setup"] == ms["technical_setup_done"] == date(2026, 6, 15)
    assert due["Value Realization"] == ms["first_value_achieved"] == date(2026, 6, 29)
    assert due["User Adoption"] == ms["adoption_confirmed"] == date(2026, 7, 16)
    assert due["Engagement"] == ms["onboarding_concluded"] == date(2026, 7, 31)
    assert len(ms) == 6
    assert (plan.goals, plan.version) == ("", 1)

    # apply_template on an account that already has its checklist adds nothing.
    assert in_session(apply_template, member(url, ALEX), url=url, account_id=acc.id) == 0
    assert len(items(url, acc.id)) == 12


def test_apply_template_to_an_emptied_checklist(small_db: str, alex_account: int) -> None:
    url = small_db
    before = items(url, alex_account)
    _save(url, ALEX, alex_account, removed=[(i.id, i.version) for i in before])
    assert items(url, alex_account) == []

    n = in_session(apply_template, member(url, ALEX), url=url, account_id=alex_account)
    assert n == 12
    fresh = items(url, alex_account)
    assert [i.criterion for i in fresh] == [d["criterion"] for d in DEFAULT_CHECKLIST]
    assert {i.status for i in fresh} == {"not started"}
    [entry] = log_rows(url, account_id=alex_account, field="template")
    assert (entry.actor, entry.new, entry.context) == (ALEX, "12 items", "checklist template")


def test_apply_template_uses_the_segments_own_template(small_db: str) -> None:
    url = small_db
    admin = member(url, ADMIN)
    with session_scope(url) as s:
        tpl = get_setting(s, "checklist_templates")
        acc = s.execute(select(Account).where(Account.segment == "SMB").order_by(Account.id)).scalars().first()
    smb = [
        {"category": "Technical Setup", "criterion": "Workspace live", "target": "Yes", "metric": None},
        {"category": "Engagement", "criterion": "Kickoff held", "target": "Yes", "metric": None},
    ]
    in_session(
        update_setting,
        admin,
        url=url,
        key="checklist_templates",
        value={**tpl.value, "SMB": smb},
        expected_version=tpl.version,
    )
    _save(url, ADMIN, acc.id, removed=[(i.id, i.version) for i in items(url, acc.id)])
    assert in_session(apply_template, admin, url=url, account_id=acc.id) == 2
    assert [(i.category, i.criterion) for i in items(url, acc.id)] == [
        ("Technical Setup", "Workspace live"),
        ("Engagement", "Kickoff held"),
    ]


# ----------------------------------------------------------------------------- the plan


def _plan(url: str, account_id: int) -> SuccessPlan:
    with session_scope(url) as s:
        return s.execute(select(SuccessPlan).where(SuccessPlan.account_id == account_id)).scalar_one()


def test_save_plan_logs_changes_and_refuses_a_stale_version(small_db: str, alex_account: int) -> None:
    url = small_db
    p = _plan(url, alex_account)
    v2 = in_session(
        save_plan,
        member(url, ADMIN),
        url=url,
        account_id=alex_account,
        version=p.version,
        values={"goals": "Board-ready reporting", "champion": " Ana Ruiz ", "success_30": p.success_30},
    )
    assert v2 == p.version + 1
    now = _plan(url, alex_account)
    assert (now.goals, now.champion, now.version) == ("Board-ready reporting", "Ana Ruiz", v2)
    log = {r.field: (r.old, r.new, r.actor) for r in log_rows(url, entity="success_plan")}
    assert log == {"goals": (p.goals, "Board-ready reporting", ADMIN), "champion": (p.champion, "Ana Ruiz", ADMIN)}

    # Alex opened the plan before the admin saved: his save is refused with what changed.
    with pytest.raises(StaleVersion) as exc:
        in_session(
            save_plan,
            member(url, ALEX),
            url=url,
            account_id=alex_account,
            version=p.version,
            values={"executive_sponsor": "Chris CFO"},
        )
    assert {(c.field, c.now, c.changed_by) for c in exc.value.conflicts} == {
        ("goals", "Board-ready reporting", ADMIN),
        ("champion", "Ana Ruiz", ADMIN),
    }
    assert _plan(url, alex_account).executive_sponsor == p.executive_sponsor
    assert _plan(url, alex_account).version == v2

    # Alex reloads (v2); the admin saves once more; only that later save is reported to him.
    v3 = in_session(
        save_plan,
        member(url, ADMIN),
        url=url,
        account_id=alex_account,
        version=v2,
        values={"success_90": "Renewal signed"},
    )
    with pytest.raises(StaleVersion) as exc:
        in_session(
            save_plan,
            member(url, ALEX),
            url=url,
            account_id=alex_account,
            version=v2,
            values={"executive_sponsor": "Chris CFO"},
        )
    assert [(c.field, c.yours_based_on, c.now, c.changed_by) for c in exc.value.conflicts] == [
        ("success_90", p.success_90, "Renewal signed", ADMIN)
    ]
    v2 = v3

    # Too long: refused per field, nothing written.
    with pytest.raises(ValidationFailed) as exc2:
        in_session(
            save_plan,
            member(url, ALEX),
            url=url,
            account_id=alex_account,
            version=v2,
            values={"champion": "c" * 201, "goals": "g" * 5001},
        )
    assert {(p_.column, p_.reason) for p_ in exc2.value.problems} == {
        ("champion", "longer than 200 characters"),
        ("goals", "longer than 5000 characters"),
    }
    assert _plan(url, alex_account).version == v2
    assert _plan(url, alex_account).goals == "Board-ready reporting"


# ----------------------------------------------------------------------------- interventions


def test_add_intervention_validates_and_logs(small_db: str, alex_account: int) -> None:
    url = small_db
    alex = member(url, ALEX)
    with pytest.raises(ValidationFailed) as exc:
        in_session(
            add_intervention,
            alex,
            url=url,
            account_id=alex_account,
            type="pizza party",
            on="2026-06-01",
            note="n" * 5001,
            outcome="o" * 5001,
        )
    assert {(p.column, p.reason) for p in exc.value.problems} == {
        ("type", "choose one of extra training, executive sponsorship, enhanced support, check-in call, other"),
        ("date", "not a date"),
        ("note", "longer than 5000 characters"),
        ("outcome", "longer than 5000 characters"),
    }
    assert count(url, Intervention) == 0
    assert log_rows(url, account_id=alex_account) == []

    iv = in_session(
        add_intervention,
        alex,
        url=url,
        account_id=alex_account,
        type="executive sponsorship",
        on=date(2026, 6, 12),
        note="VP joins the QBR",
        rule="no_champion",
    )
    with session_scope(url) as s:
        stored = s.get(Intervention, iv.id)
        [entry] = s.execute(select(ChangeLog).where(ChangeLog.entity == "intervention")).scalars().all()
    assert (stored.account_id, stored.type, stored.date, stored.note, stored.rule, stored.created_by) == (
        alex_account,
        "executive sponsorship",
        date(2026, 6, 12),
        "VP joins the QBR",
        "no_champion",
        ALEX,
    )
    assert (entry.actor, entry.account_id, entry.new, entry.entity_id) == (
        ALEX,
        alex_account,
        "executive sponsorship on 2026-06-12",
        str(iv.id),
    )
