"""extensions: MULTIAPPEND (RFC 3502) and QUOTA (RFC 9208) as clients use
them. MULTIAPPEND is spoken over implicit TLS on a raw socket (imaplib has
none); QUOTA with imaplib's getquotaroot; a full mailbox at delivery with
smtplib (452 4.2.2 for that recipient only). COMPRESS=DEFLATE (RFC 4978) is
implemented but not advertised by the daemon: Go's inflater yields only at a
sync flush, and mbsync flushes with Z_PARTIAL_FLUSH (see README); the raw
client here can still speak it (Python's zlib, wbits=-15) for when it is."""

import re
import socket
import ssl
import zlib

from harness import LOOPBACK, PASSWORD, logout, message, ok, select

QUOTA = 20000


class DeflateIMAP:
    """IMAP by hand on a TLS socket, compressed after COMPRESS DEFLATE."""

    def __init__(self, d):
        raw = socket.create_connection((LOOPBACK, d.ports["imaps"]), timeout=10)
        self.sock = d.tls_context().wrap_socket(raw, server_hostname=LOOPBACK)
        self.comp = self.decomp = None
        self.buf = b""
        self.n = 0
        self.line()  # greeting

    def send(self, data):
        if self.comp:
            data = self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"connection closed; had {self.buf!r}")
            self.buf += self.decomp.decompress(chunk) if self.decomp else chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        """Sends a command (bytes or str after the tag); returns (untagged
        lines, tagged line)."""
        self.n += 1
        tag = f"x{self.n}".encode()
        body = text.encode() if isinstance(text, str) else text
        self.send(tag + b" " + body + b"\r\n")
        lines = []
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                return lines, ln
            lines.append(ln)

    def compress(self):
        lines, tagged = self.cmd("COMPRESS DEFLATE")
        if b" OK" in tagged:
            self.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
            self.decomp = zlib.decompressobj(-15)
        return tagged


def with_quota(d):
    text = open(d.config).read()
    text = text.replace('message_lifetime = "7d"\n', f'message_lifetime = "7d"\nquota = {QUOTA}\n', 1)
    open(d.config, "w").write(text)


def run(s):
    d = s.daemon()
    with_quota(d)
    d.start()
    alice, bob, carol = d.add_user("alice"), d.add_user("bob"), d.add_user("carol")

    c = DeflateIMAP(d)
    _, tagged = c.cmd(f'LOGIN "{bob}" "{PASSWORD}"')
    s.check("login on the raw TLS connection", b" OK" in tagged, tagged)
    caps, _ = c.cmd("CAPABILITY")
    caps = b" ".join(caps).decode()
    for cap in ("MULTIAPPEND", "QUOTA", "QUOTA=RES-STORAGE"):
        s.check(f"{cap} is advertised after login", f" {cap}" in caps, caps)
    s.check("COMPRESS=DEFLATE is not advertised (mbsync's partial flushes would hang)",
            "COMPRESS=" not in caps, caps)

    # MULTIAPPEND: all messages, one APPENDUID.
    m1 = message(bob, bob, "multi one")
    m2 = message(bob, bob, "multi two")
    _, tagged = c.cmd(b"APPEND Drafts (\\Seen) {%d+}\r\n%s {%d+}\r\n%s" % (len(m1), m1, len(m2), m2))
    s.check("MULTIAPPEND of two messages answers OK [APPENDUID v 1:2]",
            re.search(rb"OK \[APPENDUID \d+ 1:2\]", tagged), tagged)

    # Past the quota: a MULTIAPPEND that does not fit stores nothing.
    big = message(bob, bob, "too much", body="y" * 12000 + "\r\n")
    _, tagged = c.cmd(b"APPEND Drafts {%d+}\r\n%s {%d+}\r\n%s" % (len(big), big, len(big), big))
    s.check("a MULTIAPPEND past the quota gets NO [OVERQUOTA]", b"NO [OVERQUOTA]" in tagged, tagged)
    c.cmd("LOGOUT")

    im = d.imap(bob, tls="implicit")
    n = select(im, "Drafts")
    s.check("Drafts holds the two messages of the MULTIAPPEND and none of the refused one", n == 2, n)
    typ, data = im.getquotaroot("INBOX")
    flat = b" ".join(x for part in data for x in (part if isinstance(part, list) else [part]) if isinstance(x, bytes))
    m = re.search(rb'"" \(STORAGE (\d+) (\d+)\)', flat)
    s.check("GETQUOTAROOT INBOX gives the root \"\" with STORAGE usage and limit in KiB",
            typ == "OK" and m and int(m.group(2)) == QUOTA // 1024 and 0 < int(m.group(1)) <= QUOTA // 1024, data)
    logout(im)

    # Delivery: a full mailbox fails only its recipient.
    cl = d.imap(carol, tls="implicit")
    filler = message(carol, carol, "filler", body="z" * 19650 + "\r\n")
    ok(cl.append("INBOX", None, None, filler), "APPEND filler")
    logout(cl)
    smtp = d.smtp(login=alice)
    msg = message(alice, [bob, carol], "to both")
    refused = {}
    try:
        refused = smtp.sendmail(alice, [bob, carol], msg, mail_options=[f"SIZE={len(msg)}"])
    except Exception as e:  # every recipient refused
        refused = {"error": str(e)}
    smtp.quit()
    code = refused.get(carol, (0, b""))
    s.check("the full recipient gets 452 4.2.2 at RCPT", code[0] == 452 and b"4.2.2" in code[1], refused)
    s.check("the other recipient is not refused", bob not in refused and "error" not in refused, refused)
    im = d.imap(bob, tls="implicit")
    data = ok(im.select("INBOX", readonly=True))
    s.check("the message reached the recipient with room", int(data[0]) == 1, data)
    logout(im)
