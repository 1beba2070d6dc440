"""Funnel: the view comes back from the URL (steps, order, window, breakdown) and the steps
table shows the same accounts as `manage.py report funnel` for the same steps."""

from __future__ import annotations

import json

import pytest

from services.analytics import Facts, Filters, funnel_report
from tests.conftest import AS_OF
from tests.pages import metrics, open_page, table_with, texts

STEPS = ["workspace_created", "integration_connected", "milestone:first_value_achieved"]


@pytest.fixture(scope="module")
def labels(demo_db: str) -> dict[str, str]:
    """How the step picker writes each option into the URL (Streamlit stores the label)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", demo_db)
        at = open_page("funnel", query={"as_of": AS_OF.isoformat()})
    steps, by, unit = at.multiselect(key="steps"), at.selectbox(key="by"), at.selectbox(key="unit")
    out = {o: steps.format_func(o) for o in {*STEPS, "user_invited", "dashboard_created"}}
    out |= {f"by:{v}": by.format_func(v) for v in ("segment", "plan")} | {
        f"unit:{u}": unit.format_func(u) for u in ("d", "w")
    }
    return out


def test_url_restores_the_view_and_the_steps_match_the_cli(demo_db: str, use_db, cli, labels) -> None:
    use_db(demo_db)
    at = open_page(
        "funnel",
        query={
            "as_of": AS_OF.isoformat(),
            "steps": [labels[s] for s in STEPS],
            "mode": "ordered",
            "window": "30",
            "unit": labels["unit:d"],
        },
    )
    assert at.multiselect(key="steps").value == STEPS
    assert at.segmented_control(key="mode").value == "ordered"
    assert at.number_input(key="window").value == 30
    assert at.selectbox(key="unit").value == "d"
    assert any("window 30 d from step 1 · ordered" in c for c in texts(at.caption))

    table = table_with(at, "step", "name", "accounts", "dropped", "in_progress")
    res = cli(
        demo_db,
        "report",
        "funnel",
        "--as-of",
        AS_OF.isoformat(),
        "--format",
        "json",
        "--mode",
        "ordered",
        "--window",
        "30d",
        *[x for s in STEPS for x in ("--step", s)],
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert table["step"].tolist() == [1, 2, 3]
    assert table["name"].tolist() == [r["name"] for r in rows] == STEPS
    assert table["accounts"].tolist() == [r["accounts"] for r in rows]
    assert table["dropped"].tolist() == [r["dropped"] for r in rows]
    assert table["in_progress"].tolist() == [r["in_progress"] for r in rows]
    assert rows[0]["accounts"] > rows[2]["accounts"] > 0, "a funnel that narrows"
    # The drill-down lists the accounts behind the chosen step, as many as the table says.
    pick, who = at.selectbox(key="drill_step").value, at.segmented_control(key="drill_who").value
    column = {"reached": "accounts", "dropped": "dropped", "in progress": "in_progress"}[who]
    assert f"{rows[pick - 1][column]:,} accounts" in texts(at.caption)
    drill = table_with(at, "link", "furthest", "status")
    assert len(drill) == rows[pick - 1][column] > 0


def test_strict_mode_from_the_url(demo_db: str, use_db, labels) -> None:
    use_db(demo_db)
    steps = ["workspace_created", "integration_connected"]
    at = open_page(
        "funnel",
        query={
            "as_of": AS_OF.isoformat(),
            "steps": [labels[s] for s in steps],
            "mode": "strict",
            "window": "2",
            "unit": labels["unit:w"],
        },
    )
    assert at.segmented_control(key="mode").value == "strict"
    assert (at.number_input(key="window").value, at.selectbox(key="unit").value) == (2, "w")
    expected = funnel_report(
        Facts(demo_db), steps=steps, mode="strict", window="2w", filters=Filters(), as_of=AS_OF
    ).steps
    ordered = funnel_report(
        Facts(demo_db), steps=steps, mode="ordered", window="2w", filters=Filters(), as_of=AS_OF
    ).steps
    table = table_with(at, "step", "accounts", "dropped", "in_progress")
    assert table["accounts"].tolist() == expected["accounts"].tolist()
    assert table["dropped"].tolist() == expected["dropped"].tolist()
    assert expected["accounts"].tolist() != ordered["accounts"].tolist(), "strict counts differ from ordered here"


def test_breakdown_shows_groups_side_by_side(demo_db: str, use_db, labels) -> None:
    use_db(demo_db)
    steps = ["workspace_created", "integration_connected", "user_invited"]
    at = open_page(
        "funnel", query={"as_of": AS_OF.isoformat(), "steps": [labels[s] for s in steps], "by": labels["by:segment"]}
    )
    assert at.selectbox(key="by").value == "segment"
    res = funnel_report(
        Facts(demo_db), steps=steps, mode="ordered", window="14d", by="segment", filters=Filters(), as_of=AS_OF
    ).steps
    sizes = res[res["step"] == 1].set_index("group")["accounts"].sort_values(ascending=False)
    every = sizes.index.tolist()  # every group by default (4 segments)
    assert at.multiselect(key="groups").value == every
    table = table_with(at, "group", "step", "accounts")
    assert sorted(set(table["group"])) == sorted(every)
    assert len(table) == len(every) * len(steps)
    for g in every:
        assert table[table["group"] == g]["accounts"].tolist() == res[res["group"] == g]["accounts"].tolist()
    reading = next(c for c in texts(at.caption) if "Went all the way" in c)
    for g in every:
        assert f"{g}: " in reading


def test_sidebar_filter_applies_to_the_funnel(demo_db: str, use_db, labels) -> None:
    use_db(demo_db)
    steps = ["workspace_created", "user_invited"]
    at = open_page(
        "funnel", query={"as_of": AS_OF.isoformat(), "steps": [labels[s] for s in steps], "segment": "Enterprise"}
    )
    expected = funnel_report(Facts(demo_db), steps=steps, filters=Filters(segment=("Enterprise",)), as_of=AS_OF).steps
    every = funnel_report(Facts(demo_db), steps=steps, filters=Filters(), as_of=AS_OF).steps
    table = table_with(at, "step", "accounts")
    assert table["accounts"].tolist() == expected["accounts"].tolist()
    assert table["accounts"].iloc[0] < every["accounts"].iloc[0]
    assert len(metrics(at)) == 0


def test_fewer_than_two_steps_says_what_to_do(demo_db: str, use_db, labels) -> None:
    use_db(demo_db)
    at = open_page("funnel", query={"as_of": AS_OF.isoformat(), "steps": [labels["workspace_created"]]})
    assert at.multiselect(key="steps").value == ["workspace_created"]
    assert any("Pick at least two steps" in i.value for i in at.info)
    assert not [d for d in at.dataframe if "accounts" in d.value.columns]


def test_a_shared_link_keeps_its_steps_after_new_data(small_db: str, use_db) -> None:
    """A link copied from the Funnel page must open the same steps after the next import.
    The picker's labels carry each event's account count, and Streamlit writes labels into
    the URL, so any import that changes a count silently drops those steps from old links."""
    from db.importer import import_files

    use_db(small_db)
    steps = ["workspace_created", "integration_connected"]
    before = open_page("funnel", query={"as_of": AS_OF.isoformat()})
    link = {
        "as_of": AS_OF.isoformat(),
        "steps": [before.multiselect(key="steps").format_func(s) for s in steps],
        "mode": "ordered",
    }
    opened = open_page("funnel", query=link)
    assert opened.multiselect(key="steps").value == steps

    report = import_files(
        {
            "accounts.csv": b"account_id,name,segment,contract_start,csm_email\nACC-LINK-1,Link Test Co,SMB,2026-06-01,alex.csm@example.com\n",
            "events.csv": b"account_id,event,timestamp,user_id\nACC-LINK-1,workspace_created,2026-06-02T09:00:00Z,u1\nACC-LINK-1,integration_connected,2026-06-03T09:00:00Z,u1\n",
        },
        url=small_db,
        actor="test",
    )
    assert report.ok and report.written
    after = open_page("funnel", query=link)
    assert after.multiselect(key="steps").value == steps


def test_exclusion_steps_from_the_url(demo_db: str, use_db, labels) -> None:
    """An exclusion typed in the page (kept in the URL) removes the accounts that did the
    event between the two steps, as `funnel_report(..., exclude=...)` does."""
    use_db(demo_db)
    steps = ["workspace_created", "integration_connected", "dashboard_created"]
    at = open_page(
        "funnel",
        query={
            "as_of": AS_OF.isoformat(),
            "steps": [labels[s] for s in steps],
            "window": "30",
            "exclude": "data_imported:1:2",
        },
    )
    assert at.text_input(key="exclude").value == "data_imported:1:2"
    expected = funnel_report(
        Facts(demo_db), steps=steps, window="30d", filters=Filters(), as_of=AS_OF, exclude=["data_imported:1:2"]
    )
    plain = funnel_report(Facts(demo_db), steps=steps, window="30d", filters=Filters(), as_of=AS_OF)
    table = table_with(at, "step", "accounts", "dropped", "in_progress")
    assert table["accounts"].tolist() == expected.steps["accounts"].tolist()
    n = expected.meta["excluded_accounts"]
    assert n > 0 and table["accounts"].iloc[0] == plain.steps["accounts"].iloc[0] - n
    assert any(f"{n:,} accounts left the funnel" in c for c in texts(at.caption))


def test_a_bad_exclusion_says_what_is_wrong(demo_db: str, use_db, labels) -> None:
    use_db(demo_db)
    steps = ["workspace_created", "integration_connected"]
    at = open_page(
        "funnel",
        query={"as_of": AS_OF.isoformat(), "steps": [labels[s] for s in steps], "exclude": "data_imported:1:5"},
    )
    assert any("within steps 1 to 2" in e.value for e in at.error)
    assert not [d for d in at.dataframe if "accounts" in d.value.columns]


def test_event_property_breakdown_with_step_attribution(demo_db: str, use_db, labels) -> None:
    """Break down by the integration's `source` (an event property), valued by the event
    that fills step 2: the groups are those of `funnel_report` with the same attribution."""
    use_db(demo_db)
    steps = ["workspace_created", "integration_connected", "dashboard_created"]
    first = open_page("funnel", query={"as_of": AS_OF.isoformat()})
    by_label = first.selectbox(key="by").format_func("prop:source")
    attr_label = first.selectbox(key="attribution").format_func("step:2")
    assert first.selectbox(key="attribution").disabled, "attribution only matters for an event property"
    at = open_page(
        "funnel",
        query={
            "as_of": AS_OF.isoformat(),
            "steps": [labels[s] for s in steps],
            "by": by_label,
            "attribution": attr_label,
        },
    )
    assert at.selectbox(key="by").value == "prop:source"
    assert at.selectbox(key="attribution").value == "step:2"
    assert not at.selectbox(key="attribution").disabled
    res = funnel_report(
        Facts(demo_db), steps=steps, by="prop:source", attribution="step:2", filters=Filters(), as_of=AS_OF
    ).steps
    shown = at.multiselect(key="groups").value
    assert set(shown) == set(res["group"]) and len(shown) > 1
    table = table_with(at, "group", "step", "accounts")
    for g in shown:
        assert table[table["group"] == g]["accounts"].tolist() == res[res["group"] == g]["accounts"].tolist()
    assert any("Step 2 attribution" in c for c in texts(at.caption))


def test_drilldown_pages_by_100_with_the_total(demo_db: str, use_db, labels) -> None:
    """Every account that reached step 1: a page of 100 rows, "rows 1–100 of N"; the next
    page goes on in the same order; the accounts are the report's."""
    use_db(demo_db)
    steps = ["workspace_created", "integration_connected"]
    at = open_page("funnel", query={"as_of": AS_OF.isoformat(), "steps": [labels[s] for s in steps]})
    at.selectbox(key="drill_step").set_value(1)
    at.segmented_control(key="drill_who").set_value("reached").run()
    acc = funnel_report(Facts(demo_db), steps=steps, filters=Filters(), as_of=AS_OF).accounts
    sel = acc[acc["furthest"] >= 1].sort_values(["furthest", "entered_at"], ascending=[False, True])
    n = len(sel)
    assert n > 100
    assert f"rows 1–100 of {n:,}" in texts(at.caption)
    first = table_with(at, "link", "name", "furthest", "status")
    assert first["name"].tolist() == sel["name"].head(100).tolist()
    at.selectbox(key="drill_table_page").set_value(2).run()
    assert f"rows 101–{min(n, 200)} of {n:,}" in texts(at.caption)
    second = table_with(at, "link", "name", "furthest", "status")
    assert second["name"].tolist() == sel["name"].iloc[100:200].tolist()
