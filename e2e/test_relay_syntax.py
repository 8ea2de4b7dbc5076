"""relay_syntax: what reaches the relay is well-formed SMTP whatever the
client wrote. A quoted local part ("x@y"@evil.test) goes out quoted, not as
<x@y@evil.test> (an address of the domain y@evil.test); an address literal
(bob@[127.0.0.1]) is refused at RCPT with 550 5.1.2; a bare CR in the
message ("\\r.\\r") and a bare LF reach the relay as CRLF, so no line end
can be read two ways. The relay is test_queue's loopback relay."""
import re

from harness import wait_for
from test_queue import Relay, fast_queue


def raw_send(s, d, user, rcpt, data):
    """MAIL/RCPT/DATA with the message bytes sent as they are (smtplib's
    data() would fix the line endings itself). Returns the DATA reply."""
    c = d.smtp(login=user)
    try:
        code, msg = c.mail(user)
        if code != 250:
            return code, msg
        code, msg = c.rcpt(rcpt)
        if code >= 300:
            return code, msg
        code, msg = c.docmd("DATA")
        if code != 354:
            return code, msg
        c.send(data + b".\r\n")  # data ends in CRLF
        return c.getreply()
    finally:
        c.close()


def run(s):
    d = s.daemon()
    fast_queue(d)
    relay = Relay(d.ports["relay"])
    try:
        scenario(s, d, relay)
    finally:
        relay.stop()


def scenario(s, d, relay):
    d.start()
    alice = d.add_user("alice")

    c = d.smtp(login=alice)
    try:
        c.mail(alice)
        code, msg = c.rcpt("bob@[127.0.0.1]")
    finally:
        c.close()
    s.check("RCPT to an address literal gets 550 5.1.2 saying why",
            code == 550 and msg.startswith(b"5.1.2") and b"address literal" in msg, f"{code} {msg!r}")

    body = (f"From: {alice}\r\nTo: someone\r\nSubject: relay syntax\r\n\r\n"
            "before\r.\rafter\nend\r\n").encode()
    code, msg = raw_send(s, d, alice, '"x@y"@evil.test', body)
    s.check("a quoted local part and bare CR/LF are accepted", code == 250, f"{code} {msg!r}")

    def got():
        with relay.lock:
            return [r for r in relay.received if b"Subject: relay syntax" in r[2]]
    found = wait_for(got, timeout=15, step=0.1)
    s.check("the relay received the message", found, relay.subjects())
    if not found:
        return
    frm, rcpts, data = found[0]
    s.check("the relay was asked for the quoted local part", rcpts == ['"x@y"@evil.test'], rcpts)
    s.check("the relay's MAIL FROM is the sender", frm == alice, frm)
    bare = re.search(rb"\r(?!\n)|(?<!\r)\n", data)
    s.check("the relay received only CRLF line endings", bare is None, data[-200:])
    s.check("the lone '.' line travelled dot-stuffed and the whole body arrived",
            data.endswith(b"\r\n\r\nbefore\r\n.\r\nafter\r\nend\r\n"), data[-200:])
