#!/usr/bin/env python3
"""Import benchmark: pbx-onboard against `sqlite3 .import`, same file, same run.

Generates a CSV of N staff rows (default 100,000), then times, REPS times
each (default 5), on fresh SQLite files:
  - reference: sqlite3 with `.mode csv` and `.import FILE staff`
  - full:      pbx-onboard import FILE --no-mail into an empty store (users,
               devices, and each user's welcome link and queued email; the
               delivery itself is timed by benches/mail_bench.py)
  - no-op:     pbx-onboard import FILE again into the store it just filled
and reports medians, ratios and the peak RSS of pbx-onboard (from wait4).

Usage: python3 benches/import_bench.py [--rows N] [--reps R] [--keep DIR] [--bin PATH ...]
Without --bin it builds and times target/release/pbx-onboard. With several
--bin (e.g. the binary of an earlier commit and this one), each repetition
times each of them in turn on the same file, so they compare in one run.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "pbx-onboard")

CONFIG = """
[store]
url = "sqlite://store.db"
[limits]
writes_per_second = 0
burst = 10
chunk_size = 1000
max_disable = 0
max_disable_percent = 0
max_billable = 10000000
[[domain]]
name = "bench.example"
numbering = ["100000-999999"]
reserved = ["0", "411", "611", "911", "933"]
[[domain.site]]
name = "HQ"
numbering = ["200000-299999"]
[[mapping.rule]]
group = "Support Agents"
scope = "Call Center Agent"
department = "Support"
[[source]]
name = "hr"
kind = "csv"
domain = "bench.example"
inbox = "inbox"
mode = "full"
"""


def generate(path, rows):
    with open(path, "w", newline="") as f:
        f.write("Employee ID,First Name,Last Name,Work Email,Department,Location,Job Title,Groups,Employment Status\r\n")
        for i in range(rows):
            site = "HQ" if i % 10 == 0 else ""
            groups = "Support Agents" if i % 20 == 0 else ""
            f.write(
                f"E{i:07d},First{i},Last{i},first{i}.last{i}@bench.example,Dept{i % 50},{site},"
                f"Title {i % 30},{groups},Active\r\n"
            )


def timed(cmd, cwd):
    """Runs cmd, returns (seconds, peak RSS in MiB, exit code)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode not in (0,):
        sys.exit(f"{cmd[0]} failed ({p.returncode}): {err}")
    return elapsed, ru.ru_maxrss / 1024.0, p.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--keep", help="keep the work folder here")
    ap.add_argument("--bin", action="append", help="a pbx-onboard binary to time (repeatable)")
    a = ap.parse_args()

    if not a.bin:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    bins = a.bin or [BIN]
    if not shutil.which("sqlite3"):
        sys.exit("sqlite3 not found: apt-get install sqlite3")
    work = a.keep or tempfile.mkdtemp(prefix="pbx-bench-")
    os.makedirs(work, exist_ok=True)
    csv_path = os.path.join(work, "staff.csv")
    generate(csv_path, a.rows)
    print(f"{a.rows} rows, {os.path.getsize(csv_path) / 1e6:.1f} MB CSV, {a.reps} repetitions")

    ref = []
    runs = {b: {"full": [], "noop": [], "rss_full": [], "rss_noop": []} for b in bins}
    for rep in range(a.reps):
        d = os.path.join(work, f"rep{rep}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        t, _, _ = timed(["sqlite3", os.path.join(d, "ref.db"), ".mode csv", f".import {csv_path} staff"], d)
        ref.append(t)
        line = f"  rep {rep + 1}: sqlite3 .import {ref[-1]:.3f}s"
        for i, b in enumerate(bins):
            bd = os.path.join(d, f"bin{i}")
            os.makedirs(bd)
            with open(os.path.join(bd, "pbx.toml"), "w") as f:
                f.write(CONFIG)
            cmd = [b, "--config", os.path.join(bd, "pbx.toml"), "import", csv_path, "--format", "json", "--no-mail"]
            r = runs[b]
            t, rss, _ = timed(cmd, bd)
            r["full"].append(t)
            r["rss_full"].append(rss)
            t, rss, _ = timed(cmd, bd)
            r["noop"].append(t)
            r["rss_noop"].append(rss)
            line += f"  [{i}] full {r['full'][-1]:.3f}s no-op {r['noop'][-1]:.3f}s"
        print(line)

    # Check the last stores really hold every user and device.
    for i in range(len(bins)):
        out = subprocess.run(
            ["sqlite3", os.path.join(work, f"rep{a.reps - 1}", f"bin{i}", "store.db"),
             "SELECT COUNT(*), (SELECT COUNT(*) FROM devices) FROM users"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        users, devices = (int(x) for x in out.split("|"))
        if users != a.rows or devices != a.rows:
            sys.exit(f"[{i}] store holds {users} users and {devices} devices, expected {a.rows}")

    m_ref = statistics.median(ref)
    mb = lambda mib: mib * 1.048576  # noqa: E731
    print()
    print(f"median sqlite3 .import : {m_ref:.3f} s")
    for i, b in enumerate(bins):
        r = runs[b]
        m_full, m_noop = statistics.median(r["full"]), statistics.median(r["noop"])
        print(f"[{i}] {b}")
        print(f"  median full import     : {m_full:.3f} s  = {m_full / m_ref:.1f}x sqlite3")
        print(f"  median no-op re-import : {m_noop:.3f} s  = {m_noop / m_ref:.1f}x sqlite3")
        print(
            f"  peak RSS full / no-op  : {max(r['rss_full']):.0f} MiB ({mb(max(r['rss_full'])):.0f} MB) / "
            f"{max(r['rss_noop']):.0f} MiB ({mb(max(r['rss_noop'])):.0f} MB)"
        )
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
