"""End-to-end harness for pochta.

Starts the REAL built daemon (env POCHTA_BIN, default <repo>/bin/pochta) with a
config written from SPEC.md's keys, on free loopback ports and in its own temp
directory, and speaks to it only with clients nobody on the project wrote:
Python's imaplib/smtplib, swaks and mbsync. Results are printed as PASS/FAIL
lines; run.py aggregates them into the closing line "e2e: N passed, N failed".

Nothing here sleeps to synchronise: wait_for polls a condition with a deadline.
"""
import base64
import email
import email.policy
import email.utils
import imaplib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time

E2E_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(E2E_DIR)
PASSWORD = "s3cret-Pass"
DOMAIN = "example.test"
LOOPBACK = "127.0.0.1"


def binary():
    """The daemon under test: $POCHTA_BIN, else bin/pochta in the repository."""
    b = os.environ.get("POCHTA_BIN")
    if b:
        return os.path.abspath(b)
    return os.path.join(REPO, "bin", "pochta")


_handed_out = set()


def free_port():
    """A free loopback port not handed out before in this run: the kernel may
    give a just-closed port again, and two listeners of one daemon on the
    same port make its config invalid."""
    while True:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for(fn, timeout=10, step=0.05):
    """Polls fn until it returns a truthy value or the deadline passes; returns
    the last value (falsy on timeout). Exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception:  # the condition may not be checkable yet
            last = None
        if time.monotonic() >= deadline:
            return last
        time.sleep(step)


class Results:
    """Counts every check of the whole run."""

    def __init__(self):
        self.passed, self.failed = [], []

    def record(self, label, cond, detail=""):
        (self.passed if cond else self.failed).append(label)
        line = ("PASS " if cond else "FAIL ") + label
        if detail and not cond:
            line += f" ({detail})"
        print(line, flush=True)
        return cond


class Scenario:
    """One scenario: its temp dir, its daemons (stopped at close), its checks
    (labels prefixed with the scenario name)."""

    def __init__(self, name, results):
        self.name, self.results = name, results
        self.tmp = tempfile.mkdtemp(prefix=f"pochta-e2e-{name}-")
        self.daemons = []
        self.failed = 0

    def check(self, label, cond, detail=""):
        ok = self.results.record(f"{self.name}: {label}", bool(cond), str(detail) if detail != "" else "")
        if not ok:
            self.failed += 1
        return ok

    def step(self, label, fn, *args):
        """Runs fn; an exception is one FAIL for label, not the end of the scenario."""
        try:
            return fn(*args)
        except Exception as e:
            self.check(label, False, f"{type(e).__name__}: {e}")
            return None

    def works(self, label, fn, *args):
        """One check: PASS when fn runs without an exception."""
        try:
            fn(*args)
        except Exception as e:
            return self.check(label, False, f"{type(e).__name__}: {e}")
        return self.check(label, True)

    def daemon(self, **kw):
        d = Daemon(os.path.join(self.tmp, f"d{len(self.daemons)}"), **kw)
        self.daemons.append(d)
        return d

    def close(self):
        for d in self.daemons:
            if d.proc and d.proc.poll() is not None:
                self.check("daemon still running at the end of the scenario", False,
                           f"it exited with {d.proc.returncode}: {d.tail(300)}")
            d.stop()
            if self.failed:
                tail = d.tail(1200).strip()
                if tail:
                    print(f"  --- {self.name}: daemon log tail ({d.dir}) ---")
                    for line in tail.splitlines()[-15:]:
                        print("  | " + line)
        if os.environ.get("E2E_KEEP") and self.failed:
            print(f"  kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Daemon:
    """One pochta daemon with its own data dir, config and loopback ports."""

    def __init__(self, dir, insecure_auth=True, domain=DOMAIN, extra=""):
        os.makedirs(dir, exist_ok=True)
        self.dir, self.domain, self.bin = dir, domain, binary()
        self.data = os.path.join(dir, "data")
        self.hostname = f"mail.{domain}"
        self.ports = {k: free_port() for k in ("sub", "subs", "imap", "imaps", "metrics", "relay")}
        self.config = os.path.join(dir, "pochta.toml")
        self.cert = os.path.join(self.data, "tls-cert.pem")
        self.socket = os.path.join(self.data, "pochta.sock")
        self.logpath = os.path.join(dir, "daemon.log")
        ins = "true" if insecure_auth else "false"
        # Nothing listens on the relay port: mail for other domains must stay
        # queued (or be refused with 451 before the queue exists), never lost.
        with open(self.config, "w") as f:
            f.write(f'''hostname = "{self.hostname}"
domains = ["{domain}"]
data_dir = "{self.data}"

[message_server]
database = "pochta.db"
poll_interval = "5m"
message_lifetime = "7d"

[smtp]
submission = "{LOOPBACK}:{self.ports['sub']}"
submissions = "{LOOPBACK}:{self.ports['subs']}"
inbound = ""
trusted_networks = ["127.0.0.1/32"]
max_message_size = 26214400
max_recipients = 100
allow_insecure_auth = {ins}

[imap]
listen = "{LOOPBACK}:{self.ports['imap']}"
tls_listen = "{LOOPBACK}:{self.ports['imaps']}"
allow_insecure_auth = {ins}

[tls]
cert_file = ""
key_file = ""

[email_queue]
enabled = true
relay = "{LOOPBACK}:{self.ports['relay']}"
relay_tls = "none"
max_attempts = 10
retry_min = "1h"
retry_max = "4h"
health_check_interval = "1h"

[email_limit]
system_limit = 0
user_limit = 0

[alerts]
admins = ["postmaster@{domain}"]

[metrics]
listen = "{LOOPBACK}:{self.ports['metrics']}"

[control]
socket = "pochta.sock"

[log]
format = "text"
level = "info"
{extra}
''')
        self.proc = None
        self.exit_code = None

    # --- process -----------------------------------------------------------

    def start(self, timeout=15):
        if not os.path.exists(self.bin):
            raise RuntimeError(f"no daemon binary at {self.bin} (set POCHTA_BIN or go build -o bin/pochta ./cmd/pochta)")
        log = open(self.logpath, "ab")
        self.proc = subprocess.Popen([self.bin, "serve", "--config", self.config],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        ports = [self.ports[k] for k in ("sub", "subs", "imap", "imaps")]

        def ready():
            for p in ports:
                with socket.create_connection((LOOPBACK, p), 0.5):
                    pass
            return os.path.exists(self.cert)

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DaemonExited(f"daemon exited with {self.proc.returncode}: {self.tail(400)}")
            try:
                if ready():
                    return self
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"daemon did not listen on {ports} within {timeout}s: {self.tail(400)}")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stops the daemon; returns its exit code (None if it was not running)."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.exit_code = "killed after timeout"
                self.proc = None
                return self.exit_code
        self.exit_code = self.proc.returncode
        self.proc = None
        return self.exit_code

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n=600):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    # --- CLI ---------------------------------------------------------------

    def cli(self, *args, stdin=None, check=True, timeout=30):
        # stdin is never the terminal the tests run from: a command that asks
        # on a terminal (user del) must not wait for an answer here.
        r = subprocess.run([self.bin, *args, "--config", self.config], input=stdin,
                           stdin=subprocess.DEVNULL if stdin is None else None,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"pochta {' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-300:]}")
        return r

    def addr(self, local):
        return f"{local}@{self.domain}"

    def add_user(self, local, admin=False, password=PASSWORD):
        addr = self.addr(local)
        args = ["user", "add", addr, "--password-stdin"] + (["--admin"] if admin else [])
        self.cli(*args, stdin=password + "\n")
        return addr

    def users(self):
        return json.loads(self.cli("user", "list", "--json").stdout)

    def queue(self):
        r = self.cli("queue", "list", "--json")
        out = r.stdout.strip()
        return json.loads(out) if out else []

    # --- TLS ---------------------------------------------------------------

    def tls_context(self):
        """Trusts exactly the daemon's self-signed certificate. The certificate
        names the hostname, not 127.0.0.1, so the name is not checked here
        (cert_names checks it separately)."""
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return ctx

    def cert_names(self):
        """DNS names and CN in the daemon's certificate."""
        d = ssl._ssl._test_decode_cert(self.cert)
        names = [v for k, v in d.get("subjectAltName", ()) if k in ("DNS", "IP Address")]
        for rdn in d.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    names.append(v)
        return names

    # --- SMTP --------------------------------------------------------------

    def smtp(self, tls="starttls", login=None, password=PASSWORD, timeout=15):
        """An SMTP client on submission (tls='starttls' or None) or
        submissions (tls='implicit'), optionally logged in."""
        if tls == "implicit":
            s = smtplib.SMTP_SSL(LOOPBACK, self.ports["subs"], timeout=timeout, context=self.tls_context())
            s.ehlo("client.test")
        else:
            s = smtplib.SMTP(LOOPBACK, self.ports["sub"], timeout=timeout)
            s.ehlo("client.test")
            if tls == "starttls":
                s.starttls(context=self.tls_context())
                s.ehlo("client.test")
        if login:
            s.login(login, password)
        return s

    def send(self, frm, rcpts, msg, tls="starttls", login=None):
        """Submits msg as frm (logged in as login or frm); returns the
        per-recipient refusals smtplib reports."""
        s = self.smtp(tls=tls, login=login or frm)
        try:
            return s.sendmail(frm, rcpts, msg)
        finally:
            try:
                s.quit()
            except Exception:
                s.close()

    # --- IMAP --------------------------------------------------------------

    def imap(self, user=None, tls=None, password=PASSWORD, timeout=15):
        """An IMAP client on listen (tls=None or 'starttls') or tls_listen
        (tls='implicit'), logged in when user is given."""
        if tls == "implicit":
            c = imaplib.IMAP4_SSL(LOOPBACK, self.ports["imaps"], ssl_context=self.tls_context(), timeout=timeout)
        else:
            c = imaplib.IMAP4(LOOPBACK, self.ports["imap"], timeout=timeout)
            if tls == "starttls":
                c.starttls(ssl_context=self.tls_context())
        if user:
            c.login(user, password)
        return c


class DaemonExited(RuntimeError):
    pass


# --- messages --------------------------------------------------------------

def msgid():
    return f"<{time.time_ns()}.{os.getpid()}.{os.urandom(3).hex()}@client.test>"


def message(frm, to, subject, body="Hello.\r\n", headers=None, mid=None):
    """A small RFC 5322 message with CRLF line ends."""
    h = {"From": frm, "To": ", ".join(to) if isinstance(to, (list, tuple)) else to,
         "Subject": subject, "Date": email.utils.formatdate(),
         "Message-ID": mid or msgid()}
    h.update(headers or {})
    head = "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return (head + "\r\n" + body).encode()


def big_message(frm, to, subject, raw_size):
    """multipart/mixed with a random attachment of raw_size bytes (base64,
    76-column lines). Returns (message bytes, attachment bytes)."""
    payload = os.urandom(raw_size)
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    boundary = "=_e2e_" + os.urandom(8).hex()
    head = (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {email.utils.formatdate()}\r\n"
            f"Message-ID: {msgid()}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n').encode()
    body = (f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee attachment.\r\n"
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            f'Content-Disposition: attachment; filename="random.bin"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode() + b64 + f"--{boundary}--\r\n".encode()
    return head + body, payload


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


# --- IMAP helpers ----------------------------------------------------------

def ok(typ_data, what="IMAP command"):
    typ, data = typ_data
    if typ != "OK":
        raise RuntimeError(f"{what}: {typ} {data!r}")
    return data


def select(c, box, readonly=True):
    """Selects box; returns the message count or raises."""
    data = ok(c.select(f'"{box}"', readonly=readonly), f"SELECT {box}")
    return int(data[0])


def uids(c, box, criteria="ALL"):
    select(c, box)
    data = ok(c.uid("SEARCH", None, criteria), f"UID SEARCH {criteria}")
    return [int(x) for x in data[0].split()]


def fetch(c, box, what="(FLAGS BODY.PEEK[])", readonly=True):
    """UID -> {'flags': set, 'body': bytes|None} for every message in box
    (body: the first literal of the response, whatever item it belongs to)."""
    n = select(c, box, readonly=readonly)
    if n == 0:
        return {}
    return parse_fetch(ok(c.uid("FETCH", "1:*", what), f"UID FETCH {what}"))


def parse_fetch(data):
    """Groups imaplib's flat FETCH data into messages. imaplib splits one
    response at each literal: (meta, literal) tuples followed by the bytes
    after the last literal, so UID and FLAGS may stand before or after it."""
    records = []
    for item in data:
        meta, lit = (item[0], item[1]) if isinstance(item, tuple) else (item, None)
        if meta is None:
            continue
        if re.match(rb"^\d+ \(", meta) or not records:
            records.append({"meta": b"", "body": None})
        rec = records[-1]
        rec["meta"] += meta + b" "
        if lit is not None and rec["body"] is None:
            rec["body"] = lit
    out = {}
    for rec in records:
        m = re.search(rb"UID (\d+)", rec["meta"])
        if not m:
            continue
        f = re.search(rb"FLAGS \(([^)]*)\)", rec["meta"])
        out[int(m.group(1))] = {"flags": set(f.group(1).decode().split()) if f else set(),
                                "body": rec["body"], "meta": rec["meta"]}
    return out


def by_subject(c, box, subject):
    """Raw bodies (BODY.PEEK[]) of messages in box whose Subject is subject."""
    return [m["body"] for m in fetch(c, box).values()
            if m["body"] is not None and parse(m["body"]).get("Subject") == subject]


def status(c, box, items="(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"):
    data = ok(c.status(f'"{box}"', items), f"STATUS {box}")
    raw = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
    return {k: int(v) for k, v in re.findall(r"([A-Z]+) (\d+)", raw)}


def capabilities(c):
    """The capabilities as announced now (imaplib keeps only the pre-login
    list, and servers announce more after LOGIN)."""
    data = ok(c.capability(), "CAPABILITY")
    return data[0].decode().upper().split()


def logout(c):
    try:
        c.logout()
    except Exception:
        pass


def login_fails(d, user, password, tls="implicit"):
    """True when an IMAP LOGIN with these credentials is refused."""
    c = d.imap(tls=tls)
    try:
        c.login(user, password)
        return False
    except imaplib.IMAP4.error:
        return True
    finally:
        logout(c)


class Idler:
    """Raw IDLE (RFC 2177) on an imaplib connection."""

    def __init__(self, c):
        self.c, self.lines = c, []

    def start(self):
        self.tag = self.c._new_tag().decode()
        self.c.send(f"{self.tag} IDLE\r\n".encode())
        return self.expect(rb"^\+", 5)

    def expect(self, pattern, timeout):
        """Reads lines until one matches pattern or the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.c.sock.settimeout(left)
            try:
                line = self.c.readline()
            except OSError:  # socket timeout: nothing arrived in time
                return None
            if not line:
                return None
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def done(self):
        self.c.send(b"DONE\r\n")
        line = self.expect(rb"^" + self.tag.encode() + rb" ", 5)
        self.c.sock.settimeout(15)
        return line
