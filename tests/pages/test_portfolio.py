"""Portfolio (home): the KPI tiles show the same numbers as services.analytics.kpis and the
CLI, follow the sidebar filters in the URL, and the at-risk table lists the accounts.
Also the sign-in paths the home page is reached through."""

from __future__ import annotations

import json
import math

import pandas as pd
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
    n = len(p.at_risk)
    assert f"rows 1–{min(n, 100)} of {n:,}" in texts(at.caption)
    t = table_with(at, "link", "external_id", "owner", "health", "band", "reason")
    first = p.at_risk.head(100)  # one page of 100 rows
    assert len(t) == len(first)
    # The account column holds the names: one-click buttons that open the account (components/links.py).
    assert t["link"].tolist() == first["name"].tolist()
    assert t["external_id"].tolist() == first["external_id"].tolist()
    assert t["owner"].tolist() == first["owner"].tolist()
    assert t["reason"].tolist() == first["reason"].tolist()
    # Nothing overdue reads blank, not "None".
    days = table_with(at, "link", "days_overdue")["days_overdue"].tolist()
    assert days == ["" if pd.isna(v) else f"{v:.0f}" for v in first["days_overdue"]]
    assert "" in days, "the demo has an attention-list account with nothing overdue"
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


def _breakdown_tables(at) -> list[str]:
    return [c for d in at.dataframe for c in ("segment", "csm_name") if list(d.value.columns)[:1] == [c]]


def test_only_the_chosen_breakdown_tab_is_drawn(demo_db: str, use_db) -> None:
    """By segment is drawn and By CSM is not (its body does not run); the tab in the URL
    draws By CSM alone. The numbers are the service's."""
    use_db(demo_db)
    p = portfolio(Facts(demo_db), as_of=AS_OF, filters=Filters())
    at = open_page("portfolio", query=QUERY)
    assert _breakdown_tables(at) == ["segment"]
    seg = table_with(at, "segment", "accounts", "avg_health")
    assert seg["accounts"].tolist() == p.by_segment["accounts"].tolist()
    assert seg["avg_health"].round(6).tolist() == p.by_segment["avg_health"].round(6).tolist()
    at = open_page("portfolio", query={**QUERY, "breakdown": "By CSM"})
    assert _breakdown_tables(at) == ["csm_name"]
    csm = table_with(at, "csm_name", "accounts", "at_risk")
    assert csm["csm_name"].tolist() == p.by_csm["csm_name"].tolist()
    assert csm["at_risk"].tolist() == p.by_csm["at_risk"].tolist()
    # The KPI tiles are the same whichever tab is open.
    assert metrics(at) == metrics(open_page("portfolio", query=QUERY))


def test_portfolio_computes_each_health_table_once(demo_db: str, use_db, monkeypatch) -> None:
    """Health as of the date, the previous week and the trigger look-back: each once per
    Portfolio, even with the results memo off (it was computed twice as of the date)."""
    import services.analytics as an

    calls: list = []
    real = an._health_table

    def counted(src, **kw):
        calls.append(kw["as_of"])
        return real(src, **kw)

    monkeypatch.setattr(an, "_health_table", counted)
    src = Facts(demo_db)
    src.results_enabled = False
    p = portfolio(src, as_of=AS_OF, filters=Filters())
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 3, calls
    # Same numbers as with the memo on.
    q = portfolio(Facts(demo_db), as_of=AS_OF, filters=Filters())
    assert [(k.key, k.value, k.previous) for k in p.kpis] == [(k.key, k.value, k.previous) for k in q.kpis]
    assert p.at_risk["account_id"].tolist() == q.at_risk["account_id"].tolist()
