"""`manage.py report ...` on the demo portfolio: every report, as CSV and as JSON, gives the
numbers the service functions give in-process with the same arguments (the one code path
of the pages and the CLI); filters and breakdowns change what they should; bad usage exits
non-zero with a readable error and no traceback."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd
import pytest

from services import analytics as an
from services.analytics import Facts, Filters
from tests.conftest import AS_OF

HEALTH_COLS = [
    "external_id",
    "name",
    "segment",
    "csm_name",
    "status",
    "total",
    "band",
    "too_early",
    "at_risk",
    "milestone",
    "adoption",
    "engagement",
    "value",
    "n_due",
    "n_on_time",
    "n_late",
    "active_users",
    "licensed_seats",
    "active_days",
    "value_ms_done",
    "value_ms_total",
    "value_items",
    "value_done",
    "model_version",
]
FUNNEL_STEPS = ["workspace_created", "data_imported", "dashboard_created"]
MILESTONE_STEPS = ["milestone:kickoff_complete", "login", "milestone:first_value_achieved"]


@pytest.fixture(scope="module")
def src(demo_db: str) -> Facts:
    return Facts(demo_db)


def parse(res: subprocess.CompletedProcess, fmt: str) -> pd.DataFrame:
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    if fmt == "json":
        return pd.DataFrame(json.loads(res.stdout))
    return pd.read_csv(io.StringIO(res.stdout), keep_default_na=False, na_values=[""])


@pytest.fixture
def main_cli(demo_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """manage.py's main() in this process against the demo (what the subprocess runs,
    without paying for a new interpreter each time)."""
    import manage

    monkeypatch.setenv("DATABASE_URL", demo_db)

    def call(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            rc = manage.main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            rc = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), rc, out, err)

    return call


def _is_date_like(s: pd.Series) -> bool:
    v = s.dropna()
    return len(v) > 0 and all(isinstance(x, date) for x in v)


def assert_same(got: pd.DataFrame, expected: pd.DataFrame, atol: float = 0.0) -> None:
    """The CLI's table equals the service's: same columns, rows and values (floats to 1e-12
    relative; JSON writes 15 decimal places, so give it atol=1e-15)."""
    expected = expected.reset_index(drop=True)
    assert list(got.columns) == [str(c) for c in expected.columns]
    assert len(got) == len(expected)
    assert len(expected) > 0, "compare something"
    for c in expected.columns:
        e, g = expected[c], got[str(c)]
        if pd.api.types.is_bool_dtype(e):
            assert g.astype(bool).tolist() == e.tolist(), c
        elif pd.api.types.is_numeric_dtype(e):
            np.testing.assert_allclose(
                pd.to_numeric(g).to_numpy(float),
                e.astype(float).to_numpy(),
                rtol=1e-12,
                atol=atol,
                equal_nan=True,
                err_msg=str(c),
            )
        elif pd.api.types.is_datetime64_any_dtype(e) or _is_date_like(e):
            ev = pd.to_datetime(e).dt.strftime("%Y-%m-%dT%H:%M:%S").where(e.notna(), "")
            gv = pd.to_datetime(g).dt.strftime("%Y-%m-%dT%H:%M:%S").where(g.notna(), "")
            assert gv.tolist() == ev.tolist(), c
        else:
            ev = e.where(e.notna(), "").astype(str)
            gv = g.where(g.notna(), "").astype(str)
            assert gv.tolist() == ev.tolist(), c


def kpi_frame(kpis: list[an.Kpi]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "key": k.key,
                "label": k.label,
                "value": k.value,
                "previous": k.previous,
                "delta": k.delta,
                "unit": k.unit,
                "numerator": k.numerator,
                "denominator": k.denominator,
                "low": k.low,
                "high": k.high,
                "target": k.target,
            }
            for k in kpis
        ]
    )


def steps_args(steps: list[str]) -> list[str]:
    return [a for s in steps for a in ("--step", s)]


def backtest_frame(r) -> pd.DataFrame:
    return r.bands.assign(auc=r.auc, auc_low=r.auc_low, auc_high=r.auc_high, day=r.day, scored_accounts=r.accounts)


# Every report subcommand: (CLI arguments, the same call in-process).
REPORTS: dict[str, tuple[list[str], Callable[[Facts], pd.DataFrame]]] = {
    "funnel": (
        [*steps_args(FUNNEL_STEPS), "--by", "segment"],
        lambda s: (
            an.funnel_report(s, steps=FUNNEL_STEPS, window="14d", by="segment", filters=Filters(), as_of=AS_OF).steps
        ),
    ),
    "time-to-value": (
        ["--by", "segment"],
        lambda s: an.ttv_report(s, by="segment", filters=Filters(), as_of=AS_OF).groups,
    ),
    "cohorts": ([], lambda s: an.cohort_report(s, by="month", filters=Filters(), as_of=AS_OF)),
    "retention": (
        ["--start-event", "login", "--return-event", "dashboard_viewed", "--period", "week", "--intervals", "6"],
        lambda s: an.retention_report(
            s, start_event="login", return_event="dashboard_viewed", period="week", intervals=6, date_to=AS_OF
        ).astype({f"p{k}": "Int64" for k in range(6)}),
    ),
    "health": (
        [],
        lambda s: an.health_table(s, as_of=AS_OF, filters=Filters())[HEALTH_COLS].rename(
            columns={"external_id": "account_id", "csm_name": "csm"}
        ),
    ),
    "triggers": (
        [],
        lambda s: (
            an.trigger_table(s, as_of=AS_OF, filters=Filters())
            .drop(columns=["account_id"])
            .rename(columns={"external_id": "account_id"})
        ),
    ),
    "signals": (
        ["--days", "30", "--min-count", "2"],
        lambda s: an.signals_report(s, days=30, min_count=2, filters=Filters(), as_of=AS_OF),
    ),
    "backtest": (
        ["--day", "60"],
        lambda s: backtest_frame(an.backtest_report(s, day=60, filters=Filters(), as_of=AS_OF)),
    ),
    "portfolio": ([], lambda s: kpi_frame(an.kpis(s, as_of=AS_OF, filters=Filters()))),
}

# More options of the same reports, run through manage.main() in this process.
VARIANTS: dict[str, tuple[list[str], Callable[[Facts], pd.DataFrame]]] = {
    "funnel-strict-7d": (
        ["funnel", *steps_args(FUNNEL_STEPS), "--mode", "strict", "--window", "7d"],
        lambda s: (
            an.funnel_report(s, steps=FUNNEL_STEPS, mode="strict", window="7d", filters=Filters(), as_of=AS_OF).steps
        ),
    ),
    "funnel-unordered-by-plan": (
        ["funnel", *steps_args(FUNNEL_STEPS), "--mode", "unordered", "--by", "plan"],
        lambda s: (
            an.funnel_report(s, steps=FUNNEL_STEPS, mode="unordered", by="plan", filters=Filters(), as_of=AS_OF).steps
        ),
    ),
    "funnel-exclusion-and-property-breakdown": (
        [
            *["funnel", *steps_args(["workspace_created", "integration_connected", "dashboard_created"])],
            *["--exclude", "data_imported:1:2", "--by", "prop:source", "--attribution", "step:2", "--window", "30d"],
        ],
        lambda s: (
            an.funnel_report(
                s,
                steps=["workspace_created", "integration_connected", "dashboard_created"],
                window="30d",
                exclude=["data_imported:1:2"],
                by="prop:source",
                attribution="step:2",
                filters=Filters(),
                as_of=AS_OF,
            ).steps
        ),
    ),
    "funnel-milestones-accounts": (
        ["funnel", *steps_args(MILESTONE_STEPS), "--accounts"],
        lambda s: an.funnel_report(s, steps=MILESTONE_STEPS, filters=Filters(), as_of=AS_OF).accounts,
    ),
    "cohorts-quarter-30d": (
        ["cohorts", "--by", "quarter", "--within-days", "30"],
        lambda s: an.cohort_report(s, by="quarter", within_days=30, filters=Filters(), as_of=AS_OF),
    ),
    "cohorts-matrix": (
        ["cohorts", "--matrix", "first_value_achieved", "--weeks", "8"],
        lambda s: an.cohort_week_report(s, milestone="first_value_achieved", weeks=8, filters=Filters(), as_of=AS_OF)[
            0
        ].reset_index(),
    ),
    "retention-first-time-cumulative-month": (
        [
            *["retention", "--start-event", "workspace_created", "--return-event", "login", "--period", "month"],
            *["--intervals", "4", "--first-time", "--cumulative"],
        ],
        lambda s: an.retention_report(
            s,
            start_event="workspace_created",
            return_event="login",
            period="month",
            intervals=4,
            date_to=AS_OF,
            first_time=True,
            cumulative=True,
        ).astype({f"p{k}": "Int64" for k in range(4)}),
    ),
    "time-to-value-milestone": (
        ["time-to-value", "--milestone", "onboarding_concluded", "--by", "plan"],
        lambda s: an.ttv_report(s, milestone="onboarding_concluded", by="plan", filters=Filters(), as_of=AS_OF).groups,
    ),
    "signals-expanded-within-segment": (
        ["signals", "--outcome", "expanded", "--within-segment"],
        lambda s: an.signals_report(s, outcome="expanded", within_segment=True, filters=Filters(), as_of=AS_OF),
    ),
    "signals-transitions": (
        ["signals", "--transitions"],
        lambda s: an.transitions_report(s, filters=Filters(), as_of=AS_OF),
    ),
    "backtest-what-if": (
        ["backtest", "--weights", "milestone=40,adoption=20,engagement=20,value=20"],
        lambda s: backtest_frame(
            an.backtest_report(
                s,
                day=30,
                weights={"milestone": 40, "adoption": 20, "engagement": 20, "value": 20},
                filters=Filters(),
                as_of=AS_OF,
            )
        ),
    ),
}


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("name", list(REPORTS))
def test_report_equals_the_service(name: str, fmt: str, demo_db: str, src: Facts, cli) -> None:
    args, service = REPORTS[name]
    res = cli(demo_db, "report", name, *args, "--as-of", AS_OF.isoformat(), "--format", fmt)
    assert_same(parse(res, fmt), service(src), atol=1e-15 if fmt == "json" else 0.0)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_report_options_equal_the_service(name: str, src: Facts, main_cli) -> None:
    args, service = VARIANTS[name]
    fmt = "json" if len(name) % 2 else "csv"
    res = main_cli("report", *args, "--as-of", AS_OF.isoformat(), "--format", fmt)
    assert_same(parse(res, fmt), service(src), atol=1e-15 if fmt == "json" else 0.0)


def test_every_report_subcommand_is_covered() -> None:
    from manage import build_parser

    subcommands = {
        "funnel",
        "time-to-value",
        "cohorts",
        "retention",
        "health",
        "triggers",
        "signals",
        "backtest",
        "portfolio",
    }
    assert set(REPORTS) == subcommands
    for name in subcommands:  # each is a real subcommand of `report`
        assert build_parser().parse_args(["report", name]).report == name


# ----------------------------------------------------------------------------- filters and breakdowns


def report(main_cli, fmt: str, *args: str) -> pd.DataFrame:
    return parse(main_cli("report", *args, "--as-of", AS_OF.isoformat(), "--format", fmt), fmt)


def test_funnel_by_segment_has_a_group_column(src: Facts, main_cli) -> None:
    got = report(main_cli, "csv", "funnel", *steps_args(FUNNEL_STEPS), "--by", "segment")
    assert got.columns[0] == "group"
    assert set(got["group"]) == set(src.accounts()["segment"])
    assert all(steps == [1, 2, 3] for steps in got.groupby("group")["step"].apply(list))
    whole = an.funnel_report(src, steps=FUNNEL_STEPS, filters=Filters(), as_of=AS_OF).steps
    # One bucket per account: the segments add up to the whole funnel.
    assert got.groupby("step")["accounts"].sum().tolist() == whole["accounts"].tolist()


def test_segment_filter_changes_the_numbers(src: Facts, main_cli) -> None:
    smb = Filters(segment=("SMB",))
    got = report(main_cli, "csv", "funnel", *steps_args(FUNNEL_STEPS), "--segment", "SMB")
    expected = an.funnel_report(src, steps=FUNNEL_STEPS, filters=smb, as_of=AS_OF).steps
    everyone = an.funnel_report(src, steps=FUNNEL_STEPS, filters=Filters(), as_of=AS_OF).steps
    assert_same(got, expected)
    n_smb = int((src.accounts()["segment"] == "SMB").sum())
    assert 0 < got["accounts"].iloc[0] <= n_smb < everyone["accounts"].iloc[0]

    kp = report(main_cli, "json", "portfolio", "--segment", "SMB", "--segment", "Mid-Market")
    two = Filters(segment=("SMB", "Mid-Market"))
    assert_same(kp, kpi_frame(an.kpis(src, as_of=AS_OF, filters=two)), atol=1e-15)
    assert kp["value"].tolist() != kpi_frame(an.kpis(src, as_of=AS_OF, filters=Filters()))["value"].tolist()


def test_health_filters_by_csm_and_start_date(src: Facts, main_cli) -> None:
    a = src.accounts()
    email = a["csm_email"].iloc[0]
    got = report(main_cli, "csv", "health", "--csm", email.upper(), "--start-from", "2025-07-01")
    expected = an.health_table(src, as_of=AS_OF, filters=Filters(csm=(email,), start_from=date(2025, 7, 1)))
    assert_same(got, expected[HEALTH_COLS].rename(columns={"external_id": "account_id", "csm_name": "csm"}))
    assert 0 < len(got) < len(a)
    assert set(got["csm"]) == {a.loc[a["csm_email"] == email, "csm_name"].iloc[0]}


@pytest.mark.parametrize(
    ("args", "first_columns"),
    [
        (["health"], ["account_id", "name", "segment", "csm", "status", "total", "band"]),
        (["triggers"], ["account_id", "name", "rule", "trigger", "reason"]),
        (["time-to-value"], ["group", "accounts", "reached", "censored", "median_days"]),
        (["backtest"], ["band", "accounts", "churned", "churn_rate"]),
    ],
)
def test_a_filter_that_matches_no_account_prints_an_empty_table(args: list[str], first_columns, main_cli) -> None:
    res = main_cli("report", *args, "--segment", "Nobody", "--as-of", AS_OF.isoformat())
    assert res.returncode == 0, res.stderr
    got = pd.read_csv(io.StringIO(res.stdout))
    assert list(got.columns[: len(first_columns)]) == first_columns
    assert got.get("accounts", pd.Series(dtype=int)).sum() == 0
    if args[0] != "backtest":  # the backtest always lists the four bands
        assert got.empty


EMPTY_CASES = {
    **{name: [name, *args] for name, (args, _) in REPORTS.items()},
    # (the funnel's own helper owns its breakdown's column order on empty)
    "funnel": ["funnel", *steps_args(FUNNEL_STEPS)],
    "cohorts-matrix": VARIANTS["cohorts-matrix"][0],
    "signals-transitions": VARIANTS["signals-transitions"][0],
}


@pytest.mark.parametrize("name", list(EMPTY_CASES))
def test_every_report_prints_its_header_on_a_filter_matching_nothing(name: str, main_cli) -> None:
    args = EMPTY_CASES[name]
    full = main_cli("report", *args, "--as-of", AS_OF.isoformat())
    empty = main_cli("report", *args, "--segment", "Nobody", "--as-of", AS_OF.isoformat())
    assert empty.returncode == 0, empty.stderr
    header = full.stdout.splitlines()[0]
    assert header.count(",") >= 3
    assert empty.stdout.splitlines()[0] == header


def test_an_empty_funnel_is_all_zeros(main_cli) -> None:
    got = report(main_cli, "csv", "funnel", *steps_args(FUNNEL_STEPS), "--segment", "Nobody")
    assert got["accounts"].tolist() == [0, 0, 0]
    assert got["mean_seconds_from_previous"].isna().all()


def test_signals_count_only_accounts_whose_year_has_elapsed(src: Facts, main_cli) -> None:
    got = report(main_cli, "csv", "signals")
    a = src.accounts()
    elapsed = int((a["contract_start"] + pd.Timedelta(days=365) < an.day_end(AS_OF)).sum())
    assert 0 < elapsed < len(a)
    assert (got["accounts"] == elapsed).all()


# ----------------------------------------------------------------------------- bad usage


@pytest.mark.parametrize(
    "args",
    [
        ["funnel", "--step", "login"],
        ["funnel", "--step", "milestone:nope", "--step", "login"],
        ["funnel", "--step", "login", "--step", "report_viewed", "--by", "favourite_colour"],
    ],
)
def test_bad_usage_exits_2_without_a_traceback(args: list[str], demo_db: str, cli) -> None:
    res = cli(demo_db, "report", *args)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.startswith("error: ")
    assert "Traceback" not in res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["funnel", "--step", "login"], "a funnel needs at least two --step options"),
        (["funnel", "--step", "milestone:nope", "--step", "login"], "unknown milestone nope; defined: "),
        (
            ["funnel", "--step", "login", "--step", "report_viewed", "--by", "favourite_colour"],
            "cannot break down by 'favourite_colour'; use one of segment",
        ),
        (["funnel", "--step", "login", "--step", "report_viewed", "--window", "5x"], "bad conversion window '5x'"),
        (["funnel", "--step", "login", "--step", "login", "--mode", "unordered"], "cannot repeat a step"),
        (["funnel", "--step", "login", "--step", "report_viewed", "--mode", "bogus"], "invalid choice: 'bogus'"),
        (["time-to-value", "--milestone", "nope"], "unknown milestone 'nope'"),
        (["time-to-value", "--by", "favourite_colour"], "cannot group by 'favourite_colour'"),
        (["cohorts", "--by", "favourite_colour"], "cannot group cohorts by 'favourite_colour'"),
        (["cohorts", "--matrix", "nope"], "unknown milestone 'nope'"),
        (["retention", "--start-event", "login"], "retention needs --start-event and --return-event"),
        (["retention", "--start-event", "login", "--return-event", "login", "--intervals", "0"], "intervals must be"),
        (["backtest", "--weights", "garbage"], "--weights must look like"),
        (["backtest", "--weights", "milestone=50"], "health weights must be given for exactly"),
        (["backtest", "--weights", "milestone=50,adoption=25,engagement=25,value=20"], "add up to 100"),
        (["health", "--as-of", "2026-13-01"], "not a date"),
        (["health", "--format", "xml"], "invalid choice: 'xml'"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_bad_usage_is_a_readable_error(args: list[str], message: str, main_cli) -> None:
    res = main_cli("report", *args)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout == ""


def test_import_replace_demo_removes_the_demo_in_the_same_transaction(small_db: str, cli, tmp_path) -> None:
    from db.models import Account
    from tests.services import count

    (tmp_path / "team.csv").write_text("email,name,role\nkim@own.example,Kim Own,csm\n")
    (tmp_path / "my accounts.csv").write_text(
        "account_id,name,segment,contract_start,csm_email\nMINE-1,Mine One,Mid Market,2026-05-01,kim@own.example\n"
    )
    bad = cli(small_db, "import", str(tmp_path), "--replace-demo")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "my accounts.csv: taken as accounts.csv" in bad.stdout
    assert 'unknown segment; did you mean "Mid-Market"?' in bad.stdout
    assert "warning: Nothing was written: the demo portfolio is still there." in bad.stdout
    assert count(small_db, Account) == 30

    (tmp_path / "my accounts.csv").write_text(
        "account_id,name,segment,contract_start,csm_email\nMINE-1,Mine One,Mid-Market,2026-05-01,kim@own.example\n"
    )
    dry = cli(small_db, "import", str(tmp_path), "--replace-demo", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Validated as if the demo portfolio were removed first (30 demo account(s)" in dry.stdout
    assert count(small_db, Account) == 30

    done = cli(small_db, "import", str(tmp_path), "--replace-demo", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The demo portfolio was removed first, in the same transaction: 30 demo account(s)" in done.stdout
    assert count(small_db, Account) == 1


def test_a_report_on_a_file_that_is_no_database_is_a_readable_error(tmp_path, monkeypatch, capsys) -> None:
    """A report reads a SQLite file through the read-only reader (db.session.use_reader):
    a file that is not a database is still exit 1 with the database's reason, no traceback,
    and the file is left as it was."""
    import manage
    from db.session import LiteEngine, get_engine

    bad = tmp_path / "not-a-database.db"
    bad.write_bytes(b"this is not SQLite " * 100)
    url = f"sqlite:///{bad}"
    monkeypatch.setenv("DATABASE_URL", url)
    capsys.readouterr()
    rc = manage.main(["report", "health", "--as-of", AS_OF.isoformat()])
    _, err = capsys.readouterr()
    assert rc == 1
    assert "cannot be reached or read" in err and "not a database" in err, err
    assert "Traceback" not in err
    assert bad.read_bytes() == b"this is not SQLite " * 100
    assert not isinstance(get_engine(url), LiteEngine)  # the reader was for that command only
