"""qresync: a client that keeps a cache resynchronises with QRESYNC (RFC
7162) after the daemon restarted: SELECT INBOX (QRESYNC (uidvalidity
modseq known-uids)) answers VANISHED (EARLIER) for exactly the expunged
UID and one FETCH with FLAGS and MODSEQ for exactly the changed message;
an expunge by another client while selected comes as VANISHED; CONDSTORE
and QRESYNC are advertised."""
import re

from harness import capabilities, logout, message, ok, select, uids


def untagged(c, name):
    return [x.decode() if isinstance(x, bytes) else x for x in c.untagged_responses.get(name, [])]


def enable_qresync(c):
    """ENABLE QRESYNC (imaplib's enable() checks the pre-login capability
    list, which does not have it)."""
    ok(c._simple_command("ENABLE", "QRESYNC"), "ENABLE QRESYNC")


def qresync_select(c, box, validity, modseq, known):
    """SELECT box (QRESYNC (...)) through imaplib's raw command path; returns
    the untagged responses it produced."""
    c.untagged_responses = {}
    ok(c._simple_command("SELECT", box, f"(QRESYNC ({validity} {modseq} {known}))"), "SELECT (QRESYNC)")
    c.state = "SELECTED"
    return dict(c.untagged_responses)


def run(s):
    d = s.daemon().start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    for i in (1, 2, 3, 4):
        d.send(alice, [bob], message(alice, bob, f"qresync {i}"))

    c = d.imap(bob, tls="implicit")
    caps = capabilities(c)
    s.check("CONDSTORE and QRESYNC advertised", "CONDSTORE" in caps and "QRESYNC" in caps, caps)
    enable_qresync(c)
    s.check("ENABLE QRESYNC answered ENABLED QRESYNC", "QRESYNC" in " ".join(untagged(c, "ENABLED")).upper(),
            c.untagged_responses)
    all_uids = uids(c, "INBOX")
    s.check("bob has the 4 messages", len(all_uids) == 4, all_uids)
    c.untagged_responses = {}
    select(c, "INBOX")
    validity = int(untagged(c, "UIDVALIDITY")[0])
    highest = untagged(c, "HIGHESTMODSEQ")
    s.check("SELECT answers OK [HIGHESTMODSEQ n]", len(highest) == 1, c.untagged_responses)
    modseq = int(highest[0])
    logout(c)

    # Another client changes one message's flags and expunges another,
    # then the daemon restarts.
    u1, u2, u3, u4 = all_uids
    o = d.imap(bob, tls="implicit")
    select(o, "INBOX", readonly=False)
    ok(o.uid("STORE", str(u2), "+FLAGS.SILENT", r"(\Flagged)"), "STORE \\Flagged")
    ok(o.uid("STORE", str(u3), "+FLAGS.SILENT", r"(\Deleted)"), "STORE \\Deleted")
    ok(o.expunge(), "EXPUNGE")
    logout(o)
    code = d.stop()
    s.check("daemon exits 0 on SIGTERM", code == 0, code)
    d.start()

    c = d.imap(bob, tls="implicit")
    enable_qresync(c)
    got = qresync_select(c, "INBOX", validity, modseq, f"{u1}:{u4}")
    vanished = [x.decode() if isinstance(x, bytes) else x for x in got.get("VANISHED", [])]
    s.check("resync after restart: VANISHED (EARLIER) names exactly the expunged UID",
            vanished == [f"(EARLIER) {u3}"], got)
    fetches = [x.decode() if isinstance(x, bytes) else str(x) for x in got.get("FETCH", [])]
    s.check("resync: exactly one FETCH, for the flagged message, with FLAGS and MODSEQ",
            len(fetches) == 1 and f"UID {u2} " in fetches[0] and "\\Flagged" in fetches[0]
            and re.search(r"MODSEQ \((\d+)\)", fetches[0]) is not None, fetches)
    now = [int(x) for x in (untagged(c, "HIGHESTMODSEQ") or ["0"])]
    s.check("HIGHESTMODSEQ went up with the changes", now[0] > modseq, (modseq, now))

    # Live: another client expunges while this one is selected.
    o = d.imap(bob, tls="implicit")
    select(o, "INBOX", readonly=False)
    ok(o.uid("STORE", str(u4), "+FLAGS.SILENT", r"(\Deleted)"), "STORE \\Deleted")
    ok(o.expunge(), "EXPUNGE")
    logout(o)
    c.untagged_responses = {}
    ok(c.noop(), "NOOP")
    live = [x.decode() if isinstance(x, bytes) else x for x in c.untagged_responses.get("VANISHED", [])]
    s.check("another client's expunge comes as VANISHED, not EXPUNGE",
            live == [str(u4)] and "EXPUNGE" not in c.untagged_responses, c.untagged_responses)

    # CHANGEDSINCE with VANISHED on UID FETCH.
    c.untagged_responses = {}
    ok(c._simple_command("UID", "FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {modseq} VANISHED)"), "UID FETCH VANISHED")
    v = [x.decode() if isinstance(x, bytes) else x for x in c.untagged_responses.get("VANISHED", [])]
    s.check("UID FETCH (CHANGEDSINCE n VANISHED) names both expunged UIDs", v == [f"(EARLIER) {u3}:{u4}"] or
            v == [f"(EARLIER) {u3},{u4}"], c.untagged_responses)
    logout(c)
