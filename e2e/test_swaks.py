"""swaks: Debian's swaks submits with AUTH LOGIN after STARTTLS on the
submission port and with AUTH PLAIN on the implicit-TLS port; both arrive.
A wrong password makes swaks fail and delivers nothing."""
import shutil
import subprocess

from harness import LOOPBACK, PASSWORD, by_subject, logout


def swaks(d, port, tls_flag, auth, user, password, frm, to, subject):
    cmd = ["swaks", "--server", LOOPBACK, "--port", str(port), tls_flag, "--auth", auth,
           "--auth-user", user, "--auth-password", password, "--from", frm, "--to", to,
           "--helo", "client.test", "--header", f"Subject: {subject}", "--body", f"Sent by swaks: {subject}",
           "--timeout", "15"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def run(s):
    if not s.check("swaks is installed", shutil.which("swaks"), "apt-get install swaks"):
        return
    # Debian's swaks only recommends libnet-ssleay-perl, and without it
    # --tls fails; --no-install-recommends installs leave it out.
    sup = subprocess.run(["swaks", "--support"], capture_output=True, text=True, timeout=30)
    if not s.check("swaks has TLS support", "=== TLS supported" in sup.stdout + sup.stderr,
                   "apt-get install libnet-ssleay-perl"):
        return
    d = s.daemon(insecure_auth=False).start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    cases = [
        ("STARTTLS + AUTH LOGIN on submission", d.ports["sub"], "--tls", "LOGIN", "swaks login starttls"),
        ("implicit TLS + AUTH PLAIN on submissions", d.ports["subs"], "--tlsc", "PLAIN", "swaks plain tlsc"),
    ]
    for label, port, flag, auth, subject in cases:
        r = swaks(d, port, flag, auth, alice, PASSWORD, alice, bob, subject)
        out = r.stdout + r.stderr
        s.check(f"swaks {label} exits 0", r.returncode == 0, f"exit {r.returncode}: {out[-400:]}")
        s.check(f"swaks {label}: server accepted AUTH {auth} (235)", f"AUTH {auth}" in out and "<~  235" in out,
                out[-300:])
        c = d.imap(bob, tls="implicit")
        got = by_subject(c, "INBOX", subject)
        logout(c)
        s.check(f"swaks {label}: bob received it", len(got) == 1, f"{len(got)} copies")

    r = swaks(d, d.ports["sub"], "--tls", "LOGIN", alice, "wrong-" + PASSWORD, alice, bob, "swaks wrong password")
    out = r.stdout + r.stderr
    s.check("swaks with a wrong password fails", r.returncode != 0 and "535" in out, f"exit {r.returncode}: {out[-300:]}")
    c = d.imap(bob, tls="implicit")
    s.check("nothing delivered for the wrong password", not by_subject(c, "INBOX", "swaks wrong password"))
    logout(c)
