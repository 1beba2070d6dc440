"""RevOps' self-service journeys in Chromium at 1400 px (issue 12): a funnel broken down
into 4 groups with readable labels and every chosen step visible in the picker; usage
retention with the week in progress marked; time to value by quarter, cut to the useful
range; early signals grouped. Screenshots in artifacts/screenshots/revops-*.png."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.e2e.test_browser import VIEWPORT, Server, browser, demo_server, no_exception, settle, shot  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e

AS_OF = "2026-06-30"
STEPS = ["workspace_created", "integration_connected", "user_invited", "dashboard_created"]


def boxes(page, selector: str) -> list[dict]:
    return page.evaluate(
        "s => [...document.querySelectorAll(s)].map(e => { const r = e.getBoundingClientRect();"
        " return {x: r.x, y: r.y, w: r.width, h: r.height, text: e.textContent,"
        " size: parseFloat(getComputedStyle(e).fontSize)}; }).filter(b => b.w > 0 && b.h > 0)",
        selector,
    )


def overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
    )


def test_funnel_with_four_groups_reads_at_1400px(browser, demo_server: Server) -> None:  # noqa: F811
    page = browser.new_page(viewport=VIEWPORT)
    query = urlencode({"as_of": AS_OF, "by": "Segment", "steps": STEPS}, doseq=True)
    page.goto(f"{demo_server.base}/funnel?{query}")
    settle(page, "Funnel")
    no_exception(page)
    # Every chosen step is visible in the picker (the chips wrap instead of scrolling away).
    picker = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Steps, in order")
    area = picker.locator('[data-testid="stMultiSelectTagsContainer"]').bounding_box()
    chips = picker.locator("[data-tag]")
    assert chips.count() == 4
    for i in range(4):
        b = chips.nth(i).bounding_box()
        assert b["x"] >= area["x"] - 1 and b["x"] + b["width"] <= area["x"] + area["width"] + 1, chips.nth(
            i
        ).inner_text()
        assert b["y"] >= area["y"] - 1 and b["y"] + b["height"] <= area["y"] + area["height"] + 1
    # Every group is drawn; each bar's label is full size and clear of every error bar.
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    legend = [b["text"] for b in boxes(page, '[data-testid="stPlotlyChart"] .legendtext')]
    assert {"SMB", "Mid-Market", "Enterprise", "Strategic"} <= set(legend)
    labels = boxes(page, '[data-testid="stPlotlyChart"]:first-of-type .bartext')
    whiskers = boxes(page, '[data-testid="stPlotlyChart"]:first-of-type .errorbar path')
    assert len(labels) == 4 * len(STEPS) and len(whiskers) >= 4 * len(STEPS)
    for lab in labels:
        assert lab["size"] >= 11, lab
        assert not [w for w in whiskers if overlap(lab, w)], lab
    shot(page, "revops-funnel-groups")
    page.close()


def test_funnel_strict_after_a_milestone_says_why(browser, demo_server: Server) -> None:  # noqa: F811
    page = browser.new_page(viewport=VIEWPORT)
    steps = ["workspace_created", "Milestone · First value achieved", "dashboard_created"]
    query = urlencode({"as_of": AS_OF, "mode": "strict", "steps": steps}, doseq=True)
    page.goto(f"{demo_server.base}/funnel?{query}")
    settle(page, "Funnel")
    no_exception(page)
    why = page.get_by_text("in strict mode", exact=False).first
    why.scroll_into_view_if_needed()
    assert why.is_visible()
    shot(page, "revops-funnel-strict")
    page.close()


def test_retention_marks_the_week_in_progress(browser, demo_server: Server) -> None:  # noqa: F811
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{demo_server.base}/cohorts?as_of={AS_OF}&view=Usage+retention")
    settle(page, "Cohorts")
    no_exception(page)
    note = page.get_by_text("contains the as-of date and is not over", exact=False).first
    note.scroll_into_view_if_needed()
    assert note.is_visible()
    cells = [b["text"] for b in boxes(page, '[data-testid="stPlotlyChart"] text')]
    assert sum(t.endswith("*") for t in cells) == 7, cells  # 8 weekly cohorts: 7 partial cells beyond size
    assert "Week 1" in cells
    shot(page, "revops-retention")
    page.close()


def test_time_to_value_by_quarter_and_signals(browser, demo_server: Server) -> None:  # noqa: F811
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{demo_server.base}/cohorts?as_of={AS_OF}&view=Time+to+value&ttv_by=Start+quarter")
    settle(page, "Cohorts")
    no_exception(page)
    legend = [b["text"] for b in boxes(page, '[data-testid="stPlotlyChart"] .legendtext')]
    assert sorted(t.split(" ")[0] for t in legend) == ["2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2"], legend
    ticks = [float(b["text"].replace("\u2212", "-")) for b in boxes(page, '[data-testid="stPlotlyChart"] .xtick text')]
    assert max(ticks) <= 110, ticks  # cut at the 99th percentile (102 days), not the 365 of follow-up
    shot(page, "revops-time-to-value")
    page.goto(f"{demo_server.base}/cohorts?as_of={AS_OF}&view=Early+signals")
    settle(page, "Cohorts")
    no_exception(page)
    assert page.get_by_text("done by the same accounts as", exact=False).count() > 0
    shot(page, "revops-signals")
    page.close()
