"""Manual against measured: when a bound checklist item's status contradicts the value
measured from events, the portfolio-wide query gives the same numbers as the per-account
one, and accepting the measured value is a checklist save (permission, version, log)."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import update

from db import facts as q
from db.models import ChecklistItem
from db.session import get_engine, session_scope
from metrics import checklist as mc
from services.access import PermissionDenied
from services.analytics import Facts, day_end
from services.measured import accept_measured, account_disagreements, all_facts, portfolio_disagreements
from services.plans import StaleVersion, in_session
from tests.conftest import AS_OF
from tests.services import ALEX, PRIYA, item, items, log_rows, member, owned_accounts


@pytest.mark.parametrize(
    ("target", "parsed"),
    [
        ("80%+", mc.Target(0.8, "pct")),
        ("100%", mc.Target(1.0, "pct")),
        ("3+", mc.Target(3, "count")),
        (" 2 + ", mc.Target(2, "count")),
        ("≥ 50 %", mc.Target(0.5, "pct")),
        ("Yes", None),
        ("8+/10", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_target(target, parsed) -> None:
    assert mc.parse_target(target) == parsed


# (metric, status, target, facts, seats) -> the status the measurement supports, or None (agrees).
JOURNEYS = [
    # The two: "done" at 80 % while 36 % measured; "done" at 3 dashboards with 1 made.
    ("weekly_active_users_pct", "done", "80%+", {"weekly_users": 18}, 50, ("in progress", "36%")),
    ("dashboards_created", "done", "3+", {"dashboards_created": 1}, 50, ("in progress", "1")),
    ("dashboards_created", "done", "3+", {"dashboards_created": 3}, 50, None),
    ("dashboards_created", "in progress", "3+", {"dashboards_created": 4}, 50, ("done", "4")),
    ("admins_trained", "blocked", "2+", {"admins_trained": 2}, 50, ("done", "2")),
    ("admins_trained", "not started", "2+", {"admins_trained": 1}, 50, None),
    ("reports_shared", "n/a", "2+", {"reports_shared": 0}, 50, None),
    ("users_provisioned_pct", "done", "100%", {"users_ever": 50}, 50, None),
    ("users_provisioned_pct", "done", "100%", {"users_ever": 49}, 50, ("in progress", "98%")),
    # Seats unknown: a share cannot be measured, so nothing is claimed.
    ("weekly_active_users_pct", "done", "80%+", {"weekly_users": 1}, None, None),
    # A target that is no number, or of the other kind, is not compared.
    ("dashboards_created", "done", "plenty", {"dashboards_created": 0}, 50, None),
    ("dashboards_created", "done", "80%", {"dashboards_created": 0}, 50, None),
    (None, "done", "3+", {}, 50, None),
]


@pytest.mark.parametrize(("metric", "status", "target", "facts", "seats", "expected"), JOURNEYS)
def test_a_status_contradicting_the_measurement_is_flagged(metric, status, target, facts, seats, expected) -> None:
    full = {k: 0 for k in mc.FACTS} | facts
    v = mc.assess(metric=metric, status=status, target=target, value=mc.measured_value(metric, full, seats))
    assert (None if v is None else (v.status, v.measured)) == expected
    # The portfolio's vectorised version agrees row by row.
    items = pd.DataFrame(
        [{"account_id": 1, "id": 9, "criterion": "c", "status": status, "target": target, "metric": metric}]
    )
    out = mc.disagreements(items, pd.DataFrame([{"account_id": 1, "seats": seats, **full}]))
    assert [(r.supported_status, r.measured) for r in out.itertuples()] == ([expected] if expected else [])
    if v is not None:
        assert out["reason"].tolist() == [v.reason]


def test_the_portfolio_query_measures_what_the_account_page_measures(demo_db: str) -> None:
    src = Facts(demo_db)
    ids = src.accounts()["account_id"].tolist()
    with get_engine(demo_db).connect() as conn:
        many = all_facts(conn, as_of=AS_OF).set_index("account_id")
        assert set(many.index) <= set(ids)
        for aid in ids:
            if aid not in many.index:  # no event at all
                one = q.account_metric_facts(conn, account_id=aid, as_of_end=day_end(AS_OF).to_pydatetime())
                assert set(one.values()) == {0}
                continue
            one = q.account_metric_facts(conn, account_id=aid, as_of_end=day_end(AS_OF).to_pydatetime())
            assert {k: int(many.loc[aid, k]) for k in mc.FACTS} == {k: one[k] for k in mc.FACTS}, aid
    assert many["weekly_users"].sum() > 0 and many["dashboards_created"].sum() > 0


def _make_done_but_unmet(url: str, aid: int) -> ChecklistItem:
    """Mark the account's weekly-active-users item done with a manual 80 % (the issue's case)."""
    it = next(i for i in items(url, aid) if i.metric == "weekly_active_users_pct")
    with session_scope(url) as s:
        s.execute(update(ChecklistItem).where(ChecklistItem.id == it.id).values(status="done", actual="80%"))
        s.commit()
    return item(url, it.id)


def test_one_accounts_disagreements_and_the_portfolios_agree(small_db: str) -> None:
    from services.accounts import checklist_frame

    src = Facts(small_db)
    acc = src.accounts().set_index("account_id")
    aid = owned_accounts(small_db, ALEX)[0]
    it = _make_done_but_unmet(small_db, aid)
    with session_scope(small_db) as s:
        cl = checklist_frame(s, aid)
    seats = int(acc.loc[aid, "licensed_seats"])
    one = account_disagreements(cl, account_id=aid, seats=seats, as_of=AS_OF, url=small_db)
    row = one[one["id"] == it.id].iloc[0]
    assert row["supported_status"] == "in progress"
    assert row["reason"].startswith("marked done, but measured ") and row["reason"].endswith("below the target 80%+")
    every = portfolio_disagreements(src, as_of=AS_OF, account_ids=acc.index.tolist())
    mine = every[every["account_id"] == aid]
    assert sorted(mine["id"]) == sorted(one["id"])
    assert mine.set_index("id")["measured"].to_dict() == one.set_index("id")["measured"].to_dict()
    assert set(every["external_id"]) <= set(acc["external_id"])


def test_accepting_the_measured_value_is_a_logged_checklist_save(small_db: str) -> None:
    aid = owned_accounts(small_db, ALEX)[0]
    it = _make_done_but_unmet(small_db, aid)
    src = Facts(small_db)
    seats = int(src.accounts().set_index("account_id").loc[aid, "licensed_seats"])
    with get_engine(small_db).connect() as conn:
        weekly = q.account_metric_facts(conn, account_id=aid, as_of_end=day_end(AS_OF).to_pydatetime())["weekly_users"]
    measured = f"{weekly / seats:.0%}"

    # Another CSM cannot, and a stale version is refused: nothing written.
    with pytest.raises(PermissionDenied):
        in_session(
            accept_measured,
            member(small_db, PRIYA),
            url=small_db,
            account_id=aid,
            item_id=it.id,
            version=it.version,
            as_of=AS_OF,
        )
    with pytest.raises(StaleVersion):
        in_session(
            accept_measured,
            member(small_db, ALEX),
            url=small_db,
            account_id=aid,
            item_id=it.id,
            version=it.version - 1,
            as_of=AS_OF,
        )
    assert log_rows(small_db, entity="checklist_item") == []

    res = in_session(
        accept_measured,
        member(small_db, ALEX),
        url=small_db,
        account_id=aid,
        item_id=it.id,
        version=it.version,
        as_of=AS_OF,
    )
    assert res.changed == 1
    now = item(small_db, it.id)
    assert (now.actual, now.status, now.version) == (measured, "in progress", it.version + 1)
    assert [(r.field, r.old, r.new, r.actor, r.context) for r in log_rows(small_db, entity="checklist_item")] == [
        ("actual", "80%", measured, ALEX, "checklist accept measured"),
        ("status", "done", "in progress", ALEX, "checklist accept measured"),
    ]
    with session_scope(small_db) as s:
        from services.accounts import checklist_frame

        cl = checklist_frame(s, aid)
    left = account_disagreements(cl, account_id=aid, seats=seats, as_of=AS_OF, url=small_db)
    assert it.id not in set(left["id"])
