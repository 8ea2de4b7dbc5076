"""idle: a client in IDLE (RFC 2177) is told live about a new delivery
("* N EXISTS"), a flag change made by another session ("* N FETCH (FLAGS")
and an expunge by another session ("* N EXPUNGE"), and leaves IDLE cleanly.
imaplib has no IDLE before Python 3.14, so it is spoken raw on its socket."""

from harness import Idler, capabilities, logout, message, ok, select


def run(s):
    d = s.daemon().start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    d.send(alice, [bob], message(alice, bob, "already there"))

    c = d.imap(bob, tls="implicit")
    caps = capabilities(c)
    s.check("IDLE is advertised after login", "IDLE" in caps, caps)
    n = select(c, "INBOX", readonly=False)
    idle = Idler(c)
    s.check("IDLE is accepted with a continuation", idle.start(), idle.lines)

    d.send(alice, [bob], message(alice, bob, "arrives during IDLE"))
    line = idle.expect(rb"^\* \d+ EXISTS", 5)
    s.check("a delivery shows up as * N EXISTS during IDLE", line, idle.lines)
    if line:
        s.check("N is the new message count", int(line.split()[1]) == n + 1, line)

    other = d.imap(bob, tls="implicit")
    select(other, "INBOX", readonly=False)
    ok(other.store("1", "+FLAGS", r"(\Flagged)"), "STORE")
    line = idle.expect(rb"^\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged", 5)
    s.check("a flag set by another session shows up as * 1 FETCH (FLAGS ...) during IDLE", line, idle.lines[-3:])

    ok(other.store("1", "+FLAGS.SILENT", r"(\Deleted)"), "STORE \\Deleted")
    ok(other.expunge(), "EXPUNGE")
    line = idle.expect(rb"^\* 1 EXPUNGE", 5)
    s.check("an expunge by another session shows up as * 1 EXPUNGE during IDLE", line, idle.lines[-3:])
    logout(other)

    line = idle.done()
    s.check("DONE ends IDLE with a tagged OK", line and b" OK" in line, idle.lines[-3:])
    s.works("the connection is usable after IDLE", lambda: ok(c.noop(), "NOOP"))
    data = ok(c.search(None, "ALL"), "SEARCH")
    s.check("after IDLE the session sees one message (the other was expunged)", len(data[0].split()) == n,
            data)
    logout(c)
