"""nesting: a message too deep or too wide is refused. One with 1,000
nested multiparts is refused with
554 5.6.0 at DATA and with a tagged NO at APPEND (the limit is 100 levels,
as Postfix's mime_nesting_limit), nothing of it is stored, and
`FETCH 1:* (BODYSTRUCTURE ENVELOPE BODY[])` on the recipient's INBOX and
the sender's Sent still answers OK. Before the fix the message was stored
and its record could not be read back: every FETCH of those mailboxes
answered NO [SERVERBUG] for good. A message at the limit is delivered and
fetched. Width: a message of 80,000 empty parts (800 KB; the limit is
10,000 parts, as Dovecot's max_total_mime_parts) is refused the same way
within seconds (before, intake spent about 9 s of CPU on it and stored it),
and the mailboxes stay fetchable. A header section over 256 KiB (20 MB of
1.5 million fields; before, one such APPEND took the daemon to about 1 GB
and three to 3.4 GB) is refused at DATA and APPEND without the daemon's
peak memory growing by more than a fraction of that; a 200 KiB header is
delivered."""
import imaplib
import re
import time

from harness import LOOPBACK, logout, message


def nested(frm, to, depth, subject):
    head = f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
    open_ = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth))
    close = "".join(f"--b{i}--\r\n" for i in reversed(range(depth)))
    return (head + open_ + "Content-Type: text/plain\r\n\r\ninnermost\r\n" + close).encode()


def wide(frm, to, children, subject):
    head = (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="w"\r\n\r\n')
    return (head + "--w\r\n\r\n" * children + "--w--\r\n").encode()


def big_header(frm, to, size, subject):
    head = f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
    filler = []
    n, i = len(head), 0
    while n < size:
        line = f"X-H{i}: v\r\n"
        filler.append(line)
        n += len(line)
        i += 1
    return (head + "".join(filler) + "\r\nbody\r\n").encode()


def peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1])
    return 0


def fetch_all(d, user, box):
    """FETCH 1:* (BODYSTRUCTURE ENVELOPE BODY[]) -> (status, number of messages)."""
    c = d.imap(user, tls="implicit")
    try:
        typ, data = c.select(box, readonly=True)
        if typ != "OK":
            return typ, 0
        typ, data = c.fetch("1:*", "(BODYSTRUCTURE ENVELOPE BODY.PEEK[])")
        n = sum(1 for x in data if isinstance(x, tuple))
        return typ, n
    finally:
        logout(c)


def append(d, user, box, raw):
    c = d.imap(user, tls="implicit")
    try:
        typ, data = c.append(box, None, None, raw)
        return typ, data
    except imaplib.IMAP4.error as e:
        return "NO", [str(e).encode()]
    finally:
        logout(c)


def run(s):
    d = s.daemon().start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    d.send(alice, [bob], message(alice, bob, "before the deep one"))

    deep = nested(alice, bob, 1000, "a thousand levels")
    c = d.smtp(login=alice)
    try:
        c.mail(alice)
        c.rcpt(bob)
        code, msg = c.data(deep)
    finally:
        c.close()
    s.check("DATA of 1,000 nested multiparts gets 554 5.6.0", code == 554 and msg.startswith(b"5.6.0"),
            f"{code} {msg!r}")

    for box in ("INBOX", "Sent"):
        typ, data = append(d, alice, box, deep)
        s.check(f"APPEND of 1,000 nested multiparts to {box} gets a tagged NO",
                typ == "NO" and b"nested deeper than 100" in b" ".join(data), f"{typ} {data!r}")

    at_limit = nested(alice, bob, 100, "a hundred levels")
    refused = d.send(alice, [bob], at_limit)
    s.check("a message nested exactly 100 levels is delivered", refused == {}, refused)

    broad = wide(alice, bob, 80000, "eighty thousand parts")
    c = d.smtp(login=alice)
    try:
        c.mail(alice)
        c.rcpt(bob)
        started = time.monotonic()
        code, msg = c.data(broad)
        took = time.monotonic() - started
    finally:
        c.close()
    s.check("DATA of 80,000 MIME parts gets 554 5.6.0 naming the 10,000 limit",
            code == 554 and msg.startswith(b"5.6.0") and b"10000" in msg, f"{code} {msg!r}")
    s.check("the 80,000-part message is refused within 5 s", took < 5, f"{took:.1f} s")
    typ, data = append(d, alice, "INBOX", broad)
    s.check("APPEND of 80,000 MIME parts gets a tagged NO",
            typ == "NO" and b"more than 10000 MIME parts" in b" ".join(data), f"{typ} {data!r}")

    huge = big_header(alice, bob, 20 << 20, "a 20 MB header")
    before = peak_kib(d.proc.pid)
    c = d.smtp(login=alice)
    try:
        c.mail(alice)
        c.rcpt(bob)
        code, msg = c.data(huge)
    finally:
        c.close()
    s.check("DATA with a 20 MB header gets 554 5.6.0 naming the 256 KiB limit",
            code == 554 and msg.startswith(b"5.6.0") and b"256 KiB" in msg, f"{code} {msg!r}")
    typ, data = append(d, alice, "INBOX", huge)
    s.check("APPEND with a 20 MB header gets a tagged NO naming the 256 KiB limit",
            typ == "NO" and b"larger than 256 KiB" in b" ".join(data), f"{typ} {data!r}")
    grown = peak_kib(d.proc.pid) - before
    s.check("the daemon's peak memory grew by less than 200 MB for the two 20 MB headers",
            grown < 200 << 10, f"peak grew by {grown >> 10} MiB")
    refused = d.send(alice, [bob], big_header(alice, bob, 200 << 10, "a 200 KiB header"))
    s.check("a message with a 200 KiB header is delivered", refused == {}, refused)

    for user, box, want in ((bob, "INBOX", 3), (alice, "Sent", 3)):
        typ, n = fetch_all(d, user, box)
        s.check(f"FETCH 1:* (BODYSTRUCTURE ENVELOPE BODY[]) on {user}'s {box} answers OK with {want} messages",
                typ == "OK" and n == want, f"{typ}, {n} messages")

    log = open(d.logpath, errors="replace").read()
    s.check("no SERVERBUG or panic in the daemon's log", not re.search(r"SERVERBUG|panic", log), log[-2000:])
    d.stop()
