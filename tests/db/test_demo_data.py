"""Your own data apart from the demo: "Remove demo data" deletes the demo portfolio only
(admins only, in the change log, never seeded again); an import can remove it first in its
own transaction (a rejected import keeps it; a dry run validates as if it were gone); the
banner says what is shown."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db.importer import import_files
from db.models import Account, ChangeLog, Event, Meta, TeamMember
from db.session import session_scope
from services.access import PermissionDenied, demo_admin
from services.data import run_import
from services.demo_data import ReplaceDemo, portfolio, remove_demo
from services.setup import ensure_ready
from tests.services import ALEX, REVOPS, count, member

OWN_ACCOUNTS = (
    b"account_id,name,segment,contract_start,csm_email\n"
    b"MINE-1,Mine One,SMB,2026-05-01,alex.csm@example.com\n"
    b"MINE-2,Mine Two,Enterprise,2026-04-15,\n"
)
OWN_EVENTS = b"account_id,event,timestamp,user_id\nMINE-1,login,2026-05-03T10:00:00Z,u1\n"
OWN_TEAM = b"email,name,role\nkim@own.example,Kim Own,csm\n"
OWN_WITH_TEAM = (
    b"account_id,name,segment,contract_start,csm_email\n"
    b"MINE-1,Mine One,SMB,2026-05-01,kim@own.example\n"
    b"MINE-2,Mine Two,Enterprise,2026-04-15,\n"
)


def _emails(url: str) -> set[str]:
    with session_scope(url) as s:
        return set(s.execute(select(TeamMember.email)).scalars())


def _meta(url: str, key: str) -> str | None:
    with session_scope(url) as s:
        row = s.get(Meta, key)
        return row.value if row else None


def test_removing_the_demo_keeps_your_own_accounts(small_db: str) -> None:
    assert import_files({"accounts.csv": OWN_ACCOUNTS, "events.csv": OWN_EVENTS}, url=small_db).written
    before = portfolio(small_db)
    assert (before.accounts, before.demo_accounts, before.own_accounts) == (32, 30, 2)
    assert "2 imported account(s) and 30 generated demo accounts" in before.banner()

    with pytest.raises(PermissionDenied):
        remove_demo(member(small_db, REVOPS), url=small_db)
    assert count(small_db, Account) == 32

    removed = remove_demo(demo_admin(), url=small_db)
    assert len(removed.account_ids) == 30
    with session_scope(small_db) as s:
        assert sorted(s.execute(select(Account.external_id)).scalars()) == ["MINE-1", "MINE-2"]
        assert int(s.execute(select(func.count()).select_from(Event)).scalar_one()) == 1
        log = s.execute(select(ChangeLog).where(ChangeLog.entity == "portfolio")).scalars().all()
    # Alex is the CSM of one of your accounts: kept. The other demo members are gone.
    assert _emails(small_db) == {ALEX}
    assert [(c.actor, c.field, c.new, c.context) for c in log] == [
        ("demo-admin@localhost", "demo data", "removed", "remove demo data")
    ]
    assert log[0].old.startswith("30 demo account(s) and 8 demo team member(s) (seed 11, as of 2026-06-30)")
    assert _meta(small_db, "demo") is None
    after = portfolio(small_db)
    assert (after.accounts, after.demo_accounts) == (2, 0)
    assert after.banner() == ":material/database: Showing **your data**: 2 account(s)."
    # Once removed, a restart does not seed the demo again.
    assert ensure_ready(small_db, demo_mode=True)["seeded_now"] is False


def test_an_import_can_replace_the_demo_in_its_transaction(small_db: str) -> None:
    admin = demo_admin()
    files = [("team.csv", OWN_TEAM), ("accounts.csv", OWN_WITH_TEAM)]
    bad = [("team.csv", OWN_TEAM), ("accounts.csv", OWN_WITH_TEAM + b"MINE-3,,SMB,2026-05-01,\n")]

    rejected = run_import(admin, bad, dry_run=False, url=small_db, replace_demo=True)
    assert not rejected.written
    assert rejected.warnings[0] == "Nothing was written: the demo portfolio is still there."
    assert count(small_db, Account) == 30 and _meta(small_db, "demo") is not None

    report = run_import(admin, files, dry_run=False, url=small_db, replace_demo=True)
    assert report.written, [str(p) for p in report.problems]
    assert report.warnings[0].startswith("The demo portfolio was removed first, in the same transaction: 30 demo")
    with session_scope(small_db) as s:
        assert sorted(s.execute(select(Account.external_id)).scalars()) == ["MINE-1", "MINE-2"]
        contexts = list(s.execute(select(ChangeLog.context).where(ChangeLog.entity == "portfolio")).scalars())
    assert contexts == ["import --replace-demo"]
    assert _emails(small_db) == {"kim@own.example"}
    assert portfolio(small_db).banner() == ":material/database: Showing **your data**: 2 account(s)."


def test_a_dry_run_validates_as_if_the_demo_were_gone(small_db: str) -> None:
    events = b"account_id,event,timestamp\nACC-00001,login,2026-05-03T10:00:00Z\n"
    kept = import_files({"events.csv": events}, url=small_db, dry_run=True)
    assert kept.ok
    step = ReplaceDemo("cli")
    replaced = import_files({"events.csv": events}, url=small_db, dry_run=True, first_step=step)
    assert [(p.row, p.column, p.value) for p in replaced.problems] == [(2, "account_id", "ACC-00001")]
    assert step.note(replaced).startswith("Validated as if the demo portfolio were removed first (30 demo")
    assert count(small_db, Account) == 30 and _meta(small_db, "demo") is not None


def test_without_demo_data_there_is_nothing_to_remove(empty_db: str) -> None:
    assert import_files({"accounts.csv": OWN_WITH_TEAM.replace(b"kim@own.example", b"")}, url=empty_db).written
    assert remove_demo(demo_admin(), url=empty_db).empty
    assert count(empty_db, Account) == 2
    assert portfolio(empty_db).banner() == ":material/database: Showing **your data**: 2 account(s)."
