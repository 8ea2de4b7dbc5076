"""upgrade: a database written by the release before the change feed
(storage/boltstore/testdata/v1.db, schema version 1) is taken over by the new binary
at its first start: a backup appears next to it, and every user, password,
message, flag, UID and UIDVALIDITY is as it was; new mail continues the UIDs,
and all of it survives a restart."""
import glob
import os
import re
import shutil

from harness import E2E_DIR, fetch, logout, message, ok, status, uids

FIXTURE = os.path.join(E2E_DIR, "..", "storage", "boltstore", "testdata", "v1.db")
BOB = "bob@example.org"
PASSWORD = "secret"  # what storage/boltstore/testdata/genv1 gave its users


def run(s):
    d = s.daemon()
    # The fixture's unread mail is from November 2026; a 7-day lifetime
    # would (rightly) expire it at start, which is not what is tested here.
    with open(d.config) as f:
        cfg = f.read()
    with open(d.config, "w") as f:
        f.write(cfg.replace('message_lifetime = "7d"', 'message_lifetime = "3650d"'))
    os.makedirs(d.data, mode=0o700, exist_ok=True)
    db = os.path.join(d.data, "pochta.db")
    shutil.copyfile(FIXTURE, db)
    os.chmod(db, 0o600)
    d.start()
    backups = glob.glob(db + ".v1-backup-*")
    s.check("a backup of the v1 database is taken next to it", len(backups) == 1, backups)

    c = d.imap(BOB, tls="implicit", password=PASSWORD)
    try:
        inbox = fetch(c, "INBOX", "(UID FLAGS BODY.PEEK[])")
        s.check("INBOX keeps its UIDs, the expunged 4 stays gone", sorted(inbox) == [1, 2, 3, 5, 6], sorted(inbox))
        flagged = sorted(u for u, m in inbox.items() if {"\\Seen", "\\Flagged"} <= m["flags"])
        s.check("flags survive the migration", flagged == [2, 3], {u: m["flags"] for u, m in inbox.items()})
        body = inbox.get(1, {}).get("body") or b""
        s.check("a message's bytes survive the migration", b"body of inbox-0" in body, body[:200])
        s.check("Archive/2026 keeps its three messages", uids(c, "Archive/2026") == [1, 2, 3])
        before = status(c, "INBOX")
        data = ok(c.append('"INBOX"', None, None, message(BOB, BOB, "after upgrade")), "APPEND")
        m = re.search(rb"APPENDUID \d+ (\d+)", b" ".join(x for x in data if isinstance(x, bytes)))
        s.check("new mail continues the UIDs (7)", m is not None and int(m.group(1)) == 7, data)
    finally:
        logout(c)

    code = d.stop()
    s.check("daemon exits 0 after the upgrade", code == 0, code)
    d.start()
    c = d.imap(BOB, tls="implicit", password=PASSWORD)
    try:
        after = status(c, "INBOX")
        s.check("UIDVALIDITY is the v1 one after a restart", after.get("UIDVALIDITY") == before.get("UIDVALIDITY"), (before, after))
        s.check("every message is there after a restart", uids(c, "INBOX") == [1, 2, 3, 5, 6, 7])
    finally:
        logout(c)
    s.check("no second backup at the second start", len(glob.glob(db + ".v1-backup-*")) == 1)
