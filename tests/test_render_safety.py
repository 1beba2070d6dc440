"""Text from data and from the URL is shown as text: markdown in captions, alerts and titles
carries no live link or image (components.safe.md), Plotly labels, hover text, legend names
and titles carry no HTML (components.safe.html_label), and `manage.py report` CSV output
neutralises spreadsheet formulas unless --raw."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator

import pandas as pd
import plotly.graph_objects as go
import pytest
from sqlalchemy import text

from components import charts
from components.safe import JOINER, html_label, md
from db.importer import import_files
from db.session import get_engine
from tests.conftest import AS_OF
from tests.pages import open_page, unescape
from tests.services import LEADER

QUERY = {"as_of": AS_OF.isoformat()}
LINK = "[Reset your password](https://evil.example/reset) ![t](http://host.example/beacon.png)"
EVENT = '<a href="https://evil.example/x">open</a> [docs](https://evil.example/d) **bold**'
INDUSTRY = "<img src=x onerror=alert(1)> [win](https://evil.example/w)"
FORMULA_NAME = '=HYPERLINK("http://evil.example/","click me")'
FORMULA_EVENT = "@SUM(1+1)*cmd|' /C calc'!A0"
FORMULA_PLAN = "+1+1"
FORMULA_REGION = "-2+3"

# Markdown that would render as a live link or image: [text](url) or ![alt](url) not escaped.
LIVE_LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")
RAW_HTML = re.compile(r"(?<!\\)<\s*(a|img)\b", re.IGNORECASE)
# A URL remark-gfm links by itself in the text once escapes are resolved (its own patterns).
AUTOLINK = re.compile(r"https?://|www(?=\.)", re.IGNORECASE)


def plain(body: str) -> str:
    """The text a reader sees in a markdown body made by md()."""
    return unescape(body)


def rendered(body: str) -> str:
    """The text remark-gfm searches for URLs: escapes resolved, invisible characters kept."""
    return re.sub(r"\\(.)", r"\1", body)


def _csv(header: list[str], rows: list[list[object]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


@pytest.fixture
def hostile_db(small_db: str) -> str:
    """The small demo plus accounts whose name, industry, plan and region, and events whose
    names, are markup or spreadsheet formulas."""
    with get_engine(small_db).connect() as c:
        csm = c.execute(text("SELECT email FROM team_members WHERE role = 'csm' ORDER BY email LIMIT 1")).scalar_one()
    report = import_files(
        {
            "accounts.csv": _csv(
                [
                    "account_id",
                    "name",
                    "segment",
                    "contract_start",
                    "csm_email",
                    "licensed_seats",
                    "industry",
                    "plan",
                    "region",
                ],
                [
                    ["X-LINK", LINK, "SMB", "2026-06-01", csm, 10, INDUSTRY, FORMULA_PLAN, FORMULA_REGION],
                    ["X-FORM", FORMULA_NAME, "SMB", "2026-06-01", csm, 10, INDUSTRY, FORMULA_PLAN, FORMULA_REGION],
                ],
            ),
            "events.csv": _csv(
                ["account_id", "event", "timestamp", "user_id"],
                [
                    [acc, ev, f"2026-06-0{day}T10:00:00Z", "u1"]
                    for acc in ("X-LINK", "X-FORM")
                    for ev, day in ((EVENT, 2), (FORMULA_EVENT, 3), ("login", 4))
                ],
            ),
        },
        url=small_db,
    )
    assert report.ok, report.problems
    return small_db


def bodies(at) -> Iterator[tuple[str, str]]:
    """(element type, markdown body) of every element whose text Streamlit renders as markdown."""
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success"):
        for e in getattr(at, kind):
            yield kind, e.value
    for m in at.metric:
        yield "metric label", m.label


def assert_no_live_markup(at) -> None:
    for kind, body in bodies(at):
        assert not LIVE_LINK.search(body), f"live link or image in a {kind}: {body!r}"
        assert not RAW_HTML.search(body), f"raw HTML in a {kind}: {body!r}"
        assert not AUTOLINK.search(rendered(body)), f"a URL or address that becomes a link in a {kind}: {body!r}"


def plotly_specs(at) -> list[dict]:
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


# ----------------------------------------------------------------------------- markdown


def test_md_escapes_links_images_html_and_blocks() -> None:
    for hostile in (
        LINK,
        EVENT,
        INDUSTRY,
        "# Heading\n\n- item",
        "www.evil.example and http://evil.example",
        ":red[x] $x$",
    ):
        out = md(hostile)
        assert not LIVE_LINK.search(out) and not RAW_HTML.search(out), out
        assert not AUTOLINK.search(rendered(out)), out
        assert "\n" not in out
        assert plain(out) == hostile.replace("\n\n", " ").replace("\n", " ")
    assert md("- item") == "\\- item"
    assert md("www.evil.example") == f"www{JOINER}\\.evil\\.example"
    assert md("https://evil.example") == f"https\\:{JOINER}//evil\\.example"
    # Names read as they are: dashes, @, quotes and commas are left alone.
    assert md("Mid-Market, O'Brien @ Acme") == "Mid-Market, O'Brien @ Acme"


def test_a_link_and_an_image_in_the_account_url_are_shown_as_text(hostile_db: str, use_db) -> None:
    use_db(hostile_db)
    at = open_page("accounts", query={**QUERY, "account": LINK}, as_user=LEADER)
    errors = [e.value for e in at.error]
    assert [e for e in errors if "no account" in e and LINK in plain(e)], errors
    assert_no_live_markup(at)


def test_an_account_name_and_industry_with_markup_are_shown_as_text(hostile_db: str, use_db) -> None:
    use_db(hostile_db)
    at = open_page("accounts", query={**QUERY, "account": "X-LINK"}, as_user=LEADER)
    assert plain(at.title[0].value) == LINK
    caption = at.caption[0].value
    assert md(INDUSTRY) in caption and md(FORMULA_PLAN) in caption
    assert_no_live_markup(at)


def test_a_filter_value_with_markup_is_shown_as_text(hostile_db: str, use_db) -> None:
    use_db(hostile_db)
    at = open_page("portfolio", query={**QUERY, "industry": INDUSTRY}, as_user=LEADER)
    assert at.multiselect(key="industry").value == [INDUSTRY]
    assert [c for c in at.caption if md(f"industry: {INDUSTRY}") in c.value]
    assert_no_live_markup(at)


def test_event_names_with_markup_are_text_in_funnel_captions_and_the_chart(hostile_db: str, use_db) -> None:
    use_db(hostile_db)
    at = open_page("funnel", query={**QUERY, "steps": [EVENT, "login"]}, as_user=LEADER)
    assert at.multiselect(key="steps").value == [EVENT, "login"]
    assert [c for c in at.caption if f"{md(EVENT)}: 2" in c.value], [c.value for c in at.caption]
    assert_no_live_markup(at)
    spec = plotly_specs(at)[0]
    xs = [x for trace in spec["data"] for x in trace["x"]]
    assert f"1. {html_label(EVENT)}" in xs
    assert "<a" not in json.dumps(spec)


# ----------------------------------------------------------------------------- plotly


def _strings(obj) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


def _assert_escaped(fig: go.Figure, *hostile: str) -> None:
    strings = list(_strings(fig.to_plotly_json()))
    for s in strings:
        # The only tags left are the templates' own (<br>, <extra>).
        assert not re.search(r"<(?!/?(br|extra)>)", s), s
    for h in hostile:
        assert any(html_label(h) in s for s in strings), h


HOSTILE_GROUP = '<a href="https://evil.example/g">Group</a> & co'
HOSTILE_STEP = '<img src=x onerror=alert(1)> <a href="https://evil.example/s">step</a>'


def _steps() -> pd.DataFrame:
    rows = []
    for g in (HOSTILE_GROUP, "Other"):
        for step, name, n in ((1, HOSTILE_STEP, 10), (2, "login", 6)):
            rows.append(
                {
                    "group": g,
                    "step": step,
                    "name": name,
                    "accounts": n,
                    "in_progress": 1,
                    "conversion_from_first": n / 10,
                    "conversion_from_first_low": n / 10 - 0.1,
                    "conversion_from_first_high": min(n / 10 + 0.1, 1),
                    "median_seconds_from_previous": 86400.0,
                    "p90_seconds_from_previous": 3 * 86400.0,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("group_col", [None, "group"])
def test_funnel_and_time_to_convert_labels_are_html_escaped(group_col: str | None) -> None:
    steps = _steps() if group_col else _steps()[lambda d: d["group"] == "Other"]
    hostile = (HOSTILE_STEP, HOSTILE_GROUP) if group_col else (HOSTILE_STEP,)
    _assert_escaped(charts.funnel_chart(steps, group_col=group_col), *hostile)
    two = steps.assign(step=steps["step"] + 1, name=steps["name"])  # every step after the first
    _assert_escaped(charts.time_to_convert_chart(two, group_col=group_col), *hostile)


def test_km_heatmap_timeline_and_titles_are_html_escaped() -> None:
    curves = pd.DataFrame(
        {
            "group": [HOSTILE_GROUP] * 2,
            "day": [0, 10],
            "reached": [0, 0.5],
            "reached_low": [0, 0.4],
            "reached_high": [0, 0.6],
        }
    )
    groups = pd.DataFrame({"group": [HOSTILE_GROUP], "median_days": [10.0]})
    _assert_escaped(charts.km_chart(curves, groups, milestone=HOSTILE_STEP), HOSTILE_GROUP, HOSTILE_STEP)

    shares = pd.DataFrame({"week 1": [0.5]}, index=pd.Index([HOSTILE_GROUP], name="cohort"))
    observed = pd.DataFrame({"accounts": [4], "week 1": [4]}, index=shares.index)
    _assert_escaped(charts.heatmap(shares, observed, milestone=HOSTILE_STEP), HOSTILE_GROUP, HOSTILE_STEP)

    start = pd.Timestamp("2026-01-01")
    ms = pd.DataFrame(
        {
            "name": [HOSTILE_STEP, "Kickoff"],
            "due_date": [start + pd.Timedelta(days=10), start + pd.Timedelta(days=20)],
            "completed_at": [start + pd.Timedelta(days=12), pd.NaT],
        }
    )
    _assert_escaped(charts.timeline_chart(ms, as_of=start + pd.Timedelta(days=40), start=start), HOSTILE_STEP)

    bands = pd.DataFrame(
        {
            "band": ["Excellent", "On Track", "At Risk", "Critical"],
            "accounts": [4, 3, 2, 1],
            "churn_rate": [0.1, 0.2, 0.3, 0.4],
            "churn_rate_low": [0.0, 0.1, 0.2, 0.3],
            "churn_rate_high": [0.2, 0.3, 0.4, 0.5],
        }
    )
    _assert_escaped(charts.churn_by_band_chart(bands, f"Churn for {HOSTILE_GROUP}"), HOSTILE_GROUP)


# ----------------------------------------------------------------------------- CLI reports


def _report(cli, url: str, *args: str) -> list[list[str]]:
    res = cli(url, "report", *args, "--as-of", AS_OF.isoformat())
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return list(csv.reader(io.StringIO(res.stdout)))


def test_cli_report_csv_neutralises_formulas_unless_raw(hostile_db: str, cli) -> None:
    health = _report(cli, hostile_db, "health")
    header, rows = health[0], health[1:]
    name = header.index("name")
    names = {r[name] for r in rows}
    assert "'" + FORMULA_NAME in names and FORMULA_NAME not in names
    # Numbers stay numbers: nothing else in the report changed.
    raw = _report(cli, hostile_db, "health", "--raw")
    assert FORMULA_NAME in {r[name] for r in raw[1:]}
    assert [r[:name] + r[name + 1 :] for r in raw] == [r[:name] + r[name + 1 :] for r in health]

    steps = _report(cli, hostile_db, "funnel", "--step", FORMULA_EVENT, "--step", "login")
    col = steps[0].index("name")
    assert [r[col] for r in steps[1:]] == ["'" + FORMULA_EVENT, "login"]

    for by, value in (("plan", FORMULA_PLAN), ("region", FORMULA_REGION)):
        cohorts = _report(cli, hostile_db, "cohorts", "--by", by)
        col = cohorts[0].index("cohort")
        cells = {r[col] for r in cohorts[1:]}
        assert "'" + value in cells and value not in cells, (by, cells)
        raw = _report(cli, hostile_db, "cohorts", "--by", by, "--raw")
        assert value in {r[col] for r in raw[1:]}


def test_an_account_link_keeps_the_id_whole() -> None:
    from urllib.parse import parse_qs, urlparse

    from components.ui import account_link

    hostile = "X&as_of=2020-01-01#top"
    link = account_link(hostile)
    assert urlparse(link).fragment == ""
    assert parse_qs(urlparse(link).query) == {"account": [hostile]}
    assert account_link("ACC-00042") == "/accounts?account=ACC-00042"


def test_a_signed_in_address_outside_the_team_is_shown_as_text(small_db: str, use_db) -> None:
    use_db(small_db)
    email = "mallory[reset](https://evil.example/r)@evil.example"
    at = open_page("portfolio", query=QUERY, as_user=email, check=False)
    assert at.title[0].value == "No access"
    assert [e for e in at.error if email in plain(e.value)]
    assert_no_live_markup(at)
