"""lifecycle: what an operator does to a running daemon. SIGHUP re-reads the
config file and applies a new daily limit to the very next message of a
client that stays connected; a config file with an error is refused and the
daemon keeps running with what it had; SIGTERM during a client's DATA lets
that message finish and be stored before the daemon exits, while idle SMTP
clients are told 421 4.3.2 "shutting down" and idle IMAP clients get BYE."""
import base64
import re
import signal
import socket

from harness import LOOPBACK, PASSWORD, message, wait_for
from test_queue import Relay, entry, entry_in, fast_queue


def set_key(d, key, value):
    with open(d.config) as f:
        cfg = f.read()
    cfg, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", cfg, flags=re.M)
    assert n == 1, key
    with open(d.config, "w") as f:
        f.write(cfg)


def log_has(d, text):
    return text in d.tail(200000)


def run(s):
    d = s.daemon()
    fast_queue(d)
    set_key(d, "user_limit", "1")
    relay = Relay(d.ports["relay"])
    try:
        reload_scenario(s, d, relay)
        shutdown_scenario(s, d)
    finally:
        relay.stop()


def reload_scenario(s, d, relay):
    d.start()
    alice = d.add_user("alice")
    d.add_user("postmaster", admin=True)
    ext = "far@remote.test"
    c = d.smtp(login=alice)
    c.sendmail(alice, [ext], message(alice, [ext], "before reload 1"))
    c.sendmail(alice, [ext], message(alice, [ext], "before reload 2"))
    s.check("first message under the limit of 1 is sent", bool(wait_for(lambda: entry_in(d, "before reload 1", "sent"), 15)),
            entry(d, "before reload 1"))
    s.check("second message is held by user_limit = 1", bool(wait_for(lambda: entry_in(d, "before reload 2", "held"), 15)),
            entry(d, "before reload 2"))

    set_key(d, "user_limit", "10")
    d.proc.send_signal(signal.SIGHUP)
    s.check("SIGHUP: the daemon logs the reload", bool(wait_for(lambda: log_has(d, "configuration reloaded"), 10)), d.tail(400))
    # Same SMTP connection, no reconnect: the new limit applies.
    c.sendmail(alice, [ext], message(alice, [ext], "after reload"))
    c.quit()
    s.check("after the reload the raised limit lets the next message out",
            bool(wait_for(lambda: entry_in(d, "after reload", "sent"), 15)), entry(d, "after reload"))

    set_key(d, "user_limit", "-3")
    d.proc.send_signal(signal.SIGHUP)
    s.check("a config with an error is refused on reload, naming the key",
            bool(wait_for(lambda: log_has(d, "reload refused") and log_has(d, "user_limit"), 10)), d.tail(400))
    s.check("the daemon keeps running after a refused reload", d.running())
    set_key(d, "user_limit", "10")


def shutdown_scenario(s, d):
    alice, bob = d.addr("alice"), d.addr("bob")
    d.add_user("bob")
    # A raw SMTP client, so the test decides when the DATA ends.
    sock = socket.create_connection((LOOPBACK, d.ports["sub"]), 10)
    f = sock.makefile("rb")

    def cmd(line):
        sock.sendall(line.encode() + b"\r\n")
        while True:
            reply = f.readline().decode()
            if reply[3:4] != "-":
                return reply

    f.readline()  # greeting
    cmd("EHLO client.test")
    cmd("AUTH PLAIN " + base64.b64encode(f"\0{alice}\0{PASSWORD}".encode()).decode())
    cmd(f"MAIL FROM:<{alice}>")
    cmd(f"RCPT TO:<{bob}>")
    go = cmd("DATA")
    s.check("DATA accepted (354)", go.startswith("354"), go)
    sock.sendall(message(alice, [bob], "in flight at shutdown")[:60])
    idle_smtp = idle_smtp_client(d)
    idle_imap = idle_imap_client(d, alice)
    d.proc.send_signal(signal.SIGTERM)
    reply = read_until_closed(idle_smtp)
    s.check("an idle SMTP client is told 421 4.3.2 shutting down",
            reply.startswith(b"421 4.3.2 ") and b"shutting down" in reply, reply)
    reply = read_until_closed(idle_imap)
    s.check("an idle IMAP client gets BYE", reply.startswith(b"* BYE "), reply)
    # The daemon is stopping; the rest of the message still arrives.
    s.check("the daemon stops accepting new connections",
            bool(wait_for(lambda: not can_connect(d.ports["sub"]), 10)))
    rest = message(alice, [bob], "in flight at shutdown")
    sock.sendall(rest[60:] + b"\r\n.\r\n")
    reply = f.readline().decode()
    s.check("the DATA in flight gets 250 during shutdown", reply.startswith("250"), reply)
    sock.close()
    d.proc.wait(20)
    s.check("the daemon exits 0 after SIGTERM", d.proc.returncode == 0, d.proc.returncode)
    d.start()
    c = d.imap(bob)
    c.select("INBOX", readonly=True)
    typ, data = c.search(None, 'SUBJECT "in flight at shutdown"')
    s.check("the message finished during shutdown is in the INBOX after restart",
            typ == "OK" and len(data[0].split()) == 1, data)
    c.logout()
    append_at_shutdown(s, d, bob)


def append_at_shutdown(s, d, bob):
    """An IMAP APPEND whose literal is still arriving when SIGTERM comes is
    stored and answered OK, then the client gets BYE."""
    sock = socket.create_connection((LOOPBACK, d.ports["imap"]), 10)
    f = sock.makefile("rb")
    f.readline()  # greeting
    sock.sendall(f'a LOGIN "{bob}" "{PASSWORD}"\r\n'.encode())
    while not f.readline().startswith(b"a "):
        pass
    body = message(bob, [bob], "appended at shutdown")
    sock.sendall(b"b APPEND Drafts {%d}\r\n" % len(body))
    go = f.readline()
    s.check("APPEND gets its continuation", go.startswith(b"+"), go)
    sock.sendall(body[:40])
    d.proc.send_signal(signal.SIGTERM)
    s.check("the IMAP port stops accepting", bool(wait_for(lambda: not can_connect(d.ports["imap"]), 10)))
    sock.sendall(body[40:] + b"\r\n")
    tagged = b""
    while True:
        line = f.readline()
        if not line or line.startswith(b"b "):
            tagged = line
            break
    s.check("the APPEND in flight is answered OK during shutdown", tagged.startswith(b"b OK"), tagged)
    sock.close()
    d.proc.wait(40)
    d.start()
    c = d.imap(bob)
    c.select("Drafts", readonly=True)
    typ, data = c.search(None, 'SUBJECT "appended at shutdown"')
    s.check("the message appended during shutdown is in Drafts after restart",
            typ == "OK" and len(data[0].split()) == 1, data)
    c.logout()


def idle_smtp_client(d):
    """A submission client after EHLO, waiting; returns its socket."""
    sock = socket.create_connection((LOOPBACK, d.ports["sub"]), 10)
    f = sock.makefile("rb")
    f.readline()  # greeting
    sock.sendall(b"EHLO idle.test\r\n")
    while f.readline()[3:4] == b"-":
        pass
    return sock


def idle_imap_client(d, user):
    """A logged-in IMAP client with INBOX selected, waiting; returns its socket."""
    sock = socket.create_connection((LOOPBACK, d.ports["imap"]), 10)
    f = sock.makefile("rb")
    f.readline()  # greeting
    for tag, line in ((b"a", f'a LOGIN "{user}" "{PASSWORD}"'), (b"b", "b SELECT INBOX")):
        sock.sendall(line.encode() + b"\r\n")
        while not f.readline().startswith(tag + b" "):
            pass
    return sock


def read_until_closed(sock):
    """Everything the server sends until it closes the connection (10 s at most)."""
    sock.settimeout(10)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    sock.close()
    return data


def can_connect(port):
    try:
        with socket.create_connection((LOOPBACK, port), 0.5):
            return True
    except OSError:
        return False
