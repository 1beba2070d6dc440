"""The health score: each component on hand-built facts, the band edges, the explanation,
and point-in-time behaviour on a database (later data never changes a past score;
snapshots are idempotent per date)."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from db.defaults import DEFAULT_HEALTH_MODEL
from db.session import get_engine
from metrics.health import BANDS, COMPONENT_LABELS, HealthModel, band_of, compute, explain, milestone_facts
from services.analytics import Facts, health_table
from services.health import snapshot
from tests.metrics.test_funnel_reference import import_contract

MODEL = HealthModel()

# A healthy baseline: every component full (30 + 25 + 25 + 20 = 100).
BASE = {
    "account_id": 1,
    "n_due": 3,
    "n_on_time": 3,
    "n_late": 0,
    "active_users": 8,
    "licensed_seats": 10,
    "active_days": 10,
    "value_ms_total": 2,
    "value_ms_done": 2,
    "value_items": 0,
    "value_done": 0,
}


def scored(model: HealthModel = MODEL, **facts) -> pd.Series:
    return compute(pd.DataFrame([{**BASE, **facts}]), model).iloc[0]


def test_baseline_is_full_marks() -> None:
    r = scored()
    assert (r["milestone"], r["adoption"], r["engagement"], r["value"], r["total"]) == (30, 25, 25, 20, 100)
    assert r["band"] == "Excellent"


@pytest.mark.parametrize(
    ("facts", "points"),
    [
        pytest.param({"n_due": 4, "n_on_time": 4, "n_late": 0}, 30.0, id="all-on-time"),
        pytest.param({"n_due": 4, "n_on_time": 2, "n_late": 2}, 22.5, id="late-earn-half"),
        pytest.param({"n_due": 4, "n_on_time": 0, "n_late": 4}, 15.0, id="all-late"),
        pytest.param({"n_due": 4, "n_on_time": 2, "n_late": 0}, 15.0, id="two-overdue"),
        pytest.param({"n_due": 4, "n_on_time": 0, "n_late": 0}, 0.0, id="all-overdue"),
        pytest.param({"n_due": 4, "n_on_time": 1, "n_late": 1}, 11.2, id="mixed"),  # 1.5 / 4 * 30 = 11.25
        pytest.param({"n_due": 0, "n_on_time": 0, "n_late": 0}, 30.0, id="nothing-due-yet"),
    ],
)
def test_milestone_progress(facts: dict, points: float) -> None:
    r = scored(**facts)
    assert r["milestone"] == points
    assert r["total"] == pytest.approx(points + 70)


@pytest.mark.parametrize(
    ("users", "seats", "points", "share"),
    [
        pytest.param(0, 10, 0.0, 0.0, id="0%"),
        pytest.param(4, 10, 12.5, 0.4, id="40%"),
        pytest.param(8, 10, 25.0, 0.8, id="80%"),
        pytest.param(10, 10, 25.0, 1.0, id="100%"),
        pytest.param(15, 10, 25.0, 1.5, id="over-100%"),
        pytest.param(6, 20, 9.4, 0.3, id="30%"),  # 0.3 / 0.8 * 25 = 9.375
        pytest.param(5, None, 0.0, math.nan, id="seats-unknown"),
        pytest.param(5, 0, 0.0, math.nan, id="zero-seats"),
    ],
)
def test_user_adoption(users: int, seats: int | None, points: float, share: float) -> None:
    r = scored(active_users=users, licensed_seats=np.nan if seats is None else seats)
    assert r["adoption"] == points
    assert (math.isnan(r["adoption_share"]) and math.isnan(share)) or r["adoption_share"] == pytest.approx(share)


@pytest.mark.parametrize(
    ("days", "points"),
    [
        pytest.param(0, 0.0, id="0-of-14"),
        pytest.param(5, 12.5, id="5-of-14"),
        pytest.param(10, 25.0, id="10-of-14-is-daily-use"),
        pytest.param(14, 25.0, id="14-of-14"),
        pytest.param(7, 17.5, id="7-of-14"),
    ],
)
def test_engagement_quality(days: int, points: float) -> None:
    assert scored(active_days=days)["engagement"] == points


@pytest.mark.parametrize(
    ("facts", "points"),
    [
        pytest.param({"value_ms_total": 2, "value_ms_done": 2}, 20.0, id="no-checklist-all-reached"),
        pytest.param({"value_ms_total": 2, "value_ms_done": 1}, 10.0, id="no-checklist-half-reached"),
        pytest.param({"value_ms_total": 2, "value_ms_done": 0}, 0.0, id="no-checklist-none"),
        pytest.param({"value_ms_total": 0, "value_ms_done": 0}, 0.0, id="no-value-milestones"),
        pytest.param(
            {"value_ms_total": 2, "value_ms_done": 1, "value_items": 3, "value_done": 3}, 15.0, id="checklist-all-met"
        ),
        pytest.param(
            {"value_ms_total": 2, "value_ms_done": 2, "value_items": 4, "value_done": 1}, 12.5, id="checklist-1-of-4"
        ),
        pytest.param(
            {"value_ms_total": 2, "value_ms_done": 0, "value_items": 3, "value_done": 0}, 0.0, id="checklist-none"
        ),
    ],
)
def test_value_realization(facts: dict, points: float) -> None:
    assert scored(**facts)["value"] == points


def test_weights_from_settings_rescale_the_components() -> None:
    model = HealthModel.from_settings(
        {"weights": {"milestone": 40, "adoption": 20, "engagement": 20, "value": 20}, "bands": MODEL.bands}
    )
    model.validate()
    r = scored(model, n_due=4, n_on_time=2, n_late=0, active_users=4)
    assert (r["milestone"], r["adoption"], r["engagement"], r["value"], r["total"]) == (20, 10, 20, 20, 70)


def test_invalid_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="add up to 100"):
        MODEL.with_weights({"milestone": 30, "adoption": 25, "engagement": 25, "value": 25}).validate()


# ----------------------------------------------------------------------------- bands


EDGES = [
    (39.9, "Critical"),
    (40.0, "At Risk"),
    (59.9, "At Risk"),
    (60.0, "On Track"),
    (79.9, "On Track"),
    (80.0, "Excellent"),
]


def test_band_names_are_the_seed_bands() -> None:
    assert BANDS == ("Excellent", "On Track", "At Risk", "Critical")
    assert {b for _, b in EDGES} == set(BANDS)


@pytest.mark.parametrize(("total", "band"), [*EDGES, (0.0, "Critical"), (100.0, "Excellent")])
def test_band_of_edges(total: float, band: str) -> None:
    assert band_of(total, MODEL.bands).item() == band


@pytest.mark.parametrize(("total", "band"), EDGES)
def test_band_edges_through_compute(total: float, band: str) -> None:
    """All weight on milestones, so n_on_time / 1000 of 100 points lands on the edge exactly."""
    model = HealthModel(weights={"milestone": 100, "adoption": 0, "engagement": 0, "value": 0})
    model.validate()
    r = scored(model, n_due=1000, n_on_time=round(total * 10), n_late=0)
    assert r["total"] == total
    assert r["band"] == band


@pytest.mark.parametrize(
    ("facts", "points", "band"),
    [
        pytest.param({"n_on_time": 0, "active_users": 0, "active_days": 7}, (0, 0, 17.5, 20), "Critical", id="37.5"),
        pytest.param({"n_on_time": 0, "active_users": 0, "active_days": 8}, (0, 0, 20, 20), "At Risk", id="40"),
        pytest.param({"active_users": 0, "value_ms_total": 4, "value_ms_done": 1}, (30, 0, 25, 5), "On Track", id="60"),
        pytest.param({"value_ms_done": 0}, (30, 25, 25, 0), "Excellent", id="80"),
    ],
)
def test_band_edges_with_the_seed_weights(facts: dict, points: tuple, band: str) -> None:
    """Totals made of real component points under the seed model."""
    r = scored(**facts)
    assert (r["milestone"], r["adoption"], r["engagement"], r["value"]) == points
    assert r["total"] == sum(points)
    assert r["band"] == band


# ----------------------------------------------------------------------------- explain


NAMES = {"training_completed": "Training completed", "kickoff_complete": "Kickoff complete"}


def explained(**facts) -> dict:
    return explain(scored(**facts).to_dict(), MODEL, NAMES)


def test_explain_lists_every_component_with_points_and_facts() -> None:
    e = explained(n_due=4, n_on_time=2, n_late=1, active_users=4, active_days=5, value_ms_done=1)
    assert [c["key"] for c in e["components"]] == ["milestone", "adoption", "engagement", "value"]
    assert [c["component"] for c in e["components"]] == [COMPONENT_LABELS[c["key"]] for c in e["components"]]
    assert sum(c["points"] for c in e["components"]) == pytest.approx(e["total"])
    assert [c["max"] for c in e["components"]] == [30, 25, 25, 20]
    facts = {c["key"]: c["facts"] for c in e["components"]}
    assert (
        facts["milestone"]
        == "2 of 4 milestones due by now completed on time, 1 late (a late milestone earns 50% of its points)"
    )
    assert facts["adoption"].startswith("4 active users in the last 14 days of 10 licensed seats (40%")
    assert facts["engagement"].startswith("active on 5 of the last 14 days")
    assert facts["value"] == "1 of 2 value milestones reached"


def test_late_credit_and_engagement_full_days_are_settings_shown_in_the_explanation() -> None:
    """Defaults: a late milestone earns half; 10 active days of 14 earn full engagement."""
    e = explained(n_due=4, n_on_time=2, n_late=1, active_days=5)
    assert "full points at 10 active days" in e["components"][2]["facts"]
    assert e["rules"] == [
        "A milestone completed by the end of its due day earns its full share; a late one earns 50% of it.",
        "User adoption: active users in the last 14 days over licensed seats; full points at 80%.",
        "Engagement: days with activity in the last 14; full points at 10 active days.",
    ]
    model = HealthModel.from_settings(
        {**DEFAULT_HEALTH_MODEL, "late_credit": 0.25, "engagement_full_days": 7}, version=2
    )
    r = scored(model, n_due=4, n_on_time=2, n_late=2, active_days=7)
    assert r["milestone"] == 18.8  # (2 + 0.25 * 2) / 4 * 30 = 18.75
    assert r["engagement"] == 25.0  # 7 active days now earn full points
    e = explain(r, model)
    assert "a late milestone earns 25% of its points" in e["components"][0]["facts"]
    assert "full points at 7 active days" in e["components"][2]["facts"]


def test_a_stored_share_of_active_days_still_reads_as_days() -> None:
    legacy = {k: v for k, v in DEFAULT_HEALTH_MODEL.items() if k != "engagement_full_days"}
    legacy["engagement_full_share"] = 5 / 7
    assert HealthModel.from_settings(legacy).engagement_full_days == 10


def test_explain_next_action_adoption() -> None:
    e = explained(active_users=2)  # adoption 2/10: 25 * (1 - 0.25) = 18.75 points to gain
    assert e["next_action_component"] == "User adoption"
    assert e["next_action_gain"] == pytest.approx(18.8, abs=0.05)
    assert e["next_action"].startswith("Activate 6 more users")


def test_explain_next_action_when_seats_are_unknown() -> None:
    e = explained(licensed_seats=np.nan)
    assert e["next_action_component"] == "User adoption"
    assert e["next_action"] == "Record the licensed seats so adoption can be measured"
    assert "licensed seats unknown" in e["components"][1]["facts"]


def test_explain_next_action_overdue_milestones() -> None:
    row = scored(n_due=4, n_on_time=1, n_late=0).to_dict()
    row["overdue_keys"] = ["kickoff_complete", "training_completed", "custom_step"]
    e = explain(row, MODEL, NAMES)
    assert e["next_action_component"] == "Milestone progress"
    assert e["next_action_gain"] == 22.5
    assert e["next_action"] == "Complete the overdue milestones Kickoff complete, Training completed, custom_step"
    assert "overdue: Kickoff complete, Training completed, custom_step" in e["components"][0]["facts"]


def test_explain_next_action_engagement() -> None:
    e = explained(active_days=3)
    assert e["next_action_component"] == "Engagement quality"
    assert e["next_action"].startswith("Create a habit: activity on 7 more days in 14")


def test_explain_next_action_value() -> None:
    e = explained(value_ms_done=0)
    assert e["next_action_component"] == "Value realization"
    assert e["next_action"].startswith("Reach first value")
    done = explained(value_ms_done=2, value_items=4, value_done=0)
    assert done["next_action_component"] == "Value realization"
    assert done["next_action"].startswith("Document the value criteria met")


# ----------------------------------------------------------------------------- milestone facts


def test_milestone_facts_are_point_in_time() -> None:
    ms = pd.DataFrame(
        {
            "account_id": [1, 1, 1, 1, 1, 1],
            "milestone_key": ["a", "b", "c", "d", "e", "v"],
            "due_date": pd.to_datetime(
                ["2025-01-10", "2025-01-10", "2025-01-10", "2025-01-20", "2025-01-21", "2025-01-15"]
            ),
            "completed_at": pd.to_datetime(
                [
                    "2025-01-10 23:59:59",  # on its due day: on time
                    "2025-01-11 00:00:00",  # the day after: late
                    "2025-01-21 00:00:00",  # after the as-of day: not done yet (overdue)
                    None,  # due on the as-of day itself, not done: due
                    None,  # due tomorrow: not due
                    "2025-01-14 08:00:00",  # value milestone, early
                ]
            ),
        }
    )
    end = pd.Series(pd.Timestamp("2025-01-21"), index=[1])  # as of 2025-01-20
    f = milestone_facts(ms, end, {"v", "e"}).iloc[0]
    assert (f["n_due"], f["n_on_time"], f["n_late"]) == (5, 2, 1)
    assert (f["value_ms_total"], f["value_ms_done"]) == (2, 1)


# ----------------------------------------------------------------------------- point in time, on a database

PAST = date(2026, 6, 1)
LATER = date(2026, 6, 20)
SCORE_COLS = ["account_id", "total", "band", "milestone", "adoption", "engagement", "value", "n_due", "n_on_time"]


def test_past_scores_do_not_change_when_later_data_arrives(small_db: str, tmp_path: Path) -> None:
    before_src = Facts(small_db)
    before = health_table(before_src, as_of=PAST)
    before_later = health_table(before_src, as_of=LATER)
    live = before[before["status"] != "churned"]
    assert len(live) >= 10

    # Later data for every live account: new users active on many days after PAST, and
    # every milestone not done by then completed two days after it.
    info = before_src.accounts().set_index("account_id")
    ext = info["external_id"]
    events = [
        (ext[a], "dashboard_viewed", f"{PAST + timedelta(days=d)}T{10 + u}:00:00Z", f"later-user-{u}")
        for a in live["account_id"]
        for d in range(1, 15)
        for u in range(6)
    ]
    ms = before_src.milestones()
    open_ms = ms[
        ms["account_id"].isin(live["account_id"])
        & (ms["completed_at"].isna() | (ms["completed_at"] >= pd.Timestamp(PAST) + pd.Timedelta(days=1)))
    ]
    assert len(open_ms) > 0
    milestones = [
        (ext[r.account_id], r.milestone_key, r.due_date.date(), f"{PAST + timedelta(days=2)}T09:00:00Z")
        for r in open_ms.itertuples()
    ]
    import_contract(small_db, tmp_path / "later", events=events, milestones=milestones)

    after_src = Facts(small_db)
    after = health_table(after_src, as_of=PAST)
    pd.testing.assert_frame_equal(
        before[SCORE_COLS].reset_index(drop=True), after[SCORE_COLS].reset_index(drop=True), check_dtype=False
    )
    for col in ("active_users", "active_days", "n_late", "value_ms_done"):
        assert before[col].tolist() == after[col].tolist(), col

    # The new data is real: scored as of a later date it raises the accounts it touched.
    after_later = health_table(after_src, as_of=LATER)
    merged = before_later.merge(after_later, on="account_id", suffixes=("_before", "_after"))
    merged = merged[merged["account_id"].isin(live["account_id"])]
    assert (merged["total_after"] >= merged["total_before"]).all()
    assert (merged["total_after"] > merged["total_before"]).sum() >= len(merged) // 2


def snapshot_rows(url: str, d: date) -> pd.DataFrame:
    with get_engine(url).connect() as c:
        rows = c.execute(
            text("SELECT account_id, total, band FROM health_snapshots WHERE date = :d ORDER BY account_id"), {"d": d}
        ).fetchall()
    return pd.DataFrame(rows, columns=["account_id", "total", "band"])


def test_snapshot_is_idempotent_per_date(small_db: str) -> None:
    others_before = snapshot_rows(small_db, date(2026, 6, 30))
    n1 = snapshot(url=small_db, as_of=PAST)
    first = snapshot_rows(small_db, PAST)
    n2 = snapshot(url=small_db, as_of=PAST)
    second = snapshot_rows(small_db, PAST)

    h = health_table(Facts(small_db), as_of=PAST)
    live = h[h["status"] != "churned"].sort_values("account_id")
    assert n1 == n2 == len(live) == len(second)
    assert second["account_id"].is_unique
    assert second["account_id"].tolist() == live["account_id"].tolist()
    pd.testing.assert_frame_equal(first, second)
    assert second["total"].astype(float).tolist() == pytest.approx(live["total"].tolist())
    assert second["band"].tolist() == live["band"].tolist()
    # Another date's snapshot is left alone.
    pd.testing.assert_frame_equal(others_before, snapshot_rows(small_db, date(2026, 6, 30)))
