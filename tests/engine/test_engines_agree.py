"""Every report gives identical numbers on every analytics engine: the app database read
directly (SQLite, or PostgreSQL's own SQL), DuckDB over the Parquet copy, ClickHouse's
engine (chdb) over the same copy and, on PostgreSQL, the aggregations pushed down to the
server. Each engine gets a fresh Facts (nothing shared), so every fact comes from it. On
SQLite, the same again with the reads going through the standard library's sqlite3 instead
of SQLAlchemy (db.session.use_reader, what a `manage.py report` process does)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services import analytics as an
from tests.conftest import AS_OF, ON_POSTGRES

STEPS = ["workspace_created", "data_imported", "dashboard_created"]
MIXED = ["milestone:kickoff_complete", "login", "milestone:first_value_achieved"]

REPORTS = {
    "funnel": lambda s: an.funnel_report(s, steps=STEPS, as_of=AS_OF),
    "funnel_strict_milestones": lambda s: an.funnel_report(s, steps=MIXED, mode="strict", as_of=AS_OF),
    "funnel_unordered_by_segment": lambda s: an.funnel_report(
        s, steps=STEPS, mode="unordered", by="segment", as_of=AS_OF
    ),
    "funnel_by_event_property": lambda s: an.funnel_report(
        s, steps=["workspace_created", "integration_connected", "dashboard_created"], by="prop:source", as_of=AS_OF
    ),
    "funnel_exclusion": lambda s: an.funnel_report(s, steps=STEPS, exclude=["login:1:2"], as_of=AS_OF),
    "retention": lambda s: an.retention_report(s, start_event="workspace_created", return_event="login", date_to=AS_OF),
    "retention_first_time": lambda s: an.retention_report(
        s, start_event="login", return_event="dashboard_created", period="day", first_time=True, date_to=AS_OF
    ),
    "health": lambda s: an.health_table(s, as_of=AS_OF),
    "signals": lambda s: an.signals_report(s, as_of=AS_OF),
    "ttv": lambda s: an.ttv_report(s, by="segment", as_of=AS_OF),
    "cohorts": lambda s: an.cohort_report(s, by="month", as_of=AS_OF),
    "cohort_weeks": lambda s: an.cohort_week_report(s, as_of=AS_OF),
    "backtest": lambda s: an.backtest_report(s, day=30, as_of=AS_OF),
    "portfolio": lambda s: an.portfolio(s, as_of=AS_OF),
    "triggers": lambda s: an.trigger_table(s, as_of=AS_OF),
    "manual_vs_measured": lambda s: _measured(s),
    "data_quality": lambda s: _data_quality(s),
}


def _measured(s: an.Facts) -> pd.DataFrame:
    from services.measured import portfolio_disagreements

    return portfolio_disagreements(s, as_of=AS_OF, account_ids=s.accounts()["account_id"].tolist())


def _data_quality(s: an.Facts) -> dict:
    from db.facts import data_quality

    with s.engine.connect() as conn:
        return data_quality(conn)


def engines(tmp: Path) -> dict[str, str]:
    """ANALYTICS_URL per engine under test on this backend."""
    out = {"direct": "direct", "duckdb": f"duckdb://{tmp / 'duck'}", "chdb": f"chdb://{tmp / 'ch'}"}
    if ON_POSTGRES:
        out["postgres-pushdown"] = ""  # the default on PostgreSQL
    else:
        out["duckdb-beside-file"] = ""  # the default on SQLite
        # The same reads on read-only sqlite3 connections (no SQLAlchemy), direct and by the copy.
        out["reader-direct"] = "direct"
        out["reader-duckdb-beside-file"] = ""
    return out


def same(a: object, b: object, where: str) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True, obj=where)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float | np.floating) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def results(demo_db: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    import engine
    from db.session import LiteEngine, get_engine, stop_reader, use_reader

    out: dict[str, dict[str, object]] = {}
    with pytest.MonkeyPatch.context() as mp:
        for name, setting in engines(tmp_path_factory.mktemp("engines")).items():
            mp.setenv("ANALYTICS_URL", setting)
            eng = engine.analytics_for(demo_db)
            assert (eng is None) == name.endswith("direct"), name
            reader = name.startswith("reader-")
            if reader:
                assert use_reader(demo_db)
            try:
                assert isinstance(get_engine(demo_db), LiteEngine) == reader, name
                out[name] = {r: job(an.Facts(demo_db)) for r, job in REPORTS.items()}
            finally:
                stop_reader(demo_db)
    return out


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_every_engine_gives_the_numbers_of_the_database(results: dict, report: str) -> None:
    ref = results["direct"][report]
    for name, res in results.items():
        same(ref, res[report], f"{report} on {name}")


def test_the_reports_are_not_empty(results: dict) -> None:
    """The comparison means something: the demo's funnels and health have accounts in them."""
    r = results["direct"]
    assert r["funnel"].accounts.shape[0] > 100
    assert len(r["funnel_by_event_property"].steps) > 3 * 3  # several sources, three steps each
    assert len(r["health"]) > 100
    assert r["health"]["active_users"].sum() > 0
    assert len(r["manual_vs_measured"]) > 0
    assert r["data_quality"]["events_before_start"] > 0 and r["data_quality"]["accounts_without_events"] > 0
