"""Funnel semantics as account journeys, each checked through the pure engine and, where
the database shapes the input (strict mode, milestones, ties, property values), through a
database loaded with the importer and `funnel_report` / `manage.py report funnel`.

Issue 11, points 1-3 and 13: strict funnels see the whole stream even with a milestone
step; events at one instant are taken in step order and never by storage order; time to
convert comes from the attempt PostHog keeps; a window ending at the as-of instant is still
in progress.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from itertools import permutations
from pathlib import Path

import pandas as pd
import pytest

from db.importer import import_dir
from db.settings_store import init_db
from metrics.funnel import FunnelSpec, funnel, journeys_to_occurrences, per_account
from services.analytics import Facts, Filters, funnel_report
from tests.metrics.test_funnel_reference import CSM, write_csv

DAY = "2026-05-04"
AS_OF = date(2026, 6, 30)


def at(hhmm: str, day: str = DAY) -> str:
    return f"{day}T{hhmm}:00Z"


def load(
    url: str,
    folder: Path,
    *,
    events: list[tuple],
    milestones: list[tuple] = (),
    accounts: tuple[str, ...] = ("A1",),
) -> None:
    """Import accounts, events (account, event, ts[, properties dict]) and completed
    milestones (account, key, completed_at) in the given row order."""
    init_db(url)
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "team.csv", ["email", "name", "role"], [CSM])
    write_csv(
        folder / "accounts.csv",
        ["account_id", "name", "segment", "contract_start", "csm_email"],
        [(a, f"Account {a}", "SMB", "2026-05-01", CSM[0]) for a in accounts],
    )
    write_csv(
        folder / "events.csv",
        ["account_id", "event", "timestamp", "user_id", "properties"],
        [(e[0], e[1], e[2], "u1", json.dumps(e[3]) if len(e) > 3 else "") for e in events],
    )
    if milestones:
        write_csv(
            folder / "milestones.csv",
            ["account_id", "milestone", "due_date", "completed_at"],
            [(a, k, "2026-06-01", ts) for a, k, ts in milestones],
        )
    report = import_dir(folder, url=url)
    assert report.ok, [str(p) for p in report.problems[:10]]


def report(url: str, steps: list[str], **kw) -> pd.DataFrame:
    return funnel_report(Facts(url), steps=steps, filters=Filters(), as_of=AS_OF, **kw)


def furthest(url: str, steps: list[str], **kw) -> dict[str, int]:
    acc = report(url, steps, **kw).accounts
    return dict(zip(acc["external_id"], acc["furthest"], strict=True))


# ----------------------------------------------------------------------------- 1. strict with a milestone step

STRICT_MILESTONE = ["step_a", "milestone:kickoff_complete", "step_b"]


@pytest.mark.parametrize(
    ("events", "done", "expected"),
    [
        # step_a, milestone, other, step_b: the other event breaks milestone -> step_b.
        ([("step_a", at("10:00")), ("other", at("11:00")), ("step_b", at("12:00"))], at("10:30"), 2),
        # step_a, other, milestone, step_b: the other event breaks step_a -> milestone.
        ([("step_a", at("10:00")), ("other", at("10:10")), ("step_b", at("12:00"))], at("10:30"), 1),
        # Nothing between: all three.
        ([("step_a", at("10:00")), ("step_b", at("12:00"))], at("10:30"), 3),
        # Another event at the milestone's own instant is in its group: no break (steps.rs).
        ([("step_a", at("10:00")), ("other", at("10:30")), ("step_b", at("12:00"))], at("10:30"), 3),
        # A run of other events after the milestone: one break is enough.
        (
            [("step_a", at("10:00")), ("o1", at("11:00")), ("o2", at("11:10")), ("step_b", at("12:00"))],
            at("10:30"),
            2,
        ),
    ],
    ids=["other-after-milestone", "other-before-milestone", "adjacent", "other-at-milestone-instant", "run-of-others"],
)
def test_strict_funnel_with_a_milestone_step_sees_the_events_in_between(
    databases, tmp_path, events, done, expected
) -> None:
    url = databases.new()
    load(url, tmp_path, events=[("A1", *e) for e in events], milestones=[("A1", "kickoff_complete", done)])
    assert furthest(url, STRICT_MILESTONE, mode="strict", window="1d") == {"A1": expected}
    # The pure engine on the full stream says the same.
    stream = {"A1": [*events, ("milestone:kickoff_complete", done)]}
    acc = per_account(journeys_to_occurrences(stream), FunnelSpec(tuple(STRICT_MILESTONE), mode="strict"))
    assert acc["furthest"].tolist() == [expected]


# ----------------------------------------------------------------------------- 2. events at the same instant


def test_a_milestone_and_an_event_at_one_instant_are_taken_in_step_order(databases, tmp_path) -> None:
    """The demo's kickoff milestone is completed at the kickoff meeting's own timestamp:
    PostHog takes different step events at one instant in step order, both ways round."""
    url = databases.new()
    load(
        url,
        tmp_path,
        events=[("A1", "kickoff_meeting_held", at("10:00"))],
        milestones=[("A1", "kickoff_complete", at("10:00"))],
    )
    for mode in ("ordered", "strict"):
        for steps in (
            ["milestone:kickoff_complete", "kickoff_meeting_held"],
            ["kickoff_meeting_held", "milestone:kickoff_complete"],
        ):
            res = report(url, steps, mode=mode)
            assert res.steps["accounts"].tolist() == [1, 1], (mode, steps)
            assert res.steps["median_seconds_from_previous"].iloc[1] == 0.0


def test_storage_order_never_changes_a_result(databases, tmp_path) -> None:
    """The same journey imported with its rows in every order gives one answer (ties
    between a step event, another event and the next step)."""
    rows = [
        ("A1", "step_a", at("10:00")),
        ("A1", "other", at("10:00")),
        ("A1", "step_b", at("10:00")),
        ("A1", "step_c", at("10:05")),
    ]
    answers = set()
    for i, order in enumerate(list(permutations(rows[:3]))[:4]):
        url = databases.new()
        load(url, tmp_path / f"o{i}", events=[*order, rows[3]])
        for mode in ("ordered", "strict"):
            acc = report(url, ["step_a", "step_b", "step_c"], mode=mode, window="1h").accounts
            answers.add((mode, int(acc["furthest"].iloc[0]), acc["t2"].iloc[0]))
    assert answers == {
        ("ordered", 3, pd.Timestamp("2026-05-04 10:05")),
        ("strict", 3, pd.Timestamp("2026-05-04 10:05")),
    }


def test_engine_is_blind_to_row_order_with_ties() -> None:
    evs = [("a", at("10:00")), ("b", at("10:00")), ("x", at("10:00")), ("a", at("10:01")), ("b", at("10:02"))]
    spec = FunnelSpec(("a", "b", "b"), mode="strict", window_seconds=600)
    seen = set()
    for order in permutations(evs):
        acc = per_account(journeys_to_occurrences({"A": list(order)}), spec)
        seen.add((int(acc["furthest"].iloc[0]), tuple(acc[f"t{k}"].iloc[0] for k in range(3))))
    assert len(seen) == 1


# ----------------------------------------------------------------------------- 3. time to convert


@pytest.mark.parametrize(
    ("journey", "steps", "seconds"),
    [
        # PostHog keeps the most recent step-1 event of the chain that first got furthest.
        ([("a", "10:00"), ("a", "11:00"), ("b", "12:00")], ["a", "b"], [3600]),
        # A step already held by the attempt keeps its first event: a, b, b, c.
        ([("a", "10:00"), ("b", "10:10"), ("b", "10:20"), ("c", "10:30")], ["a", "b", "c"], [600, 1200]),
        # The first chain to reach the furthest step wins over a later, faster one.
        ([("a", "10:00"), ("b", "10:50"), ("a", "11:00"), ("b", "11:05")], ["a", "b"], [3000]),
    ],
    ids=["a-a-b", "a-b-b-c", "first-to-furthest"],
)
def test_time_to_convert_comes_from_the_attempt_posthog_keeps(databases, tmp_path, journey, steps, seconds) -> None:
    spec = FunnelSpec(tuple(steps), window_seconds=86400)
    t = funnel(journeys_to_occurrences({"A": [(n, at(h)) for n, h in journey]}), spec).steps
    assert t["mean_seconds_from_previous"].tolist()[1:] == seconds
    url = databases.new()
    load(url, tmp_path, events=[("A1", n, at(h)) for n, h in journey])
    got = report(url, steps, window="1d").steps
    assert got["median_seconds_from_previous"].tolist()[1:] == seconds


# ----------------------------------------------------------------------------- 13. window ending at the as-of instant


def test_a_window_that_ends_at_the_end_of_the_as_of_day_is_in_progress(databases, tmp_path, cli) -> None:
    """Step 1 at 2026-06-16 00:00, 14-day window: it ends at 2026-06-30 24:00, the end of
    the as-of day, an instant not yet observed. As of the next day it has closed."""
    url = databases.new()
    load(url, tmp_path, events=[("A1", "step_a", "2026-06-16T00:00:00Z")])
    args = ["report", "funnel", "--step", "step_a", "--step", "step_b", "--window", "14d", "--format", "json"]
    on_the_day = json.loads(cli(url, *args, "--as-of", "2026-06-29").stdout)
    assert (on_the_day[1]["in_progress"], on_the_day[1]["dropped"]) == (1, 0)
    after = json.loads(cli(url, *args, "--as-of", "2026-06-30").stdout)
    assert (after[1]["in_progress"], after[1]["dropped"]) == (0, 1)
    # The engine: as_of is the exclusive end of what is observed.
    occ = journeys_to_occurrences({"A": [("step_a", "2026-06-16T00:00:00")]})
    for as_of, status in ((datetime(2026, 6, 30), "in progress"), (datetime(2026, 6, 30, 0, 0, 1), "dropped")):
        spec = FunnelSpec(("step_a", "step_b"), window_seconds=14 * 86400, as_of=as_of)
        assert funnel(occ, spec).accounts["status"].tolist() == [status]


def parse(stdout: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(stdout)))
