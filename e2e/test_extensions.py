"""extensions: MULTIAPPEND (RFC 3502) and QUOTA (RFC 9208) as clients use
them. MULTIAPPEND is spoken over implicit TLS on a raw socket (imaplib has
none); QUOTA with imaplib's getquotaroot; a full mailbox at delivery with
smtplib (452 4.2.2 for that recipient only). COMPRESS=DEFLATE (RFC 4978):
the raw client speaks it with Python's zlib (wbits=-15) and Z_PARTIAL_FLUSH,
as mbsync's zlib does; imaplib is given a deflating socket; mbsync (which
uses COMPRESS whenever it is advertised) syncs through it; and a
decompression bomb ends its connection with a BYE without the daemon's
memory growing by what it decodes to. APPEND's UTF8 data item (RFC 6855)
stores a raw UTF-8 header once UTF8=ACCEPT is enabled."""

import imaplib
import os
import re
import shutil
import socket
import ssl
import subprocess
import zlib

from harness import LOOPBACK, PASSWORD, logout, message, ok, select
from test_mbsync import find, maildir, write_rc

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
            # zlib's Z_PARTIAL_FLUSH, as isync/mbsync flushes: the last bits
            # of the empty block stay in the compressor until the next command.
            data = self.comp.compress(data) + self.comp.flush(zlib.Z_PARTIAL_FLUSH)
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
    s.check("COMPRESS=DEFLATE is advertised after login", " COMPRESS=DEFLATE" in caps, caps)
    tagged = c.compress()
    s.check("COMPRESS DEFLATE answers OK", b" OK" in tagged, tagged)

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
    _, tagged = c.cmd("LOGOUT")
    s.check("the compressed (partial-flush) session ends with LOGOUT OK", b" OK" in tagged, tagged)

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

    append_utf8(s, d, carol)
    compress_imaplib(s, d, bob)
    compress_bomb(s, d, bob)
    compress_mbsync(s, d, alice)


# imaplib refuses commands it does not know; COMPRESS is valid once
# authenticated (RFC 4978).
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


def append_utf8(s, d, user):
    """RFC 6855 4: APPEND's UTF8 data item, through MULTIAPPEND's path in
    the daemon, stores a message whose header is raw UTF-8, byte for
    byte; before ENABLE UTF8=ACCEPT it is BAD."""
    subject = "Привет, мир".encode()
    msg = b"From: " + user.encode() + b"\r\nSubject: " + subject + b"\r\n\r\nhello\r\n"
    c = DeflateIMAP(d)
    c.cmd(f'LOGIN "{user}" "{PASSWORD}"')
    _, tagged = c.cmd(b"APPEND Drafts UTF8 (~{%d+}\r\n%s)" % (len(msg), msg))
    s.check("APPEND UTF8 before ENABLE UTF8=ACCEPT is BAD", b" BAD " in tagged, tagged)
    c.cmd("ENABLE UTF8=ACCEPT")
    _, tagged = c.cmd(b"APPEND Drafts (\\Draft) UTF8 (~{%d+}\r\n%s)" % (len(msg), msg))
    s.check("APPEND UTF8 (literal8) after ENABLE UTF8=ACCEPT answers OK [APPENDUID …]",
            b" OK [APPENDUID" in tagged, tagged)
    c.cmd("SELECT Drafts")
    lines, tagged = c.cmd("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    s.check("the stored message's Subject comes back as the UTF-8 it was sent in",
            any(subject in ln for ln in lines) or subject in c.buf, (lines, tagged))
    c.cmd("LOGOUT")


class DeflateIMAP4(imaplib.IMAP4_SSL):
    """imaplib over a socket that deflates after COMPRESS DEFLATE."""

    comp = None

    def compress(self):
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
            self.decomp = zlib.decompressobj(-15)
            self.zbuf = b""
        return typ, data

    def send(self, data):
        if self.comp:
            data = self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        super().send(data)

    def _fill(self, want):
        while not want():
            chunk = self.sock.recv(65536)
            if not chunk:
                raise imaplib.IMAP4.abort("connection closed")
            self.zbuf += self.decomp.decompress(chunk)

    def read(self, size):
        if not self.comp:
            return super().read(size)
        self._fill(lambda: len(self.zbuf) >= size)
        out, self.zbuf = self.zbuf[:size], self.zbuf[size:]
        return out

    def readline(self):
        if not self.comp:
            return super().readline()
        self._fill(lambda: b"\n" in self.zbuf)
        i = self.zbuf.index(b"\n") + 1
        out, self.zbuf = self.zbuf[:i], self.zbuf[i:]
        return out


def compress_imaplib(s, d, user):
    im = DeflateIMAP4(LOOPBACK, d.ports["imaps"], ssl_context=d.tls_context(), timeout=15)
    im.login(user, PASSWORD)
    typ, data = im.compress()
    s.check("imaplib: COMPRESS DEFLATE answers OK", typ == "OK", data)
    n = select(im, "Drafts")
    typ, data = im.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = b" ".join(x[1] for x in data if isinstance(x, tuple))
    s.check("imaplib over DEFLATE: SELECT and FETCH see the MULTIAPPEND messages",
            n == 2 and b"multi one" in subjects and b"multi two" in subjects, (n, data))
    typ, data = im.logout()
    s.check("imaplib over DEFLATE: LOGOUT gives BYE", typ == "BYE", (typ, data))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def compress_bomb(s, d, user):
    before = rss_kib(d.proc.pid)
    c = DeflateIMAP(d)
    c.cmd(f'LOGIN "{user}" "{PASSWORD}"')
    tagged = c.compress()
    s.check("bomb: COMPRESS DEFLATE answers OK", b" OK" in tagged, tagged)
    # 256 MiB of one line in about 250 KB.
    z = c.comp
    bomb = z.compress(b"b1 NOOP ")
    chunk = b"x" * (1 << 20)
    for _ in range(256):
        bomb += z.compress(chunk)
    bomb += z.flush(zlib.Z_SYNC_FLUSH)
    try:
        c.sock.sendall(bomb)
    except OSError:
        pass  # the daemon stopped reading part way
    lines = []
    try:
        while True:
            lines.append(c.line())
    except (RuntimeError, OSError):
        pass
    text = b" ".join(lines)
    s.check(f"a {len(bomb)}-byte bomb decoding to 256 MiB gets BYE Command too long and the connection closes",
            b"* BYE" in text and b"too long" in text, text[-300:])
    after = rss_kib(d.proc.pid)
    s.check("the daemon's memory grew by far less than the bomb's 256 MiB",
            after - before < 64 << 10, f"RSS {before} KiB -> {after} KiB")
    s.check("the daemon is still running after the bomb", d.running())
    im = d.imap(user, tls="implicit")
    s.check("a new IMAP session works after the bomb", select(im, "Drafts") == 2)
    logout(im)


def compress_mbsync(s, d, user):
    if not s.check("mbsync is installed", shutil.which("mbsync"), "apt-get install isync"):
        return
    # Well inside the quota (20000 bytes) with the Sent copy counted too.
    body = "".join(f"line {i} of a body that crosses several deflate blocks\r\n" for i in range(120))
    d.send(user, [user], message(user, user, "Synced compressed", body=body))
    local = os.path.join(s.tmp, "Mail-deflate")
    os.makedirs(local)
    rc = os.path.join(s.tmp, "mbsyncrc-deflate")
    write_rc(rc, d, user, local)
    # -Dn: mbsync prints its IMAP conversation, COMPRESS included.
    r = mbsync_debug(rc)
    out = r.stdout + r.stderr
    s.check("mbsync (COMPRESS advertised) exits 0", r.returncode == 0, f"exit {r.returncode}: {out[-500:]}")
    s.check("mbsync sent COMPRESS DEFLATE and got OK",
            re.search(r"COMPRESS DEFLATE", out) and not re.search(r"COMPRESS DEFLATE\S*\s*\n\S*\s*\d+ (NO|BAD)", out),
            out[:800])
    inbox = maildir(local, "INBOX")
    s.check("mbsync over DEFLATE brought the message down", len(find(inbox, b"Subject: Synced compressed")) == 1,
            list(inbox))
    r = mbsync_debug(rc)
    s.check("a second mbsync run over DEFLATE exits 0", r.returncode == 0, (r.stdout + r.stderr)[-500:])


def mbsync_debug(rc):
    return subprocess.run(["mbsync", "-Dn", "-c", rc, "-a"], capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)
