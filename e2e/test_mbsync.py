"""mbsync: isync's two-way sync of INBOX, Sent and Drafts with a local Maildir
over implicit TLS (trusting only the daemon's certificate). Server mail comes
down without being marked read; a draft written locally goes up; a local
"seen" goes up as \\Seen; a local delete goes up as an expunge; a run with no
changes changes nothing, also after a daemon restart (UIDVALIDITY stable).
Appending and learning the new UIDs exercises UIDPLUS."""
import os
import re
import shutil
import socket
import subprocess
import time

from harness import PASSWORD, capabilities, by_subject, fetch, logout, message, status


def mbsync_version():
    r = subprocess.run(["mbsync", "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"(\d+)\.(\d+)", r.stdout + r.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (1, 4)


def write_rc(path, d, user, local):
    ver = mbsync_version()
    # isync 1.5 renamed SSLType to TLSType; 1.4 renamed Master/Slave to Far/Near.
    tls_key = "TLSType" if ver >= (1, 5) else "SSLType"
    far, near = ("Far", "Near") if ver >= (1, 4) else ("Master", "Slave")
    with open(path, "w") as f:
        f.write(f'''IMAPAccount e2e
Host 127.0.0.1
Port {d.ports["imaps"]}
User {user}
Pass "{PASSWORD}"
{tls_key} IMAPS
CertificateFile {d.cert}
SystemCertificates no
Timeout 20

IMAPStore e2e-remote
Account e2e

MaildirStore e2e-local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel e2e
{far} :e2e-remote:
{near} :e2e-local:
Patterns INBOX Sent Drafts
Create Both
Expunge Both
SyncState *
''')


def mbsync(rc):
    return subprocess.run(["mbsync", "-c", rc, "-a"], capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)


def maildir(local, box):
    """name -> bytes for every message file in local/box (new/ and cur/)."""
    out = {}
    for sub in ("new", "cur"):
        p = os.path.join(local, box, sub)
        for n in sorted(os.listdir(p)) if os.path.isdir(p) else []:
            with open(os.path.join(p, n), "rb") as f:
                out[f"{sub}/{n}"] = f.read()
    return out


def snapshot_local(local):
    return {box: maildir(local, box) for box in ("INBOX", "Sent", "Drafts")}


def snapshot_server(d, user):
    c = d.imap(user, tls="implicit")
    try:
        return {box: (status(c, box, "(UIDVALIDITY UIDNEXT MESSAGES)"),
                      {u: sorted(m["flags"] - {"\\Recent"}) for u, m in fetch(c, box, "(FLAGS)").items()})
                for box in ("INBOX", "Sent", "Drafts")}
    finally:
        logout(c)


def find(files, needle):
    return [n for n, b in files.items() if needle in b]


def run(s):
    if not s.check("mbsync is installed", shutil.which("mbsync"), "apt-get install isync"):
        return
    d = s.daemon(insecure_auth=False).start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    d.send(alice, [bob], message(alice, bob, "For mbsync"))
    d.send(bob, [alice], message(bob, alice, "bob wrote this"))
    c = d.imap(bob, tls="implicit")
    caps = capabilities(c)
    logout(c)
    for cap in ("UIDPLUS", "MOVE", "SPECIAL-USE", "NAMESPACE"):
        s.check(f"IMAP advertises {cap} after login (IMAP4rev1 clients rely on it)", cap in caps, caps)

    local = os.path.join(s.tmp, "Mail")
    os.makedirs(local)
    rc = os.path.join(s.tmp, "mbsyncrc")
    write_rc(rc, d, bob, local)

    r = mbsync(rc)
    s.check("first mbsync run exits 0", r.returncode == 0, f"exit {r.returncode}: {(r.stdout + r.stderr)[-500:]}")
    inbox = maildir(local, "INBOX")
    s.check("the INBOX message is in the local Maildir", len(find(inbox, b"Subject: For mbsync")) == 1,
            list(inbox))
    s.check("bob's Sent copy is in the local Sent Maildir",
            len(find(maildir(local, "Sent"), b"Subject: bob wrote this")) == 1, list(maildir(local, "Sent")))
    s.check("local Drafts folder was created", os.path.isdir(os.path.join(local, "Drafts", "cur")))
    c = d.imap(bob, tls="implicit")
    flags = [m["flags"] for m in fetch(c, "INBOX", "(FLAGS)").values()]
    logout(c)
    s.check("downloading did not mark the server message read", flags and "\\Seen" not in flags[0], flags)

    # A draft written locally, the way a Maildir MUA writes it.
    drafts_cur = os.path.join(local, "Drafts", "cur")
    os.makedirs(drafts_cur, exist_ok=True)
    for sub in ("new", "tmp"):
        os.makedirs(os.path.join(local, "Drafts", sub), exist_ok=True)
    draft_name = f"{int(time.time())}.P{os.getpid()}Q1.{socket.gethostname()}:2,D"
    draft = message(bob, alice, "Draft from the Maildir", body="Not finished yet.\r\n").replace(b"\r\n", b"\n")
    with open(os.path.join(drafts_cur, draft_name), "wb") as f:
        f.write(draft)

    # Mark the INBOX message seen locally: move to cur/ with the S flag.
    names = find(inbox, b"Subject: For mbsync")
    if names:
        sub, name = names[0].split("/", 1)
        base = name.split(":2,")[0]
        old_flags = name.split(":2,")[1] if ":2," in name else ""
        os.rename(os.path.join(local, "INBOX", sub, name),
                  os.path.join(local, "INBOX", "cur", base + ":2," + "".join(sorted(set(old_flags + "S")))))

    r = mbsync(rc)
    s.check("second mbsync run exits 0", r.returncode == 0, f"exit {r.returncode}: {(r.stdout + r.stderr)[-500:]}")
    c = d.imap(bob, tls="implicit")
    drafts = fetch(c, "Drafts")
    up = [m for m in drafts.values() if m["body"] and b"Subject: Draft from the Maildir" in m["body"]]
    s.check("the local draft is on the server in Drafts", len(up) == 1, f"{len(up)} copies")
    if up:
        s.check("the uploaded draft carries \\Draft", "\\Draft" in up[0]["flags"], up[0]["flags"])
        s.check("the uploaded draft's body is intact", up[0]["body"].rstrip().endswith(b"Not finished yet."))
    flags = [m["flags"] for m in fetch(c, "INBOX", "(FLAGS)").values()]
    s.check("the local 'seen' reached the server as \\Seen", flags and "\\Seen" in flags[0], flags)
    logout(c)
    local_drafts = maildir(local, "Drafts")
    s.check("mbsync learned the draft's server UID (renamed with ,U=)",
            any(",U=" in n for n in local_drafts), list(local_drafts))

    # Runs with nothing to do must change nothing, before and after a restart.
    for label in ("with no changes", "after a daemon restart"):
        if label == "after a daemon restart":
            d.stop()
            d.start()
        before_local, before_server = snapshot_local(local), snapshot_server(d, bob)
        r = mbsync(rc)
        out = (r.stdout + r.stderr)[-500:]
        s.check(f"mbsync run {label} exits 0", r.returncode == 0, f"exit {r.returncode}: {out}")
        s.check(f"mbsync run {label} does not complain about UIDVALIDITY", "UIDVALIDITY" not in out, out)
        after_local, after_server = snapshot_local(local), snapshot_server(d, bob)
        s.check(f"mbsync run {label} changes nothing locally", after_local == before_local,
                {b: sorted(set(after_local[b]) ^ set(before_local[b])) for b in after_local})
        s.check(f"mbsync run {label} changes nothing on the server", after_server == before_server,
                f"{before_server} -> {after_server}")

    # A local delete goes up as an expunge (Expunge Both).
    for n in find(maildir(local, "Drafts"), b"Subject: Draft from the Maildir"):
        os.remove(os.path.join(local, "Drafts", n))
    r = mbsync(rc)
    s.check("mbsync run after a local delete exits 0", r.returncode == 0, f"exit {r.returncode}: {(r.stdout + r.stderr)[-500:]}")
    c = d.imap(bob, tls="implicit")
    s.check("the draft deleted locally is gone from the server",
            not by_subject(c, "Drafts", "Draft from the Maildir"), fetch(c, "Drafts", "(FLAGS)"))
    logout(c)
