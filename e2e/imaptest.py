#!/usr/bin/env python3
"""Run Dovecot's imaptest compliance scripts against a real pochta daemon.

imaptest is not packaged by Debian; build it first with
../shared/tools/imaptest/build.sh (it installs into $IMAPTEST_HOME, default
~/.cache/pochta-imaptest). Then, from the project root:

    make build
    python3 e2e/imaptest.py                 # every script group
    python3 e2e/imaptest.py fetch list      # only these groups
    IMAPTEST_HOME=/path python3 e2e/imaptest.py
    python3 e2e/imaptest.py --database postgres://postgres@127.0.0.1:PORT/postgres
                                            # on PostgreSQL: each group gets a new
                                            # database on that server (psql creates it)

Each group runs against a fresh daemon (its own data dir and loopback
ports, users imaptest@ and imaptest2@, message_lifetime 0s), so one group's
leftovers cannot fail the next. A group passes when imaptest reports no
failure and did not skip it for a missing capability (a skipped group is
counted as not passed, as ../shared/tools/imaptest/README.md says).
The last line reads `imaptest: N passed, N failed, N skipped`.
"""
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HOME = os.environ.get("IMAPTEST_HOME", os.path.expanduser("~/.cache/pochta-imaptest"))
BIN = os.path.join(HOME, "bin", "imaptest")
TESTS = os.path.join(HOME, "tests")


def groups():
    return sorted(n for n in os.listdir(TESTS)
                  if not n.endswith(".mbox") and os.path.isfile(os.path.join(TESTS, n)))


def fresh_database(server_url, name):
    """A new, empty database on the PostgreSQL server at server_url; its URL."""
    db = "imaptest_" + re.sub(r"[^a-z0-9]", "_", name.lower()) + "_" + os.urandom(3).hex()
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", server_url, "-c", f'CREATE DATABASE "{db}"'],
                   check=True, capture_output=True, text=True, timeout=60)
    return urllib.parse.urlsplit(server_url)._replace(path="/" + db).geturl()


def imaptest_daemon(dir, database=None, node=None):
    """A daemon (not started) as imaptest needs it: message_lifetime 0s
    (imaptest's mailboxes are full of unread mail), on database (a
    PostgreSQL URL, as node) when given."""
    d = harness.Daemon(dir)
    with open(d.config) as f:
        cfg = f.read().replace('message_lifetime = "7d"', 'message_lifetime = "0s"')
    if database:
        cfg = cfg.replace('database = "pochta.db"', f'database = "{database}"' + (f'\nnode = "{node}"' if node else ""))
    with open(d.config, "w") as f:
        f.write(cfg)
    return d


def run_group(name, tmp, database=None):
    d = imaptest_daemon(os.path.join(tmp, name), fresh_database(database, name) if database else None)
    d.start()
    try:
        d.add_user("imaptest")
        d.add_user("imaptest2")
        out = subprocess.run(
            [BIN, "host=" + harness.LOOPBACK, f"port={d.ports['imap']}",
             "user=" + d.addr("imaptest"), "user2=" + d.addr("imaptest2"),
             "pass=" + harness.PASSWORD, "test=" + os.path.join(TESTS, name)],
            capture_output=True, text=True, timeout=120)
        text = out.stdout + out.stderr
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode(errors="replace") + "\n(timed out after 120 s)"
    finally:
        d.stop()
    return text


def verdict(text):
    """pass, fail or skip, from imaptest's summary line."""
    m = re.search(r"(\d+) test groups: (\d+) failed, (\d+) skipped", text)
    if not m:
        return "fail"
    total, failed, skipped = map(int, m.groups())
    if failed:
        return "fail"
    # A group whose capability is not advertised sends no command at all,
    # and imaptest does not always count it as skipped.
    ran = sum(int(n) for n in re.findall(r": \d+/(\d+) individual commands failed", text))
    if skipped == total or ran == 0:
        return "skip"
    return "pass"


def main(argv):
    if not os.access(BIN, os.X_OK):
        print(f"imaptest: {BIN} not found: build it with ../shared/tools/imaptest/build.sh", file=sys.stderr)
        return 2
    database = None
    if "--database" in argv:
        i = argv.index("--database")
        database = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    names = [a for a in argv if not a.startswith("-")] or groups()
    verbose = "-v" in argv
    counts = {"pass": 0, "fail": 0, "skip": 0}
    with tempfile.TemporaryDirectory(prefix="pochta-imaptest-") as tmp:
        for name in names:
            text = run_group(name, tmp, database)
            v = verdict(text)
            counts[v] += 1
            print(f"{v.upper():4} {name}", flush=True)
            if v == "fail" and verbose:
                for line in text.strip().splitlines()[-25:]:
                    print("     | " + line)
    print(f"imaptest: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return 0 if counts["fail"] == 0 and counts["skip"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
