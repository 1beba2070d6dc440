"""Cohorts: the cohort table equals cohort_report; the `view` query parameter opens the other
tabs: time to value (medians equal ttv_report), usage retention (equals retention_report)
and early signals (with the correlation caveat)."""

from __future__ import annotations

import numpy as np
import pytest

from services.analytics import Facts, Filters, cohort_report, retention_report, signals_report, ttv_report
from tests.conftest import AS_OF
from tests.pages import open_page, table_with, texts

QUERY = {"as_of": AS_OF.isoformat()}


def same_floats(shown, expected, scale: float = 1.0) -> None:
    a = np.asarray(shown, dtype=float)
    b = np.asarray(expected, dtype=float) * scale
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.allclose(a[~np.isnan(a)], b[~np.isnan(b)])


@pytest.mark.parametrize(("param", "by"), [(None, "month"), ("Start quarter", "quarter"), ("Segment", "segment")])
def test_cohort_table_equals_the_report(demo_db: str, use_db, param: str | None, by: str) -> None:
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, **({"cohort_by": param} if param else {})})
    assert at.selectbox(key="cohort_by").value == by
    expected = cohort_report(Facts(demo_db), by=by, within_days=None, filters=Filters(), as_of=AS_OF)
    t = table_with(at, "cohort", "accounts", "completion_rate_label", "completion_eligible")
    assert len(expected) > 1
    assert t["cohort"].astype(str).tolist() == expected["cohort"].astype(str).tolist()
    assert t["accounts"].tolist() == expected["accounts"].tolist()
    assert t["completed"].tolist() == expected["completed"].tolist()
    assert t["completion_eligible"].tolist() == expected["completion_eligible"].tolist()
    assert int(t["accounts"].sum()) == 160
    same_floats(t["ttfv_median_days"], expected["ttfv_median_days"])
    same_floats(t["logo_retention_12m"], expected["logo_retention_12m"], 100)
    # The rate as text; a cohort too young for every account to count is not yet known.
    assert expected["completion_incomplete"].any()
    if by == "month":  # old cohorts are fully observed, young ones not
        assert not expected["completion_incomplete"].all()
    for label, rate, young, n_obs, n in zip(
        t["completion_rate_label"],
        expected["completion_rate"],
        expected["completion_incomplete"],
        expected["completion_eligible"],
        expected["accounts"],
        strict=True,
    ):
        if young:
            assert label == f"not yet known ({n_obs} of {n} observed)"
        else:
            assert label == ("–" if np.isnan(rate) else f"{rate * 100:.0f} %")


def test_within_days_from_the_url(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "cohort_by": "Segment", "within": "45"})
    assert at.number_input(key="within").value == 45
    expected = cohort_report(Facts(demo_db), by="segment", within_days=45, filters=Filters(), as_of=AS_OF)
    default = cohort_report(Facts(demo_db), by="segment", within_days=None, filters=Filters(), as_of=AS_OF)
    t = table_with(at, "cohort", "completed", "completion_eligible")
    assert t["completed"].tolist() == expected["completed"].tolist()
    assert t["completion_eligible"].tolist() == expected["completion_eligible"].tolist()
    assert expected["completed"].tolist() != default["completed"].tolist()


def test_time_to_value_tab_shows_the_km_medians(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "view": "Time to value", "ttv_by": "Segment"})
    assert at.selectbox(key="ttv_by").value == "segment"
    res = ttv_report(Facts(demo_db), milestone="first_value_achieved", by="segment", filters=Filters(), as_of=AS_OF)
    t = table_with(at, "group", "accounts", "reached", "censored", "median_days", "naive_median_days")
    assert t["group"].tolist() == res.groups["group"].tolist()
    assert t["accounts"].tolist() == res.groups["accounts"].tolist()
    assert t["censored"].tolist() == res.groups["censored"].tolist()
    same_floats(t["median_days"], res.groups["median_days"])
    same_floats(t["target_days"], res.groups["target_days"])
    assert any("biased" in c for c in texts(at.caption))
    # The cohort table belongs to the other tab and is not drawn.
    assert not [d for d in at.dataframe if "completion_rate_label" in d.value.columns]


def test_time_to_value_for_all_accounts(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "view": "Time to value"})
    compare = at.selectbox(key="ttv_by")
    compare.select_index(compare.options.index(compare.format_func(None))).run()
    assert not at.exception
    res = ttv_report(Facts(demo_db), filters=Filters(), as_of=AS_OF)
    g = res.groups.iloc[0]
    t = table_with(at, "group", "median_days")
    assert len(t) == 1
    assert t["median_days"].iloc[0] == pytest.approx(g["median_days"])
    reading = next(c for c in texts(at.caption) if "Half the accounts reach" in c)
    assert f"within {g['median_days']:.0f} days" in reading
    assert f"{int(g['censored']):,} not there yet are censored" in reading


def test_usage_retention_tab(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "view": "Usage retention", "ret_n": "6"})
    expected = retention_report(
        Facts(demo_db),
        start_event="login",
        return_event="login",
        period="week",
        intervals=6,
        date_to=AS_OF,
        filters=Filters(),
    )
    t = table_with(at, "cohort", "p0")
    assert len(t) == len(expected) == 6
    # The cohort size, then percent of it (as text: blank where not observed yet, * in progress).
    assert t["p0"].str.rstrip(" *").astype(int).tolist() == expected["p0"].tolist()
    for c in [c for c in expected.columns if c.startswith("p") and c != "p0"]:
        rate = expected[c] / expected["p0"] * 100
        assert t[c].str.rstrip(" *").tolist() == ["" if np.isnan(v) else f"{v:.0f} %" for v in rate]
    assert expected["p0"].sum() > 0
    assert any("came back the next week" in c for c in texts(at.caption))


def test_early_signals_tab_carries_the_caveat(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "view": "Early signals"})
    sig = signals_report(
        Facts(demo_db), outcome="retained", days=14, min_count=1, filters=Filters(), as_of=AS_OF, group_identical=True
    )
    warnings = texts(at.warning)
    assert any("correlations, not causes" in w for w in warnings)
    assert len(sig) > 0
    t = table_with(at, "behaviour", "support", "rate_with", "lift")
    assert t["behaviour"].tolist() == [
        " · ".join(x.replace("milestone:", "milestone ").replace("_", " ") for x in (b, *also))
        for b, also in zip(sig["behaviour"], sig["also"], strict=True)
    ]
    assert t["support"].tolist() == sig["support"].tolist()
    same_floats(t["rate_with"], sig["rate_with"], 100)
    same_floats(t["lift"], sig["lift"])


def _array(v) -> np.ndarray:
    """A Plotly trace's data: a list, or base64 typed-array data ({"dtype", "bdata"})."""
    if isinstance(v, dict):
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).astype(float)
    return np.asarray(v, float)


def test_time_to_value_curve_has_one_point_a_day(demo_db: str, use_db) -> None:
    """The Kaplan-Meier chart draws one point per day (not one per account), and at each of
    them the curve's value by the end of that day, as the report computes it."""
    import json

    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "view": "Time to value", "ttv_by": "Segment"})
    res = ttv_report(Facts(demo_db), milestone="first_value_achieved", by="segment", filters=Filters(), as_of=AS_OF)
    fig = json.loads(next(c for c in at.get("plotly_chart") if c.proto.id.endswith("km_chart")).proto.spec)
    lines = [t for t in fig["data"] if t.get("name")]  # the curves (the bands have no name)
    assert len(lines) == res.curves["group"].nunique()
    for trace, (_g, c) in zip(lines, res.curves.groupby("group", sort=True), strict=True):
        x, y = _array(trace["x"]), _array(trace["y"])
        assert np.array_equal(x, np.unique(np.ceil(c["day"].to_numpy(float)))), "one point per day"
        assert len(x) < len(c) or len(c) == len(np.unique(np.ceil(c["day"])))
        # The value at day d is the last step at or before d.
        c = c.sort_values("day", kind="stable")
        expected = [c.loc[c["day"] <= d, "reached"].iloc[-1] * 100 for d in x]
        same_floats(y, expected)
