"""The CSM's book in Chromium at 1400 px: "View as" survives a reload, a checklist item
marked done against the measurement is flagged and accepted in one click, the account page
reads with labels, currency, its contract day, full bars at full points and a date axis,
and the Portfolio names the disagreements. Screenshots: artifacts/screenshots/csm-*.png."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text

from db.session import get_engine
from tests.e2e.test_browser import (  # noqa: F401 - browser is a fixture
    SHOTS,
    VIEWPORT,
    Q,
    Server,
    _edit_first_actual,
    browser,
    metric_value,
    no_exception,
    settle,
    shot,
)
from tests.services import ALEX, external_id, owned_accounts

pytestmark = pytest.mark.e2e
ALEX_LABEL = "Alex Moreno (csm)"


def _keep(name: str) -> None:
    """Also copy a screenshot where the helper's report lists them (SHOTS_COPY)."""
    dest = os.environ.get("SHOTS_COPY")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-full"):
            src = SHOTS / f"{name}{suffix}.png"
            if src.exists():
                shutil.copy(src, Path(dest) / src.name)


@pytest.fixture
def book(small_db: str):
    """A small portfolio where Alex's first account has "Active weekly users" marked done at
    80 % and its only recent activity is one event on one day."""
    aid = owned_accounts(small_db, ALEX)[0]
    with get_engine(small_db).begin() as c:
        c.execute(
            text(
                "UPDATE checklist_items SET status = 'done', actual = '80%' "
                "WHERE account_id = :a AND metric = 'weekly_active_users_pct'"
            ),
            {"a": aid},
        )
    from db.models import Event
    from db.session import session_scope

    with session_scope(small_db) as s:
        s.query(Event).filter(Event.account_id == aid, Event.ts >= datetime(2026, 1, 1, tzinfo=UTC)).delete()
        s.add(Event(account_id=aid, ts=datetime(2026, 6, 12, 9, 30, tzinfo=UTC), event="login", user_id="u1"))
        s.commit()
    server = Server(small_db)
    yield server, small_db, external_id(small_db, aid)
    server.stop()


def test_view_as_survives_a_reload_and_the_checklist_flags_and_accepts(browser, book) -> None:  # noqa: F811
    server, url, ext = book
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{server.base}/success-plans?account={ext}&{Q}")
    settle(page, "Success plans")
    page.get_by_role("combobox", name="View as (local demo)").click()
    page.get_by_role("option", name=ALEX_LABEL, exact=True).click()
    page.wait_for_url("**view_as=**", timeout=30_000, wait_until="commit")
    settle(page, "Success plans")
    assert page.get_by_text("you are the Alex Moreno", exact=False).count() > 0
    page.reload()
    settle(page, "Success plans")
    no_exception(page)
    assert page.get_by_text("you are the Alex Moreno", exact=False).count() > 0, "View as reset by a reload"
    assert page.get_by_text("Read-only", exact=False).count() == 0

    assert page.get_by_text("item(s) contradict the value measured from events", exact=False).count() > 0
    with get_engine(url).connect() as c:
        iid = c.execute(
            text(
                "SELECT c.id FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
                "WHERE a.external_id = :e AND c.metric = 'weekly_active_users_pct'"
            ),
            {"e": ext},
        ).scalar_one()
    accept = page.locator(f".st-key-accept_{iid} button")
    accept.scroll_into_view_if_needed()
    label = accept.inner_text()
    assert "in progress" in label
    shot(page, "csm-checklist-flagged")
    _keep("csm-checklist-flagged")
    accept.click()
    page.wait_for_selector("text=Saved: Active weekly users now", timeout=30_000)
    settle(page, "Success plans")
    with get_engine(url).connect() as c:
        status, actual = c.execute(
            text(
                "SELECT c.status, c.actual FROM checklist_items c JOIN accounts a ON a.id = c.account_id "
                "WHERE a.external_id = :e AND c.metric = 'weekly_active_users_pct'"
            ),
            {"e": ext},
        ).one()
    assert status == "in progress" and actual != "80%"
    shot(page, "csm-checklist-accepted")
    _keep("csm-checklist-accepted")
    # An edit not saved yet is listed cell by cell, highlighted.
    _edit_first_actual(page, "42 of 50 sources")
    settle(page, "Success plans")
    unsaved = page.get_by_text("Unsaved: 1 edited cell(s)", exact=False)
    assert unsaved.count() > 0
    unsaved.first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "csm-checklist-unsaved.png"))
    _keep("csm-checklist-unsaved")
    # Scrolled right: the owner column shows the team member's name, not an email.
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(900, 0)
    time.sleep(1)
    page.screenshot(path=str(SHOTS / "csm-checklist-owner.png"))
    _keep("csm-checklist-owner")
    page.close()


def test_the_account_page_reads_with_labels_and_dates(browser, book) -> None:  # noqa: F811
    server, _url, ext = book
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{server.base}/accounts?account={quote(ext)}&{Q}&view_as={quote(ALEX_LABEL)}")
    page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
    settle(page)
    no_exception(page)
    assert page.get_by_text("Segment: ", exact=False).count() > 0
    assert metric_value(page, "ARR (USD)").replace(",", "").isdigit()
    assert metric_value(page, "Since contract start").startswith("day ")
    assert page.get_by_text("contradict the measurement", exact=False).count() > 0
    # One active day: the axis shows dates, never sub-second times.
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="Active users per day")
    chart.scroll_into_view_if_needed()
    ticks = chart.locator(".xtick text").evaluate_all("els => els.map(e => e.textContent)")
    assert ticks and not any(":" in t for t in ticks), ticks
    page.locator('[data-testid="stPlotlyChart"]').first.scroll_into_view_if_needed()
    shot(page, "csm-account")
    _keep("csm-account")
    page.close()


def test_portfolio_names_the_disagreements(browser, book) -> None:  # noqa: F811
    server, _url, _ext = book
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{server.base}/?{Q}")
    settle(page, "Portfolio")
    no_exception(page)
    block = page.locator(".st-key-measured_block")
    block.scroll_into_view_if_needed()
    assert "contradict the events" in block.inner_text()
    shot(page, "csm-portfolio")
    _keep("csm-portfolio")
    page.close()
