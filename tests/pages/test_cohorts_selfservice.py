"""Cohorts, as RevOps reads them (issue 12): usage retention marks the week still in
progress and leaves it out of the summary; periods read "Week 1..." with percent shown, the
count in the hover and blank cells for not yet; the CLI flags the same cells."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pandas as pd
import pytest

from metrics.retention import as_rates, in_progress, in_progress_column
from services.analytics import Facts, Filters, cohort_week_report, retention_report, signals_report, ttv_report
from tests.conftest import AS_OF
from tests.pages import open_page, table_with, texts

QUERY = {"as_of": AS_OF.isoformat()}  # a Tuesday: its week runs to Saturday 4 July


def array(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata", "shape"} (plotly >= 6)."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(x) for x in str(v.get("shape", len(a))).split(",")])
    return np.asarray(v, dtype=object)


def test_the_week_in_progress_is_marked_and_left_out_of_the_summary(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "view": "Usage retention"})
    m = retention_report(
        Facts(demo_db), start_event="login", return_event="login", period="week", intervals=8, date_to=AS_OF
    )
    rates = as_rates(m)
    n = len(m)
    # The demo's partial week reads far below the week before: what looked like a real drop.
    latest = [rates.iloc[i][f"p{n - 1 - i}"] for i in range(n - 1)]
    before = [rates.iloc[i][f"p{n - 2 - i}"] for i in range(n - 2)]
    assert np.mean(latest) < np.mean(before) - 0.1

    # The summary: complete next-week cells only.
    p1 = rates["p1"].iloc[: n - 2]  # cohort n-2's next week is the week in progress
    reading = next(c for c in texts(at.caption) if "came back the next week" in c)
    assert f"On average {p1.mean():.0%}" in reading
    assert f"(range {p1.min():.0%}–{p1.max():.0%}, over {n - 2} cohorts" in reading
    assert f"{rates['p1'].iloc[n - 2]:.0%}" not in reading.split("range")[1]
    assert any("starting 28 Jun 2026 contains the as-of date and is not over" in c for c in texts(at.caption))

    # The table: cohort size, then percent per week; * and a lighter background on the
    # partial cells; blank where not observed yet.
    cells = table_with(at, "cohort", "p0", "p1")
    for i in range(n):
        for k in range(1, n):
            v = rates.iloc[i][f"p{k}"]
            want = "" if np.isnan(v) else f"{v * 100:.0f} %" + (" *" if i + k == n - 1 else "")
            assert cells.iloc[i][f"p{k}"] == want, (i, k)
    assert cells["p0"].tolist() == [f"{int(x)}" for x in m["p0"].iloc[:-1]] + [f"{int(m['p0'].iloc[-1])} *"]
    assert not cells.isna().any().any()
    d = next(d for d in at.dataframe if "p1" in d.value.columns)
    labels = {c: v.get("label") for c, v in json.loads(d.proto.columns).items()}
    assert [labels[f"p{k}"] for k in range(1, n)] == [f"Week {k}" for k in range(1, n)]
    assert labels["p0"] == "Size"
    assert "background-color" in d.proto.arrow_data.styler.styles

    # The heatmap: Week 1..., the partial cells apart (lighter) with *, the count in the hover.
    full, partial = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert list(full["x"]) == [f"Week {k}" for k in range(1, n)]
    assert partial["opacity"] < full["opacity"] == 1
    z_partial = array(partial["z"]).astype(float)
    assert (~np.isnan(z_partial)).sum() == n - 1
    assert np.allclose(z_partial[np.fliplr(np.eye(n, dtype=bool))[:, 1:]], [latest[i] * 100 for i in range(n - 1)])
    assert all(t.endswith("*") for row in partial["text"] for t in row if t)
    assert "of %{customdata[1]:,.0f} accounts" in full["hovertemplate"]
    assert [float(x) for x in array(full["customdata"])[0][0][:2]] == [m["p1"].iloc[0], m["p0"].iloc[0]]


def test_the_cli_flags_the_same_cells(demo_db: str, cli) -> None:
    args = ["report", "retention", "--start-event", "login", "--return-event", "login", "--as-of", AS_OF.isoformat()]
    res = cli(demo_db, *args, "--mark-in-progress")
    assert res.returncode == 0, res.stderr
    got = pd.read_csv(io.StringIO(res.stdout), keep_default_na=False, na_values=[""])
    m = retention_report(
        Facts(demo_db), start_event="login", return_event="login", intervals=8, date_to=AS_OF, filters=Filters()
    )
    assert got["in_progress"].tolist() == in_progress_column(in_progress(m, period="week", date_to=AS_OF)).tolist()
    assert got["in_progress"].tolist() == [f"p{7 - i}" for i in range(8)]
    assert "is not over" in res.stderr
    # Without the flag the columns stay PostHog's (cohort, p0...), with the note on stderr.
    plain = cli(demo_db, *args)
    assert plain.stdout.splitlines()[0] == "cohort," + ",".join(f"p{k}" for k in range(8))
    assert "--mark-in-progress" in plain.stderr
    # A week that is over by the end date: no note, no partial cell.
    over = cli(demo_db, *args[:-1], "2026-07-04", "--mark-in-progress")
    assert "is not over" not in over.stderr
    assert pd.read_csv(io.StringIO(over.stdout))["in_progress"].isna().all()


def test_time_to_value_axis_ends_at_the_99th_percentile_unless_asked(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "view": "Time to value"})
    res = ttv_report(Facts(demo_db), milestone="first_value_achieved", by="segment", filters=Filters(), as_of=AS_OF)
    d = res.durations
    cut = float(np.ceil(np.percentile(d.loc[d["reached"], "days"], 99)))
    assert float(res.curves["day"].max()) > cut + 30, "follow-up runs well past the useful range"
    layout = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
    assert layout["xaxis"]["range"] == [0, cut]
    assert any(f"Days axis cut at {cut:.0f}: 99 %" in c for c in texts(at.caption))

    at.toggle(key="ttv_all").set_value(True).run()
    layout = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
    assert "range" not in layout["xaxis"]
    assert not any("Days axis cut" in c for c in texts(at.caption))


def test_quarters_compare_the_latest_four_curves_by_default(demo_db: str, use_db) -> None:
    use_db(demo_db)
    first = open_page("cohorts", query={**QUERY, "view": "Time to value"})
    by = first.selectbox(key="ttv_by")
    at = open_page("cohorts", query={**QUERY, "view": "Time to value", "ttv_by": by.format_func("cohort_quarter")})
    res = ttv_report(
        Facts(demo_db), milestone="first_value_achieved", by="cohort_quarter", filters=Filters(), as_of=AS_OF
    )
    quarters = sorted(res.groups["group"].astype(str))
    assert len(quarters) > 4
    picker = at.multiselect(key="ttv_groups")
    assert picker.value == quarters[-4:]

    def drawn(app) -> set[str]:
        data = json.loads(app.get("plotly_chart")[0].proto.spec)["data"]
        return {t["meta"] for t in data if t.get("meta")}

    assert drawn(at) == set(quarters[-4:])
    assert any(f"The chart compares 4 of {len(quarters)} groups" in c for c in texts(at.caption))
    # Every group stays in the table; another pick redraws the chart.
    assert sorted(table_with(at, "group", "median_days")["group"].astype(str)) == quarters
    picker.set_value(quarters[:2]).run()
    assert drawn(at) == set(quarters[:2])


@pytest.mark.parametrize("view", ["Cohorts", "Time to value", "Usage retention", "Early signals"])
def test_no_raw_column_names(demo_db: str, use_db, view: str) -> None:
    """Every column header a table shows is a label, not a field name such as reached_from."""
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "view": view})
    assert at.dataframe
    for d in at.dataframe:
        config = json.loads(d.proto.columns) if d.proto.columns else {}
        for c in d.value.columns:
            header = (config.get(str(c)) or {}).get("label") or str(c)
            assert "_" not in header, f"{view}: column {c!r} is shown as {header!r}"


def test_signals_of_the_same_accounts_share_a_row(demo_db: str, use_db) -> None:
    """integration_connected completes milestone technical_setup_done, and data_imported goes with
    it: three rows with the same figures before. Behaviours with equal figures but different
    accounts stay apart."""
    use_db(demo_db)
    at = open_page("cohorts", query={**QUERY, "view": "Early signals"})
    plain = signals_report(Facts(demo_db), outcome="retained", days=14, min_count=1, filters=Filters(), as_of=AS_OF)
    grouped = signals_report(
        Facts(demo_db), outcome="retained", days=14, min_count=1, filters=Filters(), as_of=AS_OF, group_identical=True
    )
    assert len(grouped) < len(plain)
    merged = grouped[grouped["also"].map(len) > 0]
    assert len(merged)
    shown = table_with(at, "behaviour", "support")["behaviour"].tolist()
    assert "data imported · integration connected · milestone technical setup done" in shown
    for _, r in merged.iterrows():  # the others had exactly the row of the first
        first = plain[plain["behaviour"] == r["behaviour"]].drop(columns="behaviour").iloc[0]
        for other in r["also"]:
            row = plain[plain["behaviour"] == other].drop(columns="behaviour").iloc[0]
            assert row.equals(first)
    assert sum(1 + len(a) for a in grouped["also"]) == len(plain)
    # Same figures, different accounts: not merged.
    assert "alert configured" in shown and not any(s.startswith("alert configured ·") for s in shown)
    lines = [m.value for m in at.markdown if "same accounts as" in m.value]
    assert lines and "integration connected" in lines[0]


def test_cohort_week_table_is_blank_where_not_observed(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("cohorts", query=QUERY)
    shares, _ = cohort_week_report(
        Facts(demo_db), milestone="first_value_achieved", by="month", weeks=12, filters=Filters(), as_of=AS_OF
    )
    t = table_with(at, "week 1", "week 12")
    assert shares["week 12"].isna().any()
    for c in shares.columns:
        assert t[c].tolist() == ["" if np.isnan(v) else f"{round(v * 100, 1):.0f} %" for v in shares[c]]
    assert not t.isna().any().any()
