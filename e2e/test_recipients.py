"""recipients: an unknown local address is refused at RCPT with 550 (so the
sender learns at once); an address in another domain is never silently
dropped: either refused for now with 451 (before the queue existed) or
accepted into `pochta queue list`. Refused recipients do not stop delivery
to the valid ones."""
from harness import by_subject, logout, message, wait_for


def run(s):
    d = s.daemon().start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    nobody = d.addr("nobody")
    ext = "someone@remote.test"

    c = d.smtp(login=alice)
    code, msg = c.mail(alice)
    s.check("MAIL FROM own address accepted", code == 250, f"{code} {msg!r}")
    code, msg = c.rcpt(nobody)
    s.check("unknown local recipient gets 550 at RCPT", code == 550, f"{code} {msg!r}")
    s.check("the 550 says 5.1.1 (bad mailbox)", b"5.1.1" in msg, msg)
    code, msg = c.rcpt(ext)
    ext_code = code
    s.check("external recipient is not refused permanently", code < 500, f"{code} {msg!r}")
    s.check("external recipient gets 451 or is accepted for the queue", code in (250, 251, 451), f"{code} {msg!r}")
    c.rset()
    c.quit()

    # Mixed envelope: the valid recipient gets the message, the others are
    # reported per recipient.
    subject = "Mixed envelope"
    raw = message(alice, [bob, nobody, ext], subject)
    refused = d.send(alice, [bob, nobody, ext], raw)
    s.check("a mixed envelope reports nobody as 550", refused.get(nobody, (0,))[0] == 550, refused)
    ib = d.imap(bob, tls="implicit")
    s.check("bob still gets the mixed-envelope message, once", len(by_subject(ib, "INBOX", subject)) == 1)
    logout(ib)

    if ext_code == 451:
        s.check("external recipient refused with 451 in the mixed envelope too",
                refused.get(ext, (0,))[0] == 451, refused)
    else:
        s.check("external recipient accepted in the mixed envelope", ext not in refused, refused)
        entries = wait_for(lambda: [e for e in d.queue() if e.get("subject") == subject], 10)
        s.check("accepted external mail is in `pochta queue list --json`", bool(entries), d.queue())
        if entries:
            to = " ".join(entries[0].get("to") if isinstance(entries[0].get("to"), list) else [str(entries[0].get("to"))])
            s.check("the queue entry is addressed to the external recipient only",
                    ext in to and bob not in to, entries[0])
            s.check("the queue entry is not marked sent (no relay answers)",
                    entries[0].get("status") in ("outbox", "held", "failed") and not entries[0].get("sent"), entries[0])

    # Only external recipients, all 451: the client must see a failure, not 250.
    if ext_code == 451:
        c = d.smtp(login=alice)
        c.mail(alice)
        c.rcpt(ext)
        code, msg = c.docmd("DATA")
        s.check("DATA with no accepted recipient is refused (5xx)", 500 <= code < 600, f"{code} {msg!r}")
        c.close()
