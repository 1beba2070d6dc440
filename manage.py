#!/usr/bin/env python
"""Command line: migrations, demo data, import/export, reports, health snapshots, benchmark.

The database comes from DATABASE_URL (default: the SQLite file data/onboarding.db).
Every command has --help. Exit status 0 on success, 1 on failure, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import zipfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# Text a spreadsheet runs as a formula (db/csvsafe.py: light, so a report does not load the
# ORM and the import pipeline with db.importer).
from db.csvsafe import FORMULA_PREFIXES  # noqa: E402


def _date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from exc


def _progress_printer(prefix: str):
    last = [-1.0]

    def progress(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.02 or fraction >= 1.0 or fraction < last[0]:
            last[0] = fraction
            print(f"{prefix} {fraction * 100:5.1f}%  {message}", file=sys.stderr, flush=True)

    return progress


# ----------------------------------------------------------------------------- commands


def cmd_migrate(args: argparse.Namespace) -> int:
    from db.session import database_url
    from db.settings_store import init_db

    init_db()
    from db.session import migrate

    print(f"database at revision {migrate()} ({_safe_url(database_url())})")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from services.setup import seed_demo

    t0 = time.perf_counter()
    try:
        meta = seed_demo(
            accounts=args.accounts,
            seed=args.seed,
            as_of=args.as_of,
            events=args.events,
            replace=args.replace,
            history_weeks=args.history_weeks,
            progress=_progress_printer("seed"),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"seeded {meta['accounts']:,} accounts and {meta['events']:,} events "
        f"(seed {meta['seed']}, as of {meta['as_of']}) in {time.perf_counter() - t0:.1f} s"
    )
    return 0


class _OneLineLog(logging.Formatter):
    """The importer's log on stderr, one line a record: the CLI never prints a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        detail = str(getattr(exc, "orig", None) or exc or "").strip().splitlines()
        return f"log: {record.getMessage()}" + (f": {detail[0][:300]}" if detail else "")


def cmd_import(args: argparse.Namespace) -> int:
    from db.importer import ImportFailed, files_from_dir, import_files
    from db.settings_store import init_db

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineLog())
    importer_log = logging.getLogger("db.importer")
    importer_log.addHandler(handler)
    importer_log.propagate = False

    paths = [Path(p) for p in args.dir]
    path = paths[0]
    is_zip = len(paths) == 1 and path.is_file() and path.suffix.lower() == ".zip"
    given_files = len(paths) > 1 or (path.is_file() and not is_zip)  # files one by one (db/eventfiles.py)
    if not given_files and not path.is_dir() and not is_zip:
        what = "zip file" if path.suffix.lower() == ".zip" else "directory"
        print(f"error: {path} is not a {what}", file=sys.stderr)
        return 1
    init_db()
    if given_files:
        from db.eventfiles import files_from_paths

        try:
            files = files_from_paths(paths, account_property=args.account_property)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    elif is_zip:
        from db.backup import files_from_zip
        from db.importer import files_from_uploads

        try:
            files = files_from_zip(path) or files_from_uploads(
                [(path.name, path.read_bytes())], account_property=args.account_property
            )
        except zipfile.BadZipFile:
            print(f"error: {path} is not a readable zip file", file=sys.stderr)
            return 1
    else:
        files = files_from_dir(path, account_property=args.account_property)
    if not files:
        print(
            f"error: no .csv files in {path}; expected some of team.csv, accounts.csv, events.csv, "
            "milestones.csv, outcomes.csv, checklist.csv (events may also be .jsonl, .ndjson or .parquet files, "
            "gzipped or not)",
            file=sys.stderr,
        )
        return 1
    step = None
    if args.replace_demo:
        from services.demo_data import ReplaceDemo

        step = ReplaceDemo(args.actor)  # remove the demo portfolio first, in the import's transaction
    try:
        report = import_files(
            files,
            dry_run=args.dry_run,
            actor=args.actor,
            progress=None if args.quiet else _progress_printer("import"),
            source=", ".join(str(p) for p in paths),
            first_step=step,
        )
    except ImportFailed as exc:  # another import is running, the database is full, ...
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    if step and (note := step.note(report)):
        report.warnings.insert(0, note)
    if args.problems_csv and report.problems:
        report.problems_frame().to_csv(args.problems_csv, index=False)
    if args.format == "json":
        out = report.as_dict()
        out["problems"] = [vars(p) for p in report.problems]
        print(json.dumps(out, indent=2, default=str))
    else:
        print(report.summary_frame().to_string(index=False))
        for w in report.warnings:
            print(f"warning: {w}")
        if report.problems:
            print(f"\n{report.problem_count:,} problem(s); nothing was written:")
            for p in report.problems:
                print(f"  {p}")
            if report.problem_count > len(report.problems):
                print(f"  ... and {report.problem_count - len(report.problems):,} more of the same kinds")
        elif args.dry_run:
            print("\ndry run: the files are valid; nothing was written")
        else:
            print(f"\nimported in {report.seconds:.1f} s; {report.duplicates_skipped:,} duplicate event(s) skipped")
    return 0 if report.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    from db.exporter import export_dir, export_zip_to
    from db.settings_store import init_db

    init_db()
    target = Path(args.dir)
    if target.suffix.lower() == ".zip":
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            counts = export_zip_to(partial, backup=not args.contract_only)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)  # a half-written zip never takes the name
    else:
        counts = export_dir(target, backup=not args.contract_only)
    for name, n in counts.items():
        print(f"{name}: {n:,} rows")
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from services.setup import create_admin

    try:
        done = create_admin(args.email, name=args.name, actor=args.actor)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    email = args.email.strip().lower()
    print(
        {
            "created": f"{email} added to the team as admin",
            "promoted": f"{email} is now an active admin",
            "unchanged": f"{email} is already an active admin; nothing changed",
        }[done]
    )
    return 0


# ----------------------------------------------------------------------------- reports


def _filters(args: argparse.Namespace):
    from services.analytics import Filters

    return Filters(
        start_from=args.start_from,
        start_to=args.start_to,
        segment=tuple(args.segment or ()),
        industry=tuple(args.industry or ()),
        plan=tuple(args.plan or ()),
        channel=tuple(args.channel or ()),
        csm=tuple(e.lower() for e in (args.csm or ())),
        region=tuple(args.region or ()),
    )


def _emit(df, args: argparse.Namespace, extra: dict | None = None) -> None:
    """CSV (default) or JSON on stdout. Empty cells are values that do not exist (NaN). CSV
    text that a spreadsheet would run as a formula (=, +, -, @ first) gets a ' in front, as in
    the dashboard's downloads, unless --raw."""
    import pandas as pd

    df = df.copy()
    for c in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[c]):
            df[c] = df[c].dt.strftime("%Y-%m-%dT%H:%M:%S").where(df[c].notna(), None)
    if args.format == "json":
        records = json.loads(df.to_json(orient="records", date_format="iso", double_precision=15, default_handler=str))
        print(json.dumps({**(extra or {}), "rows": records} if extra else records, indent=2, default=str))
    else:
        if not args.raw:
            starts = (*FORMULA_PREFIXES, "'")
            for c in df.columns:
                if pd.api.types.is_numeric_dtype(df[c]):
                    continue
                # Text cells only: a negative number is a number, not a formula. One pass
                # over the cells, as db.exporter.neutralise does to each text cell; a column
                # is rebuilt only where some cell needs the ' (rarely: names, notes).
                cells = df[c].to_numpy(dtype=object)
                # Each distinct value looked at once first: most text columns repeat a few
                # (segment, status, band) and none of them needs the '.
                try:
                    distinct = pd.unique(cells)
                except TypeError:  # unhashable cells (lists): look at every one
                    distinct = cells
                if not any(isinstance(v, str) and v.startswith(starts) for v in distinct):
                    continue
                hit = [i for i, v in enumerate(cells) if isinstance(v, str) and v.startswith(starts)]
                if hit:
                    cells = cells.copy()
                    cells[hit] = ["'" + str(v) for v in cells[hit]]
                    df[c] = pd.Series(cells, index=df.index, dtype=object)
        sys.stdout.write(df.to_csv(index=False, lineterminator="\n"))


def cmd_report(args: argparse.Namespace) -> int:
    import pandas as pd

    from db.settings_store import init_db
    from services import analytics as an

    init_db()
    src = an.Facts()
    flt = _filters(args)
    as_of = args.as_of or an.today()
    try:
        if args.report == "funnel":
            if not args.step or len(args.step) < 2:
                print(
                    "error: a funnel needs at least two --step options (event names or milestone:<key>)",
                    file=sys.stderr,
                )
                return 2
            res = an.funnel_report(
                src,
                steps=args.step,
                mode=args.mode,
                window=args.window,
                entry_from=args.date_from,
                entry_to=args.to,
                by=args.by,
                filters=flt,
                as_of=as_of,
                exclude=args.exclude,
                attribution=args.attribution,
            )
            _emit(res.accounts if args.accounts else res.steps, args)
        elif args.report == "time-to-value":
            res = an.ttv_report(src, milestone=args.milestone, by=args.by, filters=flt, as_of=as_of)
            _emit(res.groups, args)
        elif args.report == "cohorts":
            if args.matrix:
                shares, _observed = an.cohort_week_report(
                    src, milestone=args.matrix, by=args.by or "month", weeks=args.weeks, filters=flt, as_of=as_of
                )
                _emit(shares.reset_index(), args)
            else:
                _emit(
                    an.cohort_report(
                        src, by=args.by or "month", within_days=args.within_days, filters=flt, as_of=as_of
                    ),
                    args,
                )
        elif args.report == "retention":
            if not (args.start_event and args.return_event):
                print("error: retention needs --start-event and --return-event", file=sys.stderr)
                return 2
            m = an.retention_report(
                src,
                start_event=args.start_event,
                return_event=args.return_event,
                period=args.period,
                intervals=args.intervals,
                date_to=args.to or as_of,
                first_time=args.first_time,
                cumulative=args.cumulative,
                filters=flt,
            )
            from datetime import UTC, datetime

            from metrics.retention import in_progress, in_progress_column

            partial = in_progress(
                m, period=args.period, date_to=args.to or as_of, now=datetime.now(UTC).replace(tzinfo=None)
            )
            for c in m.columns[1:]:
                m[c] = m[c].astype("Int64")
            if partial.to_numpy().any():
                # The page draws these cells lighter and leaves them out of its summary.
                print(
                    f"note: the {args.period} starting {m['cohort'].iloc[-1]} contains the end date and is not over; "
                    "its cells (the last observed one of each cohort) are partial"
                    + ("" if args.mark_in_progress else " (--mark-in-progress names them)"),
                    file=sys.stderr,
                )
            if args.mark_in_progress:
                m["in_progress"] = in_progress_column(partial)
            _emit(m, args)
        elif args.report == "health":
            h = an.health_table(src, as_of=as_of, filters=flt)
            cols = [
                "external_id",
                "name",
                "segment",
                "csm_name",
                "status",
                "total",
                "band",
                # New accounts are too early to score (metrics.health.too_early_to_score), as on the pages.
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
            # reindex: a selection without accounts still prints the header.
            _emit(h.reindex(columns=cols).rename(columns={"external_id": "account_id", "csm_name": "csm"}), args)
        elif args.report == "triggers":
            t = an.trigger_table(src, as_of=as_of, filters=flt)
            _emit(t.drop(columns=["account_id"]).rename(columns={"external_id": "account_id"}), args)
        elif args.report == "signals":
            if args.transitions:
                _emit(an.transitions_report(src, filters=flt, as_of=as_of), args)
            else:
                _emit(
                    an.signals_report(
                        src,
                        outcome=args.outcome,
                        days=args.days,
                        min_count=args.min_count,
                        within_segment=args.within_segment,
                        filters=flt,
                        as_of=as_of,
                    ),
                    args,
                )
        elif args.report == "backtest":
            weights = None
            if args.weights:
                try:
                    weights = {k.strip(): float(v) for k, v in (p.split("=") for p in args.weights.split(","))}
                except ValueError:
                    print(
                        "error: --weights must look like milestone=30,adoption=25,engagement=25,value=20",
                        file=sys.stderr,
                    )
                    return 2
            r = an.backtest_report(src, day=args.day, weights=weights, filters=flt, as_of=as_of)
            df = r.bands.assign(
                auc=r.auc, auc_low=r.auc_low, auc_high=r.auc_high, day=r.day, scored_accounts=r.accounts
            )
            _emit(df, args)
        elif args.report == "portfolio":
            rows = [
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
                for k in an.kpis(src, as_of=as_of, filters=flt)
            ]
            _emit(pd.DataFrame(rows), args)
    except (ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_snapshot_health(args: argparse.Namespace) -> int:
    from db.settings_store import init_db
    from services.health import backfill_snapshots, snapshot

    init_db()
    if args.backfill_weeks:
        n = backfill_snapshots(as_of=args.as_of, weeks=args.backfill_weeks, progress=_progress_printer("health"))
    else:
        n = snapshot(as_of=args.as_of)
    print(f"stored {n:,} health snapshot rows")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """Sync from a SQL source (db/sync.py): a run from --source and --mapping, a configured
    sync by --name, or configure one (--save, --remove, --list)."""
    from db.session import session_scope
    from db.settings_store import init_db
    from db.sync import SyncError, load_mapping, run_sync
    from db.sync_config import overview, remove_sync, run_configured, save_sync
    from db.sync_source import masked_url

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineLog())
    for name in ("db.importer", "db.sync"):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        lg.propagate = False
    modes = [bool(args.save), bool(args.remove), bool(args.list), bool(args.name)]
    if sum(modes) > 1:
        print("error: give only one of --save, --remove, --list and --name", file=sys.stderr)
        return 2
    init_db()
    try:
        if args.list:
            with session_scope() as s:
                rows = overview(s)
            if args.format == "json":
                print(
                    json.dumps(
                        [{k: v for k, v in r.items() if k != "mapping_text"} for r in rows], indent=2, default=str
                    )
                )
            for r in rows if args.format == "text" else []:
                when = r["last_run"].strftime("%Y-%m-%d %H:%M UTC") if r["last_run"] else "never"
                print(
                    f"{r['name']}: {r['source']} | {r['mapping']} | schedule {r['schedule']} | last run {when}: {r['status']}"
                )
                if r["last_run"]:
                    print(
                        f"  {r['rows_read']:,} read, {r['rows_written']:,} written, {r['problems']:,} problem(s)"
                        + (f"; watermark {r['watermark']}" if r["watermark"] else "")
                    )
            if not rows and args.format == "text":
                print("no configured syncs (manage.py sync --save NAME --source URL --mapping FILE)")
            return 0
        if args.remove:
            with session_scope() as s:
                remove_sync(s, actor=args.actor, name=args.remove)
            print(f"removed the sync {args.remove}")
            return 0
        if args.save:
            if not args.source or not args.mapping:
                print("error: --save needs --source and --mapping", file=sys.stderr)
                return 2
            mapping = load_mapping(args.mapping)
            with session_scope() as s:
                save_sync(
                    s,
                    actor=args.actor,
                    name=args.save,
                    source_url=args.source,
                    mapping_text=mapping.text,
                    mapping_path=str(Path(args.mapping).resolve()),
                    schedule=args.schedule or "",
                )
            print(f"saved the sync {args.save}: {masked_url(args.source)}, schedule {args.schedule or 'by hand'}")
            if ":" in (args.source.split("@", 1)[0].split("://", 1)[-1]) and "${" not in args.source:
                print(
                    "note: the password is stored in the database (and in an export's backup); "
                    "write it as ${VAR} to read it from the environment instead",
                    file=sys.stderr,
                )
            return 0
        progress = None
        if not args.quiet:

            def progress(entity: str, rows: int) -> None:
                print(f"sync {entity}: {rows:,} rows read", file=sys.stderr, flush=True)

        common = {"dry_run": args.dry_run, "full": args.full, "actor": args.actor, "progress": progress}
        if args.batch_rows:
            common["batch_rows"] = args.batch_rows
        if args.name:
            if args.source or args.mapping:
                print("error: --name runs a configured sync: give no --source or --mapping", file=sys.stderr)
                return 2
            result = run_configured(args.name, **common)
        else:
            if not args.source or not args.mapping:
                print("error: give --source URL and --mapping FILE, or --name NAME", file=sys.stderr)
                return 2
            result = run_sync(args.source, load_mapping(args.mapping), **common)
    except SyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.problems_csv and result.report and result.report.problems:
        result.report.problems_frame().to_csv(args.problems_csv, index=False)
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2, default=str))
        return 0 if result.ok else 1
    print(f"source: {result.source}")
    if result.report is not None:
        summary = result.report.summary_frame().rename(columns={"file": "query"})
        summary.insert(1, "rows read", [result.rows_read.get(q.split(" ")[0], 0) for q in summary["query"]])
        print(summary.drop(columns=["rows"]).to_string(index=False))
        for w in result.report.warnings:
            print(f"warning: {w}")
        if result.report.problems:
            print(f"\n{result.report.problem_count:,} problem(s); nothing was written:")
            for p in result.report.problems:
                print(f"  {p}")
            if result.report.problem_count > len(result.report.problems):
                print(f"  ... and {result.report.problem_count - len(result.report.problems):,} more of the same kinds")
    for entity, w in result.watermarks.items():
        print(
            f"watermark {entity}.{w['column']}: {w['value']}"
            + (
                ""
                if result.status == "synced"
                else " (unchanged)"
                if result.status != "dry run"
                else " (not stored: dry run)"
            )
        )
    if result.status == "failed":
        print(f"\nerror: {result.message}", file=sys.stderr)
    else:
        print(f"\n{result.message} ({result.seconds:.1f} s)")
    return 0 if result.ok else 1


def cmd_notify(args: argparse.Namespace) -> int:
    from db.settings_store import init_db
    from services.analytics import today
    from services.notify import run_notify

    init_db()
    started = time.perf_counter()
    run = run_notify(as_of=args.as_of or today(), dry_run=args.dry_run)
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(run.produced.items())) or "none"
    if args.dry_run:
        print(f"dry run as of {run.as_of}: nothing stored or sent; {len(run.planned):,} message(s) would be sent")
        for kind, title, dests in run.planned:
            print(f"  [{kind}] {title} -> {', '.join(dests) if dests else '(no destination)'}")
        return 0
    d = run.deliveries
    print(
        f"notify as of {run.as_of}: {run.plays_opened:,} play(s) opened, {run.plays_auto_resolved:,} auto-resolved; "
        f"{run.messages:,} message(s) produced ({kinds}); deliveries: {d.sent:,} sent, {d.retrying:,} to retry, "
        f"{d.failed:,} failed ({time.perf_counter() - started:.1f} s)"
    )
    if d.undeliverable:
        print(
            f"  {d.undeliverable:,} message(s) had no destination: set NOTIFY_URLS or NOTIFY_EMAIL_URL, "
            "or add a destination in Settings"
        )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run notify every day at a time, and deliver retries in between (APScheduler)."""
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

    from db.session import session_scope
    from db.settings_store import init_db
    from services.analytics import today
    from services.notify import deliver, run_notify

    init_db()
    hour, minute = args.at
    log = logging.getLogger("worker")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def daily() -> None:
        run = run_notify(as_of=today())
        log.info("notify as of %s: %d message(s), %d sent", run.as_of, run.messages, run.deliveries.sent)

    def retries() -> None:
        with session_scope() as s:
            r = deliver(s)
        if r.sent or r.failed:
            log.info("retries: %d sent, %d failed", r.sent, r.failed)

    def syncs() -> None:
        # Configured syncs whose schedule (a crontab line, UTC) came round: db/sync.py due_syncs.
        from db.sync_config import run_due

        for r in run_due():
            log.info("sync %s: %s: %s", r.sync_name, r.status, r.message)

    sched = BlockingScheduler(timezone="UTC")
    sched.add_job(daily, CronTrigger(hour=hour, minute=minute, timezone="UTC"), max_instances=1, coalesce=True)
    sched.add_job(retries, "interval", minutes=args.retry_minutes, max_instances=1, coalesce=True)
    sched.add_job(syncs, "interval", minutes=1, max_instances=1, coalesce=True)
    print(
        f"worker: notify daily at {hour:02d}:{minute:02d} UTC, retries every {args.retry_minutes} min, "
        "configured syncs on their schedules (Ctrl-C stops)"
    )
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        sched.start()
    return 0


def _hhmm(s: str) -> tuple[int, int]:
    try:
        h, m = (int(x) for x in s.split(":"))
        if 0 <= h < 24 and 0 <= m < 60:
            return h, m
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{s!r} is not a time of day as HH:MM (e.g. 07:00)")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="manage.py",
        description="Onboarding analytics: database, data and reports. Database from DATABASE_URL "
        "(default sqlite:///data/onboarding.db).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("migrate", help="bring the database to the latest schema revision")
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("seed-demo", help="fill the database with a generated demo portfolio")
    s.add_argument("--accounts", type=int, default=600, help="number of accounts (default 600)")
    s.add_argument("--seed", type=int, default=42, help="random seed (default 42): same seed, same data")
    s.add_argument("--as-of", type=_date, default=None, help="the demo's 'today' (default: today)")
    s.add_argument(
        "--events", type=int, default=None, help="about how many events (default max(200,000, 100 per account))"
    )
    s.add_argument("--history-weeks", type=int, default=26, help="weeks of health snapshots to back-fill (default 26)")
    s.add_argument(
        "--replace", action="store_true", help="delete the existing portfolio first (otherwise refuse if there is one)"
    )
    s.set_defaults(func=cmd_seed_demo)

    s = sub.add_parser(
        "import", help="validate and import the contract CSV files in DIR (atomic), or restore an export's backup"
    )
    s.add_argument(
        "dir",
        nargs="+",
        metavar="DIR|FILE",
        help="directory with team.csv, accounts.csv, events.csv, milestones.csv, outcomes.csv, checklist.csv (any "
        "subset), or a zip of them, or those files one by one; events may also be Segment-spec JSON lines "
        "(.jsonl, .ndjson) or Parquet (.parquet), gzipped or not (.gz); a folder or zip written by export (with "
        "backup/) is restored into an empty database",
    )
    s.add_argument(
        "--account-property",
        metavar="NAME",
        help="JSON lines: read each track call's account from its property NAME instead of context.groupId",
    )
    s.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    s.add_argument("--actor", default="cli", help="who is importing (recorded in the import log)")
    s.add_argument(
        "--replace-demo",
        action="store_true",
        help="remove the demo portfolio first, in the same transaction (kept if the import is rejected)",
    )
    s.add_argument("--format", choices=["text", "json"], default="text", help="report format (default text)")
    s.add_argument("--problems-csv", help="also write the problem list to this CSV file")
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("export", help="write the contract CSV files and a complete backup into DIR (or a .zip)")
    s.add_argument("dir", help="output directory (created if missing), or a file name ending in .zip")
    s.add_argument(
        "--contract-only", action="store_true", help="only the six contract CSV files, without the backup/ folder"
    )
    s.set_defaults(func=cmd_export)

    s = sub.add_parser(
        "create-admin",
        help="make EMAIL an admin (adds them to the team, or promotes and reactivates them): how the first admin is made",
    )
    s.add_argument("email", help="the admin's sign-in email (as OIDC or the sign-in proxy reports it)")
    s.add_argument("--name", help="display name for a new team member (default: the part before @)")
    s.add_argument("--actor", default="cli", help="who is doing this (recorded in the change log)")
    s.set_defaults(func=cmd_create_admin)

    s = sub.add_parser("report", help="compute an analysis and print it (CSV or JSON) on stdout")
    s.add_argument(
        "report",
        choices=[
            "funnel",
            "time-to-value",
            "cohorts",
            "retention",
            "health",
            "triggers",
            "signals",
            "backtest",
            "portfolio",
        ],
        help="which analysis",
    )
    s.add_argument("--format", choices=["csv", "json"], default="csv", help="output format (default csv)")
    s.add_argument(
        "--raw",
        action="store_true",
        help="csv: print text exactly as stored; by default text starting with = + - @ gets a ' so a "
        "spreadsheet does not run it as a formula",
    )
    s.add_argument("--as-of", type=_date, help="evaluate as of this date (default today, UTC)")
    g = s.add_argument_group("account filters (as in the dashboard's sidebar)")
    g.add_argument("--segment", action="append", help="repeatable")
    g.add_argument("--industry", action="append", help="repeatable")
    g.add_argument("--plan", action="append", help="repeatable")
    g.add_argument("--channel", action="append", help="repeatable")
    g.add_argument("--csm", action="append", help="CSM email; repeatable")
    g.add_argument("--region", action="append", help="repeatable")
    g.add_argument("--start-from", type=_date, help="contract start on or after")
    g.add_argument("--start-to", type=_date, help="contract start on or before")
    g = s.add_argument_group("funnel")
    g.add_argument("--step", action="append", help="event name or milestone:<key>; repeat in order (2-10 steps)")
    g.add_argument("--mode", choices=["ordered", "strict", "unordered"], default="ordered")
    g.add_argument("--window", default="14d", help="conversion window from step 1: number + s|m|h|d|w (default 14d)")
    g.add_argument("--from", dest="date_from", type=_date, help="entry: step 1 on or after this date")
    g.add_argument("--to", type=_date, help="funnel: step 1 on or before this date; retention: the end date")
    g.add_argument(
        "--by",
        help="breakdown/group attribute: segment, industry, plan, channel, region, csm_name, cohort_month, cohort_quarter; cohorts also month|quarter; funnel also prop:NAME (an event property)",
    )
    g.add_argument(
        "--exclude",
        action="append",
        metavar="EVENT:FROM:TO",
        help="funnel: an EVENT between step FROM and step TO (1-based) removes the account; repeatable",
    )
    g.add_argument(
        "--attribution",
        metavar="first|last|step:N",
        help="funnel with --by prop:NAME: the value of the first event that has it (default), the last, or step N's event",
    )
    g.add_argument(
        "--accounts",
        action="store_true",
        help="funnel: one row per account (furthest step, status, step times) instead of per step",
    )
    g = s.add_argument_group("time to value / cohorts")
    g.add_argument("--milestone", default="first_value_achieved", help="milestone key (default first_value_achieved)")
    g.add_argument(
        "--within-days", type=int, help="cohorts: onboarding completion within N days (default: each segment's target)"
    )
    g.add_argument(
        "--matrix", metavar="MILESTONE", help="cohorts: print the cohort x week-since-start matrix for this milestone"
    )
    g.add_argument("--weeks", type=int, default=16, help="cohorts --matrix: weeks since start (default 16)")
    g = s.add_argument_group("retention")
    g.add_argument("--start-event", help="cohort-defining event")
    g.add_argument("--return-event", help="returning event")
    g.add_argument("--period", choices=["day", "week", "month"], default="week")
    g.add_argument("--intervals", type=int, default=8)
    g.add_argument("--first-time", action="store_true", help="cohort = period of the account's first-ever start event")
    g.add_argument("--cumulative", action="store_true", help="count returns on or after each period")
    g.add_argument(
        "--mark-in-progress",
        action="store_true",
        help="add a column in_progress: the cohort's cell (p0, p1, ...) in the period that contains the end date and "
        "is not over yet (empty when it is over)",
    )
    g = s.add_argument_group("signals / backtest")
    g.add_argument("--outcome", choices=["retained", "expanded"], default="retained")
    g.add_argument("--days", type=int, default=14, help="signals: first N days (default 14)")
    g.add_argument("--min-count", type=int, default=1, help="signals: done at least k times (default 1)")
    g.add_argument("--within-segment", action="store_true", help="signals: one row per segment and behaviour")
    g.add_argument(
        "--transitions", action="store_true", help="signals: milestone-to-milestone transition probabilities instead"
    )
    g.add_argument("--day", type=int, default=30, help="backtest: score as of day N after contract start (default 30)")
    g.add_argument("--weights", help="backtest what-if: milestone=30,adoption=25,engagement=25,value=20")
    # A report only reads: its reads of a SQLite file skip SQLAlchemy (db.session.use_reader).
    s.set_defaults(func=cmd_report, reads_only=True)

    sub.add_parser(
        "bench",
        help="run the benchmark on the 20,000-account demo database (manage.py bench --help; see BENCHMARKS.md)",
    )

    s = sub.add_parser("snapshot-health", help="store every account's health score as of a date (idempotent per date)")
    s.add_argument("--as-of", type=_date, help="date of the snapshot (default today)")
    s.add_argument("--backfill-weeks", type=int, default=0, help="also store weekly snapshots for the past N weeks")
    s.set_defaults(func=cmd_snapshot_health)

    s = sub.add_parser(
        "notify",
        help="evaluate triggers and KPI ranges, open and close plays, and deliver alerts and digests (one run, for cron)",
    )
    s.add_argument("--as-of", type=_date, help="the day evaluated (default today)")
    s.add_argument("--dry-run", action="store_true", help="print what would be sent; store and send nothing")
    s.set_defaults(func=cmd_notify)

    s = sub.add_parser(
        "sync",
        help="read the contract's entities from a SQL source (PostgreSQL, MariaDB, Snowflake, BigQuery, ...) and import "
        "them atomically; incremental by watermark",
    )
    s.add_argument(
        "--source",
        metavar="URL",
        help="SQLAlchemy URL of the source, e.g. postgresql+psycopg://user:${SOURCE_PASSWORD}@host/db "
        "(${VAR} is read from the environment; the password is never printed)",
    )
    s.add_argument(
        "--mapping", metavar="FILE", help="TOML: one table per entity with its query (README: Sync from a warehouse)"
    )
    s.add_argument("--name", help="run the configured sync NAME")
    s.add_argument(
        "--save", metavar="NAME", help="configure (add or replace) the sync NAME from --source, --mapping, --schedule"
    )
    s.add_argument("--schedule", help="with --save: a crontab line in UTC (e.g. '0 2 * * *'), run by manage.py worker")
    s.add_argument("--remove", metavar="NAME", help="remove the configured sync NAME and its watermarks")
    s.add_argument("--list", action="store_true", help="list the configured syncs and their last runs")
    s.add_argument("--dry-run", action="store_true", help="read and validate, write nothing (watermarks unchanged)")
    s.add_argument("--full", action="store_true", help="read everything: bind the lowest value to :watermark")
    s.add_argument("--actor", default="cli", help="who is syncing (recorded in the import log and change log)")
    s.add_argument("--batch-rows", type=int, default=0, help="rows fetched per batch (default 50,000)")
    s.add_argument("--format", choices=["text", "json"], default="text", help="report format (default text)")
    s.add_argument("--problems-csv", help="also write the problem list to this CSV file")
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_sync)

    s = sub.add_parser(
        "worker",
        help="keep running: notify daily at a time, deliver retries in between, run configured syncs on their schedules",
    )
    s.add_argument("--at", type=_hhmm, default=(7, 0), help="time of the daily run, HH:MM UTC (default 07:00)")
    s.add_argument("--retry-minutes", type=int, default=5, help="how often to deliver retries (default 5)")
    s.set_defaults(func=cmd_worker)

    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The benchmark has its own options (manage.py bench --help).
        from bench.bench import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from db.session import DatabaseUnavailable, check_connection, describe_db_error, stop_reader, use_reader

    # For this command only (main may run in a process that goes on, e.g. a test).
    reader = bool(getattr(args, "reads_only", False)) and use_reader()
    try:
        check_connection()
        return int(args.func(args) or 0)
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing half-written (each write is one transaction)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback
        import sqlite3

        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError | sqlite3.OperationalError):
            print(f"error: {describe_db_error(exc)}", file=sys.stderr)
        else:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if reader:
            stop_reader()


if __name__ == "__main__":
    sys.exit(main())
