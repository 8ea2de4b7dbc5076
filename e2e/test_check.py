"""check: a damaged database is found, reported and repaired, never served
as an empty store and never a crash.

A message record in bob's INBOX is damaged by overwriting its bytes in the
bbolt file (the daemon stopped). `pochta check --json` (without the daemon,
then through it) exits 1 naming bob, INBOX and the UID; the other messages
stay fetchable one by one; `pochta check --repair` quarantines the record
and exits 0, after which FETCH 1:* returns the rest of the INBOX, STATUS
counts it, and check finds nothing. A zero-byte database file is refused by
`serve` and `status` with a message naming the file, and is left as it is."""
import imaplib
import json
import os
import subprocess
import time

from harness import ok, select, status

MARKER = "damaged-record-XYZ01"  # 20 bytes: its length prefix is 0x14


def append(d, user, subject):
    c = d.imap(user, tls="implicit")
    raw = f"From: {user}\r\nTo: {user}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()
    ok(c.append('"INBOX"', None, imaplib.Time2Internaldate(time.time()), raw), "APPEND")
    c.logout()


def damage(path):
    """Overwrites the length prefix of MARKER where it is the envelope's
    subject (not where the body says "Subject: MARKER") with a varint far
    larger than the record: the record no longer decodes."""
    data = bytearray(open(path, "rb").read())
    hits, i = 0, data.find(MARKER.encode())
    while i >= 0:
        if data[i - 1] == len(MARKER):
            data[i - 1:i + 4] = b"\xff\xff\xff\xff\x0f"
            hits += 1
        i = data.find(MARKER.encode(), i + 1)
    with open(path, "wb") as f:
        f.write(data)
    return hits


def check(d, *args):
    r = d.cli("check", "--json", *args, check=False)
    try:
        return r.returncode, json.loads(r.stdout), r.stderr
    except ValueError:
        return r.returncode, None, f"stdout {r.stdout!r} stderr {r.stderr!r}"


def fetch_each(d, user):
    """UID -> body or the error, fetching the messages one at a time."""
    c = d.imap(user, tls="implicit")
    select(c, "INBOX")
    out = {}
    for uid in ok(c.uid("SEARCH", None, "ALL"))[0].split():
        try:
            typ, data = c.uid("FETCH", uid, "(ENVELOPE BODY.PEEK[])")
            out[int(uid)] = data[0][1] if typ == "OK" and data and isinstance(data[0], tuple) else f"{typ} {data!r}"
        except imaplib.IMAP4.error as e:
            out[int(uid)] = str(e)
    c.logout()
    return out


def run(s):
    d = s.daemon()
    bob = d.add_user("bob")
    d.start()
    for subject in ("first-message", MARKER, "third-message"):
        append(d, bob, subject)
    s.check("the daemon stops cleanly", d.stop() == 0)

    db = os.path.join(d.data, "pochta.db")
    hits = damage(db)
    s.check("the test damaged the envelope record in the file", hits >= 1, hits)

    code, rep, err = check(d)
    bad = (rep or {}).get("bad") or []
    s.check("check (no daemon) exits 1 on a damaged record", code == 1, f"exit {code}: {err}")
    s.check("check --json names user, mailbox and UID of the damaged record",
            [(b.get("user"), b.get("mailbox"), b.get("uid")) for b in bad] == [(bob, "INBOX", 2)]
            and all(b.get("error") for b in bad), rep)
    s.check("check --json counts the records it read", (rep or {}).get("checked", 0) >= 7, rep)

    d.start()
    each = fetch_each(d, bob)
    s.check("the other messages are still fetchable one by one",
            isinstance(each.get(1), bytes) and b"body of first-message" in each[1]
            and isinstance(each.get(3), bytes) and b"body of third-message" in each[3], each)
    s.check("the damaged message fails alone, with an error, not a crash",
            not isinstance(each.get(2), bytes) and d.running(), each.get(2))

    code, rep, err = check(d)
    s.check("check through the daemon reports the same record", code == 1 and rep and
            [(b["user"], b["mailbox"], b["uid"]) for b in rep["bad"]] == [(bob, "INBOX", 2)], f"exit {code}: {rep} {err}")
    code, rep, err = check(d, "--repair")
    s.check("check --repair quarantines it and exits 0", code == 0 and rep and len(rep["bad"]) == 1,
            f"exit {code}: {rep} {err}")

    c = d.imap(bob, tls="implicit")
    n = select(c, "INBOX")
    typ, data = c.uid("FETCH", "1:*", "(ENVELOPE BODY.PEEK[])")
    bodies = [x[1] for x in data if isinstance(x, tuple)] if typ == "OK" else []
    s.check("after repair FETCH 1:* returns the rest of the INBOX", n == 2 and len(bodies) == 2
            and b"first-message" in bodies[0] and b"third-message" in bodies[1], f"{n} messages, {typ} {data!r}"[:300])
    st = status(c, "INBOX")
    s.check("STATUS counts agree after repair", st.get("MESSAGES") == 2 and st.get("UNSEEN") == 2, st)
    c.logout()
    code, rep, err = check(d)
    s.check("check after repair finds nothing and exits 0", code == 0 and rep == {"checked": rep["checked"], "bad": []},
            f"exit {code}: {rep} {err}")
    s.check("the daemon stops cleanly after all that", d.stop() == 0)

    # A database truncated to nothing is not a new empty store.
    d2 = s.daemon()
    os.makedirs(d2.data, exist_ok=True)
    empty = os.path.join(d2.data, "pochta.db")
    open(empty, "wb").close()
    r = d2.cli("status", check=False)
    s.check("status on a zero-byte database exits 1 naming the file", r.returncode == 1 and empty in r.stderr
            and "backup" in r.stderr, f"exit {r.returncode}: {r.stderr.strip()}")
    # Run by hand, not with d2.start(): the daemon is meant to exit.
    p = subprocess.Popen([d2.bin, "serve", "--config", d2.config], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        out, _ = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    s.check("serve refuses a zero-byte database with exit 1", p.returncode == 1, f"exit {p.returncode}: {out[-300:]}")
    s.check("serve says which file and does not panic", empty in out and "panic" not in out, out[-300:])
    s.check("the zero-byte file is left as it was", os.path.getsize(empty) == 0, os.path.getsize(empty))
