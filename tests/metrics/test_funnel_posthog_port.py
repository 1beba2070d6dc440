"""The whole funnel engine against an independent port of PostHog's `steps.rs`
(tests/metrics/posthog_steps_port.py), on random account journeys drawn by hypothesis:
events at the same instant, repeated step names, milestone steps, other events between
steps (strict mode), exclusion steps, entry ranges and breakdown attribution.

Per account both sides must agree on the furthest step, on the step times of the attempt
kept (so on time to convert) and, with an event-property breakdown, on the buckets; the
step table must count what the accounts say.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from metrics.funnel import NONE_VALUE, Exclusion, FunnelSpec, funnel, journeys_to_occurrences, per_account
from tests.metrics.posthog_steps_port import run_account

BASE = datetime(2024, 3, 1, 9, 0, 0)
STEP_POOL = ["a", "b", "c", "milestone:m"]
OTHER = ["x", "z"]  # never steps; z is the usual exclusion event
VALUES = [None, "p", "q"]


@st.composite
def journeys(draw) -> dict[str, list[tuple[str, str, str | None]]]:
    """1-4 accounts with up to 12 events in 30 s: many share an instant."""
    out = {}
    for i in range(draw(st.integers(1, 4))):
        evs = draw(
            st.lists(
                st.tuples(st.sampled_from(STEP_POOL + OTHER), st.integers(0, 30), st.sampled_from(VALUES)),
                max_size=12,
            )
        )
        out[f"acc{i}"] = [(n, (BASE + timedelta(seconds=s)).isoformat(), v) for n, s, v in evs]
    return out


@st.composite
def specs(draw) -> FunnelSpec:
    steps = tuple(draw(st.lists(st.sampled_from(STEP_POOL), min_size=2, max_size=4)))
    n = len(steps)
    exclusions = []
    for _ in range(draw(st.integers(0, 2))):
        frm = draw(st.integers(1, n - 1))
        to = draw(st.integers(frm + 1, n))
        event = draw(st.sampled_from(["z", "x", *STEP_POOL]))
        if event not in steps[frm - 1 : to]:
            exclusions.append(Exclusion(event, frm, to))
    entry_from = draw(st.none() | st.integers(0, 15).map(lambda s: BASE + timedelta(seconds=s)))
    return FunnelSpec(
        steps=steps,
        mode=draw(st.sampled_from(["ordered", "strict"])),
        window_seconds=draw(st.integers(1, 30)),
        entry_from=entry_from,
        exclusions=tuple(exclusions),
        attribution=draw(st.sampled_from(["first", "last", *[f"step:{k}" for k in range(1, n + 1)]])),
    )


def seconds(ts) -> float:
    return (pd.Timestamp(ts) - pd.Timestamp("1970-01-01")).total_seconds()


def port_view(j: dict, spec: FunnelSpec, *, attribution: str | None) -> dict:
    """account -> sorted [(bucket, furthest, step times)] by the port (accounts in the funnel only)."""
    lo = seconds(spec.entry_from) if spec.entry_from else None
    out = {}
    for acc, evs in j.items():
        # PostHog takes equal events at one instant in storage order, which can matter with
        # step attribution (same step, different values); the engine fixes that order (name,
        # then value, none first), so the port gets the events in that order.
        evs = sorted(evs, key=lambda e: (e[1], e[0], e[2] is not None, e[2] or ""))
        res = run_account(
            [(n, seconds(ts), v) for n, ts, v in evs],
            steps=list(spec.steps),
            mode=spec.mode,
            window_seconds=spec.window_seconds,
            exclusions=[(x.event, x.from_step, x.to_step) for x in spec.exclusions],
            attribution=attribution,
            entry=(lo, None),
        )
        rows = [
            (NONE_VALUE if r.breakdown is None else r.breakdown, r.step_reached + 1, tuple(r.timestamps))
            for r in res
            if r.step_reached >= 0
        ]
        if rows:
            out[acc] = sorted(rows, key=str)
    return out


def engine_view(j: dict, spec: FunnelSpec, *, by_prop: bool) -> dict:
    acc = per_account(journeys_to_occurrences(j), spec, by_prop=by_prop)
    acc = acc[~acc["excluded"]]
    out: dict = {}
    for _, r in acc.iterrows():
        times = tuple(seconds(r[f"t{k}"]) for k in range(int(r["furthest"])))
        out.setdefault(r["account_id"], []).append((r["group"] if by_prop else NONE_VALUE, int(r["furthest"]), times))
    return {k: sorted(v, key=str) for k, v in out.items()}


COMMON = settings(max_examples=120, deadline=None, database=None)


@COMMON
@given(j=journeys(), spec=specs())
def test_engine_matches_the_port_without_breakdown(j, spec) -> None:
    assert engine_view(j, spec, by_prop=False) == port_view(j, spec, attribution=None)


@COMMON
@given(j=journeys(), spec=specs())
def test_engine_matches_the_port_with_attribution(j, spec) -> None:
    assert engine_view(j, spec, by_prop=True) == port_view(j, spec, attribution=spec.attribution)


@settings(max_examples=30, deadline=None, database=None)
@given(j=journeys(), spec=specs())
def test_step_table_counts_what_the_port_says(j, spec) -> None:
    view = port_view(j, spec, attribution=None)
    assume(view)
    res = funnel(journeys_to_occurrences(j), spec)
    furthest = [rows[0][1] for rows in view.values()]
    assert res.steps["accounts"].tolist() == [sum(f >= k for f in furthest) for k in range(1, len(spec.steps) + 1)]
    # Time to convert into the last step reached by anyone: from the kept attempts.
    k = max(furthest)
    if k >= 2:
        deltas = [rows[0][2][k - 1] - rows[0][2][k - 2] for rows in view.values() if rows[0][1] >= k]
        got = res.steps.loc[res.steps["step"] == k, "mean_seconds_from_previous"].iloc[0]
        assert abs(got - sum(deltas) / len(deltas)) < 1e-6


@st.composite
def ordered_distinct_specs(draw) -> FunnelSpec:
    """Ordered funnels of distinct steps without exclusions: accounts with one start are
    walked all at once (metrics.funnel._single_start), the others one by one."""
    steps = tuple(draw(st.lists(st.sampled_from(STEP_POOL), min_size=2, max_size=4, unique=True)))
    entry_from = draw(st.none() | st.integers(0, 15).map(lambda s: BASE + timedelta(seconds=s)))
    return FunnelSpec(steps=steps, mode="ordered", window_seconds=draw(st.integers(1, 30)), entry_from=entry_from)


@settings(max_examples=250, deadline=None, database=None)
@given(j=journeys(), spec=ordered_distinct_specs())
def test_accounts_with_one_start_walked_at_once_match_the_port(j, spec) -> None:
    assert engine_view(j, spec, by_prop=False) == port_view(j, spec, attribution=None)
