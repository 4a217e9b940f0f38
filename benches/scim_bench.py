#!/usr/bin/env python3
"""SCIM benchmark: N users POSTed by C concurrent clients to the real daemon,
against `pbx-onboard import` of the same N people, in the same run.

Each repetition (default 3), on fresh SQLite stores, writes unlimited:
  - scim:   a daemon with one scim source; C threads POST /Users (one person
            per request, as Entra and Okta send them), each request timed;
  - import: `pbx-onboard import FILE --no-mail` of a CSV of the same people.
Reports medians of wall time and users/s, p50/p99 request latency, and the
ratio scim / import.

Usage: python3 benches/scim_bench.py [--users N] [--clients C] [--reps R] [--bin PATH]
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789abcdef"

CONFIG = """
[store]
url = "sqlite://store.db"
[limits]
writes_per_second = 0
max_disable = 100000
max_disable_percent = 100
max_billable = 10000000
[mail]
link_base_url = "http://127.0.0.1:{port}"
[web]
listen = "127.0.0.1:{port}"
[[domain]]
name = "bench.example"
numbering = ["100000-999999"]
[[mapping.rule]]
group = "Support Agents"
scope = "Call Center Agent"
[[source]]
name = "hr"
kind = "csv"
domain = "bench.example"
inbox = "inbox"
mode = "delta"
[[source]]
name = "idp"
kind = "scim"
domain = "bench.example"
token_file = "tokens"
"""


def person(i):
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": f"E{i:07d}",
        "userName": f"first{i}.last{i}@bench.example",
        "active": True,
        "name": {"givenName": f"First{i}", "familyName": f"Last{i}"},
        "emails": [{"value": f"first{i}.last{i}@bench.example", "type": "work", "primary": True}],
        "title": f"Title {i % 30}",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": f"Dept{i % 50}"},
    }


def write_csv(path, n):
    with open(path, "w") as f:
        f.write("Employee ID,First Name,Last Name,Work Email,Department,Job Title\n")
        for i in range(n):
            f.write(f"E{i:07d},First{i},Last{i},first{i}.last{i}@bench.example,Dept{i % 50},Title {i % 30}\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def workspace(port):
    d = tempfile.mkdtemp(prefix="scim-bench-")
    with open(os.path.join(d, "pbx-onboard.toml"), "w") as f:
        f.write(CONFIG.format(port=port))
    fd = os.open(os.path.join(d, "tokens"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (TOKEN + "\n").encode())
    os.close(fd)
    os.makedirs(os.path.join(d, "inbox"))
    return d


def run_scim(binary, n, clients):
    port = free_port()
    d = workspace(port)
    log = open(os.path.join(d, "daemon.log"), "w")
    daemon = subprocess.Popen([binary, "--config", "pbx-onboard.toml", "daemon"], cwd=d,
                              stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        latencies, failures = [], []
        lock = threading.Lock()
        next_i = [0]

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= n:
                    return
                body = json.dumps(person(i))
                t = time.perf_counter()
                conn.request("POST", "/scim/v2/idp/Users", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt)
                    if r.status != 201:
                        failures.append(r.status)

        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        if failures:
            sys.exit(f"{len(failures)} POSTs failed, e.g. {failures[:5]}")
        out = subprocess.run([binary, "--config", "pbx-onboard.toml", "users", "--format", "csv"],
                             cwd=d, capture_output=True, text=True, check=True)
        users = len(out.stdout.strip().splitlines()) - 1
        if users != n:
            sys.exit(f"the store holds {users} users after {n} POSTs")
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return wall, p50, p99
    finally:
        daemon.terminate()
        daemon.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def run_import(binary, n):
    d = workspace(free_port())
    try:
        csv = os.path.join(d, "people.csv")
        write_csv(csv, n)
        start = time.perf_counter()
        p = subprocess.run([binary, "--config", "pbx-onboard.toml", "import", csv, "--no-mail",
                            "--format", "json"], cwd=d, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if p.returncode != 0:
            sys.exit(f"import failed ({p.returncode}): {p.stderr[-500:]}")
        created = json.loads(p.stdout.splitlines()[0])["created"]
        if created != n:
            sys.exit(f"import created {created} of {n}")
        return wall
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "pbx-onboard"))
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    if not os.path.exists(a.bin):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    scim, imp = [], []
    for rep in range(a.reps):
        w, p50, p99 = run_scim(a.bin, a.users, a.clients)
        scim.append((w, p50, p99))
        t = run_import(a.bin, a.users)
        imp.append(t)
        print(f"rep {rep + 1}: scim {w:.2f} s ({a.users / w:.0f} users/s, p50 {p50 * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms); import {t:.2f} s", flush=True)
    w = statistics.median(x[0] for x in scim)
    p50 = statistics.median(x[1] for x in scim)
    p99 = statistics.median(x[2] for x in scim)
    t = statistics.median(imp)
    print(f"\n{a.users} users, {a.clients} clients, medians of {a.reps}:")
    print(f"  SCIM POSTs:  {w:.2f} s, {a.users / w:.0f} users/s, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(f"  CSV import:  {t:.2f} s, {a.users / t:.0f} users/s")
    print(f"  ratio:       SCIM takes {w / t:.1f}x the import's time")


if __name__ == "__main__":
    main()
