"""Accounts: the list with health, one account (name, the four health components,
milestones, triggers), read-only for CSMs on other CSMs' accounts, and logging an
intervention."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from db.models import Intervention
from db.session import session_scope
from services.accounts import account_list
from services.analytics import Facts, Filters, explain_account, kpis, today, trigger_table
from tests.conftest import AS_OF
from tests.pages import button, metrics, open_page, table_with, texts, unescape
from tests.services import ALEX, PRIYA, external_id, owned_accounts

QUERY = {"as_of": AS_OF.isoformat()}


@pytest.fixture(scope="module")
def priya_account_with_triggers(demo_db: str) -> int:
    """One of Priya's accounts with at least one risk trigger firing."""
    trig = trigger_table(Facts(demo_db), as_of=AS_OF)
    mine = set(owned_accounts(demo_db, PRIYA))
    return int(next(a for a in trig["account_id"] if a in mine))


def test_list_shows_every_account_with_its_health(demo_db: str, use_db) -> None:
    use_db(demo_db)
    # Every lifecycle status (an empty status filter in the URL): all 160 accounts.
    at = open_page("accounts", query={**QUERY, "lifecycle": ""})
    assert texts(at.title) == ["Accounts"]
    expected = account_list(Facts(demo_db), as_of=AS_OF, filters=Filters())
    assert f"{len(expected):,} of {len(expected):,} accounts" in " ".join(texts(at.caption))
    assert len(expected) == 160
    # 100 rows a page, the total shown; the second page has the rest, numbers unchanged.
    assert "rows 1–100 of 160" in texts(at.caption)
    first = table_with(at, "link", "name", "csm_name", "total", "band", "triggers")
    assert len(first) == 100
    page = next(s for s in at.selectbox if s.key == "account_table_page")
    assert page.options == ["Page 1 of 2", "Page 2 of 2"]
    page.set_value(2).run()
    assert "rows 101–160 of 160" in texts(at.caption)
    second = table_with(at, "link", "name", "csm_name", "total", "band", "triggers")
    assert len(second) == 60
    t = pd.concat([first, second], ignore_index=True)
    assert t["link"].tolist() == expected["external_id"].tolist()
    assert t["total"].round(6).tolist() == expected["total"].round(6).tolist()
    # A new account's band reads "Too early to score" (not judged yet).
    assert t["band"].tolist() == expected["band"].where(~expected["too_early"], "Too early to score").tolist()
    assert expected["too_early"].any()
    assert t["triggers"].tolist() == expected["triggers"].tolist()
    assert t["total"].is_monotonic_increasing, "weakest first"


def test_list_defaults_to_live_accounts_and_counts_what_portfolio_counts(demo_db: str, use_db) -> None:
    """The list opens on live accounts (not churned), the set Portfolio counts: the same
    number of accounts and the same number at risk or critical."""
    use_db(demo_db)
    at = open_page("accounts", query=QUERY)
    assert at.multiselect(key="lifecycle").value == ["onboarding", "active"]
    every = account_list(Facts(demo_db), as_of=AS_OF, filters=Filters())
    t = table_with(at, "link", "status", "band")
    assert set(t["status"]) == {"onboarding", "active"}
    assert (every["status"] == "churned").any(), "the demo has churned accounts to leave out"
    risk = next(k for k in kpis(Facts(demo_db), as_of=AS_OF, filters=Filters()) if k.key == "at_risk")
    assert len(t) == min(100, risk.denominator)  # one page of 100 rows; the total is in the caption
    captions = " ".join(texts(at.caption))
    assert f"rows 1–{min(100, risk.denominator)} of {risk.denominator:,}" in captions
    assert f"{risk.denominator:,} of {len(every):,} accounts · live accounts" in captions
    assert f"{risk.numerator:,} of these accounts are at risk or critical" in captions
    portfolio_page = open_page("portfolio", query=QUERY)
    assert f"{risk.numerator:,} of {risk.denominator:,} live accounts" in " ".join(
        texts(portfolio_page.markdown) + texts(portfolio_page.caption)
    )
    # Churned accounts are one choice away.
    at.multiselect(key="lifecycle").select("churned").run()
    assert f"rows 1–100 of {len(every):,}" in texts(at.caption)
    assert "churned" in set(table_with(at, "link", "status")["status"]) or len(every) > 100


def test_list_search_and_band_from_the_url(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("accounts", query={**QUERY, "band": "Critical"})
    expected = account_list(Facts(demo_db), as_of=AS_OF, filters=Filters())
    critical = expected[(expected["band"] == "Critical") & ~expected["too_early"] & (expected["status"] != "churned")]
    t = table_with(at, "link", "band")
    assert len(t) == len(critical) > 0
    assert set(t["band"]) == {"Critical"}


def test_one_account_shows_its_health_milestones_and_triggers(
    demo_db: str, use_db, priya_account_with_triggers: int
) -> None:
    use_db(demo_db)
    aid = priya_account_with_triggers
    ext = external_id(demo_db, aid)
    at = open_page("accounts", query={**QUERY, "account": ext})
    src = Facts(demo_db)
    acc = src.accounts().set_index("account_id").loc[aid]
    health = explain_account(src, account_id=aid, as_of=AS_OF)

    assert [unescape(t) for t in texts(at.title)] == [acc["name"]]
    caption = unescape(texts(at.caption)[0])
    assert ext in caption and "CSM: Priya Raman" in caption
    m = metrics(at)
    assert m["Health"] == f"{health['total']:.0f} / 100"
    assert m["Band"] == health["band"]

    comp = table_with(at, "component", "points", "max", "facts")
    assert len(comp) == 4
    exp = pd.DataFrame(health["components"])
    assert comp["component"].tolist() == exp["component"].tolist()
    assert comp["points"].round(6).tolist() == exp["points"].round(6).tolist()
    assert comp["max"].tolist() == [30, 25, 25, 20]
    assert comp["points"].sum() == pytest.approx(health["total"], abs=0.1)

    ms = table_with(at, "name", "due_date", "state")
    assert ms["name"].tolist() == [d["name"] for d in src.milestone_defs()]
    assert all(s in ("on time", "upcoming") or s.startswith(("late by", "overdue by")) for s in ms["state"])

    fired = trigger_table(src, as_of=AS_OF)
    fired = fired[fired["account_id"] == aid]
    assert f"Risk triggers ({len(fired)})" in texts(at.subheader)
    tr = table_with(at, "trigger", "reason", "action")
    assert tr["reason"].tolist() == fired["reason"].tolist()
    assert tr["trigger"].tolist() == fired["trigger"].tolist()

    # The demo admin may log an intervention here.
    assert not any("Read-only" in i.value for i in at.info)
    button(at, "Add intervention")


def test_csm_sees_another_csms_account_read_only(demo_db: str, use_db, priya_account_with_triggers: int) -> None:
    use_db(demo_db)
    ext = external_id(demo_db, priya_account_with_triggers)
    at = open_page("accounts", query={**QUERY, "account": ext}, as_user=ALEX)
    assert [i for i in texts(at.main.info) if "Read-only" in i and "csm" in i and "not one of your accounts" in i]
    assert "Add intervention" not in [b.label for b in at.form_submit_button]
    # Reading is the same as for anyone: the health breakdown is there.
    assert len(table_with(at, "component", "points")) == 4

    own = external_id(demo_db, owned_accounts(demo_db, ALEX)[0])
    mine = open_page("accounts", query={**QUERY, "account": own}, as_user=ALEX)
    assert not any("Read-only" in i.value for i in mine.info)
    button(mine, "Add intervention")


def test_leader_reads_every_account_without_editing(demo_db: str, use_db, priya_account_with_triggers: int) -> None:
    use_db(demo_db)
    at = open_page(
        "accounts",
        query={**QUERY, "account": external_id(demo_db, priya_account_with_triggers)},
        as_user="dana.leader@example.com",
    )
    assert [i for i in texts(at.main.info) if "Read-only" in i and "leader" in i]
    assert "Add intervention" not in [b.label for b in at.form_submit_button]


def test_csm_list_starts_with_their_own_accounts(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("accounts", query={**QUERY, "lifecycle": ""}, as_user=ALEX)
    assert at.toggle(key="mine").value is True
    n = len(owned_accounts(demo_db, ALEX))
    assert f"{n:,} of 160 accounts" in " ".join(texts(at.caption))
    t = table_with(at, "link", "csm_name")
    assert len(t) == n and set(t["csm_name"]) == {"Alex Moreno"}


def test_unknown_account_id(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("accounts", query={**QUERY, "account": "ACC-99999"})
    assert [e for e in texts(at.error) if "no account" in e and "ACC-99999" in e]


def test_log_an_intervention_from_the_account_page(small_db: str, use_db) -> None:
    use_db(small_db)
    aid = owned_accounts(small_db, ALEX)[0]
    at = open_page("accounts", query={**QUERY, "account": external_id(small_db, aid)}, as_user=ALEX)
    form = next(f for f in at.form if "add_intervention" in f.proto.form.form_id)
    form.selectbox[0].set_value("check-in call")
    form.text_area[0].set_value("Walked through the adoption dashboard with the champion")
    form.text_input[0].set_value("champion re-engaged")
    button(at, "Add intervention").click()
    at.run()
    assert not at.exception
    with session_scope(small_db) as s:
        ivs = s.execute(select(Intervention).where(Intervention.account_id == aid)).scalars().all()
    assert [(i.type, i.note, i.outcome, i.created_by, i.date) for i in ivs] == [
        (
            "check-in call",
            "Walked through the adoption dashboard with the champion",
            "champion re-engaged",
            ALEX,
            today(),
        )
    ]
    shown = table_with(at, "date", "type", "note", "author")
    assert shown["note"].tolist() == ["Walked through the adoption dashboard with the champion"]
    assert shown["author"].tolist() == ["Alex Moreno"]
