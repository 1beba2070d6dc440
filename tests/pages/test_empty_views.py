"""Every page has an empty state: a view whose filters match no account (an as-of date
before any contract, or a segment and contract-start range with no account) shows a
message saying so and what to do, never an exception or a traceback."""

from __future__ import annotations

import pytest

from tests.pages import open_page, texts

PAGES = ["portfolio", "funnel", "cohorts", "health_model", "accounts", "success_plans"]
NOTHING = {
    "before any contract": {"as_of": "2024-01-01"},
    "segment and start range": {"as_of": "2026-06-30", "segment": "Strategic", "start": ["2026-06-20", "2026-06-27"]},
}


@pytest.mark.parametrize("view", list(NOTHING))
@pytest.mark.parametrize("page", PAGES)
def test_a_view_matching_no_account_says_so(demo_db: str, use_db, page: str, view: str) -> None:
    use_db(demo_db)
    at = open_page(page, query=NOTHING[view], check=False)
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(texts(at.info) + texts(at.warning) + texts(at.markdown) + texts(at.caption)).lower()
    assert "no account" in shown or "no accounts" in shown, (page, shown[:600])
