"""Peak memory of validating zip bombs (issue 10, point 5: budget +200 MB).

    python bench/zip_bomb_rss.py [--db-url URL]

Each bomb is validated by services.data.run_import as a CSM (the code the Data page's
Validate button runs) in a fresh process; the figure is that process's peak RSS during the
validation minus its RSS before it (the upload's bytes already in memory, as in the
server). Bombs: the issue's (a 2 GiB events.csv of one line, about 2 MB zipped), one just
under the per-file limit (1 GiB of one line), and 300 MB of well-formed events rows for an
unknown account (every row is read, validated and reported). Diagnostics only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEAD = b"account_id,event,timestamp,user_id,properties\n"

CHILD = """
import json, resource, sys, time
from services.access import User
from services.data import run_import
from db.settings_store import init_db
init_db()
data = open(sys.argv[1], "rb").read()
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
before = rss_mb()
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
report = run_import(User(email="alex.csm@example.com", name="Alex", role="csm"), [("bomb.zip", data)], dry_run=True)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({
    "rss_before_mb": round(before), "peak_mb": round(peak), "peak_growth_mb": round(peak - max(before, peak_before)),
    "seconds": round(seconds, 1), "problems": report.problem_count,
    "first_problem": str(report.problems[0]) if report.problems else None,
}))
"""


def _one_line(path: Path, size: int) -> None:
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("events.csv", "w", force_zip64=True) as f,
    ):
        f.write(HEAD)
        chunk = b"x" * (16 * 1024 * 1024)
        left = size
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
        f.write(b"\n")


def _many_rows(path: Path, size: int) -> None:
    row = b"NO-SUCH-ACCOUNT,login,2026-01-06T09:00:00Z,u1,\n"
    block = row * (1024 * 1024 // len(row))
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("events.csv", "w", force_zip64=True) as f,
    ):
        f.write(HEAD)
        for _ in range(size // len(block)):
            f.write(block)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db-url", default=None, help="database to validate against (default: a fresh SQLite file)")
    args = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = args.db_url or f"sqlite:///{tmp / 'bomb.db'}"
        bombs = {
            "2 GiB of one line (the issue's)": (_one_line, 2 * 1024**3),
            "1 GiB - 1 KB of one line (under the file limit)": (_one_line, 1024**3 - 1024),
            "300 MB of rows for an unknown account": (_many_rows, 300 * 1024**2),
        }
        for label, (make, size) in bombs.items():
            path = tmp / "bomb.zip"
            make(path, size)
            env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
            res = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env, cwd=ROOT
            )
            out = json.loads(res.stdout) if res.returncode == 0 else {"error": res.stderr[-1000:]}
            out["zip_mb"] = round(path.stat().st_size / 1024**2, 1)
            results[label] = out
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
