"""Health model: the backtest shown equals backtest_report, and moving a weight slider
recomputes the what-if AUC with those weights."""

from __future__ import annotations

from services.analytics import Facts, Filters, backtest_report
from tests.conftest import AS_OF
from tests.pages import metrics, open_page, table_with, texts

QUERY = {"as_of": AS_OF.isoformat()}


def test_backtest_with_the_current_weights(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("health_model", query=QUERY)
    base = backtest_report(Facts(demo_db), day=30, filters=Filters(), as_of=AS_OF)
    assert base.accounts > 0 and base.churned > 0
    m = metrics(at)
    assert m["AUC for churn within 12 months"] == f"{base.auc:.2f}"
    assert m["Accounts scored"] == f"{base.accounts:,}"
    assert m["Churned within 12 months"] == f"{base.churned:,}"
    assert f"95 % CI {base.auc_low:.2f}–{base.auc_high:.2f}" in texts(at.caption)
    # With the sliders untouched the what-if is today's model.
    assert m["AUC with these weights"] == f"{base.auc:.2f}"
    assert [s.value for s in at.slider] == [30, 25, 25]
    assert "20 pts" in m.values()
    assert any("model version 1" in c for c in texts(at.caption))
    compare = table_with(at, "band", "accounts_current", "churned_current")
    assert compare["accounts_current"].tolist() == base.bands["accounts"].tolist()
    assert compare["churned_current"].tolist() == base.bands["churned"].tolist()


def test_moving_a_weight_recomputes_the_what_if(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("health_model", query=QUERY)
    at.slider(key="w_milestone").set_value(55)
    at.slider(key="w_adoption").set_value(5)
    at.slider(key="w_engagement").set_value(30)
    at.run()
    assert not at.exception
    weights = {"milestone": 55, "adoption": 5, "engagement": 30, "value": 10}
    src = Facts(demo_db)
    base = backtest_report(src, day=30, filters=Filters(), as_of=AS_OF)
    what_if = backtest_report(src, day=30, weights=weights, filters=Filters(), as_of=AS_OF)
    assert what_if.auc != base.auc
    m = metrics(at)
    assert "10 pts" in m.values(), "the fourth weight takes what is left"
    assert m["AUC with these weights"] == f"{what_if.auc:.2f}"
    assert m["AUC for churn within 12 months"] == f"{base.auc:.2f}", "the current-weights backtest does not move"
    what_if_metric = next(x for x in at.metric if x.label == "AUC with these weights")
    assert what_if_metric.proto.delta == f"{what_if.auc - base.auc:+.3f} vs current"
    assert any("With weights 55/5/30/10" in c for c in texts(at.caption))
    compare = table_with(at, "band", "accounts_what_if", "churned_what_if")
    assert compare["accounts_what_if"].tolist() == what_if.bands["accounts"].tolist()
    assert compare["churned_what_if"].tolist() == what_if.bands["churned"].tolist()


def test_day_60_from_the_url(demo_db: str, use_db) -> None:
    use_db(demo_db)
    first = open_page("health_model", query=QUERY)
    label = first.segmented_control(key="day").format_func(60)
    at = open_page("health_model", query={**QUERY, "day": label})
    assert at.segmented_control(key="day").value == 60
    day60 = backtest_report(Facts(demo_db), day=60, filters=Filters(), as_of=AS_OF)
    day30 = backtest_report(Facts(demo_db), day=30, filters=Filters(), as_of=AS_OF)
    assert metrics(at)["AUC for churn within 12 months"] == f"{day60.auc:.2f}"
    assert (day60.auc, day60.bands["accounts"].tolist()) != (day30.auc, day30.bands["accounts"].tolist())


def test_segment_filter_narrows_the_backtest(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("health_model", query={**QUERY, "segment": "SMB"})
    smb = backtest_report(Facts(demo_db), day=30, filters=Filters(segment=("SMB",)), as_of=AS_OF)
    every = backtest_report(Facts(demo_db), day=30, filters=Filters(), as_of=AS_OF)
    assert metrics(at)["Accounts scored"] == f"{smb.accounts:,}"
    assert smb.accounts < every.accounts


def test_the_scoring_rules_are_shown(demo_db: str, use_db) -> None:
    """Late credit and the active days for full engagement points, from the settings."""
    use_db(demo_db)
    at = open_page("health_model", query=QUERY)
    rules = table_with(at, "rule", "setting").set_index("rule")["setting"]
    assert rules["Late milestone (completed after its due day)"] == "earns 50% of its points"
    assert rules["Engagement: active days for full points"] == "10 of the last 14 days"
