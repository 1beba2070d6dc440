"""Start-up of the command line: a report process imports only what that report needs (no
lifelines, SciPy, Streamlit, Plotly, statsmodels, scikit-learn or Alembic for funnel,
retention and health, and no ORM: sqlmodel, pydantic, sqlalchemy.orm, the models, the import
pipeline), and migrate() answers from one SELECT when the schema is at head while it still
upgrades a database that is behind or new."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import inspect

from db.session import ROOT, current_revision, dispose_engine, get_engine, head_revision, migrate
from tests.conftest import AS_OF

HEAVY = ("alembic", "lifelines", "scipy", "streamlit", "plotly", "statsmodels", "sklearn", "matplotlib")
# The ORM and what loads it: a report only reads, through SQLAlchemy Core and the analytics
# engine (about 0.25 s of CPU per process when it was imported).
ORM = ("sqlmodel", "pydantic", "sqlalchemy.orm", "db.models", "db.bulk", "db.importer", "services.settings")

# Runs manage.py in a fresh interpreter as `python manage.py ...` would, then prints which of
# HEAVY and ORM (a package or any module under it) were imported, and the exit status, as
# JSON on the last line of stderr.
PROBE = """
import json, runpy, sys
sys.argv = ["manage.py", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_path("manage.py", run_name="__main__")
except SystemExit as exc:
    code = exc.code
def loaded(names):
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in sys.modules))
print(json.dumps({"code": code, "heavy": loaded(HEAVY_LIST), "orm": loaded(ORM_LIST),
                  "sqlalchemy": loaded(["sqlalchemy"])}), file=sys.stderr)
""".replace("HEAVY_LIST", repr(list(HEAVY))).replace("ORM_LIST", repr(list(ORM)))


def probe(url: str, *args: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = json.loads(res.stderr.strip().splitlines()[-1])
    out["stdout"], out["stderr"] = res.stdout, res.stderr
    return out


REPORTS = {
    "funnel": ["--step", "workspace_created", "--step", "data_imported", "--step", "dashboard_created"],
    "retention": ["--start-event", "workspace_created", "--return-event", "login"],
    "health": [],
}


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_report_process_imports_nothing_heavy(report: str, demo_db: str) -> None:
    got = probe(demo_db, "report", report, "--as-of", AS_OF.isoformat(), *REPORTS[report])
    assert got["code"] in (0, None), got["stderr"]
    assert len(got["stdout"].splitlines()) > 1  # a header and rows: the report ran
    assert got["heavy"] == [], got["heavy"]


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_report_process_does_not_load_the_orm(report: str, demo_db: str) -> None:
    """Settings, milestone definitions and the schema check are Core reads: no sqlmodel,
    pydantic or ORM mapper in a report process."""
    got = probe(demo_db, "report", report, "--as-of", AS_OF.isoformat(), *REPORTS[report])
    assert got["code"] in (0, None), got["stderr"]
    assert len(got["stdout"].splitlines()) > 1
    assert got["orm"] == [], got["orm"]


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_report_on_a_sqlite_file_does_not_import_sqlalchemy(report: str, demo_db: str) -> None:
    """At head, a report on a SQLite file reads through the standard library's sqlite3
    (db.session.use_reader): SQLAlchemy is not imported at all (about 0.2 s of CPU)."""
    if not demo_db.startswith("sqlite"):
        pytest.skip("a SQLite file only: PostgreSQL is read through SQLAlchemy")
    got = probe(demo_db, "report", report, "--as-of", AS_OF.isoformat(), *REPORTS[report])
    assert got["code"] in (0, None), got["stderr"]
    assert len(got["stdout"].splitlines()) > 1
    assert got["sqlalchemy"] == [], got["sqlalchemy"]


def test_report_on_a_sqlite_file_behind_head_still_migrates_it(unmigrated_db: str) -> None:
    """The read-only reader never writes: a database behind head is upgraded (through
    SQLAlchemy and Alembic) before the report reads it, as before."""
    from alembic import command

    from db.session import alembic_config

    if not unmigrated_db.startswith("sqlite"):
        pytest.skip("the reader is for SQLite files")
    cfg = alembic_config(unmigrated_db)
    with get_engine(unmigrated_db).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    dispose_engine(unmigrated_db)
    got = probe(unmigrated_db, "report", "health", "--as-of", AS_OF.isoformat())
    assert got["code"] in (0, None), got["stderr"]
    assert got["stdout"].splitlines()[0].startswith("account_id,name,segment")  # the header of an empty table
    assert current_revision(unmigrated_db) == head_revision()


def test_time_to_value_report_still_uses_lifelines(demo_db: str) -> None:
    """The curve and the log-rank test are lifelines': the report that needs them loads it."""
    got = probe(demo_db, "report", "time-to-value", "--as-of", AS_OF.isoformat(), "--by", "segment")
    assert got["code"] in (0, None), got["stderr"]
    assert "lifelines" in got["heavy"] and "alembic" not in got["heavy"]


def test_head_revision_read_from_the_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    from db.session import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def run_python(url: str, code: str) -> str:
    """Run `code` in a fresh interpreter in the project root with DATABASE_URL=url; its stdout."""
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_migrate_at_head_does_not_import_alembic(empty_db: str) -> None:
    code = (
        "import sys; from db.session import migrate; rev = migrate(); "
        "print(rev, sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    assert run_python(empty_db, code).split() == [head_revision(), "[]"]


def test_migrate_brings_a_behind_database_to_head(unmigrated_db: str) -> None:
    from alembic import command

    from db.session import alembic_config

    cfg = alembic_config(unmigrated_db)
    with get_engine(unmigrated_db).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert current_revision(unmigrated_db) == "0001"
    assert "done_at" not in {c["name"] for c in inspect(get_engine(unmigrated_db)).get_columns("checklist_items")}

    assert migrate(unmigrated_db) == head_revision() == "0005"
    assert current_revision(unmigrated_db) == "0005"
    dispose_engine(unmigrated_db)
    assert "done_at" in {c["name"] for c in inspect(get_engine(unmigrated_db)).get_columns("checklist_items")}
    assert migrate(unmigrated_db) == "0005"  # and at head it stays there


def test_migrate_creates_a_new_database(unmigrated_db: str) -> None:
    assert current_revision(unmigrated_db) is None
    assert migrate(unmigrated_db) == head_revision()
    assert current_revision(unmigrated_db) == head_revision()
    assert "accounts" in inspect(get_engine(unmigrated_db)).get_table_names()
