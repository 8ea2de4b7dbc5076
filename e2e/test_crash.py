"""crash: a message that got 250 (or an APPEND that got OK) survives kill -9.

Several SMTP clients submit at once (unique Message-IDs, every 250
recorded), and the daemon is killed with SIGKILL at three different
moments, one per round: (1) after a number of acknowledged messages, with
8 clients feeding the writer's group commits; (2) while the DATA of a 3 MB
message is on the wire; (3) during concurrent IMAP APPENDs. After each
restart: the database opens, every acknowledged Message-ID of every round
so far is in each recipient's INBOX and the sender's Sent exactly once with
its body byte for byte (sha256), every message in those mailboxes is one
that was sent, whole (nothing half-written), and mail for another domain
that got 250 is in the queue or already at the relay, and reaches the relay
once the daemon runs again.

kill -9 proves that nothing is acknowledged before its transaction is
written; what the kernel had not yet put on the disk survives a killed
process, so losing power is a different test (fsync before every 250 is
the store's promise: bbolt syncs every commit)."""
import hashlib
import os
import re
import signal
import smtplib
import socketserver
import threading

from harness import LOOPBACK, fetch, logout, wait_for

SENDERS = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"]
RCPTS = ["r0", "r1"]
APPENDERS = ["a0", "a1", "a2"]
EXTERNAL = "someone@elsewhere.test"
MID_RE = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.M | re.I)


class Sink(socketserver.ThreadingTCPServer):
    """The upstream relay: accepts everything, remembers the Message-IDs."""
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port):
        self.lock = threading.Lock()
        self.mids = []
        super().__init__((LOOPBACK, port), SinkHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()

    def seen(self):
        with self.lock:
            return set(self.mids)


class SinkHandler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            self.converse()
        except OSError:
            pass  # the daemon was killed in the middle of relaying

    def converse(self):
        w = self.wfile
        w.write(b"220 sink.test ESMTP\r\n")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            up = line.strip().upper()
            if up.startswith((b"EHLO", b"HELO")):
                w.write(b"250-sink.test\r\n250 8BITMIME\r\n")
            elif up == b"DATA":
                w.write(b"354 go ahead\r\n")
                data = []
                while True:
                    l = self.rfile.readline()
                    if not l or l == b".\r\n":
                        break
                    data.append(l)
                m = MID_RE.search(b"".join(data))
                with self.server.lock:
                    self.server.mids.append(m.group(1).decode() if m else None)
                w.write(b"250 2.0.0 ok\r\n")
            elif up == b"QUIT":
                w.write(b"221 bye\r\n")
                return
            else:
                w.write(b"250 ok\r\n")


class Ledger:
    """What was sent: every attempt (mid -> sha256 of body, where it should
    land) and which of them were acknowledged."""

    def __init__(self):
        self.lock = threading.Lock()
        self.attempted = {}  # mid -> {"sha", "sender", "rcpts", "external", "box"}
        self.acked = set()
        self.appended = set()
        self.errors = []

    def attempt(self, mid, rec):
        with self.lock:
            self.attempted[mid] = rec

    def ack(self, mid, appended=False):
        with self.lock:
            (self.appended if appended else self.acked).add(mid)

    def count(self, appended=False):
        with self.lock:
            return len(self.appended if appended else self.acked)


def wrap(text):
    """text as 76-column CRLF lines (SMTP refuses lines over 1000 octets)."""
    return b"".join(text[i:i + 76] + b"\r\n" for i in range(0, len(text), 76))


def make_message(frm, to, n, size=1500):
    mid = f"<crash.{n}.{os.urandom(6).hex()}@client.test>"
    body = wrap(os.urandom(size).hex().encode())
    head = (f"From: {frm}\r\nTo: {', '.join(to)}\r\nSubject: crash {n}\r\n"
            f"Message-ID: {mid}\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\n\r\n").encode()
    return mid, head + body, hashlib.sha256(body).hexdigest()


def body_of(raw):
    i = raw.find(b"\r\n\r\n")
    return raw[i + 4:] if i >= 0 else b""


counter = iter(range(1, 10 ** 9))
counter_lock = threading.Lock()


def next_n():
    with counter_lock:
        return next(counter)


def smtp_sender(d, ledger, user, external_every, stop):
    """Submits messages over one connection until stopped or cut off; a new
    connection after a refusal. Records every attempt and every 250."""
    frm = d.addr(user)
    try:
        c = d.smtp(tls=None, login=frm, timeout=10)
    except Exception:
        return
    try:
        while not stop.is_set():
            n = next_n()
            rcpts = [d.addr(r) for r in (RCPTS if n % 3 == 0 else RCPTS[:1])]
            external = bool(external_every) and n % external_every == 0
            env_rcpts = rcpts + ([EXTERNAL] if external else [])
            mid, raw, sha = make_message(frm, env_rcpts, n)
            ledger.attempt(mid, {"sha": sha, "sender": user, "rcpts": [r.split("@")[0] for r in rcpts],
                                 "external": external})
            c.sendmail(frm, env_rcpts, raw)  # raises unless every recipient got 250 and DATA got 250
            ledger.ack(mid)
    except (smtplib.SMTPException, OSError):
        pass  # the daemon was killed under us
    finally:
        try:
            c.close()
        except Exception:
            pass


def imap_appender(d, ledger, user, stop):
    """APPENDs to the user's own INBOX until stopped; records every OK."""
    try:
        c = d.imap(d.addr(user), timeout=10)
    except Exception:
        return
    try:
        while not stop.is_set():
            n = next_n()
            mid, raw, sha = make_message(d.addr(user), [d.addr(user)], n, size=800)
            ledger.attempt(mid, {"sha": sha, "sender": None, "rcpts": [user], "external": False})
            typ, _ = c.append("INBOX", None, None, raw)
            if typ != "OK":
                return
            ledger.ack(mid, appended=True)
    except Exception:
        pass
    finally:
        try:
            c.shutdown()
        except Exception:
            pass


def run_load(s, d, ledger, label, workers, kill_when, limit=25):
    """Starts the workers, kills the daemon with SIGKILL as soon as
    kill_when() holds (or after limit seconds), waits for the workers."""
    stop = threading.Event()
    threads = [threading.Thread(target=fn, args=(d, ledger, *args, stop), daemon=True) for fn, args in workers]
    for t in threads:
        t.start()
    reached = wait_for(kill_when, timeout=limit, step=0.01)
    pid = d.proc.pid
    os.kill(pid, signal.SIGKILL)
    d.proc.wait(10)
    d.proc = None
    stop.set()
    for t in threads:
        t.join(15)
    s.check(f"{label}: the kill came at the intended moment", reached, "the load never got there")
    s.check(f"{label}: every client thread ended after the kill", not any(t.is_alive() for t in threads))


def verify(s, d, ledger, sink, label):
    """Restarts the daemon and checks every mailbox against the ledger."""
    try:
        d.start()
    except Exception as e:
        s.check(f"{label}: daemon starts again after kill -9 (the database opens)", False, e)
        return False
    s.check(f"{label}: daemon starts again after kill -9 (the database opens)", True)
    with ledger.lock:
        attempted = dict(ledger.attempted)
        acked, appended = set(ledger.acked), set(ledger.appended)

    expect = {}  # (user, box) -> set of acknowledged mids
    for mid in acked:
        rec = attempted[mid]
        for r in rec["rcpts"]:
            expect.setdefault((r, "INBOX"), set()).add(mid)
        expect.setdefault((rec["sender"], "Sent"), set()).add(mid)
    for mid in appended:
        expect.setdefault((attempted[mid]["rcpts"][0], "INBOX"), set()).add(mid)
    boxes = {(u, "INBOX") for u in RCPTS + APPENDERS} | {(u, "Sent") for u in SENDERS}

    missing, dupes, broken, strangers = [], [], [], []
    for user, box in sorted(boxes):
        c = d.imap(d.addr(user), timeout=30)
        try:
            msgs = fetch(c, box)
        finally:
            logout(c)
        seen = {}
        for uid, m in msgs.items():
            raw = m["body"] or b""
            mm = MID_RE.search(raw[:raw.find(b"\r\n\r\n")] if b"\r\n\r\n" in raw else raw)
            mid = mm.group(1).decode() if mm else None
            if mid not in attempted:
                strangers.append((user, box, uid, raw[:80]))
                continue
            seen[mid] = seen.get(mid, 0) + 1
            if hashlib.sha256(body_of(raw)).hexdigest() != attempted[mid]["sha"]:
                broken.append((user, box, mid, len(raw)))
        for mid in expect.get((user, box), ()):
            if mid not in seen:
                missing.append((user, box, mid))
        dupes += [(user, box, mid, k) for mid, k in seen.items() if k > 1]
    n_acked = sum(len(v) for k, v in expect.items())
    s.check(f"{label}: all {len(acked)} acknowledged messages and {len(appended)} APPENDs are there "
            f"({n_acked} copies in INBOX and Sent)", not missing, f"{len(missing)} missing, e.g. {missing[:3]}")
    s.check(f"{label}: no message is there twice", not dupes, dupes[:3])
    s.check(f"{label}: every stored message has its whole body (sha256)", not broken, broken[:3])
    s.check(f"{label}: every stored message is one that was sent (nothing half-written)", not strangers, strangers[:3])

    ext = {mid for mid in acked if attempted[mid]["external"]}
    if ext:
        queued = {e.get("message_id") for e in d.queue()}
        lost = [m for m in ext if m not in queued and m not in sink.seen()]
        s.check(f"{label}: every acknowledged message for another domain ({len(ext)}) is queued or relayed",
                not lost, lost[:3])
        late = wait_for(lambda: not (ext - sink.seen()), timeout=15, step=0.1)
        s.check(f"{label}: ... and reaches the relay after the restart", late,
                f"{len(ext - sink.seen())} not relayed")
    return True


def run(s):
    d = s.daemon()
    # The relay listens from the start, so the queue relays during the load
    # and must finish what was in flight after each restart.
    with open(d.config) as f:
        cfg = f.read()
    for key, value in (("retry_min", '"200ms"'), ("retry_max", '"400ms"'), ("health_check_interval", '"200ms"')):
        cfg = re.sub(rf"^{key} = .*$", f"{key} = {value}", cfg, flags=re.M)
    with open(d.config, "w") as f:
        f.write(cfg)
    sink = Sink(d.ports["relay"])
    try:
        d.start()
        for u in SENDERS + RCPTS + APPENDERS:
            d.add_user(u)
        ledger = Ledger()

        # Round 1: 8 clients at once keep the writer's group commit busy;
        # the kill lands after 200 acknowledgements, mid-batch.
        base = ledger.count()
        run_load(s, d, ledger, "round 1 (after 200 acks, 8 clients)",
                 [(smtp_sender, (u, 7)) for u in SENDERS], lambda: ledger.count() - base >= 200)
        if not verify(s, d, ledger, sink, "round 1"):
            return

        # Round 2: the kill lands while a 3 MB DATA is half on the wire,
        # with small submissions going on beside it.
        big_mid = f"<crash.big.{os.urandom(6).hex()}@client.test>"
        in_data = threading.Event()
        big_errors = []

        def big_sender(d, ledger, stop):
            frm, to = d.addr("s0"), d.addr("r0")
            raw = (f"From: {frm}\r\nTo: {to}\r\nSubject: big\r\nMessage-ID: {big_mid}\r\n\r\n").encode() + \
                wrap(os.urandom(1_500_000).hex().encode())
            ledger.attempt(big_mid, {"sha": hashlib.sha256(body_of(raw)).hexdigest(), "sender": "s0",
                                     "rcpts": ["r0"], "external": False})
            # Small submissions first, so the big DATA runs beside commits.
            wait_for(lambda: stop.is_set() or ledger.count() - base >= 30, timeout=20, step=0.01)
            while not stop.is_set():  # until half the DATA is out (a refusal before that: again)
                try:
                    c = d.smtp(tls=None, login=frm, timeout=10)
                    c.mail(frm)
                    c.rcpt(to)
                    code, msg = c.docmd("DATA")
                    if code != 354:
                        big_errors.append(f"DATA answered {code} {msg!r}")
                        c.close()
                        continue
                    half = len(raw) // 2
                    c.sock.sendall(raw[:half])
                    in_data.set()
                    c.sock.sendall(raw[half:] + b".\r\n")
                    if c.getreply()[0] == 250:
                        ledger.ack(big_mid)
                    return
                except (smtplib.SMTPException, OSError) as e:
                    if in_data.is_set():
                        return  # the kill: expected
                    big_errors.append(repr(e))

        base = ledger.count()
        run_load(s, d, ledger, "round 2 (3 MB DATA in flight)",
                 [(smtp_sender, (u, 5)) for u in SENDERS[:4]] + [(big_sender, ())],
                 in_data.is_set)
        s.check("round 2: the 3 MB DATA started without errors", not big_errors, big_errors[:3])
        s.check("round 2: the 3 MB message was cut off, not acknowledged", big_mid not in ledger.acked)
        if not verify(s, d, ledger, sink, "round 2"):
            return
        c = d.imap(d.addr("r0"))
        try:
            bigs = [m for m in fetch(c, "INBOX", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])").values()
                    if big_mid.encode() in (m["body"] or b"")]
        finally:
            logout(c)
        s.check("round 2: nothing of the cut-off 3 MB message was stored", not bigs, len(bigs))

        # Round 3: IMAP APPENDs and SMTP submissions at once; the kill
        # lands after 60 APPENDs got OK.
        base_app = ledger.count(appended=True)
        run_load(s, d, ledger, "round 3 (during APPENDs)",
                 [(imap_appender, (u,)) for u in APPENDERS] + [(smtp_sender, (u, 0)) for u in SENDERS[:3]],
                 lambda: ledger.count(appended=True) - base_app >= 60)
        verify(s, d, ledger, sink, "round 3")
    finally:
        sink.stop()
