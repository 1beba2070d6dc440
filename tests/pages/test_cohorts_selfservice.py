"""Cohorts, as RevOps reads them (issue 12): usage retention marks the week still in
progress and leaves it out of the summary; periods read "Week 1..." with percent shown, the
count in the hover and blank cells for not yet; the CLI flags the same cells."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pandas as pd
from streamlit import dataframe_util

from metrics.retention import as_rates, in_progress, in_progress_column
from services.analytics import Facts, Filters, retention_report
from tests.conftest import AS_OF
from tests.pages import open_page, texts

QUERY = {"as_of": AS_OF.isoformat()}  # a Tuesday: its week runs to Saturday 4 July


def shown(at, *columns: str) -> pd.DataFrame:
    """The text each cell of the first table with these columns shows (its Styler display values)."""
    d = next(d for d in at.dataframe if set(columns) <= set(d.value.columns))
    return dataframe_util.convert_arrow_bytes_to_pandas_df(d.proto.arrow_data.styler.display_values)


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
    cells = shown(at, "cohort", "p0", "p1")
    for i in range(n):
        for k in range(1, n):
            v = rates.iloc[i][f"p{k}"]
            want = "" if np.isnan(v) else f"{v * 100:.0f} %" + (" *" if i + k == n - 1 else "")
            assert cells.iloc[i][f"p{k}"] == want, (i, k)
    assert cells.iloc[n - 1]["p0"] == f"{int(m['p0'].iloc[-1])} *"
    assert "None" not in cells.to_numpy().ravel().tolist()
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
