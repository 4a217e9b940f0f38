#!/usr/bin/env python3
"""Kill tests: an import is killed at a random moment, then resumed, many times;
after every trial the store must hold exactly what one clean import writes.

Two kinds of trial, each on a fresh store:
  - sqlite (and postgres with --postgres): `import` of ROWS rows is SIGKILLed
    at a random moment within the time a clean import takes, then run again
    to the end.
  - pg-stop (with --postgres): PostgreSQL is stopped hard
    (`pg_ctl stop -m immediate`) at a random moment of the import; the import
    must exit 4 within a bounded time, then the server is started again and
    the next import finishes the job.

After each trial it checks: exactly ROWS users; extensions unique; every user
with its device; every user's welcome queued exactly once; no `run_actions`
row without its user; no run left `running` (a killed one is `interrupted`).

Usage:
  python3 benches/kill_test.py [--trials N] [--stop-trials M] [--rows R] [--postgres] [--bin PATH] [--seed S]
Defaults: 100 trials of 30,000 rows on SQLite, the release binary (built if
--bin is not given). CI runs `--trials 5` against the debug binary
(.ci/test). Needs sqlite3; --postgres needs the postgresql package.
"""

import argparse
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """
[store]
url = "{url}"
timeout_seconds = 3
[limits]
writes_per_second = 0
burst = 10
chunk_size = 1000
max_disable = 0
max_disable_percent = 0
max_billable = 100000000
[[domain]]
name = "kill.example"
numbering = ["100000-999999"]
[[source]]
name = "hr"
kind = "csv"
domain = "kill.example"
inbox = "inbox"
"""

# Set-based, so they take a moment on PostgreSQL too.
CHECKS = [
    ("users", "SELECT COUNT(*) FROM users", "rows"),
    ("duplicate extensions", "SELECT COUNT(*) - COUNT(DISTINCT extension) FROM users", 0),
    ("users without a device",
     "SELECT COUNT(*) FROM users u LEFT JOIN (SELECT DISTINCT user_id FROM devices) d "
     "ON d.user_id = u.id WHERE d.user_id IS NULL", 0),
    ("users whose welcome is not queued exactly once",
     "SELECT COUNT(*) FROM users u LEFT JOIN (SELECT l.user_id, COUNT(*) AS n FROM outbox o "
     "JOIN welcome_links l ON l.id = o.link_id GROUP BY l.user_id) w ON w.user_id = u.id "
     "WHERE COALESCE(w.n, 0) <> 1", 0),
    ("run actions without their user",
     "SELECT COUNT(*) FROM run_actions ra LEFT JOIN users u ON u.id = ra.user_id "
     "WHERE ra.action = 'create' AND u.id IS NULL", 0),
    ("runs left running", "SELECT COUNT(*) FROM runs WHERE outcome = 'running'", 0),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(path, rows):
    with open(path, "w", newline="") as f:
        f.write("Employee ID,First Name,Last Name,Work Email,Department\r\n")
        for i in range(rows):
            f.write(f"K{i:07d},First{i},Last{i},k{i}@kill.example,Dept{i % 40}\r\n")


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
            os.chmod(work, 0o755)  # mkdtemp's 0700 would keep `postgres` out
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def run(self, tool, *args, check=True):
        cmd = [os.path.join(self.bin, tool), *args]
        if self.root:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *cmd]
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if check and p.returncode != 0:
            sys.exit(f"{tool} failed ({p.returncode}): {p.stderr[-2000:]}")
        return p

    def start(self):
        opts = f"-p {self.port} -k {self.dir} -h 127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", self.data, "-o", opts, "-w", "-l", os.path.join(self.dir, "log"), "start")

    def stop(self, mode="fast"):
        self.run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def fresh(self, name):
        self.psql("postgres", f"CREATE DATABASE {name}")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def psql(self, db, sql):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                              "-At", "-c", sql], capture_output=True, text=True, check=True)
        return out.stdout.strip()


def query(store, sql):
    kind, target = store
    if kind == "sqlite":
        out = subprocess.run(["sqlite3", target, sql], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    pg, db = target
    return pg.psql(db, sql)


def check(store, rows, label):
    bad = []
    for what, sql, want in CHECKS:
        want = rows if want == "rows" else want
        got = int(query(store, sql) or 0)
        if got != want:
            bad.append(f"{what}: {got} (want {want})")
    if bad:
        sys.exit(f"{label}: " + "; ".join(bad))


def start_import(binary, cfg, csv, cwd):
    return subprocess.Popen([binary, "--config", cfg, "import", csv, "--no-mail", "--format", "json"],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(binary, cfg, csv, cwd, label):
    p = subprocess.run([binary, "--config", cfg, "import", csv, "--no-mail", "--format", "json"],
                       cwd=cwd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"{label}: the resuming import exited {p.returncode}: {p.stderr[-2000:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--postgres", action="store_true", help="also kill on PostgreSQL and stop it hard")
    ap.add_argument("--stop-trials", type=int, default=None,
                    help="pg-stop trials (default: --trials); every other one starts the server "
                         "again after 5 s, while the import still waits, the others leave it down")
    ap.add_argument("--bin", help="the pbx-onboard binary (default: build and use the release one)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--verbose", action="store_true", help="a line per trial")
    ap.add_argument("--keep", help="keep the work folder here")
    a = ap.parse_args()
    binary = a.bin
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "pbx-onboard")
    binary = os.path.abspath(binary)
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = a.keep or tempfile.mkdtemp(prefix="pbx-kill-")
    os.makedirs(work, exist_ok=True)
    csv = os.path.join(work, "staff.csv")
    generate(csv, a.rows)
    pg = Postgres(work) if a.postgres else None
    print(f"{a.rows} rows, {a.trials} trials per kind, seed {seed}")

    kinds = ["sqlite"] + (["postgres", "pg-stop"] if pg else [])
    results = {}
    for kind in kinds:
        clean = None
        killed_mid = 0
        stop_exits = []
        trials = a.stop_trials if (kind == "pg-stop" and a.stop_trials is not None) else a.trials
        for trial in range(trials + 1):
            d = os.path.join(work, f"{kind}-{trial}")
            os.makedirs(d)
            if kind == "sqlite":
                url = "sqlite://store.db"
                store = ("sqlite", os.path.join(d, "store.db"))
            else:
                db = f"k{kind.replace('-', '')}{trial}"
                url = pg.fresh(db)
                store = ("postgres", (pg, db))
            cfg = os.path.join(d, "pbx.toml")
            with open(cfg, "w") as f:
                f.write(CONFIG.format(url=url))
            label = f"{kind} trial {trial}"
            if clean is None:
                # Trial 0 times a clean import, to draw kill moments from.
                t = time.perf_counter()
                finish(binary, cfg, csv, d, label)
                clean = time.perf_counter() - t
                check(store, a.rows, label)
                print(f"  {kind}: a clean import takes {clean:.2f} s")
                continue
            at = rng.uniform(0.02, clean)
            p = start_import(binary, cfg, csv, d)
            time.sleep(at)
            if kind == "pg-stop":
                pg.stop("immediate")
                back_soon = trial % 2 == 0
                t = time.perf_counter()
                if back_soon:
                    # Back within the import's outage wait: it finishes by itself.
                    time.sleep(5)
                    pg.start()
                try:
                    p.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    p.kill()
                    sys.exit(f"{label}: the import did not exit within 120 s of the store stopping")
                waited = time.perf_counter() - t
                code = p.returncode
                # Back within apply's outage wait, an import finishes by itself;
                # a stop that hits before apply (lock, reading the store) ends
                # it with exit 4 at once. Either way the next run finishes.
                want = (0, 4)
                if code not in want:
                    sys.exit(f"{label}: exit {code} after the store stopped (want {want}): {p.stderr.read()[-2000:]}")
                stop_exits.append((code, waited, back_soon))
                if not back_soon:
                    pg.start()
            else:
                if p.poll() is None:
                    killed_mid += 1
                p.send_signal(signal.SIGKILL)
                p.wait()
            t = time.perf_counter()
            finish(binary, cfg, csv, d, label)
            resumed = time.perf_counter() - t
            check(store, a.rows, label)
            if a.verbose:
                print(f"    {label}: stopped at {at:.2f} s, resumed in {resumed:.2f} s")
            if not a.keep:
                shutil.rmtree(d, ignore_errors=True)
                if kind != "sqlite":
                    pg.psql("postgres", f"DROP DATABASE {db}")
            if trial % 10 == 0 or trial == trials:
                print(f"  {kind}: {trial} trials passed")
        results[kind] = (killed_mid, stop_exits)

    print()
    for kind, (killed_mid, stop_exits) in results.items():
        if kind == "pg-stop":
            down = [(c, w) for c, w, soon in stop_exits if not soon]
            fours = [w for c, w in down if c == 4]
            worst = max(fours) if fours else 0.0
            soon = [c for c, _, s in stop_exits if s]
            print(f"{kind}: {len(stop_exits)} trials passed; server back after 5 s: {soon.count(0)} of {len(soon)} "
                  f"imports finished by themselves; server left down: {len(fours)} of {len(down)} exited 4 "
                  f"(slowest {worst:.1f} s after the stop), the rest had finished before it")
        else:
            print(f"{kind}: {a.trials} trials passed; {killed_mid} killed mid-import, the rest after it ended")
    if pg:
        pg.stop()
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
