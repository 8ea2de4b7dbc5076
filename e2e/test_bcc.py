"""bcc: alice sends To bob, Bcc carol. Neither delivered copy reveals the Bcc
header; alice's Sent copy keeps it (so she can see whom she blind-copied)."""
from harness import by_subject, logout, message, parse


def run(s):
    d = s.daemon().start()
    alice, bob, carol = d.add_user("alice"), d.add_user("bob"), d.add_user("carol")
    subject = "Surprise party"
    raw = message(alice, bob, subject, headers={"Bcc": carol}, body="Don't tell carol.\r\n")
    s.check("submitted message carries Bcc: carol", b"\r\nBcc: " + carol.encode() + b"\r\n" in raw)
    refused = d.send(alice, [bob, carol], raw)
    s.check("both envelope recipients accepted", refused == {}, refused)

    for user in (bob, carol):
        c = d.imap(user, tls="implicit")
        got = by_subject(c, "INBOX", subject)
        logout(c)
        name = user.split("@")[0]
        s.check(f"{name} received it", len(got) == 1, f"{len(got)} copies")
        if got:
            head = got[0].split(b"\r\n\r\n", 1)[0]
            s.check(f"{name}'s copy has no Bcc header", parse(got[0]).get_all("Bcc") is None
                    and b"\nbcc:" not in head.lower(), head.decode(errors="replace")[-300:])
            if name == "bob":
                # A Received "for <carol@...>" in bob's copy would leak the Bcc as well.
                s.check("bob's copy names carol nowhere in its header", carol.encode() not in head,
                        head.decode(errors="replace")[-300:])

    c = d.imap(alice, tls="implicit")
    sent = by_subject(c, "Sent", subject)
    logout(c)
    s.check("alice's Sent has the copy", len(sent) == 1, f"{len(sent)} copies")
    if sent:
        s.check("alice's Sent copy keeps Bcc: carol", parse(sent[0]).get("Bcc", "").strip() == carol,
                parse(sent[0]).get("Bcc"))
