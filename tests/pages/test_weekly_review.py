"""The CS leader's weekly review: new accounts are too early to score (off the at-risk count
and the attention list unless a trigger for new accounts fires) on Portfolio, the Accounts
list, the account page and `manage.py report` alike; every Portfolio figure says which
accounts it counts."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from db.session import session_scope
from db.settings_store import get_setting
from metrics.triggers import NEW_ACCOUNT_RULES
from services.access import User
from services.analytics import Facts, Filters, health_table, kpis, portfolio, trigger_table
from services.plans import in_session
from services.settings import update_setting
from tests.conftest import AS_OF
from tests.pages import metrics, open_page, table_with, texts, unescape

QUERY = {"as_of": AS_OF.isoformat()}
TOO_EARLY = "Too early to score"


@pytest.fixture(scope="module")
def young(demo_db: str) -> pd.DataFrame:
    """The demo's live accounts in their first 14 days, with the band the score alone gives."""
    h = health_table(Facts(demo_db), as_of=AS_OF)
    y = h[(h["age_days"] < 14) & (h["status"] != "churned")]
    # What made the list noisy: new accounts whose score alone says At Risk or Critical.
    assert y["band"].isin(["At Risk", "Critical"]).sum() >= 3, y[["age_days", "total", "band"]]
    return y


def test_new_accounts_are_off_the_attention_list_unless_a_new_account_trigger_fires(
    demo_db: str, use_db, young: pd.DataFrame
) -> None:
    use_db(demo_db)
    at = open_page("portfolio", query=QUERY)
    t = table_with(at, "link", "external_id", "reason")
    trig = trigger_table(Facts(demo_db), as_of=AS_OF)
    for _, a in young.iterrows():
        fired = set(trig.loc[trig["account_id"] == a["account_id"], "rule"])
        listed = a["external_id"] in set(t["external_id"])
        assert listed == bool(fired & NEW_ACCOUNT_RULES), (a["external_id"], a["age_days"], a["band"], fired)
    assert not set(young.loc[young["band"].isin(["At Risk", "Critical"]), "external_id"]) <= set(t["external_id"])
    # The bands chart's reading counts them apart.
    readings = " ".join(texts(at.caption))
    assert f"{len(young):,} are too early to score (in their first 14 days)" in readings


def test_portfolio_accounts_and_the_cli_agree_on_new_accounts(demo_db: str, use_db, cli, young) -> None:
    use_db(demo_db)
    risk = next(k for k in kpis(Facts(demo_db), as_of=AS_OF, filters=Filters()) if k.key == "at_risk")
    h = health_table(Facts(demo_db), as_of=AS_OF)
    live = h[h["status"] != "churned"]
    scored_risky = live["band"].isin(["At Risk", "Critical"]) & (live["age_days"] >= 14)
    assert risk.numerator == int(scored_risky.sum()) < int(live["band"].isin(["At Risk", "Critical"]).sum())
    assert risk.denominator == len(live)

    # The CLI: the same share, and the health report marks the same accounts.
    res = cli(demo_db, "report", "portfolio", "--as-of", AS_OF.isoformat(), "--format", "json")
    assert res.returncode == 0, res.stderr
    row = next(r for r in json.loads(res.stdout) if r["key"] == "at_risk")
    assert (row["numerator"], row["denominator"]) == (risk.numerator, risk.denominator)
    res = cli(demo_db, "report", "health", "--as-of", AS_OF.isoformat(), "--format", "csv")
    assert res.returncode == 0, res.stderr
    report = pd.read_csv(io.StringIO(res.stdout))
    assert set(report.loc[report["too_early"], "account_id"]) == set(young["external_id"])

    # The Accounts list: the band reads "Too early to score"; the account page says so too.
    at = open_page("accounts", query=QUERY)
    t = table_with(at, "link", "band")
    assert set(t.loc[t["link"].isin(young["external_id"]), "band"]) == {TOO_EARLY}
    assert f"{risk.numerator:,} of these accounts are at risk or critical" in " ".join(texts(at.caption))
    one = young.sort_values("total").iloc[0]
    page = open_page("accounts", query={**QUERY, "account": one["external_id"]})
    assert metrics(page)["Band"] == TOO_EARLY
    assert [i for i in texts(page.main.info) if i.startswith("Too early to score")]


def test_the_new_account_period_is_a_setting(small_db: str, use_db) -> None:
    use_db(small_db)
    at = open_page("settings", query={"settings_tab": "Health model"})  # only the chosen tab is drawn
    field = next(n for n in at.number_input if n.label.startswith("New accounts: too early to score"))
    assert field.value == 14
    admin = User(email="admin@example.com", name="Admin", role="admin")
    with session_scope(small_db) as s:
        hm = get_setting(s, "health_model")
    in_session(
        update_setting,
        admin,
        key="health_model",
        value={**hm.value, "new_account_days": 0},
        expected_version=hm.version,
    )
    h = health_table(Facts(small_db), as_of=AS_OF)
    assert not h["too_early"].any(), "0 turns the period off"
    p = portfolio(Facts(small_db), as_of=AS_OF, filters=Filters())
    assert p.new_account_days == 0


def test_every_portfolio_figure_says_its_population(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("portfolio", query=QUERY)
    captions = texts(at.caption)
    # The tiles: each names the accounts it counts.
    for population in (
        "accounts started by the as-of date",
        "onboarding deadlines in the last 180 days",
        "accounts started in the last 12 months",
        "live accounts",
    ):
        assert [c for c in captions if population in c], population
    # The breakdowns say theirs, and why the Time to value tab differs.
    assert [c for c in captions if "started in the last 12 months" in c and "Time to value tab" in c]
    summary = unescape(" ".join(texts(at.markdown)))
    if "reaches first value in" in summary:
        assert "(median, accounts started in the last 12 months)" in summary
