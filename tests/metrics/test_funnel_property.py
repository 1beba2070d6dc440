"""The funnel engine against an independent formulation in plain SQL (DuckDB, in memory),
on random account journeys drawn by hypothesis.

The SQL says what each mode means, without the engine's greedy search:
- ordered: an account reaches step j if some chain of its events e1..ej has the step names
  in order at increasing stream positions with ts(ej) - ts(e1) <= window;
- strict: the same with nothing between two steps of the chain but repeats of the earlier
  step's event (any other event breaks it; a repeat of the step an attempt is at does not,
  as in PostHog's steps.rs, where an event clears the attempts at the steps it cannot fill);
- unordered: from some step event (the anchor), at least j distinct step names occur at
  or after it in the stream within the window.
Both sides are compared per account (furthest step) and per step (account counts).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.funnel import FunnelSpec, funnel, journeys_to_occurrences

STEP_NAMES = ["a", "b", "c", "d"]
OTHER_NAMES = ["x", "y"]  # never a step
BASE = datetime(2024, 3, 1, 9, 0, 0)


@st.composite
def journeys(draw) -> dict[str, list[tuple[str, str]]]:
    """1-4 accounts, each with up to 10 events at distinct whole seconds (no ties)."""
    out = {}
    for i in range(draw(st.integers(1, 4))):
        seconds = draw(st.lists(st.integers(0, 600), max_size=10, unique=True))
        names = draw(st.lists(st.sampled_from(STEP_NAMES + OTHER_NAMES), min_size=len(seconds), max_size=len(seconds)))
        evs = [(n, (BASE + timedelta(seconds=s)).isoformat()) for s, n in zip(seconds, names, strict=True)]
        out[f"acc{i}"] = draw(st.permutations(evs))  # creation order is not stream order
    return out


ordered_steps = st.lists(st.sampled_from(STEP_NAMES[:3]), min_size=2, max_size=4)  # repeats allowed
unordered_steps = st.lists(st.sampled_from(STEP_NAMES), min_size=2, max_size=4, unique=True)
windows = st.integers(1, 400)


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect(":memory:")
    yield c
    c.close()


def stream(j: dict[str, list[tuple[str, str]]]) -> pd.DataFrame:
    """Every event of every account with its stream position and epoch seconds."""
    rows = [(a, name, int(pd.Timestamp(ts).timestamp())) for a, evs in j.items() for name, ts in evs]
    df = pd.DataFrame(rows, columns=["account", "name", "ts"]).sort_values(["account", "ts"])
    df["pos"] = df.groupby("account").cumcount()
    return df.astype({"account": str, "name": str, "ts": "int64", "pos": "int64"})


def q(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def sql_furthest(con, ev: pd.DataFrame, steps: list[str], mode: str, window: int) -> dict[str, int]:
    """account -> furthest step reached, by the SQL formulation (accounts that never enter are absent)."""
    con.register("ev", ev)
    try:
        if mode == "unordered":
            names = ", ".join(q(s) for s in steps)
            sql = f"""
                SELECT a.account, MAX(n) AS furthest FROM (
                    SELECT a.account, a.pos, COUNT(DISTINCT e.name) AS n
                    FROM ev a JOIN ev e
                      ON e.account = a.account AND e.pos >= a.pos AND e.ts - a.ts <= {window}
                     AND e.name IN ({names})
                    WHERE a.name IN ({names})
                    GROUP BY a.account, a.pos
                ) a GROUP BY a.account
            """
        else:
            parts = []
            for j in range(1, len(steps) + 1):
                joins, where = [], [f"e1.name = {q(steps[0])}", f"e{j}.ts - e1.ts <= {window}"]
                for i in range(2, j + 1):
                    joins.append(
                        f"JOIN ev e{i} ON e{i}.account = e1.account AND e{i}.pos > e{i - 1}.pos "
                        f"AND e{i}.name = {q(steps[i - 1])}"
                    )
                    if mode == "strict":
                        # Only repeats of step i-1's event between the two.
                        where.append(
                            f"NOT EXISTS (SELECT 1 FROM ev x WHERE x.account = e1.account AND x.pos > e{i - 1}.pos "
                            f"AND x.pos < e{i}.pos AND x.name <> {q(steps[i - 2])})"
                        )
                parts.append(
                    f"SELECT DISTINCT e1.account, {j} AS reached FROM ev e1 {' '.join(joins)} WHERE {' AND '.join(where)}"
                )
            sql = f"SELECT account, MAX(reached) AS furthest FROM ({' UNION ALL '.join(parts)}) c GROUP BY account"
        return {a: int(n) for a, n in con.execute(sql).fetchall()}
    finally:
        con.unregister("ev")


def engine_furthest(occ: pd.DataFrame, steps: list[str], mode: str, window: int) -> tuple[dict[str, int], list[int]]:
    res = funnel(occ, FunnelSpec(steps=tuple(steps), mode=mode, window_seconds=window))
    furthest = dict(zip(res.accounts["account_id"], res.accounts["furthest"].astype(int), strict=True))
    return furthest, res.steps["accounts"].astype(int).tolist()


def check(con, j: dict, steps: list[str], mode: str, window: int) -> None:
    expected = sql_furthest(con, stream(j), steps, mode, window)
    expected_counts = [sum(1 for n in expected.values() if n >= k) for k in range(1, len(steps) + 1)]
    inputs = [journeys_to_occurrences(j)]  # every event of the account
    if mode != "strict":
        # What db.facts gives outside strict mode: the step events only.
        inputs.append(journeys_to_occurrences(j, steps))
    for occ in inputs:
        furthest, counts = engine_furthest(occ, steps, mode, window)
        assert furthest == expected
        assert counts == expected_counts


COMMON = settings(max_examples=150, deadline=None, database=None)


@COMMON
@given(j=journeys(), steps=ordered_steps, window=windows)
def test_ordered_matches_sql(con, j, steps, window) -> None:
    check(con, j, steps, "ordered", window)


@COMMON
@given(j=journeys(), steps=ordered_steps, window=windows)
def test_strict_matches_sql(con, j, steps, window) -> None:
    check(con, j, steps, "strict", window)


def test_a_repeat_of_the_step_reached_does_not_break_a_strict_funnel(con) -> None:
    """Found by test_strict_matches_sql: the repeated b keeps the attempt at step 2 (PostHog's
    port agrees, tests/metrics/test_funnel_posthog_port.py)."""
    names = ["a", "a", "b", "b", "a"]
    j = {"acc0": [(n, (BASE + timedelta(seconds=s)).isoformat()) for s, n in enumerate(names)]}
    assert sql_furthest(con, stream(j), ["a", "b", "a"], "strict", 3) == {"acc0": 3}
    check(con, j, ["a", "b", "a"], "strict", 3)
    j["acc0"][3] = ("x", j["acc0"][3][1])  # another event there breaks it
    assert sql_furthest(con, stream(j), ["a", "b", "a"], "strict", 3) == {"acc0": 2}
    check(con, j, ["a", "b", "a"], "strict", 3)


@COMMON
@given(j=journeys(), steps=unordered_steps, window=windows)
def test_unordered_matches_sql(con, j, steps, window) -> None:
    check(con, j, steps, "unordered", window)


def test_sql_formulation_on_a_known_journey(con) -> None:
    """The reference itself, on a journey worked by hand: a x b c, 10 s apart."""
    j = {
        "acc0": [
            ("a", "2024-03-01T09:00:00"),
            ("x", "2024-03-01T09:00:10"),
            ("b", "2024-03-01T09:00:20"),
            ("c", "2024-03-01T09:00:30"),
        ]
    }
    ev = stream(j)
    assert sql_furthest(con, ev, ["a", "b", "c"], "ordered", 30) == {"acc0": 3}
    assert sql_furthest(con, ev, ["a", "b", "c"], "ordered", 29) == {"acc0": 2}
    assert sql_furthest(con, ev, ["a", "b", "c"], "strict", 30) == {"acc0": 1}  # x breaks a -> b
    assert sql_furthest(con, ev, ["b", "c", "a"], "strict", 30) == {"acc0": 2}
    assert sql_furthest(con, ev, ["c", "a", "b"], "unordered", 20) == {"acc0": 2}  # from b: b, c
    assert sql_furthest(con, ev, ["c", "a", "b"], "unordered", 30) == {"acc0": 3}
    assert sql_furthest(con, ev, ["d", "x"], "ordered", 30) == {}
