"""What the dashboard keeps between runs (services.analytics.Facts, shared by every page and
session): text columns share their strings, the memo is bounded by bytes, and a filtered
health table is cut from every account's table without changing a value."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from services import analytics as an
from services.analytics import Facts, Filters, compact, health_model, health_table, portfolio
from tests.conftest import AS_OF


def test_compact_shares_strings_and_changes_nothing_else() -> None:
    n = 400
    segments = ["SMB", "Mid-Market", "Enterprise", None, math.nan]
    df = pd.DataFrame(
        {
            # New str objects per row, as a database driver returns them.
            "segment": ["".join(list(str(segments[i % 5]))) if segments[i % 5] is not None else None for i in range(n)],
            "name": [f"Account {i}" for i in range(n)],  # unique: left alone
            "mixed": [1 if i % 2 else 1.0 for i in range(n)],  # 1 == 1.0: must not be merged
            "props": [{"k": i % 3} for i in range(n)],  # unhashable
            "x": np.arange(n, dtype="int64"),
        },
        index=pd.RangeIndex(10, 10 + n),
    )
    df.loc[df.index[3::5], "segment"] = None
    df.loc[df.index[4::5], "segment"] = np.nan
    before = df.copy(deep=True)
    missing = df["segment"].to_numpy()[3::5].copy(), df["segment"].to_numpy()[4::5].copy()

    out = compact(df)

    pd.testing.assert_frame_equal(out, before)
    assert list(out.dtypes) == list(before.dtypes)
    seg = out["segment"].to_numpy()
    present = [v for v in seg if isinstance(v, str)]
    assert len({id(v) for v in present}) == 3  # one object per distinct string
    assert all(v is None for v in seg[3::5]) and all(v is None for v in missing[0])
    assert all(isinstance(v, float) and math.isnan(v) for v in seg[4::5])
    assert [type(v) for v in out["mixed"]] == [type(v) for v in before["mixed"]]
    assert len({id(v) for v in out["name"]}) == n


def test_memo_is_bounded_by_bytes_least_recently_used_first(demo_db: str) -> None:
    mb = 2**20
    src = Facts(demo_db, memo_bytes=3 * mb + mb // 2)
    frame = lambda: pd.DataFrame({"x": np.zeros(mb // 8)})  # noqa: E731 - 1 MB each
    for k in "abc":
        src.cached((k,), frame)
    assert [k[1] for k in src._memo] == ["a", "b", "c"] and 3 * mb <= src.memo_nbytes < 3 * mb + 4096
    src.cached(("a",), frame)  # used again: now the most recent
    src.cached(("d",), frame)
    keys = [k[1] for k in src._memo]
    assert keys == ["c", "a", "d"]
    assert src.memo_nbytes <= 3 * mb + mb // 2
    # One entry larger than the whole budget is kept (its caller holds it anyway), alone.
    big = src.cached(("big",), lambda: pd.DataFrame({"x": np.zeros(5 * mb // 8)}))
    assert [k[1] for k in src._memo] == ["big"] and len(big) == 5 * mb // 8
    assert src.memo_nbytes == an.nbytes(big)


@pytest.mark.parametrize(
    "flt",
    [
        Filters(segment=("SMB",)),
        Filters(segment=("Enterprise", "Strategic")),
        Filters(start_from=AS_OF.replace(month=1, day=1)),
        Filters(segment=("no such segment",)),
    ],
    ids=["smb", "two-segments", "started-this-year", "none-match"],
)
def test_filtered_health_cut_from_every_account_is_the_same_frame(demo_db: str, flt: Filters, monkeypatch) -> None:
    src = Facts(demo_db)
    model = health_model(src)
    real = an._health_table
    calls: list = []
    monkeypatch.setattr(an, "_health_table", lambda *a, **k: calls.append(k) or real(*a, **k))
    for when in (AS_OF, AS_OF.replace(month=AS_OF.month - 1)):
        expected = real(src, as_of=when, filters=flt, model=model)  # the filtered computation
        health_table(src, as_of=when, filters=Filters())  # every account's, as Portfolio leaves it
        calls.clear()
        got = health_table(src, as_of=when, filters=flt)
        assert calls == []  # cut from the full table, not computed again
        pd.testing.assert_frame_equal(got, expected)


def test_filtered_portfolio_after_the_full_one_gives_the_same_numbers(demo_db: str) -> None:
    flt = Filters(segment=("SMB",))
    fresh = portfolio(Facts(demo_db), as_of=AS_OF, filters=flt)
    warm = Facts(demo_db)
    portfolio(warm, as_of=AS_OF, filters=Filters())
    again = portfolio(warm, as_of=AS_OF, filters=flt)
    assert [(k.key, k.value, k.previous, k.numerator, k.denominator) for k in again.kpis] == [
        (k.key, k.value, k.previous, k.numerator, k.denominator) for k in fresh.kpis
    ]
    for name in ("health", "bands", "at_risk", "triggers", "by_segment", "by_csm", "trend"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(fresh, name), obj=name)
    assert again.summary == fresh.summary


def test_filtered_triggers_cut_from_every_account_are_the_same_frame(demo_db: str, monkeypatch) -> None:
    flt = Filters(segment=("Enterprise", "Strategic"))
    expected = an._trigger_table(Facts(demo_db), as_of=AS_OF, filters=flt, health=None, health_at=None)
    assert len(expected) > 0
    src = Facts(demo_db)
    an.trigger_table(src, as_of=AS_OF, filters=Filters())  # every account's, as Portfolio leaves it
    real = an._trigger_table
    calls: list = []
    monkeypatch.setattr(an, "_trigger_table", lambda *a, **k: calls.append(k) or real(*a, **k))
    got = an.trigger_table(src, as_of=AS_OF, filters=flt)
    assert calls == []  # cut from every account's table, not evaluated again
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("kept", [an.SNAPSHOT_ROWS_KEPT, 10], ids=["in-memory", "too-many-to-keep"])
@pytest.mark.parametrize("segments", [("SMB",), ("Enterprise", "Strategic"), ("no such segment",)])
def test_filtered_trend_from_rows_in_memory_equals_the_query(
    demo_db: str, segments: tuple[str, ...], kept: int, monkeypatch
) -> None:
    from datetime import timedelta

    from db import facts as q
    from db.session import get_engine

    monkeypatch.setattr(an, "SNAPSHOT_ROWS_KEPT", kept)
    src = Facts(demo_db)
    ids = tuple(sorted(int(x) for x in an._accounts(src, Filters(segment=segments), AS_OF)["account_id"]))
    since, until = AS_OF - timedelta(weeks=26), AS_OF - timedelta(days=1)
    got = src.snapshot_trend(since, until, ids)
    assert (src.snapshot_rows(since, until) is None) == (kept == 10)
    with get_engine(demo_db).connect() as conn:
        want = q.snapshot_trend(conn, since=since, until=until, account_ids=list(ids))
        assert q.snapshot_trend(conn, since=since, until=until, account_ids=None)["accounts"].sum() > 0
    key = ["date", "band"]
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)
    assert len(want) == len(got) and (segments[0] == "no such segment") == want.empty
    assert got["date"].dtype == "datetime64[ns]" and got["band"].dtype == object
    assert got[key].astype(str).values.tolist() == want[key].astype(str).values.tolist()
    assert got["accounts"].tolist() == want["accounts"].astype(int).tolist()
    np.testing.assert_allclose(got["total"].to_numpy(float), want["total"].to_numpy(float), rtol=1e-12)


def test_bound_items_read_in_chunks_are_the_same_frame(demo_db: str) -> None:
    from db import facts as q
    from db.session import get_engine
    from services.measured import read_compact

    sql = (
        "SELECT account_id, id, version, category, criterion, target, actual, status, metric "
        "FROM checklist_items WHERE metric IS NOT NULL ORDER BY id"
    )
    with get_engine(demo_db).connect() as conn:
        whole = q._read(conn, sql)
        assert len(whole) > 100
        for chunk in (7, 100, 10**6):
            pd.testing.assert_frame_equal(read_compact(conn, sql, chunk=chunk), whole)
        none = sql.replace("WHERE", "WHERE 1 = 0 AND")
        pd.testing.assert_frame_equal(read_compact(conn, none), q._read(conn, none))


def test_items_judged_in_chunks_are_the_same_frame(demo_db: str) -> None:
    from metrics import checklist as mc
    from services.measured import _bound_items, _metric_facts, judge

    src = Facts(demo_db)
    items, facts = _bound_items(src), _metric_facts(src, AS_OF)
    whole = mc.disagreements(items, facts)
    assert len(whole) > 0
    for chunk in (1, 50, 333, 10**6):
        pd.testing.assert_frame_equal(judge(items, facts, chunk=chunk), whole)
    nothing = items[items["metric"].isna()]
    pd.testing.assert_frame_equal(judge(nothing, facts, chunk=1), mc.disagreements(nothing, facts))


def test_checklist_value_at_several_dates_in_one_scan_is_the_same_frame(demo_db: str) -> None:
    from datetime import timedelta

    dates = [AS_OF, AS_OF - timedelta(days=7), AS_OF - timedelta(days=60)]
    one_by_one = Facts(demo_db)
    expected = [one_by_one.checklist_value(d) for d in dates]
    assert expected[0]["value_done"].sum() > expected[2]["value_done"].sum() > 0
    src = Facts(demo_db)
    src.checklist_values(dates)
    for d, want in zip(dates, expected, strict=True):
        got = src.peek(("checklist_value", d, src.plans_version))
        assert got is not None
        pd.testing.assert_frame_equal(got, want)


def test_facts_computed_together_are_waited_for_not_computed_again(demo_db: str) -> None:
    import threading

    src = Facts(demo_db)
    started, release = threading.Event(), threading.Event()
    calls: list = []

    def together(keys):
        calls.append(("many", [k[1] for k in keys]))
        started.set()
        release.wait(10)
        return [pd.DataFrame({"x": [k[1]]}) for k in keys]

    t = threading.Thread(target=src.cached_many, args=([("f", 1), ("f", 2)], together))
    t.start()
    assert started.wait(10)
    got: list = []
    waiter = threading.Thread(
        target=lambda: got.append(src.cached(("f", 2), lambda: calls.append("alone") or pd.DataFrame({"x": [0]})))
    )
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # waiting for the computation in flight
    release.set()
    t.join(10)
    waiter.join(10)
    assert calls == [("many", [1, 2])] and got[0]["x"].tolist() == [2]
    src.cached_many([("f", 1), ("f", 3)], together)  # only what is not held yet
    assert calls[-1] == ("many", [3])
