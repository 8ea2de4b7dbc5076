"""cli: the user commands give the same results whether the daemon runs (they
go through the control socket) or not (they open the database): `user list
--json` prints the same thing, `user passwd` changes the login password at
once, `user del` removes the user (login and delivery fail afterwards).
Operator mistakes get exit 1 with a message, usage errors exit 2. Run from
another directory (where the development config's ./data holds nothing) or
with `--config /dev/null`, `status`, `user passwd` and `queue list` exit 1
naming the absolute database path they looked at, and create no file."""
import imaplib
import smtplib
import json
import os
import stat
import subprocess

from harness import PASSWORD, logout, login_fails, message


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
    s.check("adding an existing user exits 1 with a message", r.returncode == 1 and r.stderr.strip(),
            f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
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
