"""Funnel, as RevOps reads it (issue 12): conversion stated as k of n entered over each
group's step-1 base, every group drawn by default, blank cells where a value does not exist,
strict mode next to a milestone explained, the ever-did counts inside the sidebar filters,
and bar labels above the intervals."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from services.analytics import Facts, Filters, day_end, funnel_report
from tests.conftest import AS_OF
from tests.pages import open_page, table_with, texts

STEPS = ["workspace_created", "integration_connected", "user_invited"]


@pytest.fixture(scope="module")
def fmt(demo_db: str) -> dict[str, str]:
    """How the pickers write each option into the URL (Streamlit stores the label)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", demo_db)
        at = open_page("funnel", query={"as_of": AS_OF.isoformat()})
    steps, by = at.multiselect(key="steps"), at.selectbox(key="by")
    names = [*STEPS, "dashboard_created", "milestone:first_value_achieved"]
    out = {o: steps.format_func(o) for o in names}
    return out | {f"by:{v}": by.format_func(v) for v in ("segment", "industry")}


def reading_with(at, needle: str) -> str:
    return next(c for c in texts(at.caption) if needle in c)


@pytest.mark.parametrize("mode", ["ordered", "strict"])
def test_group_reading_is_k_of_n_entered(demo_db: str, use_db, fmt, mode: str) -> None:
    """'SMB: 10 % converted (n=93)' used the last step's previous count (93) as n; the base is
    the group's step-1 count. Strict mode read '0 % converted (n=0)'."""
    use_db(demo_db)
    at = open_page(
        "funnel",
        query={"as_of": AS_OF.isoformat(), "steps": [fmt[s] for s in STEPS], "by": fmt["by:segment"], "mode": mode},
    )
    res = funnel_report(Facts(demo_db), steps=STEPS, mode=mode, by="segment", filters=Filters(), as_of=AS_OF).steps
    reading = reading_with(at, "Went all the way")
    assert "n=" not in reading
    for g, part in res.groupby("group"):
        entered, converted = part.iloc[0]["accounts"], part.iloc[-1]["accounts"]
        assert entered > 0
        assert f"{g}: {converted:,} of {entered:,} entered ({converted / entered * 100:.0f} %)" in reading
    if mode == "ordered":  # the old n: the previous step's count, not the base
        assert any(p.iloc[-1]["previous_accounts"] != p.iloc[0]["accounts"] for _, p in res.groupby("group"))


def test_every_group_is_drawn_by_default_and_a_narrower_pick_says_so(demo_db: str, use_db, fmt) -> None:
    use_db(demo_db)
    at = open_page(
        "funnel", query={"as_of": AS_OF.isoformat(), "steps": [fmt[s] for s in STEPS], "by": fmt["by:segment"]}
    )
    res = funnel_report(Facts(demo_db), steps=STEPS, by="segment", filters=Filters(), as_of=AS_OF).steps
    groups = sorted(set(res["group"]))
    assert len(groups) == 4
    assert sorted(at.multiselect(key="groups").value) == groups
    assert sorted(set(table_with(at, "group", "step", "accounts")["group"])) == groups
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in spec["data"] if t.get("showlegend", True) is not False} >= set(groups)
    assert not [c for c in texts(at.caption) if c.startswith("Showing ")]

    at.multiselect(key="groups").set_value(groups[:2]).run()
    assert sorted(set(table_with(at, "group", "step", "accounts")["group"])) == groups[:2]
    note = reading_with(at, "Showing 2 of 4 groups")
    assert "CSV has all of them" in note


def test_many_groups_show_the_largest_and_say_which(demo_db: str, use_db, fmt) -> None:
    use_db(demo_db)
    at = open_page(
        "funnel", query={"as_of": AS_OF.isoformat(), "steps": [fmt[s] for s in STEPS], "by": fmt["by:industry"]}
    )
    res = funnel_report(Facts(demo_db), steps=STEPS, by="industry", filters=Filters(), as_of=AS_OF).steps
    sizes = res[res["step"] == 1].set_index("group")["accounts"].sort_values(ascending=False)
    assert len(sizes) > 6
    assert at.multiselect(key="groups").value == sizes.index[:6].tolist()
    assert f"Showing 6 of {len(sizes)} groups" in reading_with(at, "Showing ")


def test_cells_without_a_value_are_blank(demo_db: str, use_db, fmt) -> None:
    """st.dataframe draws "None" for a missing value whatever its number format: such cells
    are text, blank where there is no value (step 1 has no previous step, an account has no
    time for a step it has not reached); the CSV keeps the numbers."""
    use_db(demo_db)
    at = open_page("funnel", query={"as_of": AS_OF.isoformat(), "steps": [fmt[s] for s in STEPS]})
    res = funnel_report(Facts(demo_db), steps=STEPS, filters=Filters(), as_of=AS_OF)
    cells = table_with(at, "step", "median_days_from_previous")
    days = res.steps["median_seconds_from_previous"] / 86400
    assert pd.isna(days.iloc[0])
    assert cells["median_days_from_previous"].tolist() == ["" if pd.isna(d) else f"{d:.2f}" for d in days]
    assert cells["conversion_from_first"].tolist() == [f"{v * 100:.1f} %" for v in res.steps["conversion_from_first"]]
    assert cells["accounts"].tolist() == res.steps["accounts"].tolist()
    assert not cells.isna().any().any()
    # The accounts behind a step (those that dropped before step 2 by default).
    drill = table_with(at, "link", "furthest", "t0")
    acc = res.accounts
    who = acc[(acc["furthest"] == 1) & (acc["status"] == "dropped")].sort_values(["furthest", "entered_at"])
    assert len(drill) == len(who) > 0
    assert drill["t0"].tolist() == [f"{t:%Y-%m-%d %H:%M}" for t in who["t0"]]
    assert set(drill["t1"]) == set(drill["t2"]) == {""}
    assert not drill.isna().any().any()


def test_the_pickers_wrap_their_chips(demo_db: str, use_db, fmt) -> None:
    """In a column Streamlit keeps the chips on one scrolling row, which hid the later steps
    (the browser test checks every chip is inside the box at 1400 px)."""
    use_db(demo_db)
    at = open_page(
        "funnel", query={"as_of": AS_OF.isoformat(), "steps": [fmt[s] for s in STEPS], "by": fmt["by:segment"]}
    )
    assert at.multiselect(key="steps").proto.wrap is True
    assert at.multiselect(key="groups").proto.wrap is True


def test_strict_zero_next_to_a_milestone_is_explained(demo_db: str, use_db, fmt) -> None:
    use_db(demo_db)
    steps = ["workspace_created", "milestone:first_value_achieved", "dashboard_created"]
    query = {"as_of": AS_OF.isoformat(), "steps": [fmt[s] for s in steps], "window": "30"}
    strict = open_page("funnel", query={**query, "mode": "strict"})
    t = table_with(strict, "step", "accounts")
    assert t["accounts"].iloc[0] > 0 and t["accounts"].iloc[1] == 0
    why = [i.value for i in strict.info if "in strict mode" in i.value]
    assert len(why) == 1 and "No account reached step 2" in why[0] and "ordered" in why[0]
    ordered = open_page("funnel", query={**query, "mode": "ordered"})
    assert table_with(ordered, "step", "accounts")["accounts"].iloc[1] > 0
    assert not [i for i in ordered.info if "in strict mode" in i.value]


def test_ever_did_counts_follow_the_sidebar_filters(demo_db: str, use_db, fmt) -> None:
    use_db(demo_db)
    steps = ["workspace_created", "user_invited", "milestone:first_value_achieved"]
    at = open_page(
        "funnel", query={"as_of": AS_OF.isoformat(), "steps": [fmt[s] for s in steps], "segment": "Enterprise"}
    )
    src = Facts(demo_db)
    acc = src.accounts()
    ent = set(acc.loc[acc["segment"] == "Enterprise", "account_id"])
    occ = src.step_occurrences(("user_invited", "workspace_created"), ("first_value_achieved",), False)
    occ = occ[occ["ts"] < day_end(AS_OF)]
    caption = reading_with(at, "Accounts that ever did each step")
    for s in steps:
        did = occ.loc[occ["name"] == s, "account_id"]
        n_ent, n_all = did[did.isin(ent)].nunique(), did.nunique()
        assert 0 < n_ent < n_all
        assert f"{fmt[s].replace('_', chr(92) + '_')}: {n_ent:,}" in caption


def test_bar_labels_sit_above_the_intervals_with_four_groups(demo_db: str, use_db, fmt) -> None:
    """With 4 groups the bars are thin: a label inside shrank to nothing or ran into the error
    bar. Each bar's label is drawn above its interval (and its in-progress part), unshrunk."""
    use_db(demo_db)
    at = open_page(
        "funnel", query={"as_of": AS_OF.isoformat(), "steps": [fmt[s] for s in STEPS], "by": fmt["by:segment"]}
    )
    data = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    bars = [t for t in data if t.get("error_y")]
    labels = [t for t in data if t.get("text") and t.get("textposition") == "outside"]
    assert len(bars) == len(labels) == 4
    assert not [t for t in data if t.get("textposition") == "inside"]
    res = funnel_report(Facts(demo_db), steps=STEPS, by="segment", filters=Filters(), as_of=AS_OF).steps
    for bar, label in zip(bars, labels, strict=True):
        assert label["offsetgroup"] == bar["offsetgroup"] and label["constraintext"] == "none"
        g = res[res["group"] == bar["name"]]
        high = (g["conversion_from_first_high"] * 100).to_numpy()
        assert all(b >= h - 1e-9 for b, h in zip(label["base"], high, strict=True))
        assert label["text"] == [f"{c * 100:.0f} %<br>{a:,}" for c, a in zip(g["conversion_from_first"], g["accounts"])]
