"""restart: what a user set survives the daemon going down. Flags (\\Flagged,
\\Seen, a keyword) and UIDVALIDITY are the same after stop/start; an
expunged message stays gone; UIDs are never reused, within a run and across
restarts; a message acknowledged with 250 is there after kill -9; the
self-signed certificate is reused, not regenerated."""
import re
import signal

from harness import fetch, logout, message, ok, select, status, uids

KEYWORD = "$Work"


def flags_of(d, user, box="INBOX"):
    c = d.imap(user, tls="implicit")
    try:
        return {uid: m["flags"] - {"\\Recent"} for uid, m in fetch(c, box, "(FLAGS)").items()}
    finally:
        logout(c)


def append(c, box, raw, flags=""):
    """APPENDs raw; returns the UID from APPENDUID (RFC 4315), or None."""
    data = ok(c.append(f'"{box}"', flags or None, None, raw), f"APPEND {box}")
    m = re.search(rb"APPENDUID \d+ (\d+)", b" ".join(x for x in data if isinstance(x, bytes)))
    return int(m.group(1)) if m else None


def expunge_uid(c, box, uid):
    select(c, box, readonly=False)
    ok(c.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE \\Deleted")
    ok(c.expunge(), "EXPUNGE")


def restart(s, d, label):
    code = d.stop()
    s.check(f"daemon exits 0 on SIGTERM ({label})", code == 0, code)
    d.start()


def run(s):
    d = s.daemon().start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    cert_before = open(d.cert, "rb").read()

    for i in (1, 2, 3):
        d.send(alice, [bob], message(alice, bob, f"restart {i}"))
    c = d.imap(bob, tls="implicit")
    appended = append(c, "INBOX", message(bob, bob, "restart 4 appended"))
    s.check("APPEND answers APPENDUID", appended is not None)
    ok(c.create('"Projects"'), "CREATE Projects")
    append(c, "Projects", message(bob, bob, "in projects"))

    all_uids = uids(c, "INBOX")
    s.check("bob's INBOX has the 4 messages", len(all_uids) == 4, all_uids)
    select(c, "INBOX", readonly=False)
    u1, u2, u3, u4 = all_uids[:4]
    ok(c.uid("STORE", str(u1), "+FLAGS", r"(\Flagged)"), "STORE \\Flagged")
    ok(c.uid("STORE", str(u2), "+FLAGS", r"(\Seen)"), "STORE \\Seen")
    ok(c.uid("STORE", str(u3), "+FLAGS", f"({KEYWORD})"), "STORE keyword")
    ok(c.uid("STORE", str(u3), "+FLAGS", r"(\Answered)"), "STORE \\Answered")
    before = {k: status(c, k, "(UIDVALIDITY UIDNEXT MESSAGES)") for k in ("INBOX", "Projects", "Sent")}
    logout(c)
    flags_before = flags_of(d, bob)
    s.check("flags took effect before restart",
            "\\Flagged" in flags_before[u1] and "\\Seen" in flags_before[u2] and KEYWORD in flags_before[u3],
            flags_before)

    restart(s, d, "first")
    flags_after = flags_of(d, bob)
    s.check("flags identical after restart (\\Flagged, \\Seen, keyword, \\Answered)",
            flags_after == flags_before, f"before {flags_before} after {flags_after}")
    s.check("unflagged messages still unread after restart", "\\Seen" not in flags_after.get(u1, {"\\Seen"}))
    c = d.imap(bob, tls="implicit")
    after = {k: status(c, k, "(UIDVALIDITY UIDNEXT MESSAGES)") for k in ("INBOX", "Projects", "Sent")}
    for k in before:
        s.check(f"UIDVALIDITY of {k} unchanged after restart",
                before[k].get("UIDVALIDITY") == after[k].get("UIDVALIDITY"), f"{before[k]} -> {after[k]}")
    s.check("certificate reused, not regenerated", open(d.cert, "rb").read() == cert_before)

    # Expunge the highest UID, then append after a restart: the UID must not come back.
    highest = max(all_uids)
    expunge_uid(c, "INBOX", highest)
    logout(c)
    restart(s, d, "second")
    c = d.imap(bob, tls="implicit")
    left = uids(c, "INBOX")
    s.check("expunged message stays gone after restart", highest not in left and len(left) == 3, left)
    st = status(c, "INBOX", "(UIDNEXT UIDVALIDITY)")
    s.check("UIDNEXT after restart is beyond every UID ever used", st.get("UIDNEXT", 0) > highest, st)
    new = append(c, "INBOX", message(bob, bob, "restart 5 after expunge"))
    s.check("APPEND after expunge+restart gets a UID greater than any before",
            new is not None and new > highest, f"new {new}, highest before {highest}")
    s.check("UIDVALIDITY still unchanged after expunge and second restart",
            st.get("UIDVALIDITY") == before["INBOX"].get("UIDVALIDITY"), st)

    # Same without a restart, and via SMTP delivery this time.
    if new is not None:
        expunge_uid(c, "INBOX", new)
    logout(c)
    d.send(alice, [bob], message(alice, bob, "restart 6 delivered"))
    c = d.imap(bob, tls="implicit")
    latest = uids(c, "INBOX")
    newest = max(latest) if latest else 0
    s.check("a delivery after expunging the newest gets a new, higher UID",
            new is not None and newest > new and new not in latest, f"{latest} (expunged {new})")
    logout(c)

    # kill -9 right after a 250: the message is on disk.
    d.send(alice, [bob], message(alice, bob, "restart 7 before kill"))
    d.stop(sig=signal.SIGKILL)
    s.step("daemon starts again after kill -9", d.start)
    c = d.imap(bob, tls="implicit")
    subjects = [b for b in fetch(c, "INBOX", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])").values()]
    logout(c)
    s.check("message acknowledged before kill -9 is there afterwards",
            any(b"restart 7 before kill" in (m["body"] or b"") for m in subjects))
    s.check("flags still intact after kill -9", flags_of(d, bob).get(u1) == flags_before[u1])
