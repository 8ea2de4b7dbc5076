"""hostile: clients that mean harm get a protocol error or a closed
connection within a bounded time and bounded memory, and everyone else is
served meanwhile.

Cases, each against the real daemon on raw sockets: random bytes on the SMTP
and IMAP ports; a 100 KB line on each; an IMAP literal announcing 10 GB
(synchronising and LITERAL+); mailbox names with "..", a leading "/", NUL,
invalid modified UTF-7 and invalid UTF-8 in CREATE and SELECT (refused,
nothing created, LIST still sane, another user's folders untouched);
sequence sets 1:4294967295 and *:1 in FETCH, STORE and SEARCH; an SMTP DATA
that never ends (closed after [limits] smtp_idle_timeout, set to 3 s here);
SMTP AUTH and IMAP commands trickled a byte at a time (421 / BYE and closed
within smtp_idle_timeout / imap_command_timeout, 3 s here);
clients that never read their replies (IMAP FETCH of big bodies, pipelined
SMTP). After every case a control client still delivers and reads mail, and
the daemon's resident memory (VmRSS) stays under 300 MiB.

Also two messages built to break the store: a Bcc as the last header line of
BDAT data without a final CRLF (the recipients' copy must keep its header),
and a Date / APPEND date with a zone offset past 24 hours (+2459, which
time.Parse accepts): the recipient's FETCH ENVELOPE must keep working."""
import base64
import os
import re
import socket
import time

from harness import LOOPBACK, PASSWORD, by_subject, logout, message, ok, wait_for

RSS_LIMIT = 300 << 20
TIMEOUT = b"<no answer and no close before the deadline>"
SMTP_IDLE = 3  # seconds; [limits] smtp_idle_timeout below
IMAP_CMD = 3  # seconds; [limits] imap_command_timeout below


class Raw:
    """A raw TCP client with a deadline on every read."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection((LOOPBACK, port), timeout)
        self.f = self.s.makefile("rb")

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        return self.f.readline()

    def until(self, prefix, limit=200):
        """Lines up to and including the first starting with prefix; stops
        at EOF, a reset or after limit lines. A read that times out (the
        server neither answers nor closes) ends the list with TIMEOUT."""
        out = []
        for _ in range(limit):
            try:
                line = self.f.readline()
            except socket.timeout:
                out.append(TIMEOUT)
                break
            except OSError:
                break
            if not line:
                break
            out.append(line)
            if line.startswith(prefix):
                break
        return out

    def drain(self, deadline):
        """Reads until EOF; returns (everything read, closed before deadline)."""
        buf = b""
        self.s.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return buf, True
            if not chunk:
                return buf, True
            buf += chunk
        return buf, False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def imap_login(d, user, timeout=10):
    r = Raw(d.ports["imap"], timeout)
    r.line()
    r.send(f'L1 LOGIN "{d.addr(user)}" "{PASSWORD}"\r\n'.encode())
    got = r.until(b"L1 ")
    if not got or not got[-1].startswith(b"L1 OK"):
        raise RuntimeError(f"login failed: {got[-1:]}")
    return r


def smtp_login(d, user, timeout=10):
    r = Raw(d.ports["sub"], timeout)
    r.line()
    r.send(b"EHLO hostile.test\r\n")
    r.until(b"250 ")
    cred = base64.b64encode(f"\0{d.addr(user)}\0{PASSWORD}".encode()).decode()
    r.send(f"AUTH PLAIN {cred}\r\n".encode())
    got = r.line()
    if not got.startswith(b"235"):
        raise RuntimeError(f"AUTH failed: {got!r}")
    return r


def rss(d):
    with open(f"/proc/{d.proc.pid}/status") as f:
        m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) * 1024


class Control:
    """The bystander: after every case it must still send and read mail."""

    def __init__(self, s, d):
        self.s, self.d, self.n, self.peak = s, d, 0, 0

    def __call__(self, case):
        s, d = self.s, self.d
        self.n += 1
        subject = f"control {self.n} after {case}"
        alive = d.running()
        s.check(f"{case}: daemon still running", alive, d.tail(300))
        if not alive:
            return
        try:
            t0 = time.monotonic()
            d.send(d.addr("ctl"), [d.addr("ctl2")], message(d.addr("ctl"), d.addr("ctl2"), subject), tls=None)
            c = d.imap(d.addr("ctl2"), timeout=10)
            try:
                got = wait_for(lambda: by_subject(c, "INBOX", subject), timeout=10)
            finally:
                logout(c)
            s.check(f"{case}: a control client still delivers and reads mail ({time.monotonic() - t0:.2f} s)", got)
        except Exception as e:
            s.check(f"{case}: a control client still delivers and reads mail", False, f"{type(e).__name__}: {e}")
        size = rss(d)
        self.peak = max(self.peak, size)
        s.check(f"{case}: daemon RSS {size >> 20} MiB under {RSS_LIMIT >> 20} MiB", size < RSS_LIMIT)


def refused(lines_or_bytes, imap):
    """True for a protocol error (IMAP BAD/NO/BYE, SMTP 5xx/421) or nothing
    (closed)."""
    data = lines_or_bytes if isinstance(lines_or_bytes, bytes) else b"".join(lines_or_bytes)
    if TIMEOUT in data:
        return False
    if not data:
        return True
    if imap:
        return bool(re.search(rb"(^|\n)(\S+ (BAD|NO)|\* BYE)", data))
    return bool(re.search(rb"(^|\n)(5\d\d|421)", data))


# --- cases -----------------------------------------------------------------

def random_bytes(s, d):
    for proto, port in (("SMTP", d.ports["sub"]), ("IMAP", d.ports["imap"])):
        r = Raw(port)
        r.line()
        t0 = time.monotonic()
        try:
            r.send(os.urandom(64 << 10))
            r.s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # closed on us while sending: a refusal too
        data, closed = r.drain(time.monotonic() + 15)
        r.close()
        s.check(f"64 KB of random bytes on {proto}: errors or a close, connection closed within 15 s "
                f"({time.monotonic() - t0:.1f} s)", closed and refused(data, proto == "IMAP"), data[-200:])


def long_lines(s, d):
    line = b"x" * (100 << 10)
    for proto, port, cmd, prefix in (("SMTP", d.ports["sub"], b"NOOP " + line + b"\r\n", None),
                                     ("IMAP", d.ports["imap"], b"a1 NOOP " + line + b"\r\n", b"a1 ")):
        r = Raw(port)
        r.line()
        try:
            r.send(cmd)
        except OSError:
            pass  # closed (or stopped reading) while the line was sent
        got = r.until(prefix or b"")
        s.check(f"a 100 KB line on {proto} is refused (error or close)", refused(got, proto == "IMAP"), got[-1:])
        r.close()
    # After login too, where IMAP accepts longer commands.
    r = imap_login(d, "mallory")
    try:
        r.send(b"a2 SELECT " + line + b"\r\n")
    except OSError:
        pass
    got = r.until(b"a2 ")
    s.check("a 100 KB line after IMAP login is refused (error or close)", refused(got, True), got[-1:])
    r.close()


def huge_literals(s, d):
    # Before login go-imap takes at most 4096-byte literals; it sends no
    # continuation for a bigger one but drops its own NO [TOOBIG] and waits
    # (its decoder discards the error), so the refusal only shows once the
    # client sends anything more.
    r = Raw(d.ports["imap"], timeout=2)
    r.line()
    r.send(b"a1 LOGIN {10737418240}\r\n")
    first = r.until(b"a1 ", limit=5)
    s.check("a 10 GB literal before login gets no continuation", not any(l.startswith(b"+") for l in first), first)
    r.s.settimeout(5)
    try:
        r.send(b"a2 NOOP\r\n")
    except OSError:
        pass
    got = r.until(b"a", limit=5)
    s.check("... and the LOGIN is refused (NO/BAD or a close), not read as 10 GB",
            refused([l for l in first if l != TIMEOUT] + got, True), first + got)
    r.close()
    for label, lit in (("synchronising", b"{10737418240}"), ("LITERAL+", b"{10737418240+}")):
        r = imap_login(d, "mallory")
        t0 = time.monotonic()
        try:
            r.send(b"a3 APPEND INBOX " + lit + b"\r\n")
            if label == "LITERAL+":
                r.send(os.urandom(1 << 20))  # the client starts sending at once
        except socket.timeout:
            pass  # the server stopped reading: its answer tells the rest
        except OSError:
            pass  # closed on us
        got = r.until(b"a3 ", limit=5)
        s.check(f"an APPEND with a 10 GB {label} literal is refused within 10 s "
                f"({time.monotonic() - t0:.1f} s)",
                not any(l.startswith(b"+") for l in got) and refused(got, True) and time.monotonic() - t0 < 10, got)
        r.close()


BAD_NAMES = [
    ("..", b'".."'),
    ("../etc", b'"../etc"'),
    ("INBOX/../../x", b'"INBOX/../../x"'),
    ("a/./b", b'"a/./b"'),
    ("/leading", b'"/leading"'),
    ("a//b", b'"a//b"'),
    ("mUTF-7 for '..'", b'"&AC4ALg-"'),
    ("mUTF-7 for '/x'", b'"&AC8-x"'),
    ("unterminated mUTF-7", b'"&Jjo"'),
    ("bad base64 in mUTF-7", b'"&,,,-"'),
    ("mUTF-7 with odd bits", b'"&AGE"'),
    ("invalid UTF-8 quoted", b'"bad\xff\xfename"'),
]
LITERAL_NAMES = [
    ("NUL", b"a\x00b"),
    ("invalid UTF-8 literal", b"\xc3\x28x"),
    ("CR LF", b"a\r\nb"),
]


def mailbox_names(s, d):
    def listing(user):
        c = d.imap(d.addr(user))
        try:
            data = ok(c.list('""', '"*"'), "LIST")
        finally:
            logout(c)
        return sorted(x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in data if x)

    def names(listing):
        return sorted(re.sub(r'^\([^)]*\) (NIL|"[^"]*") ', "", l).strip('"') for l in listing)

    before_m, before_v = listing("mallory"), listing("ctl2")
    files_before = sorted(os.listdir(d.data))
    r = imap_login(d, "mallory")
    n = 0
    for label, quoted in BAD_NAMES:
        for cmd in (b"CREATE", b"SELECT"):
            n += 1
            tag = b"m%d" % n
            r.send(tag + b" " + cmd + b" " + quoted + b"\r\n")
            got = r.until(tag + b" ")
            s.check(f"{cmd.decode()} of a mailbox named {label} is refused (NO/BAD)",
                    got and (got[-1].startswith(tag + b" NO") or got[-1].startswith(tag + b" BAD")), got[-1:])
    for label, raw in LITERAL_NAMES:
        for cmd in (b"CREATE", b"SELECT"):
            n += 1
            tag = b"m%d" % n
            try:
                r.send(tag + b" " + cmd + b" {%d}\r\n" % len(raw))
                cont = r.line()
                if cont.startswith(b"+"):
                    r.send(raw + b"\r\n")
                    got = r.until(tag + b" ")
                else:
                    got = [cont] if cont else []
            except socket.timeout:
                got = [TIMEOUT]
            except OSError:
                got = []  # closed
            s.check(f"{cmd.decode()} of a mailbox name with {label} is refused (NO/BAD or a close)",
                    refused(got, True) and not (got and got[-1].startswith(tag + b" OK")), got[-1:])
            if not got or got[-1].startswith((b"* BYE", TIMEOUT)):
                r.close()
                r = imap_login(d, "mallory")
    r.send(b"z1 NOOP\r\n")
    got = r.until(b"z1 ")
    s.check("the session still works after the bad names", got and got[-1].startswith(b"z1 OK"), got[-1:])
    r.close()

    after_m, after_v = listing("mallory"), listing("ctl2")
    s.check("no mailbox was created by any of the bad names", names(after_m) == names(before_m),
            set(names(after_m)) ^ set(names(before_m)))
    s.check("LIST is still sane: every name decodes and has no empty, '.' or '..' part",
            all(sane(l) for l in after_m), [l for l in after_m if not sane(l)])
    s.check("another user's mailboxes are untouched", names(after_v) == names(before_v))
    s.check("no file appeared in the data directory", sorted(os.listdir(d.data)) == files_before,
            set(os.listdir(d.data)) ^ set(files_before))


def sane(list_line):
    m = re.match(r'^\(([^)]*)\) (NIL|"[^"]*") (.*)$', list_line)
    if not m:
        return False
    name = m.group(3).strip('"')
    parts = name.split("/")
    return "\x00" not in name and "\ufffd" not in name and all(p not in ("", ".", "..") for p in parts)


def sequence_sets(s, d):
    c = d.imap(d.addr("mallory"))
    for i in range(3):
        ok(c.append("INBOX", None, None, message(d.addr("mallory"), d.addr("mallory"), f"seq {i}")), "APPEND")
    logout(c)
    r = imap_login(d, "mallory")
    r.send(b"s0 SELECT INBOX\r\n")
    r.until(b"s0 ")
    for n, cmd in enumerate((b"FETCH 1:4294967295 (FLAGS)", b"FETCH *:1 (FLAGS UID)",
                             b"STORE 1:4294967295 +FLAGS (\\Flagged)", b"STORE *:1 -FLAGS (\\Flagged)",
                             b"UID FETCH 1:4294967295 (UID)", b"UID STORE *:1 +FLAGS.SILENT (\\Seen)",
                             b"SEARCH 1:4294967295", b"UID SEARCH UID 1:4294967295",
                             b"FETCH 1,1,1,1:4294967295,2:3,*:1 (FLAGS)", b"FETCH 4294967296 (FLAGS)",
                             b"FETCH 0:5 (FLAGS)", b"COPY 1:4294967295 INBOX")):
        tag = b"q%d" % n
        t0 = time.monotonic()
        r.send(tag + b" " + cmd + b"\r\n")
        got = r.until(tag + b" ", limit=100)
        took = time.monotonic() - t0
        answered = got and re.match(rb"^" + tag + rb" (OK|NO|BAD)", got[-1])
        s.check(f"{cmd.decode()} answered within 5 s ({took:.2f} s, {got[-1][:40] if got else b'-'!r})",
                answered and took < 5, got[-3:])
    r.send(b"q99 NOOP\r\n")
    got = r.until(b"q99 ")
    s.check("the session works after the sequence sets", got and got[-1].startswith(b"q99 OK"), got[-1:])
    r.close()


def endless_data(s, d):
    r = smtp_login(d, "mallory")
    r.send(f"MAIL FROM:<{d.addr('mallory')}>\r\n".encode())
    r.line()
    r.send(f"RCPT TO:<{d.addr('ctl2')}>\r\n".encode())
    r.line()
    r.send(b"DATA\r\n")
    s.check("DATA that never ends: 354 first", r.line().startswith(b"354"))
    r.send(b"Subject: never ends\r\n\r\nline one\r\nline two\r\n")
    t0 = time.monotonic()
    data, closed = r.drain(time.monotonic() + SMTP_IDLE + 12)
    took = time.monotonic() - t0
    s.check(f"DATA that never ends: closed after smtp_idle_timeout ({SMTP_IDLE} s; took {took:.1f} s)",
            closed and took < SMTP_IDLE + 12, data[-100:])
    r.close()
    c = d.imap(d.addr("ctl2"))
    try:
        left = by_subject(c, "INBOX", "never ends")
    finally:
        logout(c)
    s.check("DATA that never ends: nothing of it was stored", not left, len(left))


def trickle_until_closed(r, data, bound):
    """Sends data one byte every 0.2 s from a thread while reading; returns
    (everything read, closed within bound + 5 s, seconds taken)."""
    import threading
    stop = threading.Event()

    def drip():
        i = 0
        while not stop.is_set():
            try:
                r.s.sendall(data[i % len(data):i % len(data) + 1])
            except OSError:
                return
            i += 1
            stop.wait(0.2)

    t = threading.Thread(target=drip, daemon=True)
    t0 = time.monotonic()
    t.start()
    try:
        got, closed = r.drain(t0 + bound + 5)
    finally:
        stop.set()
        t.join(5)
    return got, closed, time.monotonic() - t0


def trickling_clients(s, d):
    # One byte every 0.2 s used to keep a connection forever: go-smtp took a
    # timeout inside AUTH as a pause and read on under a fresh deadline.
    r = Raw(d.ports["sub"])
    r.line()
    r.send(b"EHLO hostile.test\r\nAUTH LOGIN\r\n")
    r.until(b"334")
    got, closed, took = trickle_until_closed(r, b"bWFsbG9yeUBleGFtcGxlLnRlc3Q=", SMTP_IDLE)
    s.check(f"SMTP AUTH trickled a byte at a time: 421 4.4.2 and closed within smtp_idle_timeout ({took:.1f} s)",
            closed and b"421 4.4.2" in got, got[-120:])
    r.close()
    for label, login in (("before login", False), ("after login", True)):
        r = imap_login(d, "mallory") if login else Raw(d.ports["imap"])
        if not login:
            r.line()
        got, closed, took = trickle_until_closed(r, b"t1 NOOP NOOP NOOP NOOP NOOP ", IMAP_CMD)
        s.check(f"IMAP command trickled {label}: * BYE and closed within imap_command_timeout ({took:.1f} s)",
                closed and b"* BYE" in got, got[-120:])
        r.close()


def slow_readers(s, d, ctl):
    # Big bodies to fetch: 12 messages of 1 MB.
    c = d.imap(d.addr("mallory"))
    ok(c.create('"Big"'), "CREATE Big")
    blob = base64.encodebytes(os.urandom(750_000)).replace(b"\n", b"\r\n")
    for i in range(12):
        ok(c.append('"Big"', None, None, message(d.addr("mallory"), d.addr("mallory"), f"big {i}").rstrip(b"\r\n")
                    + b"\r\n" + blob), "APPEND big")
    logout(c)
    r = imap_login(d, "mallory")
    r.send(b"b1 SELECT Big\r\n")
    r.until(b"b1 ")
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    r.send(b"b2 FETCH 1:* (BODY.PEEK[])\r\nb3 FETCH 1:* (BODY.PEEK[])\r\n")  # and never read
    smtp = smtp_login(d, "mallory")
    try:
        smtp.s.settimeout(5)
        smtp.send(b"NOOP\r\n" * 200_000)  # 1.2 MB of pipelined commands, replies never read
        sent_all = True
    except OSError:
        sent_all = False  # the server stopped reading, or closed: either is fine
    ctl("clients that never read (IMAP FETCH of 24 MB, 200,000 pipelined SMTP NOOPs"
        + (", all sent)" if sent_all else ", the server stopped reading)"))
    r.close()
    smtp.close()


def bdat_bcc_last(s, d):
    # Found by FuzzPrepareMessage: BDAT lets the data end without a CRLF.
    raw = (f"From: {d.addr('mallory')}\r\nTo: {d.addr('ctl2')}\r\nSubject: bdat bcc last\r\n"
           f"Bcc: secret@{d.domain}").encode()
    r = smtp_login(d, "mallory")
    r.send(f"MAIL FROM:<{d.addr('mallory')}>\r\nRCPT TO:<{d.addr('ctl2')}>\r\n".encode())
    r.line()
    r.line()
    r.send(b"BDAT %d LAST\r\n" % len(raw) + raw)
    got = r.line()
    s.check("BDAT data ending in a Bcc line without CRLF is accepted", got.startswith(b"250"), got)
    r.close()
    c = d.imap(d.addr("ctl2"))
    try:
        bodies = wait_for(lambda: by_subject(c, "INBOX", "bdat bcc last"), timeout=5) or []
    finally:
        logout(c)
    head = bodies[0].split(b"\r\n\r\n")[0] if bodies else b""
    s.check("... the recipient's copy has no Bcc and keeps Message-ID and Date in its header",
            bodies and b"Bcc" not in bodies[0] and b"\r\nMessage-ID: " in head and b"\r\nDate: " in head,
            bodies[0][:400] if bodies else "not delivered")


def far_zone(s, d):
    # Found by FuzzParsedRecordRoundTrip: "+2459" parses, and the stored
    # record then failed to decode.
    msg = message(d.addr("mallory"), d.addr("victim"), "far zone",
                  headers={"Date": "Mon, 3 Mar 2025 10:00:00 +2459"})
    d.send(d.addr("mallory"), [d.addr("victim")], msg, tls=None)
    c = d.imap(d.addr("victim"))
    try:
        ok(c.select("INBOX", readonly=True), "SELECT")
        typ, data = c.fetch("1:*", "(ENVELOPE)")
    finally:
        logout(c)
    s.check("a message dated +2459 does not break the recipient's FETCH 1:* (ENVELOPE)",
            typ == "OK" and b"far zone" in b" ".join(x if isinstance(x, bytes) else b" ".join(x) for x in data),
            f"{typ} {data!r:.200}")
    c = d.imap(d.addr("victim"))
    try:
        typ, data = c.append("Drafts", None, '"03-Mar-2025 10:00:00 +2459"',
                             message(d.addr("victim"), d.addr("victim"), "far zone draft"))
        ok(c.select("Drafts", readonly=True), "SELECT Drafts")
        typ2, data2 = c.fetch("1:*", "(FLAGS INTERNALDATE)")
    finally:
        logout(c)
    s.check("an APPEND dated +2459 is refused or stays readable (FETCH FLAGS INTERNALDATE)",
            typ != "OK" or typ2 == "OK", f"APPEND {typ}, FETCH {typ2} {data2!r:.200}")


def run(s):
    d = s.daemon(extra=f'[limits]\nsmtp_idle_timeout = "{SMTP_IDLE}s"\nimap_command_timeout = "{IMAP_CMD}s"\n').start()
    for u in ("ctl", "ctl2", "mallory", "victim"):
        d.add_user(u)
    ctl = Control(s, d)
    ctl("start")
    for name, case in (("random bytes", random_bytes), ("100 KB lines", long_lines),
                       ("10 GB literals", huge_literals), ("bad mailbox names", mailbox_names),
                       ("huge sequence sets", sequence_sets), ("DATA that never ends", endless_data),
                       ("trickling clients", trickling_clients),
                       ("BDAT ending in Bcc", bdat_bcc_last)):
        t0 = time.monotonic()
        s.step(f"{name}: ran without an exception", case, s, d)
        s.check(f"{name}: bounded time ({time.monotonic() - t0:.1f} s < 30 s)", time.monotonic() - t0 < 30)
        ctl(name)
    s.step("clients that never read: ran without an exception", slow_readers, s, d, ctl)
    s.step("far zone offsets: ran without an exception", far_zone, s, d)
    ctl("far zone offsets")
    print(f"   (daemon peak RSS seen: {ctl.peak >> 20} MiB)")
