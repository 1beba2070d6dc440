"""PostHog's own funnel test cases (tests/reference/, from shared/reference/posthog_funnel_cases.json), each person
one account, through the pure engine (metrics.funnel) and through `manage.py report funnel`
against a database loaded with the importer.

Every case runs for its mode and every mode in `also_asserted_for_modes`. Cases whose
timestamps were synthesized are never date-filtered (their dates mean nothing).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from datetime import date, datetime, time
from pathlib import Path

import pandas as pd
import pytest

from db.importer import import_dir
from db.settings_store import init_db
from metrics.funnel import FunnelSpec, funnel, journeys_to_occurrences

# Copied from shared/reference/ into the repository, so a clean clone has them.
REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "posthog_funnel_cases.json"
AS_OF = "2026-06-30"
CSM = ("csm@example.com", "Casey Example", "csm")


def load_cases(path: Path = REFERENCE) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return json.load(f)["cases"]


CASES = load_cases()
CASE_MODES = [
    pytest.param(case, mode, id=f"{case['name']}[{mode}]")
    for case in CASES
    for mode in [case["mode"], *case.get("also_asserted_for_modes", [])]
]


# ----------------------------------------------------------------------------- importing journeys


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])


def import_contract(
    url: str,
    folder: Path,
    *,
    accounts: list[dict] | None = None,
    events: list[tuple] | None = None,
    milestones: list[tuple] | None = None,
    outcomes: list[tuple] | None = None,
) -> None:
    """Write contract CSV files into `folder` and import them with the importer.

    accounts: dicts with account_id, name, segment, contract_start (+ optional columns);
    events: (account_id, event, timestamp, user_id); milestones: (account_id, milestone,
    due_date, completed_at); outcomes: (account_id, date, type, arr_change).
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "team.csv", ["email", "name", "role"], [CSM])
    if accounts:
        base = ["account_id", "name", "segment", "contract_start"]
        extra = sorted({k for a in accounts for k in a} - set(base))
        header = [*base, *extra, "csm_email"]
        write_csv(folder / "accounts.csv", header, ([a.get(c) for c in header[:-1]] + [CSM[0]] for a in accounts))
    if events:
        write_csv(
            folder / "events.csv",
            ["account_id", "event", "timestamp", "user_id", "properties"],
            ((*e, "") for e in events),
        )
    if milestones:
        write_csv(folder / "milestones.csv", ["account_id", "milestone", "due_date", "completed_at"], milestones)
    if outcomes:
        write_csv(folder / "outcomes.csv", ["account_id", "date", "type", "arr_change"], outcomes)
    report = import_dir(folder, url=url)
    assert report.ok, [str(p) for p in report.problems[:10]]
    assert report.written


def import_people(url: str, folder: Path, people: dict[str, list[list[str]]], contract_start: str) -> None:
    """One account per person (SMB, one CSM), its events stamped as given (naive = UTC)."""
    accounts = [
        {"account_id": p, "name": f"Account {p}", "segment": "SMB", "contract_start": contract_start} for p in people
    ]
    events = [(p, name, ts if ts.endswith("Z") else ts + "Z", p) for p, evs in people.items() for name, ts in evs]
    import_contract(url, folder, accounts=accounts, events=events)


def earliest_day(people: dict[str, list[list[str]]]) -> str:
    return min(pd.Timestamp(ts) for evs in people.values() for _, ts in evs).strftime("%Y-%m-%d")


# ----------------------------------------------------------------------------- expectations


def per_step(expected, k: int) -> list | None:
    """Expected per-step values (step 0 has none); a scalar (time-to-convert cases) is the last step's."""
    if expected is None:
        return None
    if isinstance(expected, int | float):
        return [None] * (k - 1) + [expected]
    assert len(expected) == k
    return list(expected)


def entry_range(case: dict) -> tuple[date | None, date | None]:
    """The case's date range as whole days, or none for synthesized timestamps."""
    dr = case.get("date_range")
    if case["timestamps_synthesized"] or not dr:
        return None, None
    return pd.Timestamp(dr["from"]).date(), pd.Timestamp(dr["to"]).date()


def assert_steps(counts, means, medians, names, case: dict, mode: str) -> None:
    k = len(case["steps"])
    assert len(counts) == k
    expected_counts = per_step(case["expected_counts"], k)
    if expected_counts is not None:
        for i, exp in enumerate(expected_counts):
            if exp is not None:
                assert counts[i] == exp, f"step {i + 1}: {counts[i]} accounts, PostHog {exp}"
    for label, got, expected in (
        ("mean", means, per_step(case["expected_avg_seconds"], k)),
        ("median", medians, per_step(case["expected_median_seconds"], k)),
    ):
        assert got[0] is None or math.isnan(got[0]), "step 1 has no time from a previous step"
        if expected is None:
            continue
        for i, exp in enumerate(expected):
            if exp is not None:
                assert got[i] == pytest.approx(exp, rel=1e-9), f"step {i + 1} {label} seconds"
    if mode == "unordered":
        assert names == ["Completed 1 step", *[f"Completed {i} steps" for i in range(2, k + 1)]]
    else:
        assert names == list(case["steps"])


# ----------------------------------------------------------------------------- the engine


def test_reference_file_has_the_documented_shape() -> None:
    assert len(CASES) >= 6
    modes = {m for c in CASES for m in [c["mode"], *c.get("also_asserted_for_modes", [])]}
    assert modes == {"ordered", "strict", "unordered"}
    for c in CASES:
        assert c["expected_counts"] is not None
        assert 2 <= len(c["steps"]) <= 10
        if c["timestamps_synthesized"]:
            assert c["date_range"] is None


@pytest.mark.parametrize(("case", "mode"), CASE_MODES)
def test_engine_matches_posthog(case: dict, mode: str) -> None:
    lo, hi = entry_range(case)
    spec = FunnelSpec(
        steps=tuple(case["steps"]),
        mode=mode,
        window_seconds=case["window_seconds"],
        entry_from=datetime.combine(lo, time.min) if lo else None,
        entry_to=datetime.combine(hi, time.max) if hi else None,
    )
    res = funnel(journeys_to_occurrences(case["people"]), spec)
    t = res.steps
    assert_steps(
        t["accounts"].tolist(),
        t["mean_seconds_from_previous"].tolist(),
        t["median_seconds_from_previous"].tolist(),
        t["name"].tolist(),
        case,
        mode,
    )
    # Per account: nobody is counted past the step they reached, and without an as-of
    # date nothing is "in progress".
    assert len(res.accounts) == t["accounts"].iloc[0]
    assert set(res.accounts["status"]) <= {"converted", "dropped"}


def test_window_end_is_inclusive_and_one_second_less_excludes() -> None:
    case = next(c for c in CASES if c["name"] == "ordered_window_5_minutes_boundary_inclusive")
    occ = journeys_to_occurrences(case["people"])
    for mode in ("ordered", "unordered"):
        at = funnel(occ, FunnelSpec(tuple(case["steps"]), mode=mode, window_seconds=300)).steps
        under = funnel(occ, FunnelSpec(tuple(case["steps"]), mode=mode, window_seconds=299)).steps
        assert at["accounts"].tolist() == [3, 1]
        assert under["accounts"].tolist() == [3, 0]


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def case_db(databases, tmp_path_factory):
    """One database per reference case, built on first use and shared by its modes."""
    urls: dict[str, str] = {}

    def get(case: dict) -> str:
        if case["name"] not in urls:
            url = databases.new()
            init_db(url)
            folder = tmp_path_factory.mktemp(case["name"])
            import_people(url, folder, case["people"], earliest_day(case["people"]))
            urls[case["name"]] = url
        return urls[case["name"]]

    return get


def parse_csv(stdout: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(stdout)))


def num(s: str) -> float | None:
    return None if s == "" else float(s)


@pytest.mark.parametrize(("case", "mode"), CASE_MODES)
def test_cli_matches_posthog(case: dict, mode: str, case_db, cli) -> None:
    url = case_db(case)
    args = ["report", "funnel", "--mode", mode, "--window", f"{case['window_seconds']}s", "--as-of", AS_OF]
    for s in case["steps"]:
        args += ["--step", s]
    lo, hi = entry_range(case)
    if lo:
        args += ["--from", lo.isoformat(), "--to", hi.isoformat()]
    res = cli(url, *args)
    assert res.returncode == 0, res.stderr
    rows = parse_csv(res.stdout)
    assert list(rows[0])[:3] == ["step", "name", "accounts"]
    assert [int(r["step"]) for r in rows] == list(range(1, len(case["steps"]) + 1))
    assert_steps(
        [int(r["accounts"]) for r in rows],
        [num(r["mean_seconds_from_previous"]) for r in rows],
        [num(r["median_seconds_from_previous"]) for r in rows],
        [r["name"] for r in rows],
        case,
        mode,
    )


def test_cli_entry_range_filters_on_step_one(case_db, cli) -> None:
    """The 7-day case's accounts all enter on 2021-05-01 (a range that includes it is the
    parametrized case): a range that starts the day after leaves nobody, and says so."""
    case = next(c for c in CASES if c["name"] == "ordered_conversion_window_7_days")
    url = case_db(case)
    base = ["report", "funnel", "--step", "step one", "--step", "step two", "--window", "7d", "--as-of", AS_OF]
    after = cli(url, *base, "--from", "2021-05-02", "--to", "2021-05-14")
    assert after.returncode == 0, after.stderr
    rows = parse_csv(after.stdout)
    assert [int(r["accounts"]) for r in rows] == [0, 0]
    assert [r["mean_seconds_from_previous"] for r in rows] == ["", ""]
