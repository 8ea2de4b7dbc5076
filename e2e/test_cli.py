"""cli: the user commands give the same results whether the daemon runs (they
go through the control socket) or not (they open the database): `user list
--json` prints the same thing, `user passwd` changes the login password at
once, `user del` removes the user (login and delivery fail afterwards).
Operator mistakes get exit 1 with a message, usage errors exit 2. Run from
another directory (where the development config's ./data holds nothing) or
with `--config /dev/null`, `status`, `user passwd` and `queue list` exit 1
naming the absolute database path they looked at, and create no file.
A new user's first steps: `pochta user` (no subcommand) lists the user
commands, `queue list` says the queue is empty, a weak password is refused
in one sentence, `user del` asks on a terminal and ends the user's IMAP
sessions with BYE, and the development certificate verifies as
127.0.0.1, localhost and ::1 for a client that trusts tls-cert.pem."""
import imaplib
import smtplib
import json
import os
import pty
import socket
import ssl
import stat
import subprocess

from harness import LOOPBACK, PASSWORD, logout, login_fails, message


def listing(d):
    r = d.cli("user", "list", "--json")
    return r.stdout, json.loads(r.stdout)


def addresses(users):
    return sorted(u.get("address") for u in users)


def smtp_refuses(d, user, password):
    try:
        d.smtp(login=user, password=password).quit()
        return False
    except smtplib.SMTPAuthenticationError:
        return True


def can_login(d, user, password):
    try:
        c = d.imap(user, tls="implicit", password=password)
        logout(c)
        return True
    except imaplib.IMAP4.error:
        return False


def run(s):
    d = s.daemon()
    # Daemon stopped: the CLI opens the database itself.
    alice = d.add_user("alice", admin=True)
    bob, carol = d.add_user("bob"), d.add_user("carol")
    out_stopped, users = listing(d)
    s.check("user list --json (no daemon) is a JSON array", isinstance(users, list), out_stopped[:200])
    s.check("entries carry address and admin", users and all({"address", "admin"} <= set(u) for u in users), users)
    s.check("it lists the three users", addresses(users) == sorted([alice, bob, carol]), addresses(users))
    s.check("admin flag is shown", {u["address"]: u["admin"] for u in users} == {alice: True, bob: False, carol: False},
            users)

    d.start()
    sock = d.socket
    s.check("control socket exists while the daemon runs", os.path.exists(sock), sock)
    if os.path.exists(sock):
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        s.check("control socket is mode 0600", mode == 0o600, oct(mode))
    out_running, _ = listing(d)
    s.check("user list --json is the same while the daemon runs", out_running == out_stopped,
            f"stopped {out_stopped!r} running {out_running!r}")
    s.check("a user added while stopped can log in", can_login(d, bob, PASSWORD))

    # Changes through the running daemon.
    dave = d.add_user("dave")
    s.check("user add while running shows up in the list", dave in addresses(listing(d)[1]))
    s.check("a user added while running can log in at once", can_login(d, dave, PASSWORD))
    # Logged in once on each protocol, bob's and carol's logins are cached
    # in the daemon: passwd and del must drop them.
    s.check("bob logs in over IMAP before passwd (cached from now)", can_login(d, bob, PASSWORD))
    s.works("bob logs in over SMTP before passwd", lambda: d.smtp(login=bob).quit())
    s.check("carol logs in before del (cached from now)", can_login(d, carol, PASSWORD))
    d.cli("user", "passwd", bob, "--password-stdin", stdin="n3w-Pass\n")
    s.check("user passwd (running): new password works", can_login(d, bob, "n3w-Pass"))
    s.check("user passwd (running): old password refused", login_fails(d, bob, PASSWORD))
    s.works("user passwd (running): SMTP AUTH takes the new password",
            lambda: d.smtp(login=bob, password="n3w-Pass").quit())
    s.check("user passwd (running): SMTP AUTH refuses the old password, cached before",
            smtp_refuses(d, bob, PASSWORD))
    d.cli("user", "del", carol)
    s.check("user del (running): carol can no longer log in", login_fails(d, carol, PASSWORD))
    s.check("user del (running): carol is not listed", carol not in addresses(listing(d)[1]))
    c = d.smtp(login=alice)
    c.mail(alice)
    code, _ = c.rcpt(carol)
    c.close()
    s.check("user del (running): mail to carol is refused with 550", code == 550, code)
    out_running, _ = listing(d)

    code = d.stop()
    s.check("daemon exits 0 on SIGTERM", code == 0, code)
    s.check("control socket removed on shutdown", not os.path.exists(sock))
    out_stopped, _ = listing(d)
    s.check("user list --json after the daemon stopped equals the running one", out_stopped == out_running,
            f"running {out_running!r} stopped {out_stopped!r}")

    # Changes with the daemon stopped, seen after it starts.
    d.cli("user", "passwd", bob, "--password-stdin", stdin="th1rd-Pass\n")
    d.cli("user", "del", dave)
    d.start()
    s.check("user passwd (stopped): new password works after start", can_login(d, bob, "th1rd-Pass"))
    s.check("user passwd (stopped): previous password refused", login_fails(d, bob, "n3w-Pass"))
    s.check("user del (stopped): dave cannot log in after start", login_fails(d, dave, PASSWORD))
    s.works("delivery still works after all that", d.send, alice, [bob], message(alice, bob, "still works"))

    # Mistakes.
    r = d.cli("user", "add", bob, "--password-stdin", stdin="x-Pass-123\n", check=False)
    s.check("adding an existing user exits 1 with one sentence", r.returncode == 1 and
            r.stderr == f"pochta: user {bob} already exists\n", f"exit {r.returncode}: {r.stderr!r}")
    r = d.cli("user", "del", d.addr("nosuch"), check=False)
    s.check("deleting an unknown user exits 1 with a message", r.returncode == 1 and r.stderr.strip(),
            f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
    r = d.cli("user", "add", "not-an-address", "--password-stdin", stdin="x-Pass-123\n", check=False)
    s.check("adding a malformed address fails with a message", r.returncode in (1, 2) and r.stderr.strip(),
            f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
    r = d.cli("user", "add", "eve@other-domain.test", "--password-stdin", stdin="x-Pass-123\n", check=False)
    s.check("adding an address outside the local domains fails", r.returncode in (1, 2),
            f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
    r = d.cli("user", "list", "--no-such-flag", check=False)
    s.check("an unknown flag exits 2", r.returncode == 2, r.returncode)
    r = d.cli("user", "list", "--help", check=False)
    s.check("--help prints usage", "user list" in (r.stdout + r.stderr), (r.stdout + r.stderr)[:200])

    # From another directory, with the daemon running elsewhere: no new
    # empty database answering "users: 0", but a pointer to the right one.
    elsewhere = os.path.join(s.tmp, "elsewhere")
    os.makedirs(elsewhere)
    env = {k: v for k, v in os.environ.items() if k != "POCHTA_CONFIG"}
    looked = os.path.join(elsewhere, "data", "pochta.db")
    system_db = "/var/lib/pochta/pochta.db"
    system_db_existed = os.path.exists(system_db)
    for args, stdin in ((["status"], None), (["user", "passwd", bob, "--password-stdin"], "x-Pass-12345\n"),
                        (["queue", "list"], None)):
        r = subprocess.run([d.bin, *args], cwd=elsewhere, env=env, input=stdin, capture_output=True, text=True,
                           timeout=30)
        s.check(f"pochta {' '.join(args[:2])} from another directory exits 1 naming the path it looked at and --config",
                r.returncode == 1 and looked in r.stderr and "--config" in r.stderr,
                f"exit {r.returncode}: {r.stderr.strip()[-300:]}")
        r = subprocess.run([d.bin, *args, "--config", "/dev/null"], cwd=elsewhere, env=env, input=stdin,
                           capture_output=True, text=True, timeout=30)
        if not system_db_existed:
            s.check(f"pochta {' '.join(args[:2])} --config /dev/null exits 1 naming /var/lib/pochta/pochta.db",
                    r.returncode == 1 and system_db in r.stderr, f"exit {r.returncode}: {r.stderr.strip()[-300:]}")
    s.check("nothing was created in the other directory", os.listdir(elsewhere) == [], os.listdir(elsewhere))
    if not system_db_existed:
        s.check("--config /dev/null created no /var/lib/pochta/pochta.db", not os.path.exists(system_db))

    first_steps(s, d)


def first_steps(s, d):
    """What a new user meets first (issue 10, items 3, 6, 7, 8)."""
    for group, sub in (("user", "user add"), ("queue", "queue list"), ("sent", "sent status"), ("config", "config check")):
        r = d.cli(group, check=False)
        s.check(f"`pochta {group}` exits 2 listing its subcommands", r.returncode == 2 and sub in r.stderr
                and "unknown command" not in r.stderr, f"exit {r.returncode}: {r.stderr[:300]!r}")
    r = d.cli("queue", "list")
    s.check("queue list on an empty queue says so", r.stdout == "the queue is empty\n", repr(r.stdout))
    r = d.cli("queue", "list", "--json")
    s.check("queue list --json on an empty queue is []", json.loads(r.stdout) == [], repr(r.stdout))

    r = d.cli("user", "add", d.addr("weak"), "--password-stdin", stdin="a\n", check=False)
    s.check("a one-letter password is refused saying why", r.returncode == 1 and "at least 8 characters" in r.stderr,
            f"exit {r.returncode}: {r.stderr!r}")
    r = d.cli("user", "add", d.addr("weakling"), "--password-stdin", stdin="WEAKLING\n", check=False)
    s.check("the local part as password is refused", r.returncode == 1 and "must not be the address" in r.stderr,
            f"exit {r.returncode}: {r.stderr!r}")
    r = d.cli("user", "add", "carol", "--password-stdin", stdin="carol-password\n", check=False)
    s.check("an address without a domain: it needs a domain", r.returncode == 1 and "needs a domain" in r.stderr,
            f"exit {r.returncode}: {r.stderr!r}")

    # user del on a terminal asks first.
    frank = d.add_user("frank")
    for answer, code, gone in (("n\n", 1, False), ("y\n", 0, True)):
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([d.bin, "user", "del", frank, "--config", d.config], stdin=slave,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            os.write(master, answer.encode())
            out, err = p.communicate(timeout=30)
        finally:
            os.close(master)
            os.close(slave)
        s.check(f"user del on a terminal asks, answer {answer.strip()!r}",
                p.returncode == code and f"Delete {frank} and all their mail? [y/N]" in err
                and (frank not in addresses(d.users())) == gone, f"exit {p.returncode}: {err!r} {out!r}")

    # Deleting a user ends their IMAP sessions at once.
    gina = d.add_user("gina")
    conns = []
    for idle in (False, True):
        c = socket.create_connection((LOOPBACK, d.ports["imap"]), 10)
        c.settimeout(10)
        f = c.makefile("rb")
        f.readline()
        c.sendall(f'a1 LOGIN "{gina}" "{PASSWORD}"\r\na2 SELECT INBOX\r\n'.encode())
        while not f.readline().startswith(b"a2 "):
            pass
        if idle:
            c.sendall(b"a3 IDLE\r\n")
            f.readline()  # "+ idling"
        conns.append((c, f, "idling" if idle else "selected"))
    d.cli("user", "del", gina)
    for c, f, what in conns:
        lines = []
        try:
            while True:
                line = f.readline()
                if not line:
                    break
                lines.append(line)
            closed = True
        except OSError as e:
            closed = e
        c.close()
        s.check(f"user del: the {what} session got BYE and was closed",
                closed is True and any(x.startswith(b"* BYE") for x in lines), (closed, lines))

    # The development certificate, trusted as a CA file the way fetchmail,
    # mbsync or swaks are told to, verifies under every loopback name.
    for name in ("127.0.0.1", "localhost", d.hostname):
        ctx = ssl.create_default_context(cafile=d.cert)
        try:
            with socket.create_connection((LOOPBACK, d.ports["imaps"]), 10) as raw:
                with ctx.wrap_socket(raw, server_hostname=name) as t:
                    ok, detail = t.recv(100).startswith(b"* OK"), ""
        except (ssl.SSLError, OSError) as e:
            ok, detail = False, repr(e)
        s.check(f"tls-cert.pem as the CA verifies the server as {name}", ok, detail)
    sans = d.cert_names()
    s.check("the certificate names ::1 too", "0:0:0:0:0:0:0:1" in sans or "::1" in sans, sans)
