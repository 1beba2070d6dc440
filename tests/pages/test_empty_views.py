"""Every page has an empty state: a view whose filters match no account (an as-of date
before any contract, or a segment and contract-start range with no account) shows a
message saying so and what to do, never an exception or a traceback. The pages that do not
follow the sidebar filters (Success plans, Data, Settings) open as usual."""

from __future__ import annotations

import pytest

from tests.pages import open_page, texts

FILTERED = ["portfolio", "funnel", "cohorts", "health_model", "accounts"]
UNFILTERED = {"success_plans": "Success plans", "data": "Data", "settings": "Settings"}
NOTHING = {
    "before any contract": {"as_of": "2024-01-01"},
    # The demo's latest Strategic account starts on 7 Jun 2026; other segments start in this range.
    "segment and start range": {"as_of": "2026-06-30", "segment": "Strategic", "start": ["2026-06-20", "2026-06-27"]},
}


def everything_shown(at) -> str:
    return " ".join(
        texts(at.info) + texts(at.warning) + texts(at.error) + texts(at.markdown) + texts(at.caption)
    ).lower()


@pytest.mark.parametrize("view", list(NOTHING))
@pytest.mark.parametrize("page", [*FILTERED, *UNFILTERED])
def test_a_view_matching_no_account_says_so(demo_db: str, use_db, page: str, view: str) -> None:
    use_db(demo_db)
    at = open_page(page, query=NOTHING[view], check=False)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, texts(at.error)
    shown = everything_shown(at)
    assert "traceback" not in shown
    if page in UNFILTERED:
        assert texts(at.title)[:1] == [UNFILTERED[page]]
        return
    # A message naming the empty selection, with what to do about it.
    empty = [m for m in texts(at.info) if "no account" in m.lower()]
    assert empty, (page, texts(at.info))
    assert any(w in empty[0].lower() for w in ("filter", "as-of", "as of", "import")), empty[0]
