#!/usr/bin/env python3
"""Mail benchmark: pbx-onboard rendering and delivering N welcome emails
(default 10,000) against Postfix's `smtp-source` sending as many messages
into the same `smtp-sink`, same run.

Imports N people into an empty SQLite store with --no-mail (not timed), then
times, REPS times each (default 5), alternating:
  - reference: smtp-source -m N -s 10 -l 3000 (10 sessions, 3000-byte messages)
  - ours:      pbx-onboard mail flush with pool_size = 10 and no rate limit:
               claim, render (askama, HTML + text), arm the links, send
               (lettre, TCP_NODELAY), mark sent
Between our reps the outbox rows are made queued again (same messages, same
links). Whole processes are timed on both sides; medians and the ratio are
reported. The sink dumps nothing, for either side.

Usage: python3 benches/mail_bench.py [--messages N] [--reps R] [--keep DIR]
Needs postfix (smtp-sink, smtp-source) and sqlite3.
"""

import argparse
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "pbx-onboard")
SBIN = "/usr/sbin"

CONFIG = """
[store]
url = "sqlite://store.db"
[limits]
writes_per_second = 0
chunk_size = 1000
max_disable = 0
max_disable_percent = 0
max_billable = 10000000
[mail]
transport = "smtp"
host = "127.0.0.1"
port = {port}
tls = "none"
from = "PBX Onboarding <onboarding@bench.example>"
link_base_url = "https://pbx.bench.example"
messages_per_second = 0
pool_size = 10
[[domain]]
name = "bench.example"
numbering = ["100000-999999"]
[[source]]
name = "hr"
kind = "csv"
domain = "bench.example"
inbox = "inbox"
mode = "delta"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, cwd):
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}): {p.stdout} {p.stderr}")
    return elapsed, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--keep", help="work in this folder and keep it")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = a.keep or tempfile.mkdtemp(prefix="mail-bench-")
    os.makedirs(work, exist_ok=True)
    port = free_port()
    sink_cmd = [f"{SBIN}/smtp-sink"]
    if os.geteuid() == 0:
        sink_cmd += ["-u", "nobody"]
    sink = subprocess.Popen(sink_cmd + [f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        with open(os.path.join(work, "pbx.toml"), "w") as f:
            f.write(CONFIG.format(port=port))
        with open(os.path.join(work, "people.csv"), "w") as f:
            f.write("Employee ID,First Name,Last Name,Work Email,Department\n")
            for i in range(a.messages):
                f.write(f"E{i},First{i},Last{i},user{i}@bench.example,Dept{i % 7}\n")
        t0 = time.perf_counter()
        subprocess.run([BIN, "--config", "pbx.toml", "import", "people.csv", "--no-mail",
                        "--format", "json"], cwd=work, check=True, stdout=subprocess.DEVNULL)
        print(f"import of {a.messages} people (not timed): {time.perf_counter() - t0:.1f} s")
        db = os.path.join(work, "store.db")
        ref, ours = [], []
        for rep in range(a.reps):
            e, _ = timed([f"{SBIN}/smtp-source", "-m", str(a.messages), "-s", "10", "-l", "3000",
                          "-f", "bench@bench.example", "-t", "user@bench.example",
                          f"127.0.0.1:{port}"], work)
            ref.append(e)
            with sqlite3.connect(db) as c:
                c.execute("UPDATE outbox SET status = 'queued', sent_at = NULL, lease_until = NULL, "
                          "next_attempt_at = 0, attempts = 0")
            e, out = timed([BIN, "--config", "pbx.toml", "mail", "flush", "--format", "json"], work)
            if f'"sent":{a.messages}' not in out:
                sys.exit(f"mail flush did not send all {a.messages}: {out}")
            ours.append(e)
            print(f"  rep {rep + 1}: smtp-source {ref[-1]:.3f}s  pbx-onboard mail flush {ours[-1]:.3f}s")
        m_ref, m_ours = statistics.median(ref), statistics.median(ours)
        print()
        print(f"median smtp-source -m {a.messages} -s 10 -l 3000 : {m_ref:.3f} s")
        print(f"median pbx-onboard mail flush (render+send) : {m_ours:.3f} s  = "
              f"{m_ours / m_ref:.2f}x smtp-source (target <= 2x)")
    finally:
        sink.terminate()
        sink.wait()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
