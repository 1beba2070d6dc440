"""The CSM's book on one account's page: a labelled header, ARR with its currency, the
contract day named, health bars each against its own maximum, daily activity on a date
axis, and interventions that must say something, show their author, and can be edited or
deleted by that author (both in the change log), dated today by default during a replay."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import delete, select

from db.models import Event, Intervention
from db.session import session_scope
from db.settings_store import store_setting
from services.analytics import Facts, explain_account, today
from services.plans import add_intervention, in_session
from tests.conftest import AS_OF
from tests.pages import button, metrics, open_page, table_with, texts, unescape
from tests.services import ALEX, PRIYA, external_id, log_rows, member, owned_accounts

QUERY = {"as_of": AS_OF.isoformat()}


def _open(url: str, aid: int, *, as_user: str | None = None):
    return open_page("accounts", query={**QUERY, "account": external_id(url, aid)}, as_user=as_user)


def test_header_names_each_attribute_and_arr_has_its_currency(demo_db: str, use_db) -> None:
    use_db(demo_db)
    aid = owned_accounts(demo_db, PRIYA)[0]
    at = _open(demo_db, aid)
    acc = Facts(demo_db).accounts().set_index("account_id").loc[aid]
    caption = unescape(texts(at.caption)[0])
    assert f"Segment: {acc['segment']} · Industry: {acc['industry']} · Plan: {acc['plan']}" in caption
    assert "CSM: Priya Raman" in caption and f"Contract start: {acc['contract_start']:%d %b %Y}" in caption
    m = metrics(at)
    assert m["ARR (USD)"] == f"{acc['arr']:,.0f}"
    assert m["Since contract start"] == f"day {(AS_OF - acc['contract_start'].date()).days:,}"
    assert "Day" not in m


def test_arr_currency_is_a_setting(small_db: str, use_db) -> None:
    use_db(small_db)
    with session_scope(small_db) as s:
        store_setting(s, key="analysis", value={"week_start": "sunday", "currency": "EUR"}, actor="admin@example.com")
        s.commit()
    aid = owned_accounts(small_db, ALEX)[0]
    at = _open(small_db, aid)
    assert "ARR (EUR)" in metrics(at)


def test_health_bars_are_each_scaled_to_their_own_maximum(demo_db: str, use_db) -> None:
    use_db(demo_db)
    aid = owned_accounts(demo_db, PRIYA)[0]
    at = _open(demo_db, aid)
    health = explain_account(Facts(demo_db), account_id=aid, as_of=AS_OF)
    exp = pd.DataFrame(health["components"])
    comp = table_with(at, "component", "of_max", "points", "max")
    assert comp["of_max"].round(6).tolist() == (100 * exp["points"] / exp["max"]).round(6).tolist()
    el = next(d for d in at.dataframe if "of_max" in d.value.columns)
    cfg = json.loads(el.proto.columns)
    bar = cfg["of_max"]
    assert bar["type_config"]["type"] == "progress"
    assert (bar["type_config"]["min_value"], bar["type_config"]["max_value"]) == (0, 100)
    # Points are plain numbers now, not a bar scaled to the largest component (30).
    assert cfg["points"]["type_config"]["type"] == "number"


def test_active_users_per_day_uses_a_date_axis_with_daily_bins(small_db: str, use_db) -> None:
    use_db(small_db)
    # An account whose only recent activity is one event on one day.
    aid = owned_accounts(small_db, ALEX)[0]
    with session_scope(small_db) as s:
        s.execute(
            delete(Event).where(Event.account_id == aid, Event.ts >= datetime(2026, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]
        )
        s.add(
            Event(
                account_id=aid,
                ts=datetime(2026, 6, 12, 9, 30, tzinfo=UTC),
                event="login",
                user_id="u1",
                properties=None,
            )
        )
        s.commit()
    at = _open(small_db, aid)
    assert "Active on 1 of the last 90 days" in " ".join(texts(at.caption))
    chart = next(c for c in at.get("plotly_chart") if "Active users per day" in c.proto.spec)
    spec = json.loads(chart.proto.spec)
    x = spec["layout"]["xaxis"]
    assert x["type"] == "date" and x["tickformat"] == "%d %b"
    lo, hi = (pd.Timestamp(v) for v in x["range"])
    # The 90 days up to the as-of date, each day's bar centred on its date.
    assert (hi - lo) == pd.Timedelta(days=90)
    assert lo == pd.Timestamp(AS_OF - timedelta(days=89)) - pd.Timedelta(hours=12)
    assert spec["data"][0]["width"] == pytest.approx(0.8 * 86_400_000)


def _iv(url: str, aid: int, who: str, note: str) -> int:
    return in_session(
        add_intervention, member(url, who), url=url, account_id=aid, type="check-in call", on=AS_OF, note=note
    ).id


def _ivs(url: str, aid: int) -> list[Intervention]:
    with session_scope(url) as s:
        return list(s.execute(select(Intervention).where(Intervention.account_id == aid)).scalars())


def test_a_blank_intervention_is_refused_with_a_clear_message(small_db: str, use_db) -> None:
    use_db(small_db)
    aid = owned_accounts(small_db, ALEX)[0]
    at = _open(small_db, aid, as_user=ALEX)
    form = next(f for f in at.form if "add_intervention" in f.proto.form.form_id)
    # During a replay the date still defaults to today, never the as-of date.
    assert form.date_input[0].value == today() != AS_OF
    form.text_area[0].set_value("   ")
    button(at, "Add intervention").click()
    at.run()
    assert not at.exception
    assert [e for e in texts(at.error) if e.startswith("Not logged") and "note is required" in e]
    assert _ivs(small_db, aid) == []


def test_author_column_and_the_author_edits_and_deletes_their_entry(small_db: str, use_db) -> None:
    use_db(small_db)
    aid = owned_accounts(small_db, ALEX)[0]
    mine = _iv(small_db, aid, ALEX, "Kickoff call with the admin")
    theirs = _iv(small_db, aid, "admin@example.com", "Exec sponsor intro")
    at = _open(small_db, aid, as_user=ALEX)
    shown = table_with(at, "date", "type", "note", "author")
    assert dict(zip(shown["note"], shown["author"], strict=True)) == {
        "Kickoff call with the admin": "Alex Moreno",
        "Exec sponsor intro": "Morgan Admin",
    }
    # Only Alex's own entry is offered for editing.
    pick = at.selectbox(key="iv_pick")
    assert pick.options == [o for o in pick.options if "Kickoff" in o] and len(pick.options) == 1

    form = next(f for f in at.form if f.proto.form.form_id.endswith(f"edit_intervention_{mine}"))
    form.text_area[0].set_value("Kickoff call with the admin and the champion")
    form.text_input[0].set_value("training booked")
    button(at, "Save intervention").click()
    at.run()
    assert not at.exception
    assert [s for s in texts(at.success) if "Intervention saved (2 field(s) changed)" in s]
    iv = next(i for i in _ivs(small_db, aid) if i.id == mine)
    assert (iv.note, iv.outcome) == ("Kickoff call with the admin and the champion", "training booked")
    logged = [(r.field, r.old, r.new, r.actor) for r in log_rows(small_db, entity="intervention", entity_id=str(mine))]
    assert logged[1:] == [
        ("note", "Kickoff call with the admin", "Kickoff call with the admin and the champion", ALEX),
        ("outcome", "", "training booked", ALEX),
    ]

    button(at, "Delete intervention").click()
    at.run()
    assert not at.exception
    assert [i.id for i in _ivs(small_db, aid)] == [theirs]
    last = log_rows(small_db, entity="intervention", entity_id=str(mine))[-1]
    assert (last.field, last.new, last.actor, last.context) == ("intervention", None, ALEX, "intervention delete")
    assert "Kickoff call with the admin and the champion" in last.old


def test_nobody_edits_someone_elses_intervention(small_db: str, use_db) -> None:
    from services.access import PermissionDenied
    from services.interventions import delete_intervention, update_intervention

    aid = owned_accounts(small_db, ALEX)[0]
    iid = _iv(small_db, aid, ALEX, "Kickoff")
    admin = member(small_db, "admin@example.com")
    with pytest.raises(PermissionDenied, match="Only the author"):
        in_session(
            update_intervention,
            admin,
            url=small_db,
            intervention_id=iid,
            type="check-in call",
            on=date.today(),
            note="x",
        )
    with pytest.raises(PermissionDenied, match="Only the author"):
        in_session(delete_intervention, admin, url=small_db, intervention_id=iid)
    assert [i.note for i in _ivs(small_db, aid)] == ["Kickoff"]
