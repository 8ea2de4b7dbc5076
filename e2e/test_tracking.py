"""tracking: the message server's own behaviour, as a user's client shows it.
The Sent copy stays unread (bold) until every recipient has read theirs and
then turns \\Seen, live in an IDLE session on Sent; `pochta sent status
--json` lists who is pending ("Not delivered"); high importance arrives as
$Important; a client that also APPENDs its Sent copy gets the server's copy
back (same UID, no duplicate); per-user settings survive a restart and bad
values are refused; `pochta status --json` describes the server; with a
message_lifetime of 2s an unread INBOX message is deleted (EXPUNGE to an
IDLE session) while read mail, Sent and Drafts stay. imaplib has no IDLE
before Python 3.14, so it is spoken raw on its socket."""
import json
import re
import time
import urllib.request

from harness import (LOOPBACK, Idler, fetch, logout, message, ok, parse, select, status,
                     wait_for)


def sent_status(d, user):
    return json.loads(d.cli("sent", "status", user, "--json").stdout)


def record(d, user, subject):
    for m in sent_status(d, user):
        if m.get("subject") == subject:
            return m
    return None


def states(m):
    return {r["address"]: r["state"] for r in (m or {}).get("recipients", [])}


def by_subject(c, box, subject, readonly=True):
    """UID -> {'flags', 'body', ...} of the messages in box with Subject."""
    return {u: m for u, m in fetch(c, box, readonly=readonly).items()
            if m["body"] is not None and parse(m["body"]).get("Subject") == subject}


def only(c, box, subject):
    msgs = by_subject(c, box, subject)
    if len(msgs) != 1:
        raise RuntimeError(f"{len(msgs)} messages '{subject}' in {box}")
    return next(iter(msgs.items()))


def read_tracking(s, d, alice, bob, carol):
    watcher = d.imap(alice, tls="implicit")
    select(watcher, "Sent", readonly=False)
    idle = Idler(watcher)
    s.check("IDLE on alice's Sent starts", idle.start(), idle.lines)

    subject = "Quarterly report"
    d.send(alice, [bob, carol], message(alice, [bob, carol], subject))
    line = idle.expect(rb"^\* \d+ EXISTS", 5)
    s.check("the server's Sent copy shows up in the IDLE session", line, idle.lines)
    seq = int(line.split()[1]) if line else 1

    other = d.imap(alice, tls="implicit")
    uid, m = only(other, "Sent", subject)
    s.check("the Sent copy is unread (bold) while both recipients are pending", "\\Seen" not in m["flags"],
            m["flags"])
    rec = record(d, alice, subject)
    s.check("sent status --json is an array with the message", rec is not None, sent_status(d, alice))
    if rec:
        s.check("the entry carries message_id, subject, date, recipients, pending",
                {"message_id", "subject", "date", "recipients", "pending"} <= set(rec), rec)
        s.check("before reading: both recipients unread and pending",
                states(rec) == {bob: "unread", carol: "unread"} and sorted(rec["pending"]) == sorted([bob, carol]), rec)

    # bob opens the message: FETCH BODY[] sets \Seen (RFC 3501 6.4.5).
    cb = d.imap(bob, tls="implicit")
    select(cb, "INBOX", readonly=False)
    data = ok(cb.uid("SEARCH", None, f'SUBJECT "{subject}"'), "SEARCH")
    buid = data[0].split()[-1].decode()
    ok(cb.uid("FETCH", buid, "(BODY[])"), "FETCH BODY[]")
    logout(cb)
    rec = record(d, alice, subject)
    s.check("after bob read: bob read, carol pending",
            rec and states(rec) == {bob: "read", carol: "unread"} and rec["pending"] == [carol], rec)
    _, m = only(other, "Sent", subject)
    s.check("the Sent copy is still unread while carol has not read hers", "\\Seen" not in m["flags"], m["flags"])

    # carol marks it read with STORE.
    cc = d.imap(carol, tls="implicit")
    select(cc, "INBOX", readonly=False)
    data = ok(cc.uid("SEARCH", None, f'SUBJECT "{subject}"'), "SEARCH")
    cuid = data[0].split()[-1].decode()
    ok(cc.uid("STORE", cuid, "+FLAGS", r"(\Seen)"), "STORE \\Seen")
    logout(cc)
    line = idle.expect(rb"^\* " + str(seq).encode() + rb" FETCH \(.*FLAGS \([^)]*\\Seen", 5)
    s.check("the IDLE session on Sent sees the copy turn \\Seen once carol read", line, idle.lines[-3:])
    _, m = only(other, "Sent", subject)
    s.check("the Sent copy is \\Seen after the second recipient read", "\\Seen" in m["flags"], m["flags"])
    rec = record(d, alice, subject)
    s.check("after both read: nobody pending",
            rec and states(rec) == {bob: "read", carol: "read"} and rec["pending"] == [], rec)
    line = idle.done()
    s.check("DONE ends IDLE with a tagged OK", line and b" OK" in line, idle.lines[-3:])
    logout(watcher)
    logout(other)

    r = d.cli("sent", "status", alice)
    s.check("sent status without --json prints a table with the subject", subject in r.stdout, r.stdout)
    r = d.cli("sent", "status", d.addr("nobody"), check=False)
    s.check("sent status of an unknown user exits 1 with a message", r.returncode == 1 and r.stderr.strip(),
            (r.returncode, r.stderr))


def importance(s, d, alice, bob):
    cases = {"imp: Importance high": {"Importance": "high"},
             "imp: X-Priority 1": {"X-Priority": "1 (Highest)"},
             "imp: Priority urgent": {"Priority": "urgent"},
             "imp: normal": {}}
    for subject, headers in cases.items():
        d.send(alice, [bob], message(alice, bob, subject, headers=headers))
    c = d.imap(bob, tls="implicit")
    select(c, "INBOX", readonly=False)
    perm = c.response("PERMANENTFLAGS")[1]
    s.check("PERMANENTFLAGS allows keywords (\\*)", perm and b"\\*" in perm[0], perm)
    for subject, headers in cases.items():
        _, m = only(c, "INBOX", subject)
        want = bool(headers)
        s.check(f"'{subject}' {'carries' if want else 'has no'} $Important", ("$Important" in m["flags"]) == want,
                m["flags"])
    logout(c)


def sent_dedup(s, d, alice, bob, carol):
    subject = "Minutes to keep"
    d.send(alice, [bob], message(alice, bob, subject))
    c = d.imap(alice, tls="implicit")
    uid, m = only(c, "Sent", subject)
    before = status(c, "Sent")["MESSAGES"]
    # What Thunderbird does after sending: APPEND its own copy, \Seen.
    typ, data = c.append('"Sent"', r"(\Seen)", None, m["body"])
    s.check("APPEND of the Sent copy succeeds", typ == "OK", data)
    got = re.search(rb"APPENDUID (\d+) (\d+)", data[0] if data and data[0] else b"")
    s.check("APPENDUID names the server's existing copy", got and int(got.group(2)) == uid, (data, uid))
    s.check("no duplicate in Sent", status(c, "Sent")["MESSAGES"] == before, status(c, "Sent"))
    _, m2 = only(c, "Sent", subject)
    s.check("the client's \\Seen did not mark the tracked copy read", "\\Seen" not in m2["flags"], m2["flags"])
    logout(c)

    cb = d.imap(bob, tls="implicit")
    n = status(cb, "Sent")["MESSAGES"]
    typ, data = cb.append('"Sent"', None, None, m["body"])
    s.check("another user's APPEND with alice's Message-ID is stored as a new message",
            typ == "OK" and status(cb, "Sent")["MESSAGES"] == n + 1, (typ, data))
    logout(cb)

    # No Message-ID from the client: the server adds one, so tracking and
    # de-duplication still work.
    subject = "No id given"
    raw = (f"From: {alice}\r\nTo: {carol}\r\nSubject: {subject}\r\n\r\nbody\r\n").encode()
    d.send(alice, [carol], raw)
    rec = record(d, alice, subject)
    s.check("a message without Message-ID is tracked under a server-made one",
            rec and re.match(r"^<.+@.+>$", rec["message_id"]), rec)
    c = d.imap(alice, tls="implicit")
    uid, m = only(c, "Sent", subject)
    s.check("the Sent copy got that Message-ID",
            rec and parse(m["body"]).get("Message-ID") == rec["message_id"], parse(m["body"]).get("Message-ID"))
    typ, data = c.append('"Sent"', None, None, m["body"])
    got = re.search(rb"APPENDUID (\d+) (\d+)", data[0] if data and data[0] else b"")
    s.check("an APPEND of it is de-duplicated too", got and int(got.group(2)) == uid, data)
    logout(c)


def settings_and_status(s, d, bob):
    r = d.cli("user", "settings", bob, "--json")
    st = json.loads(r.stdout)
    s.check("the poll interval defaults to the server's (5m)",
            st.get("poll_interval_seconds") == 300 and st.get("poll_interval_default") is True, st)
    d.cli("user", "settings", bob, "--poll-interval", "90s")
    for bad in ("0s", "-5m", "soon"):
        r = d.cli("user", "settings", bob, "--poll-interval", bad, check=False)
        s.check(f"--poll-interval {bad} is refused naming the value", r.returncode == 2 and bad in r.stderr,
                (r.returncode, r.stderr[-200:]))
    st = json.loads(d.cli("status", "--json").stdout)
    s.check("status --json has database path and size, intervals, users, messages",
            st.get("database", "").endswith("pochta.db") and st.get("database_size", 0) > 0
            and st.get("poll_interval") and st.get("message_lifetime") and st.get("users") == 3
            and st.get("messages", 0) > 0, st)
    d.stop()
    d.start()
    st = json.loads(d.cli("user", "settings", bob, "--json").stdout)
    s.check("bob's own poll interval survives a restart",
            st.get("poll_interval_seconds") == 90 and st.get("poll_interval_default") is False, st)


def metric(d, name):
    body = urllib.request.urlopen(f"http://{LOOPBACK}:{d.ports['metrics']}/metrics", timeout=5).read().decode()
    m = re.search(r"^" + name + r" (\S+)$", body, re.M)
    return float(m.group(1)) if m else None


def lifetime(s):
    d = s.daemon()
    with open(d.config) as f:
        cfg = f.read()
    with open(d.config, "w") as f:
        f.write(cfg.replace('message_lifetime = "7d"', 'message_lifetime = "2s"'))
    d.start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    st = json.loads(d.cli("status", "--json").stdout)
    s.check("status shows the 2s lifetime", st.get("message_lifetime") in ("2s", "2s0ms"), st)

    c = d.imap(alice, tls="implicit")
    ok(c.append('"Drafts"', None, None, message(alice, bob, "unfinished draft")), "APPEND draft")
    logout(c)
    d.send(alice, [bob], message(alice, bob, "read in time"))
    sent_at = time.monotonic()
    cb = d.imap(bob, tls="implicit")
    select(cb, "INBOX", readonly=False)
    data = ok(cb.uid("SEARCH", None, 'SUBJECT "read in time"'), "SEARCH")
    ok(cb.uid("FETCH", data[0].split()[-1].decode(), "(BODY[])"), "FETCH BODY[]")
    d.send(alice, [bob], message(alice, bob, "never opened"))
    n = int(ok(cb.select("INBOX"), "SELECT")[0])
    idle = Idler(cb)
    s.check("IDLE on bob's INBOX starts", idle.start(), idle.lines)
    line = idle.expect(rb"^\* \d+ EXPUNGE", 14)
    gone_after = time.monotonic() - sent_at
    s.check("the unread message is expunged live, within 10 s of expiring", line and gone_after < 12,
            (gone_after, idle.lines[-3:]))
    idle.done()
    left = [parse(m["body"]).get("Subject") for m in fetch(cb, "INBOX").values()]
    s.check("the read message stays, the unread one is gone", left == ["read in time"], (n, left))
    logout(cb)

    c = d.imap(alice, tls="implicit")
    s.check("alice's Sent copies are untouched", status(c, "Sent")["MESSAGES"] == 2, status(c, "Sent"))
    s.check("alice's unread draft is untouched", status(c, "Drafts")["MESSAGES"] == 1, status(c, "Drafts"))
    logout(c)
    rec = record(d, alice, "never opened")
    s.check("sent status shows bob as expired", rec and states(rec) == {bob: "expired"} and rec["pending"] == [],
            rec)
    v = wait_for(lambda: metric(d, "pochta_messages_expired_total"), 5)
    s.check("pochta_messages_expired_total counts it", v == 1, v)


def run(s):
    d = s.daemon().start()
    alice, bob, carol = d.add_user("alice"), d.add_user("bob"), d.add_user("carol")
    read_tracking(s, d, alice, bob, carol)
    importance(s, d, alice, bob)
    sent_dedup(s, d, alice, bob, carol)
    settings_and_status(s, d, bob)
    lifetime(s)
