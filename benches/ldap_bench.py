#!/usr/bin/env python3
"""LDAP benchmark: pbx-onboard's directory read against `ldapsearch`, same
server, same base, filter and attributes, same run.

Loads N people (default 100,000) into a local slapd with slapadd, starts it
on a free loopback port, then times, REPS times each (default 5):
  - reference: ldapsearch -x -E pr=1000/noprompt (output to /dev/null)
  - read:      pbx-onboard check-config, which binds and reads the source in
               full (same paged search, page size 1000) and counts entries
  - sync:      pbx-onboard sync --full into an empty SQLite store:
               read + map + plan + apply (users and devices)
and reports medians, ratios and the sync's peak RSS (wait4). Whole
processes are timed on both sides.

Usage: python3 benches/ldap_bench.py [--rows N] [--reps R] [--keep DIR] [--bin PATH ...]
(several --bin: each repetition times each binary in turn, for before/after)
Needs slapd, ldap-utils (apt-get install slapd ldap-utils).
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "pbx-onboard")
SUFFIX = "dc=bench,dc=example"
BASE = f"ou=people,{SUFFIX}"
SVC, SVC_PW = f"cn=svc,{SUFFIX}", "svc-secret"
# What pbx-onboard's openldap profile asks for (see source::ldap_entry).
FILTER = "(&(objectClass=person))"
ATTRS = ["entryUUID", "givenName", "sn", "mail", "departmentNumber", "l",
         "telephoneNumber", "title", "memberOf", "modifyTimestamp"]

SLAPD_CONF = """include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
database mdb
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw admin-secret
directory {d}/db
maxsize 4294967296
sizelimit unlimited
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
index objectClass eq
"""

CONFIG = """
[store]
url = "sqlite://store.db"
[limits]
writes_per_second = 0
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
name = "dir"
kind = "ldap"
domain = "bench.example"
profile = "openldap"
url = "ldap://127.0.0.1:{port}"
tls = "none"
bind_dn = "{svc}"
bind_password_file = "{pwfile}"
base_dn = "{base}"
page_size = 1000
timeout_seconds = 120
"""


def ldif(path, rows):
    with open(path, "w") as f:
        f.write(f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Bench\ndc: bench\n\n")
        f.write(f"dn: {BASE}\nobjectClass: organizationalUnit\nou: people\n\n")
        f.write(f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n")
        f.write(f"dn: {SVC}\nobjectClass: person\ncn: svc\nsn: svc\nuserPassword: {SVC_PW}\n\n")
        for i in range(rows):
            site = "l: HQ\n" if i % 10 == 0 else ""
            f.write(
                f"dn: uid=p{i},{BASE}\nobjectClass: inetOrgPerson\nuid: p{i}\ncn: First{i} Last{i}\n"
                f"givenName: First{i}\nsn: Last{i}\nmail: first{i}.last{i}@bench.example\n"
                f"departmentNumber: Dept{i % 50}\ntitle: Title {i % 30}\n{site}\n"
            )
        f.write(f"dn: cn=Support Agents,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: Support Agents\n")
        for i in range(0, rows, 20):
            f.write(f"member: uid=p{i},{BASE}\n")
        f.write("\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, cwd, out=subprocess.DEVNULL):
    """Runs cmd; (seconds, its stdout, its peak RSS in MiB from wait4)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        stdout = p.stdout.read().decode(errors="replace") if p.stdout else None
        _, status, ru = os.wait4(p.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        p.returncode = code  # reaped here: keep Popen from waiting again
        if code != 0:
            err.seek(0)
            sys.exit(f"{cmd[0]} failed ({code}): {err.read().decode(errors='replace')[-3000:]}")
    return elapsed, stdout, ru.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--keep", help="keep the work folder here")
    ap.add_argument("--bin", action="append", help="a pbx-onboard binary to time (repeatable)")
    a = ap.parse_args()
    for tool in ("slapadd", "ldapsearch"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} not found: apt-get install slapd ldap-utils")
    if not a.bin:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    bins = a.bin or [BIN]
    work = a.keep or tempfile.mkdtemp(prefix="pbx-ldap-bench-")
    os.makedirs(os.path.join(work, "db"), exist_ok=True)
    conf = os.path.join(work, "slapd.conf")
    with open(conf, "w") as f:
        f.write(SLAPD_CONF.format(d=work, suffix=SUFFIX))
    data = os.path.join(work, "people.ldif")
    if not os.path.exists(os.path.join(work, "db", "data.mdb")):
        ldif(data, a.rows)
        t0 = time.perf_counter()
        subprocess.run(["/usr/sbin/slapadd", "-q", "-f", conf, "-l", data], check=True)
        print(f"slapadd of {a.rows} entries: {time.perf_counter() - t0:.1f} s")
    port = free_port()
    slapd = subprocess.Popen(["/usr/sbin/slapd", "-f", conf, "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"ldap://127.0.0.1:{port}"
        for _ in range(200):
            if subprocess.run(["ldapsearch", "-x", "-H", url, "-s", "base", "-b", "", "1.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.05)
        pwfile = os.path.join(work, "pw")
        with open(pwfile, "w") as f:
            f.write(SVC_PW)
        search = ["ldapsearch", "-x", "-LLL", "-H", url, "-D", SVC, "-w", SVC_PW, "-b", BASE,
                  "-E", "pr=1000/noprompt", FILTER] + ATTRS
        ref = []
        runs = {b: {"read": [], "sync": [], "rss": []} for b in bins}
        for rep in range(a.reps):
            d = os.path.join(work, f"rep{rep}")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            t, _, _ = timed(search, d)
            ref.append(t)
            line = f"  rep {rep + 1}: ldapsearch {ref[-1]:.3f}s"
            for i, b in enumerate(bins):
                bd = os.path.join(d, f"bin{i}")
                os.makedirs(bd)
                cfg = os.path.join(bd, "pbx.toml")
                with open(cfg, "w") as f:
                    f.write(CONFIG.format(port=port, svc=SVC, pwfile=pwfile, base=BASE))
                t, out, _ = timed([b, "--config", cfg, "check-config"], bd, subprocess.PIPE)
                if f"{a.rows} entries match" not in out:
                    sys.exit(f"check-config did not read {a.rows} entries:\n{out}")
                runs[b]["read"].append(t)
                t, _, rss = timed([b, "--config", cfg, "sync", "--full", "--format", "json", "--no-mail"], bd)
                runs[b]["sync"].append(t)
                runs[b]["rss"].append(rss)
                line += (f"  [{i}] read {runs[b]['read'][-1]:.3f}s read+plan+apply {runs[b]['sync'][-1]:.3f}s"
                         f" ({rss:.0f} MiB)")
            print(line)
        for i in range(len(bins)):
            out = subprocess.run(["sqlite3", os.path.join(work, f"rep{a.reps - 1}", f"bin{i}", "store.db"),
                                  "SELECT COUNT(*) FROM users"], capture_output=True, text=True, check=True)
            if int(out.stdout.strip()) != a.rows:
                sys.exit(f"[{i}] store holds {out.stdout.strip()} users, expected {a.rows}")
    finally:
        slapd.send_signal(signal.SIGTERM)
        slapd.wait(timeout=30)
    m_ref = statistics.median(ref)
    print()
    print(f"median ldapsearch pr=1000      : {m_ref:.3f} s")
    for i, b in enumerate(bins):
        m_read, m_sync = statistics.median(runs[b]["read"]), statistics.median(runs[b]["sync"])
        print(f"[{i}] {b}")
        print(f"  median pbx-onboard read        : {m_read:.3f} s  = {m_read / m_ref:.2f}x ldapsearch")
        print(f"  median read + plan + apply     : {m_sync:.3f} s  = {m_sync / m_ref:.2f}x ldapsearch")
        print(f"  median peak RSS of the sync    : {statistics.median(runs[b]['rss']):.0f} MiB")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
