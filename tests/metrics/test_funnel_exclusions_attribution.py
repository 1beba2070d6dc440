"""Exclusion steps and breakdown attribution, as PostHog's own tests have them.

Cases transcribed from PostHog/posthog `posthog/hogql_queries/insights/funnels/test/`:
test_funnel.py (test_funnel_exclusions_full_window, test_funnel_exclusion_no_end_event,
test_funnel_exclusion_multiple_possible_no_end_event1/2/3,
test_advanced_funnel_exclusions_between_steps,
test_advanced_funnel_multiple_exclusions_between_steps,
test_funnel_exclusions_invalid_params) and breakdown_cases.py
(test_funnel_step_breakdown_with_first_touch_attribution, ..._last_touch_attribution,
..._step_attribution, ..._step_one_attribution,
..._step_one_attribution_incomplete_funnel). Each person is one account; PostHog's steps
and exclusion ranges are 0-based, ours 1-based (funnelFromStep 0 / funnelToStep 1 is
`EVENT:1:2`), and PostHog's `breakdown_attribution_value` N is our `step:N+1`. PostHog's
empty breakdown value '' is our "(none)".
"""

from __future__ import annotations

import csv
import io

import pytest

from metrics.funnel import NONE_VALUE, Exclusion, FunnelSpec, funnel, journeys_to_occurrences
from tests.metrics.test_funnel_journeys import load

D = "2021-05-01"
FIVE = ["user signed up", "$pageview", "insight viewed", "invite teammate", "pageview2"]


def h(hms: str, day: str = D) -> str:
    return f"{day}T{hms}"


ADVANCED = {
    "person1": [
        ("user signed up", h("01:00:00")),
        ("$pageview", h("02:00:00")),
        ("x", h("03:00:00")),
        ("insight viewed", h("04:00:00")),
        ("x", h("04:30:00")),
        ("invite teammate", h("05:00:00")),
        ("x", h("05:30:00")),
        ("pageview2", h("06:00:00")),
    ],
    "person2": [
        ("user signed up", h("01:00:00")),
        ("$pageview", h("02:00:00")),
        ("insight viewed", h("04:00:00")),
        ("x", h("04:30:00")),
        ("invite teammate", h("05:00:00")),
        ("x", h("05:30:00")),
        ("pageview2", h("06:00:00")),
    ],
    "person3": [
        ("user signed up", h("01:00:00")),
        ("x", h("01:30:00")),
        ("$pageview", h("02:00:00")),
        ("insight viewed", h("04:00:00")),
        ("invite teammate", h("05:00:00")),
        ("x", h("05:30:00")),
        ("pageview2", h("06:00:00")),
    ],
}
MULTIPLE = {
    "person1": [
        ("user signed up", h("01:00:00")),
        ("x", h("02:00:00")),
        ("$pageview", h("03:00:00")),
        ("insight viewed", h("04:00:00")),
        ("y", h("04:30:00")),
        ("invite teammate", h("05:00:00")),
        ("pageview2", h("06:00:00")),
    ],
    "person2": [
        ("user signed up", h("01:00:00")),
        ("y", h("01:30:00")),
        ("$pageview", h("02:00:00")),
        ("insight viewed", h("04:00:00")),
        ("y", h("04:30:00")),
        ("invite teammate", h("05:00:00")),
        ("x", h("05:30:00")),
        ("pageview2", h("06:00:00")),
    ],
    "person3": [
        ("user signed up", h("01:00:00")),
        ("x", h("01:30:00")),
        ("$pageview", h("02:00:00")),
        ("insight viewed", h("04:00:00")),
        ("invite teammate", h("05:00:00")),
        ("x", h("05:30:00")),
        ("pageview2", h("06:00:00")),
    ],
    "person4": [
        ("user signed up", h("01:00:00")),
        ("$pageview", h("02:00:00")),
        ("insight viewed", h("04:00:00")),
        ("invite teammate", h("05:00:00")),
        ("pageview2", h("06:00:00")),
    ],
}
TWO_STEP = {
    "person1": [("user signed up", h("01:00:00")), ("paid", h("02:00:00"))],
    "person2": [("user signed up", h("03:00:00")), ("x", h("03:30:00")), ("paid", h("04:00:00"))],
}

# (id, steps, window seconds, exclusions, people, expected counts, accounts at step 1)
EXCLUSION_CASES = [
    (
        "full_window",
        ["user signed up", "paid"],
        14 * 86400,
        ["x 1 name with numbers 2:1:2"],
        {
            **{k: [(("x 1 name with numbers 2" if n == "x" else n), t) for n, t in v] for k, v in TWO_STEP.items()},
            "person3": [("user signed up", h("05:00:00")), ("paid", h("06:00:00"))],
        },
        [2, 2],
        {"person1", "person3"},
    ),
    (
        "no_end_event",
        ["user signed up", "paid"],
        86400,
        ["x:1:2"],
        {
            **TWO_STEP,
            # Discarded although nothing follows x: x is inside the window.
            "person3": [("user signed up", h("05:00:00")), ("x", h("06:00:00"))],
            # x after the window: kept.
            "person4": [("user signed up", h("07:00:00")), ("x", h("08:00:00", "2021-05-02"))],
        },
        [2, 1],
        {"person1", "person4"},
    ),
    (
        "multiple_possible_no_end_event1",
        ["step one", "step two"],
        10,
        ["exclusion:1:2"],
        {"user_one": [("step one", h("00:00:00")), ("exclusion", h("00:00:01")), ("step one", h("00:00:31"))]},
        [1, 0],
        {"user_one"},
    ),
    (
        "multiple_possible_no_end_event2",
        ["step one", "step two"],
        10,
        ["exclusion:1:2"],
        {"user_one": [("step one", h("00:00:00")), ("step one", h("00:00:31")), ("exclusion", h("00:00:32"))]},
        [1, 0],
        {"user_one"},
    ),
    (
        "multiple_possible_no_end_event3",
        ["step one", "step two"],
        10,
        ["exclusion:1:2"],
        {"user_one": [("step one", h("00:00:00")), ("step one", h("00:00:01")), ("exclusion", h("00:00:02"))]},
        [0, 0],
        set(),
    ),
    ("advanced_0_1", FIVE, 14 * 86400, ["x:1:2"], ADVANCED, [2, 2, 2, 2, 2], {"person1", "person2"}),
    ("advanced_1_2", FIVE, 14 * 86400, ["x:2:3"], ADVANCED, [2, 2, 2, 2, 2], {"person2", "person3"}),
    ("advanced_2_3", FIVE, 14 * 86400, ["x:3:4"], ADVANCED, [1, 1, 1, 1, 1], {"person3"}),
    ("advanced_3_4", FIVE, 14 * 86400, ["x:4:5"], ADVANCED, [0, 0, 0, 0, 0], set()),
    ("advanced_1_3", FIVE, 14 * 86400, ["x:2:4"], ADVANCED, [1, 1, 1, 1, 1], {"person3"}),
    ("multiple_x01_y23", FIVE, 14 * 86400, ["x:1:2", "y:3:4"], MULTIPLE, [1, 1, 1, 1, 1], {"person4"}),
    ("multiple_x01_y01", FIVE, 14 * 86400, ["x:1:2", "y:1:2"], MULTIPLE, [1, 1, 1, 1, 1], {"person4"}),
    ("multiple_x04_y04", FIVE, 14 * 86400, ["x:1:5", "y:1:5"], MULTIPLE, [1, 1, 1, 1, 1], {"person4"}),
]


@pytest.mark.parametrize(
    ("steps", "window", "exclusions", "people", "counts", "at_step_1"),
    [pytest.param(*c[1:], id=c[0]) for c in EXCLUSION_CASES],
)
def test_exclusions_match_posthog(steps, window, exclusions, people, counts, at_step_1) -> None:
    spec = FunnelSpec(tuple(steps), window_seconds=window, exclusions=tuple(Exclusion.parse(x) for x in exclusions))
    res = funnel(journeys_to_occurrences(people), spec)
    assert res.steps["accounts"].tolist() == counts
    assert set(res.accounts["account_id"]) == at_step_1
    assert res.meta["excluded_accounts"] == len(people) - len(at_step_1)


@pytest.mark.parametrize(
    "exclusion",
    ["x:2:2", "x:2:3", "x:3:2", "x:1:3", "x:0:1", "paid:1:2", "x:1", "x:a:2", ":1:2"],
)
def test_invalid_exclusions_say_what_is_wrong(exclusion) -> None:
    """PostHog's test_funnel_exclusions_invalid_params (and ours: steps are 1-based, and a
    funnel step cannot exclude itself)."""
    with pytest.raises(ValueError, match="exclusion"):
        FunnelSpec(("user signed up", "paid"), exclusions=(Exclusion.parse(exclusion),)).validate()


def test_exclusions_need_an_ordered_or_strict_funnel() -> None:
    spec = FunnelSpec(("a", "b"), mode="unordered", exclusions=(Exclusion("x", 1, 2),))
    with pytest.raises(ValueError, match="ordered or strict"):
        spec.validate()


def test_strict_exclusion_event_is_also_an_other_event() -> None:
    """In strict mode the exclusion event breaks the sequence too: the account stays at
    step 1 with its attempt marked, so it leaves the funnel."""
    people = {"A": [("a", h("01:00:00")), ("x", h("01:10:00")), ("b", h("01:20:00"))]}
    spec = FunnelSpec(("a", "b"), mode="strict", exclusions=(Exclusion("x", 1, 2),))
    res = funnel(journeys_to_occurrences(people), spec)
    assert res.steps["accounts"].tolist() == [0, 0]
    assert res.meta["excluded_accounts"] == 1


# ----------------------------------------------------------------------------- attribution

B = "$browser"
D1, D2 = "2020-01-01", "2020-01-02"
BROWSERS = {
    "person1": [("sign up", h("12:00:00", D1), "Chrome"), ("buy", h("13:00:00", D1), None)],
    "person2": [("sign up", h("13:00:00", D1), None), ("buy", h("13:00:00", D2), "Safari")],
    "person3": [("sign up", h("14:00:00", D2), "Mac"), ("buy", h("15:00:00", D2), None)],
    "person4": [("sign up", h("15:00:00", D2), 0), ("buy", h("16:00:00", D2), "alakazam")],
}
WITH_NO_PROPS = {**BROWSERS, "person5": [("sign up", h("15:00:00", D2), None), ("buy", h("16:00:00", D2), None)]}
LAST = {**WITH_NO_PROPS, "person4": [("sign up", h("15:00:00", D2), 0), ("buy", h("16:00:00", D2), "Alakazam")]}
INCOMPLETE = {
    "person1": BROWSERS["person1"],
    "person2": BROWSERS["person2"][:1],
    "person3": BROWSERS["person3"][:1],
    "person4": BROWSERS["person4"],
}
N = NONE_VALUE

# (id, attribution, people, {bucket: (counts, mean seconds into step 2, accounts)})
ATTRIBUTION_CASES = [
    (
        "first_touch",
        "first",
        WITH_NO_PROPS,
        {
            N: ([1, 1], 3600, {"person5"}),
            "0": ([1, 1], 3600, {"person4"}),
            "Chrome": ([1, 1], 3600, {"person1"}),
            "Mac": ([1, 1], 3600, {"person3"}),
            "Safari": ([1, 1], 86400, {"person2"}),
        },
    ),
    (
        "last_touch",
        "last",
        LAST,
        {
            N: ([1, 1], 3600, {"person5"}),
            "Alakazam": ([1, 1], 3600, {"person4"}),
            "Chrome": ([1, 1], 3600, {"person1"}),
            "Mac": ([1, 1], 3600, {"person3"}),
            "Safari": ([1, 1], 86400, {"person2"}),
        },
    ),
    (
        "step_attribution_0",
        "step:1",
        BROWSERS,
        {
            N: ([1, 1], 86400, {"person2"}),
            "0": ([1, 1], 3600, {"person4"}),
            "Chrome": ([1, 1], 3600, {"person1"}),
            "Mac": ([1, 1], 3600, {"person3"}),
        },
    ),
    (
        "step_one_attribution",
        "step:2",
        BROWSERS,
        {
            N: ([2, 2], 3600, {"person1", "person3"}),
            "Safari": ([1, 1], 86400, {"person2"}),
            "alakazam": ([1, 1], 3600, {"person4"}),
        },
    ),
    (
        # "Breakdown by step_1 means funnel items that never reach step_1 are NULLed out."
        "step_one_attribution_incomplete_funnel",
        "step:2",
        INCOMPLETE,
        {N: ([1, 1], 3600, {"person1"}), "alakazam": ([1, 1], 3600, {"person4"})},
    ),
]


@pytest.mark.parametrize(
    ("attribution", "people", "expected"), [pytest.param(*c[1:], id=c[0]) for c in ATTRIBUTION_CASES]
)
@pytest.mark.parametrize("mode", ["ordered", "strict"])
def test_breakdown_attribution_matches_posthog(mode, attribution, people, expected) -> None:
    spec = FunnelSpec(("sign up", "buy"), mode=mode, window_seconds=7 * 86400, attribution=attribution)
    res = funnel(journeys_to_occurrences(people), spec, group_by=f"prop:{B}")
    t = res.steps
    assert sorted(set(t["group"])) == sorted(expected)
    for g, (counts, seconds, accounts) in expected.items():
        part = t[t["group"] == g]
        assert part["accounts"].tolist() == counts, g
        assert part["mean_seconds_from_previous"].iloc[1] == seconds, g
        assert set(res.accounts.loc[res.accounts["group"] == g, "account_id"]) == accounts, g


def test_attribution_values_come_from_the_database_the_same_way(databases, tmp_path, cli) -> None:
    """The last two cases through the importer (properties as JSON) and the CLI."""
    url = databases.new()
    people = BROWSERS
    load(
        url,
        tmp_path,
        accounts=tuple(people),
        events=[(p, n, ts + "Z", {} if v is None else {B: v}) for p, evs in people.items() for n, ts, v in evs],
    )
    base = ["report", "funnel", "--step", "sign up", "--step", "buy", "--window", "7d", "--as-of", "2021-01-01"]
    for attribution, (_, _, _, expected) in (("step:2", ATTRIBUTION_CASES[3]), ("first", ATTRIBUTION_CASES[0])):
        res = cli(url, *base, "--by", f"prop:{B}", "--attribution", attribution)
        assert res.returncode == 0, res.stderr
        rows = list(csv.DictReader(io.StringIO(res.stdout)))
        got = {}
        for r in rows:
            got.setdefault(r["group"], []).append(int(r["accounts"]))
        want = {g: c for g, (c, _, acc) in expected.items() if acc <= set(people)}
        assert got == want, attribution


def test_cli_exclusion_and_its_mistakes(databases, tmp_path, cli) -> None:
    url = databases.new()
    people = {k: v for k, v in EXCLUSION_CASES[1][4].items()}
    load(url, tmp_path, accounts=tuple(people), events=[(p, n, t + "Z") for p, evs in people.items() for n, t in evs])
    base = ["report", "funnel", "--step", "user signed up", "--step", "paid", "--window", "1d", "--as-of", "2021-06-01"]
    res = cli(url, *base, "--exclude", "x:1:2")
    assert res.returncode == 0, res.stderr
    assert [int(r["accounts"]) for r in csv.DictReader(io.StringIO(res.stdout))] == [2, 1]
    without = cli(url, *base)
    assert [int(r["accounts"]) for r in csv.DictReader(io.StringIO(without.stdout))] == [4, 2]
    for bad, words in (("x:1:3", "within steps 1 to 2"), ("x-1-2", "EVENT:FROM:TO"), ("paid:1:2", "itself a step")):
        res = cli(url, *base, "--exclude", bad)
        assert res.returncode != 0 and words in res.stderr and "Traceback" not in res.stderr, res.stderr
    res = cli(url, *base, "--attribution", "last")
    assert res.returncode != 0 and "prop:NAME" in res.stderr and "Traceback" not in res.stderr
