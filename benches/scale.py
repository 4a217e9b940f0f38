#!/usr/bin/env python3
"""Scale benchmark: pbx-onboard on SQLite and PostgreSQL at growing N,
paired with the databases' own bulk loaders of the same file, same run.

For each engine and each N (default 100,000, 300,000 and 1,000,000 rows of
a six-column staff CSV), REPS times (default 3), whole processes:
  - reference: `sqlite3` `.import` (WAL mode) of the file into a plain table,
               or `psql \\copy` of it into a plain table
  - full:      `pbx-onboard import FILE --no-mail` into an empty store
  - no-op:     the same import again into the store it just filled
  - floor (SQLite): the `sqlite3` shell inserting exactly the rows the
               import wrote (users, devices, welcome links, outbox, run
               history), from the imported store attached as a staging copy,
               into a freshly migrated store: the database's own cost
Reported: medians of time, users/s, ratio to the reference, peak RSS (from
wait4), and on PostgreSQL the WAL bytes per user (pg_current_wal_lsn()
before and after). The last store of each size is checked to hold N users
and N devices. Writes unlimited, no mail sent.

Usage: python3 benches/scale.py [--rows 100000,300000,1000000] [--reps 3]
                                [--engines sqlite,postgres] [--bin PATH] [--smoke]
--smoke: 10,000 rows, one repetition, both engines; checks that everything
runs and the stores are right, asserts no timing (CI runs it).
Without --bin it builds and times target/release/pbx-onboard. PostgreSQL:
a throwaway server (`initdb`, fsync off, as `postgres` when root) on a free
loopback port. Needs sqlite3, and postgresql for that engine.
"""

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "pbx-onboard")

CONFIG = """
[store]
url = "{url}"
[limits]
writes_per_second = 0
burst = 10
max_disable = 0
max_disable_percent = 0
max_billable = 100000000
[[domain]]
name = "scale.example"
numbering = ["1000000-9999999"]
[[source]]
name = "hr"
kind = "csv"
domain = "scale.example"
inbox = "inbox"
mode = "full"
"""

# The tables an import writes rows to, parents first.
WRITTEN = ["domains", "departments", "sites", "users", "devices", "welcome_links", "outbox", "runs", "run_actions"]


def generate(path, rows):
    with open(path, "w", newline="") as f:
        f.write("Employee ID,First Name,Last Name,Work Email,Department,Location\r\n")
        for i in range(rows):
            f.write(f"S{i:08d},First{i},Last{i},first{i}.last{i}@scale.example,Dept{i % 50},Site{i % 5}\r\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, cwd, stdin=None):
    """Runs cmd; (seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE if stdin else None,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if stdin:
        p.stdin.write(stdin.encode())
        p.stdin.close()
    _, status, ru = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    if code != 0:
        sys.exit(f"{' '.join(cmd[:3])} … failed ({code}): {err[-3000:]}")
    return elapsed, ru.ru_maxrss / 1024.0


class Postgres:
    """A throwaway server on a free loopback port (as `postgres` when root)."""

    def __init__(self, work):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            sys.exit("PostgreSQL not found: apt-get install postgresql")
        self.bin = os.path.dirname(bins[-1])
        self.root = os.geteuid() == 0
        self.dir = os.path.join(work, "pg")
        os.makedirs(self.dir)
        if self.root:
            os.chmod(work, 0o755)
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.dir} -h 127.0.0.1 -c fsync=off -c max_wal_size=4GB"
        self.run("pg_ctl", "-D", self.data, "-o", opts, "-w", "-l", os.path.join(self.dir, "log"), "start")
        self.n = 0

    def run(self, tool, *args):
        cmd = [os.path.join(self.bin, tool), *args]
        if self.root:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *cmd]
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit(f"{tool} failed ({p.returncode}): {p.stderr[-2000:]}")

    def stop(self):
        self.run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def psql_cmd(self, db):
        return ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-At"]

    def psql(self, db, sql):
        out = subprocess.run(self.psql_cmd(db) + ["-c", sql], capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def fresh(self):
        self.n += 1
        name = f"scale{self.n}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return name, f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def wal(self):
        return int(self.psql("postgres", "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"))


def pbx(binary, d, url):
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "pbx.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(url=url))
    return [binary, "--config", cfg]


def counts(engine, target, pg=None):
    sql = "SELECT COUNT(*) FROM users; SELECT COUNT(*) FROM devices"
    if engine == "sqlite":
        out = subprocess.run(["sqlite3", target, sql], capture_output=True, text=True, check=True).stdout
    else:
        out = subprocess.run(pg.psql_cmd(target) + ["-c", "SELECT COUNT(*) FROM users", "-c", "SELECT COUNT(*) FROM devices"],
                             capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


def bench_sqlite(binaries, work, csv_path, rows, reps):
    rs = [{k: [] for k in ["ref", "full", "noop", "floor", "rss_full", "rss_noop"]} for _ in binaries]
    for rep in range(reps):
        d0 = os.path.join(work, f"sqlite-{rows}-{rep}")
        shutil.rmtree(d0, ignore_errors=True)
        os.makedirs(d0)
        t, _ = timed(["sqlite3", os.path.join(d0, "ref.db")], d0,
                     stdin=f"PRAGMA journal_mode=WAL;\n.mode csv\n.import {csv_path} staff\n")
        for bi, binary in enumerate(binaries):
            r = rs[bi]
            r["ref"].append(t)
            d = os.path.join(d0, f"bin{bi}")
            os.makedirs(d)
            sqlite_one(binary, d, csv_path, rows, r, f"[{bi}] sqlite {rows} rep {rep + 1}")
        shutil.rmtree(d0, ignore_errors=True)
    return rs


def sqlite_one(binary, d, csv_path, rows, r, label):
    cmd = pbx(binary, os.path.join(d, "pbx"), "sqlite://store.db")
    for kind in ["full", "noop"]:
        t, rss = timed(cmd + ["import", csv_path, "--no-mail", "--format", "json"], d)
        r[kind].append(t)
        r[f"rss_{kind}"].append(rss)
    # The floor: the same rows into a freshly migrated store, by sqlite3.
    empty = pbx(binary, os.path.join(d, "floor"), "sqlite://store.db")
    timed(empty + ["check-config"], d)
    staged = os.path.join(d, "pbx", "store.db")
    inserts = "".join(f"INSERT OR IGNORE INTO main.{t} SELECT * FROM s.{t};\n" for t in WRITTEN)
    t, _ = timed(["sqlite3", os.path.join(d, "floor", "store.db")], d,
                 stdin=f"PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\nATTACH '{staged}' AS s;\n"
                       f"BEGIN;\n{inserts}COMMIT;\n")
    r["floor"].append(t)
    got = counts("sqlite", staged)
    if got != [rows, rows]:
        sys.exit(f"sqlite {rows}: the store holds {got} users/devices")
    floor_got = counts("sqlite", os.path.join(d, "floor", "store.db"))
    if floor_got != [rows, rows]:
        sys.exit(f"sqlite {rows}: the floor store holds {floor_got}")
    print(f"  {label}: .import {r['ref'][-1]:.2f}s  full {r['full'][-1]:.2f}s "
          f"no-op {r['noop'][-1]:.2f}s  floor {r['floor'][-1]:.2f}s  "
          f"RSS {r['rss_full'][-1]:.0f}/{r['rss_noop'][-1]:.0f} MiB", flush=True)


def bench_postgres(binaries, work, pg, csv_path, rows, reps):
    rs = [{k: [] for k in ["ref", "full", "noop", "rss_full", "rss_noop", "wal_full", "wal_noop"]} for _ in binaries]
    for rep in range(reps):
        d0 = os.path.join(work, f"pg-{rows}-{rep}")
        shutil.rmtree(d0, ignore_errors=True)
        os.makedirs(d0)
        ref_db, _ = pg.fresh()
        pg.psql(ref_db, "CREATE TABLE staff (employee_id text, first_name text, last_name text, email text, "
                        "department text, location text)")
        t, _ = timed(pg.psql_cmd(ref_db) + ["-c", f"\\copy staff FROM '{csv_path}' CSV HEADER"], d0)
        pg.psql("postgres", f"DROP DATABASE {ref_db}")
        for bi, binary in enumerate(binaries):
            r = rs[bi]
            r["ref"].append(t)
            d = os.path.join(d0, f"bin{bi}")
            os.makedirs(d)
            postgres_one(binary, d, pg, csv_path, rows, r, f"[{bi}] postgres {rows} rep {rep + 1}")
        shutil.rmtree(d0, ignore_errors=True)
    return rs


def postgres_one(binary, d, pg, csv_path, rows, r, label):
    db, url = pg.fresh()
    cmd = pbx(binary, os.path.join(d, "pbx"), url)
    timed(cmd + ["check-config"], d)  # migrations are not the import's cost
    for kind in ["full", "noop"]:
        before = pg.wal()
        t, rss = timed(cmd + ["import", csv_path, "--no-mail", "--format", "json"], d)
        r[f"wal_{kind}"].append(pg.wal() - before)
        r[kind].append(t)
        r[f"rss_{kind}"].append(rss)
    got = counts("postgres", db, pg)
    if got != [rows, rows]:
        sys.exit(f"postgres {rows}: the store holds {got} users/devices")
    print(f"  {label}: \\copy {r['ref'][-1]:.2f}s  full {r['full'][-1]:.2f}s "
          f"no-op {r['noop'][-1]:.2f}s  WAL {r['wal_full'][-1] / rows:.0f} B/user  "
          f"RSS {r['rss_full'][-1]:.0f}/{r['rss_noop'][-1]:.0f} MiB", flush=True)
    pg.psql("postgres", f"DROP DATABASE {db}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="100000,300000,1000000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--bin", action="append", help="a binary to time (repeatable: each rep times each in turn)")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.rows, a.reps = "10000", 1
    sizes = [int(x) for x in a.rows.split(",")]
    engines = a.engines.split(",")
    if not a.bin:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binaries = [os.path.abspath(b) for b in (a.bin or [BIN])]
    if not shutil.which("sqlite3"):
        sys.exit("sqlite3 not found: apt-get install sqlite3")
    work = tempfile.mkdtemp(prefix="pbx-scale-")
    pg = Postgres(work) if "postgres" in engines else None
    results = []
    try:
        for rows in sizes:
            csv_path = os.path.join(work, f"staff-{rows}.csv")
            generate(csv_path, rows)
            for engine in engines:
                if engine == "sqlite":
                    rs = bench_sqlite(binaries, work, csv_path, rows, a.reps)
                    results += [("SQLite", rows, i, r) for i, r in enumerate(rs)]
                else:
                    rs = bench_postgres(binaries, work, pg, csv_path, rows, a.reps)
                    results += [("PostgreSQL", rows, i, r) for i, r in enumerate(rs)]
            os.remove(csv_path)
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    print()
    print(f"medians of {a.reps}")
    for i, b in enumerate(binaries):
        print(f"[{i}] {b}")
    print("| bin | engine | rows | full import | users/s | vs reference | no-op | vs reference | floor | full vs floor "
          "| peak RSS full / no-op | WAL per user full / no-op |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for engine, rows, i, r in results:
        ref, full, noop = med(r["ref"]), med(r["full"]), med(r["noop"])
        floor = f"{med(r['floor']):.2f} s" if "floor" in r else "—"
        vs_floor = f"{full / med(r['floor']):.1f}×" if "floor" in r else "—"
        wal = (f"{med(r['wal_full']) / rows:,.0f} / {med(r['wal_noop']) / rows:,.0f} B" if "wal_full" in r else "—")
        ref_name = ".import" if engine == "SQLite" else "\\copy"
        print(f"| [{i}] | {engine} | {rows:,} | {full:.2f} s | {rows / full:,.0f} | {full / ref:.1f}× {ref_name} ({ref:.2f} s) "
              f"| {noop:.2f} s | {noop / ref:.1f}× | {floor} | {vs_floor} "
              f"| {max(r['rss_full']):.0f} / {max(r['rss_noop']):.0f} MiB | {wal} |")


if __name__ == "__main__":
    main()
