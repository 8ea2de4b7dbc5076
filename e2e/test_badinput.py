"""badinput: garbage gets protocol errors, never a crash. IMAP answers BAD and
the connection keeps working; oversized lines and literals are refused; SMTP
answers 500/502 to nonsense; a client that disconnects in the middle of DATA
or APPEND leaves nothing stored; the daemon keeps serving everyone."""
import socket
import time

from harness import LOOPBACK, PASSWORD, fetch, logout, message, ok


class Raw:
    """A line-oriented raw TCP client with deadlines."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection((LOOPBACK, port), timeout)
        self.f = self.s.makefile("rb")
        self.timeout = timeout

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        return self.f.readline()

    def until(self, prefix):
        """Lines up to and including the first starting with prefix; [] on EOF."""
        out = []
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            line = self.f.readline()
            if not line:
                return out
            out.append(line)
            if line.startswith(prefix):
                return out
        return out

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def last(lines):
    return lines[-1] if lines else b"<connection closed>"


def imap_garbage(s, d):
    # Before login: an unknown command gets BAD and the connection stays
    # usable (issue 12); a run of them (an HTTP request's header lines, a
    # cross-protocol attack) ends it.
    r = Raw(d.ports["imap"])
    s.check("IMAP greets with * OK", r.line().startswith(b"* OK"))
    r.send(b"a1 FROBNICATE now\r\n")
    got = r.until(b"a1 ")
    s.check("unknown IMAP command before login gets BAD", last(got).startswith(b"a1 BAD"), got)
    r.send(b"a1b NOOP\r\n")
    got = r.until(b"a1b ")
    s.check("the connection stays usable after that BAD", last(got).startswith(b"a1b OK"), got)
    r.close()
    r = Raw(d.ports["imap"])
    s.check("a new client is greeted after that", r.line().startswith(b"* OK"))
    r.send(b"a2 SELECT INBOX\r\n")
    got = r.until(b"a2 ")
    s.check("SELECT before LOGIN is refused", last(got)[:6] in (b"a2 BAD", b"a2 NO "), got)
    r.send(f'a3 LOGIN "{d.addr("alice")}" "{PASSWORD}"\r\n'.encode())
    got = r.until(b"a3 ")
    s.check("and that client can still log in", last(got).startswith(b"a3 OK"), got)

    # After login: garbage gets BAD and the session goes on.
    for label, line in (("an unknown command", b"a4 FROBNICATE now\r\n"),
                        ("a line without tag or command", b"this is not imap at all\r\n"),
                        ("a malformed FETCH", b"a5 FETCH 1:* (FLAGS\r\n"),
                        ("SEARCH with a bad criterion", b"a6 SEARCH FROBBED 12\r\n")):
        r.send(line)
        got = r.until(b"")
        s.check(f"{label} after login gets BAD (or NO)", got and (b" BAD" in got[-1] or b" NO" in got[-1]), got)
        r.send(b"n1 NOOP\r\n")
        got = r.until(b"n1 ")
        s.check(f"the session still works after {label} (NOOP OK)", last(got).startswith(b"n1 OK"), got)
    r.send(b"a7 APPEND INBOX {999999999}\r\n")
    got = r.until(b"")
    s.check("an APPEND literal beyond the size limit is refused without a continuation",
            got and not got[-1].startswith(b"+") and (b"NO" in got[-1] or b"BAD" in got[-1]), got)
    r.close()

    # A line whose tag is not even an atom: go-imap's reader gives up on the
    # connection without a reply. Accepted: BAD or a close, never a hang, and
    # everyone else is still served.
    r = Raw(d.ports["imap"], timeout=5)
    r.line()
    r.send(f'a1 LOGIN "{d.addr("alice")}" "{PASSWORD}"\r\n'.encode())
    r.until(b"a1 ")
    try:
        r.send(b"\x00\xff\xfe\x80 \x01\x02\r\n")
        got = r.until(b"")
        answered = not got or b"BAD" in got[-1] or b"BYE" in got[-1]
    except socket.timeout:
        got, answered = [b"no answer and no close within 5 s"], False
    except OSError:
        got, answered = [b"closed"], True
    s.check("binary garbage after login gets BAD or a close (no hang)", answered, got)
    r.close()

    # An overlong line: refused or disconnected, not buffered forever.
    r = Raw(d.ports["imap"])
    r.line()
    try:
        r.send(b"a1 LOGIN " + b"x" * 2_000_000 + b" y\r\n")
        got = r.until(b"")
        refused = not got or any(w in got[-1] for w in (b"BAD", b"BYE", b" NO "))
    except socket.timeout:  # neither reading nor answering: not a refusal
        got, refused = [b"server stopped reading without answering or closing"], False
    except OSError:  # reset or broken pipe: the server closed on us mid-send
        got, refused = [], True
    s.check("an overlong IMAP line is refused (BAD/NO/BYE/close)", refused, got[-1:])
    r.close()

    c = d.imap(d.addr("bob"), tls="implicit")
    s.works("another client is served normally afterwards", lambda: ok(c.select("INBOX"), "SELECT"))
    logout(c)


def imap_literal_smuggling(s, d):
    """Issue 9 item 3: an APPEND whose LITERAL+ literal is over the limit is
    refused, and the command lines inside it never run."""
    r = Raw(d.ports["imap"], timeout=30)
    r.line()
    r.send(f'a1 LOGIN "{d.addr("alice")}" "{PASSWORD}"\r\n'.encode())
    r.until(b"a1 ")
    limit = 26214400  # harness max_message_size
    evil = b"x1 CREATE smuggled\r\n"
    body = evil * (limit // len(evil) + 1)
    try:
        r.send(b"a2 APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
        got = r.until(b"a2 ")
    except OSError as e:
        got = [f"closed: {e}".encode()]
    s.check("an over-limit LITERAL+ APPEND is refused (NO/BAD, or the connection closed)",
            not got or got[-1].startswith((b"a2 NO", b"a2 BAD")) or b"closed" in got[-1], got[-1:])
    s.check("no command inside the refused literal was answered", not any(l.startswith(b"x1 ") for l in got), got[-3:])
    c = d.imap(d.addr("alice"))
    names = b" ".join(x for x in ok(c.list('""', '"*"'), "LIST") if isinstance(x, bytes))
    s.check("and none of them ran: no mailbox 'smuggled' exists", b"smuggled" not in names, names)
    logout(c)
    r.close()


def imap_literal_announced(s, d):
    """The reviewer's two LITERAL+ probes, as sent: after login an APPEND
    announcing {99999999+} followed by command lines; before login a LOGIN
    announcing {5000+} followed by a NOOP. The lines are the literal's
    bytes and never run."""
    r = Raw(d.ports["imap"], timeout=10)
    r.line()
    r.send(f'a1 LOGIN "{d.addr("alice")}" "{PASSWORD}"\r\n'.encode())
    r.until(b"a1 ")
    try:
        r.send(b"a2 APPEND INBOX {99999999+}\r\n" + b"b CREATE evil\r\n" * 20)
        got = r.until(b"a2 ")  # a BYE and the connection closed, or a2's answer
    except OSError as e:
        got = [f"closed: {e}".encode()]
    s.check("APPEND {99999999+} followed by CREATE lines: none of them is answered",
            not any(line.startswith(b"b ") for line in got), got[-3:])
    r.close()
    c = d.imap(d.addr("alice"))
    names = b" ".join(x for x in ok(c.list('""', '"*"'), "LIST") if isinstance(x, bytes))
    s.check("and no mailbox 'evil' was created", b"evil" not in names, names)
    logout(c)

    r = Raw(d.ports["imap"], timeout=10)
    r.line()
    smuggled = b"c NOOP\r\n"
    r.send(b"a LOGIN {5000+}\r\n" + smuggled)
    # The rest of the announced 5000 bytes, then a real command: whatever
    # the NOOP inside the literal caused would come before d's answer.
    r.send(b"x" * (5000 - len(smuggled)) + b" pw\r\nd NOOP\r\n")
    got = r.until(b"d ")
    s.check("LOGIN {5000+} before login is refused and the NOOP inside it never runs",
            any(line.startswith(b"a BAD") for line in got) and not any(line.startswith(b"c ") for line in got)
            and last(got).startswith(b"d OK"), got)
    r.close()


def imap_capability_and_idle(s, d):
    """RFC 7888 4: one literal extension at a time (LITERAL- before login,
    LITERAL+ after). RFC 2177: only DONE ends IDLE; trickled garbage with no
    CRLF gets BAD at once instead of holding the connection for 31 minutes."""
    r = Raw(d.ports["imap"], timeout=10)
    r.line()
    r.send(b"c1 CAPABILITY\r\n")
    before = b" ".join(r.until(b"c1 ")).split()
    s.check("CAPABILITY before login lists LITERAL- and not LITERAL+",
            b"LITERAL-" in before and b"LITERAL+" not in before, before)
    r.send(f'a1 LOGIN "{d.addr("alice")}" "{PASSWORD}"\r\n'.encode())
    r.until(b"a1 ")
    r.send(b"c2 CAPABILITY\r\n")
    after = b" ".join(r.until(b"c2 ")).split()
    s.check("CAPABILITY after login lists LITERAL+ and not LITERAL-",
            b"LITERAL+" in after and b"LITERAL-" not in after, after)
    r.send(b"s SELECT INBOX\r\n")
    r.until(b"s ")
    r.send(b"i IDLE\r\n")
    r.until(b"+")
    r.send(b"xyz")  # no CRLF
    got = r.until(b"i ")
    s.check("garbage during IDLE gets a tagged BAD at once", last(got).startswith(b"i BAD"), got[-2:])
    r.send(b"\r\nn NOOP\r\n")
    s.check("and the connection goes on", last(r.until(b"n ")).startswith(b"n OK"))
    r.close()


def smtp_garbage(s, d):
    r = Raw(d.ports["sub"])
    s.check("SMTP greets with 220", r.line().startswith(b"220"))
    r.send(b"FROB the widget\r\n")
    code = r.line()[:3]
    s.check("an unknown SMTP verb gets 500/502", code in (b"500", b"502"), code)
    # go-smtp answers 501 to lines it cannot split into verb and argument.
    r.send(b"FROBNICATE\r\n")
    code = r.line()[:3]
    s.check("a mangled SMTP line gets a 50x syntax error", code in (b"500", b"501", b"502"), code)
    r.send(b"\x00\xff\xfe garbage\r\n")
    code = r.line()[:3]
    s.check("binary garbage gets a 50x syntax error", code in (b"500", b"501", b"502"), code)
    r.send(b"MAIL FROM:<not even an address\r\n")
    code = r.line()[:3]
    s.check("malformed MAIL gets 5xx", code.startswith(b"5"), code)
    r.send(b"EHLO client.test\r\n")
    got = r.until(b"250 ")
    s.check("EHLO still works after garbage", got and got[-1].startswith(b"250 "), got)
    r.send(b"NOOP\r\n")
    s.check("NOOP answers 250", r.line().startswith(b"250"))
    r.close()


def interrupted_writes(s, d):
    alice, bob = d.addr("alice"), d.addr("bob")
    # DATA cut off: headers and part of the body, then the connection drops.
    c = d.smtp(tls=None, login=alice)
    c.mail(alice)
    c.rcpt(bob)
    code, _ = c.docmd("DATA")
    s.check("DATA gets 354", code == 354, code)
    c.sock.sendall(message(alice, bob, "cut off in DATA", body="part one\r\n" * 1000))
    c.sock.close()

    # APPEND cut off in the middle of its literal.
    r = Raw(d.ports["imap"])
    r.line()
    r.send(f'a1 LOGIN "{bob}" "{PASSWORD}"\r\n'.encode())
    r.until(b"a1 ")
    half = message(bob, bob, "cut off in APPEND", body="x" * 500 + "\r\n")
    r.send(b"a2 APPEND INBOX {%d}\r\n" % (len(half) * 2))
    s.check("APPEND gets a continuation", r.line().startswith(b"+"))
    r.send(half)
    r.close()

    # A complete message afterwards; only it must be in the INBOX.
    d.send(alice, [bob], message(alice, bob, "complete message"))
    c = d.imap(bob, tls="implicit")
    bodies = [m["body"] for m in fetch(c, "INBOX").values()]
    sent = [m["body"] for m in fetch(c, "Sent").values()]
    logout(c)
    s.check("only the complete message is in bob's INBOX", len(bodies) == 1 and b"complete message" in bodies[0],
            [b.split(b"Subject: ")[1][:30] for b in bodies if b and b"Subject: " in b])
    c = d.imap(alice, tls="implicit")
    asent = [m["body"] for m in fetch(c, "Sent").values()]
    logout(c)
    s.check("alice's Sent has no copy of the cut-off message",
            len(asent) == 1 and b"complete message" in asent[0], len(asent))
    s.check("bob's Sent is empty", not sent, len(sent))


def run(s):
    d = s.daemon().start()
    d.add_user("alice")
    d.add_user("bob")
    imap_garbage(s, d)
    imap_literal_smuggling(s, d)
    imap_literal_announced(s, d)
    imap_capability_and_idle(s, d)
    smtp_garbage(s, d)
    interrupted_writes(s, d)
    s.check("the daemon is still running after all of it", d.running(), d.tail(300))
