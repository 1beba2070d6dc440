"""Portfolio (home): the KPI tiles show the same numbers as services.analytics.kpis and the
CLI, follow the sidebar filters in the URL, and the at-risk table lists the accounts.
Also the sign-in paths the home page is reached through."""

from __future__ import annotations

import json
import math

import pytest

from services.analytics import Facts, Filters, kpis, portfolio
from tests.conftest import AS_OF
from tests.pages import assert_ok, metrics, open_page, table_with, texts, unescape

QUERY = {"as_of": AS_OF.isoformat()}


def shown(value: float, unit: str) -> str:
    """A KPI value as a tile shows it (written out here, not taken from the page's code)."""
    if value is None or math.isnan(value):
        return "–"
    if unit == "%":
        return f"{round(value * 100)} %"
    if unit == "days":
        return f"{round(value):,} days"
    return f"{round(value):,}"


def cli_kpis(cli, url: str, *extra: str) -> dict[str, dict]:
    res = cli(url, "report", "portfolio", "--as-of", AS_OF.isoformat(), "--format", "json", *extra)
    assert res.returncode == 0, res.stderr
    return {row["key"]: row for row in json.loads(res.stdout)}


def test_kpi_tiles_match_the_service_and_the_cli(demo_db: str, use_db, cli) -> None:
    use_db(demo_db)
    at = open_page("portfolio", query=QUERY)
    expected = kpis(Facts(demo_db), as_of=AS_OF, filters=Filters())
    m = metrics(at)
    for k in expected:
        assert m[k.label] == shown(k.value, k.unit), k.key
    # Concrete: the demo portfolio has onboarding accounts and a completion rate with a denominator.
    assert int(m["Accounts onboarding"].replace(",", "")) > 0
    completion = next(k for k in expected if k.key == "completion")
    assert f"{completion.numerator:,} of {completion.denominator:,}" in " ".join(texts(at.caption))

    from_cli = cli_kpis(cli, demo_db)
    assert set(from_cli) == {k.key for k in expected}
    for k in expected:
        row = from_cli[k.key]
        assert row["label"] == k.label
        assert m[k.label] == shown(row["value"], row["unit"]), k.key
        assert row["value"] == pytest.approx(k.value, rel=1e-9)


def test_segment_filter_in_the_url_changes_the_tiles(demo_db: str, use_db, cli) -> None:
    use_db(demo_db)
    at = open_page("portfolio", query={**QUERY, "segment": "SMB"})
    assert at.multiselect(key="segment").value == ["SMB"]
    smb = kpis(Facts(demo_db), as_of=AS_OF, filters=Filters(segment=("SMB",)))
    every = kpis(Facts(demo_db), as_of=AS_OF, filters=Filters())
    m = metrics(at)
    assert [m[k.label] for k in smb] == [shown(k.value, k.unit) for k in smb]
    assert [m[k.label] for k in smb] != [shown(k.value, k.unit) for k in every], "the filter changes what is shown"
    assert any("segment: SMB" in unescape(c) for c in texts(at.caption))

    from_cli = cli_kpis(cli, demo_db, "--segment", "SMB")
    for k in smb:
        assert m[k.label] == shown(from_cli[k.key]["value"], from_cli[k.key]["unit"]), k.key


def test_at_risk_table_lists_the_accounts(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("portfolio", query=QUERY)
    p = portfolio(Facts(demo_db), as_of=AS_OF, filters=Filters())
    assert len(p.at_risk) > 0
    # The table's heading counts the accounts listed (its wording is the UI's to choose).
    assert [h for h in texts(at.subheader) if h.endswith(f"({len(p.at_risk):,})")]
    t = table_with(at, "link", "external_id", "owner", "health", "band", "reason")
    assert len(t) == len(p.at_risk)
    # The account column holds the names: one-click buttons that open the account (components/links.py).
    assert t["link"].tolist() == p.at_risk["name"].tolist()
    assert t["external_id"].tolist() == p.at_risk["external_id"].tolist()
    assert t["owner"].tolist() == p.at_risk["owner"].tolist()
    assert t["reason"].tolist() == p.at_risk["reason"].tolist()
    assert set(t["band"]) <= {"At Risk", "Critical", "On Track", "Excellent"}
    # Sorted with the weakest first.
    assert t["health"].is_monotonic_increasing


def test_local_demo_says_so(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("portfolio", query=QUERY)
    badge = " ".join(texts(at.sidebar.info))
    assert "Local demo" in badge and "Demo admin" in badge and "(admin)" in badge


def test_signed_in_member_sees_their_name_and_role(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("portfolio", query=QUERY, as_user="Riley.RevOps@example.com")
    badge = " ".join(texts(at.sidebar.caption))
    assert "Riley Chen" in badge and "(revops)" in badge
    # Reading is allowed: the same tiles as everyone else.
    expected = kpis(Facts(demo_db), as_of=AS_OF, filters=Filters())
    assert [metrics(at)[k.label] for k in expected] == [shown(k.value, k.unit) for k in expected]


def test_unknown_member_gets_no_access(demo_db: str, use_db) -> None:
    use_db(demo_db)
    at = open_page("portfolio", query=QUERY, as_user="stranger@example.com")
    assert texts(at.title) == ["No access"]
    assert "stranger@example.com" in unescape(at.error[0].value) and "not a member" in at.error[0].value
    assert len(at.metric) == 0, "no data is shown"


def test_header_mode_without_the_header_shows_not_signed_in(demo_db: str, use_db, monkeypatch) -> None:
    """AppTest cannot send request headers: this is the no-header path; the header's value
    is resolved by services.access.user_for_email (tests/services/test_access.py)."""
    use_db(demo_db)
    monkeypatch.setenv("AUTH_HEADER", "X-Forwarded-Email")
    # AppTest listens on no address in particular: header sign-in then needs the proxy's secret.
    monkeypatch.setenv("AUTH_HEADER_SECRET", "proxy-secret")
    at = open_page("portfolio", query=QUERY)
    assert texts(at.title) == ["Not signed in"]
    assert "X-Forwarded-Email" in at.error[0].value
    assert len(at.metric) == 0
    assert_ok(at)


def test_oidc_visitor_not_signed_in_is_asked_to_sign_in(demo_db: str, use_db) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.pages import APP, OIDC_SECRETS

    use_db(demo_db)
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["as_of"] = AS_OF.isoformat()
    at.secrets["auth"] = dict(OIDC_SECRETS)
    at.user = {"is_logged_in": False}
    at.run()
    assert_ok(at)
    assert texts(at.title) == ["Onboarding analytics"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert len(at.metric) == 0


def test_deactivated_member_loses_access(small_db: str, use_db) -> None:
    from services.plans import in_session
    from services.settings import save_team_member
    from tests.services import ADMIN, PRIYA, member

    use_db(small_db)
    assert texts(open_page("portfolio", query=QUERY, as_user=PRIYA).title) == ["Portfolio"]
    in_session(
        save_team_member,
        member(small_db, ADMIN),
        url=small_db,
        email=PRIYA,
        name="Priya Raman",
        role="csm",
        active=False,
    )
    at = open_page("portfolio", query=QUERY, as_user=PRIYA)
    assert texts(at.title) == ["No access"]
    assert len(at.metric) == 0
