#!/usr/bin/env python3
"""PostgreSQL's own cost of the rows an import writes, by constraint set.

Builds, for N users (default 100,000), exactly the rows a full import
writes (users, devices, welcome links, outbox rows, run records) and loads
them with psql into freshly migrated databases on a throwaway server (the
one benches/scale.py starts), one transaction per CH users (default 1,000,
the default limits.chunk_size), each bumping the domain revision:
  insert      multi-row INSERTs of literal values, 1,000 rows a statement
  copy        COPY FROM STDIN into the schema as migrated
  copy-fk     COPY, with the eight foreign keys of the bulk-written tables
              that migration 11 replaced by statement-level cascades put back
              (the schema before it)
  copy-noidx  COPY without the non-unique indexes
  copy-without=INDEX  COPY without that one index
Prints seconds and WAL bytes per user for each. Usage:
  CH=1000 python3 benches/pg_floor.py [N] [variant,variant,...]
"""
import glob
import os
import subprocess
import sys
import shutil
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
CH = int(os.environ.get("CH", "1000"))
work = tempfile.mkdtemp(prefix="pgexp")
pg = scale.Postgres(work)
migs = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations", "postgres", "*.sql")))
schema = "".join(open(m).read() + "\n" for m in migs)
def esc(v):
    return "\\N" if v is None else str(v)
def rows_for(lo, hi, dom=1, run=1):
    U, D, L, O, A = [], [], [], [], []
    for i in range(lo, hi):
        uid = i + 1
        U.append("\t".join(map(esc, [uid, dom, f"{1000000+i}", "person", f"First{i}", f"Last{i}", f"first{i}.last{i}@scale.example", f"Dept{i%50}", f"Site{i%5}", "Basic User", None, None, None, 1, None, None, None, "active", "hr", f"S{i:08d}", 1700000000, 1700000000])))
        D.append("\t".join(map(esc, [uid, uid, dom, "sip", f"{1000000+i}", "%032x" % (i*7919), "%032x" % i, "%032x" % (i+1), 0, 1, 1700000000])))
        L.append("\t".join(map(esc, [uid, uid, "%032x" % (i*31), None, 1700000000, None, None, None])))
        O.append("\t".join(map(esc, [uid, "welcome", uid, "%032x" % (i*17), None, None, None, None, "queued", 0, 1700000000, None, None, 1700000000, None])))
        A.append("\t".join(map(esc, [uid, run, uid, f"S{i:08d}", "create", f"{1000000+i}"])))
    return U, D, L, O, A
UC = "id, domain_id, extension, kind, first_name, last_name, emails, department, site, scope, title, caller_id, emergency_caller_id, voicemail, timezone, language, dial_permission, status, source, source_id, created_at, updated_at"
DC = "id, user_id, domain_id, device_type, sip_username, secret, ha1, ha1b, force_login, enabled, created_at"
LC = "id, user_id, salt, token_hash, created_at, expires_at, used_at, revoked_at"
OC = "id, kind, link_id, message_id, recipients, subject, body_text, body_html, status, attempts, next_attempt_at, lease_until, last_error, created_at, sent_at"
AC = "id, run_id, user_id, source_id, action, detail"
def script(method):
    out = []
    for lo in range(0, N, CH):
        U, D, L, O, A = rows_for(lo, min(N, lo+CH))
        out.append("BEGIN;\nUPDATE domains SET revision = revision + 1 WHERE id = 1;\n")
        for t, c, r in (("users", UC, U), ("devices", DC, D), ("welcome_links", LC, L), ("outbox", OC, O), ("run_actions", AC, A)):
            if method == "copy":
                out.append(f"COPY {t} ({c}) FROM STDIN;\n" + "\n".join(r) + "\n\\.\n")
            else:
                for k in range(0, len(r), 1000):
                    vals = ",\n".join("(" + ",".join("NULL" if v == "\\N" else "'" + v + "'" for v in line.split("\t")) + ")" for line in r[k:k+1000])
                    out.append(f"INSERT INTO {t} ({c}) VALUES {vals};\n")
        out.append("COMMIT;\n")
    return "".join(out)
setup = "INSERT INTO domains (id, name, created_at) VALUES (1, 'scale.example', 0);\n" + \
  "".join(f"INSERT INTO departments (domain_id, name) VALUES (1, 'Dept{i}');\n" for i in range(50)) + \
  "".join(f"INSERT INTO sites (domain_id, name) VALUES (1, 'Site{i}');\n" for i in range(5)) + \
  "INSERT INTO runs (id, source, domain, started_at) VALUES (1, 'hr', 'scale.example', 0);\n"
variants = sys.argv[2].split(",") if len(sys.argv) > 2 else ["insert", "copy", "copy-fk", "copy-noidx"]
for v in variants:
    db, url = pg.fresh()
    extra = ""
    if v == "copy-fk":
        extra = """
ALTER TABLE users ADD FOREIGN KEY (domain_id) REFERENCES domains(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (domain_id, department) REFERENCES departments(domain_id, name),
    ADD FOREIGN KEY (domain_id, site) REFERENCES sites(domain_id, name);
ALTER TABLE devices ADD FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
    ADD FOREIGN KEY (domain_id) REFERENCES domains(id) ON DELETE CASCADE;
ALTER TABLE welcome_links ADD FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE;
ALTER TABLE outbox ADD FOREIGN KEY (link_id) REFERENCES welcome_links(id) ON DELETE CASCADE;
ALTER TABLE run_actions ADD FOREIGN KEY (run_id) REFERENCES runs(id) ON DELETE CASCADE;
"""
    if v == "copy-noidx":
        extra += "DROP INDEX users_domain_id; DROP INDEX devices_user; DROP INDEX welcome_links_user; DROP INDEX outbox_due; DROP INDEX outbox_link; DROP INDEX run_actions_run;\n"
    if v.startswith("copy-without="):
        extra += f"DROP INDEX {v.split('=', 1)[1]};\n"
    f = os.path.join(work, "s.sql"); open(f, "w").write(schema + setup + extra)
    subprocess.run(pg.psql_cmd(db) + ["-q", "-f", f], check=True, stdout=subprocess.DEVNULL)
    f = os.path.join(work, "load.sql"); open(f, "w").write(script("copy" if v.startswith("copy") else "insert"))
    w0 = pg.wal(); t = time.perf_counter()
    subprocess.run(pg.psql_cmd(db) + ["-q", "-f", f], check=True, stdout=subprocess.DEVNULL)
    el = time.perf_counter() - t; w1 = pg.wal()
    print(f"{v:12s} N={N} {el:6.2f} s  WAL {(w1-w0)/N:7.0f} B/user", flush=True)
pg.stop()
shutil.rmtree(work, ignore_errors=True)
