"""The first start draws the page shell at once and makes the demo portfolio in the
background: a new database shows "Preparing the demo portfolio" with its progress (not a
blank page behind a spinner), then the app opens on the portfolio, and the health history
follows in the background."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from components import first_start
from db.models import Account, HealthSnapshot
from db.session import database_url
from tests.conftest import AS_OF
from tests.pages import APP, assert_ok, texts
from tests.services import count


def test_the_first_start_shows_its_progress_then_the_portfolio(databases, use_db, monkeypatch) -> None:
    url = use_db(databases.new())  # a new, empty database: nothing migrated, nothing seeded
    monkeypatch.setattr(
        first_start,
        "DEMO_SIZE",
        {"accounts": 30, "seed": 11, "as_of": AS_OF, "events": 6_000, "history_weeks": 2},
    )
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["as_of"] = AS_OF.isoformat()
    at.run()
    assert_ok(at)
    assert texts(at.title) == ["Onboarding analytics"]
    assert texts(at.subheader) == ["Preparing the demo portfolio"]
    assert any("opens by itself when it is ready" in c for c in texts(at.caption))
    assert len(at.get("progress")) == 1

    job = first_start._job(database_url(url))
    assert job is not None and job.portfolio_ready.wait(240) and job.done.wait(240)
    assert job.error is None, job.error
    at.run()
    assert_ok(at)
    assert "Portfolio" in texts(at.title)
    assert at.metric, "no KPI tile on the portfolio"
    banner = [c for c in texts(at.sidebar.caption) if "Showing **demo data**" in c]
    assert banner and "a generated portfolio of 30 accounts" in banner[0]
    assert count(url, Account) == 30
    assert count(url, HealthSnapshot) > 0  # the history, computed after the portfolio opened


def test_the_banner_counts_one_demo_account_in_the_singular() -> None:
    from services.demo_data import Portfolio

    demo = {"seed": 42, "as_of": AS_OF.isoformat()}
    assert "a generated portfolio of 1 account (seed 42" in Portfolio(accounts=1, demo_accounts=1, demo=demo).banner()
    assert "a generated portfolio of 2 accounts (" in Portfolio(accounts=2, demo_accounts=2, demo=demo).banner()
