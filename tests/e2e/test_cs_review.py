"""The CS leader's weekly review in Chromium at 1400x1000: replaying a past date with a
filter, the attention table shows what matters first without cutting "Why", one click on
an account opens it in the same tab as of the same date with the same filters, and Back
returns to the same view; the Accounts list does the same; /portfolio answers."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import text

from components.links import ATTENTION_WIDTHS
from db.session import get_engine
from services.analytics import Facts, Filters, portfolio
from tests.conftest import AS_OF
from tests.e2e.test_browser import (  # noqa: F401
    VIEWPORT,
    Server,
    back_returns,
    browser,
    demo_server,
    metric_value,
    no_exception,
    settle,
    shot,
)

pytestmark = pytest.mark.e2e

REPLAY = AS_OF - timedelta(days=7)  # a past week under review, not the data's "today"
VIEW = f"as_of={REPLAY.isoformat()}&segment=SMB"
# Glide's cell padding, left and right (the text is cut when it is wider than the rest).
CELL_PADDING = 2 * 8


def _first_grid_click(page, nth: int = 0, x: float = 40, grid=None) -> None:
    """Click the first row of the nth table (or of `grid`), `x` pixels into it (the grid is a canvas)."""
    grid = grid if grid is not None else page.locator('[data-testid="stDataFrame"]').nth(nth)
    canvas = grid.locator("canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + 35 + 17)


def _wait_for_url(page, *parts: str) -> None:
    """The URL follows once the page has run (the sidebar's bound widgets put their values
    back): wait until it has every part."""
    try:
        page.wait_for_url(lambda url: all(p in url for p in parts), timeout=30_000)
    except Exception as exc:
        raise AssertionError(f"URL {page.url} lacks one of {parts}") from exc


def _day_shown(demo_db: str, ext: str, as_of: date) -> str:
    with get_engine(demo_db).connect() as c:
        start = c.execute(text("SELECT contract_start FROM accounts WHERE external_id = :e"), {"e": ext}).scalar_one()
    start = start if isinstance(start, date) else date.fromisoformat(str(start)[:10])
    return f"day {(as_of - start).days:,}"  # the metric "Since contract start: day N"


def test_attention_table_fits_and_one_click_opens_the_account_in_the_same_view(
    browser,  # noqa: F811
    demo_server: Server,  # noqa: F811
    demo_db: str,
) -> None:
    p = portfolio(Facts(demo_db), as_of=REPLAY, filters=Filters(segment=("SMB",)))
    assert len(p.at_risk) > 0
    first = p.at_risk.iloc[0]
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{demo_server.base}/?{VIEW}")
    settle(page, "Portfolio")
    no_exception(page)
    heading = page.get_by_text(f"Accounts needing attention ({len(p.at_risk):,})")
    heading.scroll_into_view_if_needed()

    # The columns that matter first fit in the table at 1400 px, and "Why" is not cut.
    # The attention table (other tables, such as the checklist flags, may come before it).
    grid = (
        page.locator('[data-testid="stDataFrame"]')
        .filter(has=page.locator('[role="columnheader"]', has_text="Days overdue"))
        .first
    )
    width = grid.bounding_box()["width"]
    assert sum(ATTENTION_WIDTHS.values()) <= width - 2, (ATTENTION_WIDTHS, width)
    headers = [h.strip() for h in grid.locator('[role="columnheader"]').all_inner_texts()]
    assert headers[:6] == ["Account", "Health", "Why", "Intervention", "Days overdue", "Triggers"], headers
    widest = page.evaluate(
        """texts => { const c = document.createElement('canvas').getContext('2d');
        c.font = '14px "Source Sans", sans-serif';
        return Math.max(...texts.map(t => c.measureText(t).width)); }""",
        p.at_risk["reason"].tolist(),
    )
    assert widest + CELL_PADDING <= ATTENTION_WIDTHS["reason"], widest
    shot(page, "review-attention")

    # One click on the first account opens it here (no new tab), as of the replayed date,
    # with one history entry (Back must not stop on an intermediate URL).
    tabs = len(page.context.pages)
    entries = page.evaluate("history.length")
    _first_grid_click(page, grid=grid)
    settle(page, first["name"])
    no_exception(page)
    assert len(page.context.pages) == tabs
    # The URL follows once the page has run: the account, the date and the filter (a shareable link).
    _wait_for_url(page, "/accounts?", f"account={first['external_id']}", f"as_of={REPLAY.isoformat()}", "segment=SMB")
    assert metric_value(page, "Since contract start") == _day_shown(demo_db, first["external_id"], REPLAY)
    assert page.evaluate("history.length") == entries + 1
    shot(page, "review-account")

    # Back returns to the same view: the replayed date, the filter, the same list.
    page.go_back()
    settle(page, "Portfolio")
    no_exception(page)
    assert page.url.endswith(f"/?{VIEW}"), page.url
    assert page.get_by_text(f"As of {REPLAY:%d %b %Y}", exact=False).count() > 0
    assert page.get_by_text(f"Accounts needing attention ({len(p.at_risk):,})").count() == 1
    page.close()


def test_accounts_list_opens_an_account_in_one_click_and_back_returns(
    browser,  # noqa: F811
    demo_server: Server,  # noqa: F811
    demo_db: str,
) -> None:
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{demo_server.base}/accounts?{VIEW}&band=Critical")
    settle(page, "Accounts")
    no_exception(page)
    grid = page.locator('[data-testid="stDataFrame"]').first
    ext = grid.locator('[role="gridcell"]').first.inner_text().strip()
    assert ext.startswith("ACC-"), ext
    with get_engine(demo_db).connect() as c:
        name = c.execute(text("SELECT name FROM accounts WHERE external_id = :e"), {"e": ext}).scalar_one()
    # Past the row-selection checkbox, on the id.
    _first_grid_click(page, x=80)
    settle(page, name)
    no_exception(page)
    _wait_for_url(page, f"account={ext}", f"as_of={REPLAY.isoformat()}", "segment=SMB")
    assert metric_value(page, "Since contract start") == _day_shown(demo_db, ext, REPLAY)
    page.go_back()
    settle(page, "Accounts")
    no_exception(page)
    assert "account=" not in page.url and "band=Critical" in page.url
    assert page.get_by_text("Health breakdown").count() == 0
    assert page.get_by_text(f"as of {REPLAY:%d %b %Y}", exact=False).count() > 0
    shot(page, "review-accounts-back")
    page.close()


def test_the_home_page_answers_on_its_own_path(browser, demo_server: Server) -> None:  # noqa: F811
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{demo_server.base}/portfolio?as_of={AS_OF.isoformat()}")
    settle(page, "Portfolio")
    no_exception(page)
    assert page.get_by_text("Page not found").count() == 0
    assert page.get_by_text("Onboarding completion rate").count() > 0
    shot(page, "portfolio-path")
    page.close()


def test_account_to_its_success_plan_and_back_keeps_the_list_filters(
    browser,  # noqa: F811
    demo_server: Server,  # noqa: F811
    demo_db: str,
) -> None:
    """The account view keeps the list's own filters (band) in its URL; opening the success
    plan adds one history entry and Back returns to the account with them."""
    p = portfolio(Facts(demo_db), as_of=REPLAY, filters=Filters(segment=("SMB",)))
    first = p.at_risk.iloc[0]
    view = f"/accounts?{VIEW}&band=Critical&account={first['external_id']}"
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{demo_server.base}{view}")
    settle(page, first["name"])
    no_exception(page)
    start = page.url
    entries = page.evaluate("history.length")
    page.get_by_role("button", name="Edit the success plan and checklist").click()
    settle(page, "Success plans")
    no_exception(page)
    _wait_for_url(page, "/success-plans?", f"account={first['external_id']}")
    back_returns(page, start, entries, first["name"])
    page.close()


def test_sidebar_navigation_from_a_page_with_its_own_parameters_adds_one_history_entry(
    browser,  # noqa: F811
    demo_server: Server,  # noqa: F811
) -> None:
    """Portfolio's breakdown tab is in its URL; the sidebar's Funnel link leaves it with one
    history entry, and Back returns to Portfolio on that tab with the filters."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{demo_server.base}/?{VIEW}&breakdown=By+CSM")
    settle(page, "Portfolio")
    no_exception(page)
    start = page.url
    entries = page.evaluate("history.length")
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Funnel").click()
    settle(page, "Funnel")
    no_exception(page)
    _wait_for_url(page, "/funnel?", f"as_of={REPLAY.isoformat()}", "segment=SMB")
    assert "breakdown" not in page.url
    back_returns(page, start, entries, "Portfolio")
    page.close()
