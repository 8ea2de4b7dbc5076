"""queue: mail for another domain leaves through the relay and the sender
always learns what became of it. An SMTP relay written here on the standard
library (it can accept, refuse with 550, or be stopped) stands in for the
organisation's smarthost. Accepted mail goes outbox -> sent in `pochta queue
list --json`; a 550 gives `failed` and an `Undeliverable:` report in the
sender's INBOX; a stopped relay gives the admin one `Mail relay is down`,
no attempt is spent, and when it is back one `Mail relay is back online`
and the mail goes out. The queue commands work as SPEC.md says, and a
restart neither loses nor re-sends anything."""
import email
import email.policy
import json
import re
import socketserver
import threading
import urllib.request

from harness import LOOPBACK, by_subject, logout, message, wait_for

SPEC_FIELDS = {"id", "status", "source", "from", "to", "cc", "bcc", "subject", "mime_type",
               "date", "attempts", "sent", "sent_on", "error", "size"}


class Relay(socketserver.ThreadingTCPServer):
    """A small upstream SMTP server on loopback. mode 'ok' accepts every
    recipient, 'perm' answers 550 to RCPT. stop() closes the port."""
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port, mode="ok"):
        self.mode, self.port = mode, port
        self.lock = threading.Lock()
        self.received = []  # (mail from, [rcpt], data bytes)
        super().__init__((LOOPBACK, port), RelayHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()

    def subjects(self):
        with self.lock:
            out = []
            for _, _, data in self.received:
                m = re.search(rb"^Subject: (.*?)\r?$", data, re.M)
                out.append(m.group(1).decode() if m else "")
            return out


def path(arg):
    """The address inside <...> of a MAIL or RCPT argument (parameters such
    as BODY=8BITMIME follow it)."""
    m = re.match(r"\s*<([^>]*)>", arg)
    return m.group(1) if m else arg.strip()


class RelayHandler(socketserver.StreamRequestHandler):
    def handle(self):
        srv, w = self.server, self.wfile
        w.write(b"220 relay.test ESMTP\r\n")
        frm, rcpts = None, []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            cmd = line.decode("latin-1").strip()
            up = cmd.upper()
            if up.startswith(("EHLO", "HELO")):
                w.write(b"250-relay.test\r\n250 8BITMIME\r\n")
            elif up.startswith("MAIL FROM:"):
                frm, rcpts = path(cmd[10:]), []
                w.write(b"250 2.1.0 ok\r\n")
            elif up.startswith("RCPT TO:"):
                if srv.mode == "perm":
                    w.write(b"550 5.1.1 no such user here\r\n")
                else:
                    rcpts.append(path(cmd[8:]))
                    w.write(b"250 2.1.5 ok\r\n")
            elif up == "DATA":
                if not rcpts:
                    w.write(b"554 5.5.1 no valid recipients\r\n")
                    continue
                w.write(b"354 go ahead\r\n")
                data = []
                while True:
                    l = self.rfile.readline()
                    if not l or l == b".\r\n":
                        break
                    data.append(l[1:] if l.startswith(b"..") else l)
                with srv.lock:
                    srv.received.append((frm, rcpts, b"".join(data)))
                w.write(b"250 2.0.0 queued as 1\r\n")
            elif up == "QUIT":
                w.write(b"221 2.0.0 bye\r\n")
                return
            elif up == "RSET":
                rcpts = []
                w.write(b"250 2.0.0 ok\r\n")
            else:
                w.write(b"250 2.0.0 ok\r\n")


def fast_queue(d):
    """Rewrites the scenario's config for millisecond retries and probes."""
    with open(d.config) as f:
        cfg = f.read()
    for key, value in (("retry_min", '"100ms"'), ("retry_max", '"200ms"'),
                       ("health_check_interval", '"100ms"'), ("max_attempts", "3")):
        cfg = re.sub(rf"^{key} = .*$", f"{key} = {value}", cfg, flags=re.M)
    with open(d.config, "w") as f:
        f.write(cfg)


def entry(d, subject):
    for e in d.queue():
        if e.get("subject") == subject:
            return e
    return None


def entry_in(d, subject, *statuses):
    e = entry(d, subject)
    return e if e and e.get("status") in statuses else None


def inbox_message(d, user, subject, timeout=10):
    def find():
        c = d.imap(user, tls="implicit")
        try:
            return by_subject(c, "INBOX", subject)
        finally:
            logout(c)
    found = wait_for(find, timeout, step=0.1)
    return found or []


def metric(d, name, labels=""):
    with urllib.request.urlopen(f"http://{LOOPBACK}:{d.ports['metrics']}/metrics", timeout=5) as r:
        text = r.read().decode()
    series = re.escape(name) + (re.escape("{" + labels + "}") if labels else "")
    m = re.search(rf"^{series} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def cli_json(d, *args):
    return json.loads(d.cli(*args).stdout)


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
    admin = d.add_user("postmaster", admin=True)

    # 1. Accepted by the relay: outbox -> sent.
    ext = "Someone@remote.test"
    refused = d.send(alice, [ext], message(alice, [ext], "queue ok", headers={"Cc": "copy@remote.test"}))
    s.check("external recipient accepted at submission", not refused, refused)
    e = wait_for(lambda: entry_in(d, "queue ok", "sent"), 15)
    s.check("the entry goes outbox -> sent", bool(e), entry(d, "queue ok"))
    if e:
        s.check("queue list --json has every SPEC field", SPEC_FIELDS <= set(e), sorted(SPEC_FIELDS - set(e)))
        s.check("to, cc, bcc are arrays of addresses", e["to"] == [ext] and e["cc"] == [] and e["bcc"] == [], e)
        s.check("sent entry: sent true, sent_on set, one attempt, no error",
                e["sent"] is True and e["sent_on"] and e["attempts"] == 1 and e["error"] == "", e)
        s.check("source user, from the sender, with size and mime type",
                e["source"] == "user" and e["from"] == alice and e["size"] > 0 and e["mime_type"] == "text/plain", e)
        s.check("date is RFC 3339", bool(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", e["date"] or "")), e["date"])
    s.check("the relay received the message", "queue ok" in relay.subjects(), relay.subjects())
    with relay.lock:
        got = [(f, r) for f, r, data in relay.received if b"Subject: queue ok" in data]
    s.check("the relay was asked for the external recipient only, from the sender",
            got == [(alice, [ext])], got)
    s.check("pochta_relay_attempts_total{result=sent} counts it",
            (metric(d, "pochta_relay_attempts_total", 'result="sent"') or 0) >= 1)

    # 2. Refused by the relay: failed, and the sender gets a report.
    relay.mode = "perm"
    bad = "nobody@remote.test"
    d.send(alice, [bad], message(alice, [bad], "queue perm"))
    e = wait_for(lambda: entry_in(d, "queue perm", "failed"), 15)
    s.check("a 550 makes the entry failed", bool(e), entry(d, "queue perm"))
    if e:
        s.check("error is the relay's reply verbatim", e["error"] == "550 5.1.1 no such user here", e["error"])
        s.check("a permanent failure is not retried", e["attempts"] == 1, e["attempts"])
    bodies = inbox_message(d, alice, "Undeliverable: queue perm")
    s.check("Undeliverable notice in the sender's INBOX", len(bodies) == 1, len(bodies))
    if bodies:
        m = email.message_from_bytes(bodies[0], policy=email.policy.default)
        s.check("the notice is multipart/report; report-type=delivery-status",
                m.get_content_type() == "multipart/report" and m.get_param("report-type") == "delivery-status",
                m.get("Content-Type"))
        s.check("it comes from postmaster@<first domain>", f"postmaster@{d.domain}" in str(m.get("From")), m.get("From"))
        parts = {p.get_content_type(): p for p in m.iter_parts()}
        status = parts.get("message/delivery-status")
        status_text = status.as_string() if status is not None else ""
        s.check("the report names the recipient, Action failed and the relay's reply",
                f"rfc822; {bad}" in status_text and "Action: failed" in status_text
                and "Diagnostic-Code: smtp; 550 5.1.1 no such user here" in status_text, status_text[-400:])
        headers = parts.get("text/rfc822-headers")
        s.check("the report carries the original header",
                headers is not None and "Subject: queue perm" in headers.get_content(), list(parts))

    # 3. The relay stops: the queue pauses without spending attempts, the
    # admin is told once; it comes back: told once, the mail goes out.
    relay.mode = "ok"
    relay.stop()
    d.send(alice, [ext], message(alice, [ext], "queue down"))
    s.check("admin gets 'Mail relay is down'", len(inbox_message(d, admin, "Mail relay is down")) == 1)
    e = entry(d, "queue down")
    s.check("while the relay is down the entry waits, no attempt spent",
            e and e["status"] == "outbox" and e["attempts"] == 0, e)
    s.check("pochta_relay_up is 0", wait_for(lambda: metric(d, "pochta_relay_up") == 0, 5), metric(d, "pochta_relay_up"))
    relay2 = Relay(d.ports["relay"])
    try:
        e = wait_for(lambda: entry_in(d, "queue down", "sent"), 15)
        s.check("when the relay is back the entry is sent", bool(e), entry(d, "queue down"))
        s.check("after one attempt", bool(e) and e["attempts"] == 1, e)
        s.check("admin gets 'Mail relay is back online'",
                len(inbox_message(d, admin, "Mail relay is back online")) == 1)
        s.check("exactly one down alert", len(inbox_message(d, admin, "Mail relay is down")) == 1)

        # 4. The commands.
        r = d.cli("queue", "list", "--status", "bogus", check=False)
        s.check("queue list --status bogus exits 2 naming the statuses",
                r.returncode == 2 and "outbox, held, sent, failed" in r.stderr, (r.returncode, r.stderr))
        r = d.cli("queue", "list", "--source", "robots", check=False)
        s.check("queue list --source robots exits 2", r.returncode == 2, (r.returncode, r.stderr))
        r = d.cli("queue", "resend", "999999", check=False)
        s.check("queue resend of an unknown id exits 1 naming it",
                r.returncode == 1 and "999999" in r.stderr, (r.returncode, r.stderr))
        r = d.cli("queue", "delete", "999999", check=False)
        s.check("queue delete of an unknown id exits 1 naming it",
                r.returncode == 1 and "999999" in r.stderr, (r.returncode, r.stderr))
        failed = [x for x in cli_json(d, "queue", "list", "--status", "failed", "--json")]
        s.check("queue list --status failed lists the failed entry only",
                [x["subject"] for x in failed] == ["queue perm"], failed)
        mine = cli_json(d, "queue", "list", "--user", alice, "--source", "user", "--json")
        s.check("queue list --user --source filters", len(mine) == 3, [x["subject"] for x in mine])
        table = d.cli("queue", "list").stdout
        s.check("the table has the seed's columns",
                all(c in table for c in ("BCC", "CC", "DATE", "ERROR", "MIME TYPE", "ATTEMPTS", "SENT ON")), table[:300])
        if failed:
            fid = str(failed[0]["id"])
            shown = cli_json(d, "queue", "show", fid, "--json")
            s.check("queue show --json includes the body", "Subject: queue perm" in shown.get("body", ""), shown.keys())
            r = d.cli("queue", "resend", fid, check=False)
            s.check("queue resend of a failed entry", r.returncode == 0, r.stderr)
            nobody_ok = wait_for(lambda: entry_in(d, "queue perm", "sent"), 15)
            s.check("the resent entry goes out (the relay accepts now)", bool(nobody_ok), entry(d, "queue perm"))
            s.check("its attempts were reset", bool(nobody_ok) and nobody_ok["attempts"] == 1, nobody_ok)
            r = d.cli("queue", "delete", fid, check=False)
            s.check("queue delete removes the entry", r.returncode == 0 and entry(d, "queue perm") is None,
                    (r.returncode, r.stderr))
        st = cli_json(d, "status", "--json")
        s.check("pochta status --json counts the queue by status",
                st.get("queue", {}).get("sent") == 2 and st["queue"].get("failed") == 0, st.get("queue"))

        # 5. A restart loses nothing and sends nothing twice.
        before = list(relay2.subjects())
        code = d.stop()
        s.check("daemon exits 0 on SIGTERM", code == 0, code)
        d.start()
        d.send(alice, [ext], message(alice, [ext], "queue after restart"))
        s.check("mail queued after a restart goes out", bool(wait_for(lambda: entry_in(d, "queue after restart", "sent"), 15)))
        after = relay2.subjects()
        s.check("nothing already sent was sent again", after == before + ["queue after restart"], (before, after))
        s.check("the entries survived the restart", {x["subject"] for x in d.queue()} >= {"queue ok", "queue down"},
                [x["subject"] for x in d.queue()])
    finally:
        relay2.stop()
