"""spoofing: with allow_insecure_auth = false (the production setting) a
logged-in user cannot send as someone else, nobody sends without AUTH, and
passwords never cross the wire in clear text (SMTP and IMAP), while the same
logins work after STARTTLS."""
import base64
import imaplib
import smtplib

from harness import PASSWORD, LOOPBACK, fetch, logout, message


def count_all(d, user):
    c = d.imap(user, tls="implicit")
    try:
        return sum(len(fetch(c, box, "(FLAGS)")) for box in ("INBOX", "Sent"))
    finally:
        logout(c)


def run(s):
    d = s.daemon(insecure_auth=False).start()
    alice, bob, carol = d.add_user("alice"), d.add_user("bob"), d.add_user("carol")

    # A logged-in alice claiming to be bob.
    c = d.smtp(tls="starttls", login=alice)
    code, msg = c.mail(bob)
    s.check("MAIL FROM another user is refused with 5xx", 500 <= code < 600, f"{code} {msg!r}")
    rcode, _ = c.rcpt(carol)
    dcode = None
    if rcode < 400:  # the server let the transaction go on: push the message through
        dcode, _ = c.data(message(bob, carol, "spoofed"))
    s.check("no transaction follows the refused MAIL FROM", rcode >= 500 and (dcode is None or dcode >= 400),
            f"RCPT {rcode}, DATA {dcode}")
    c.close()
    s.check("nothing was delivered or stored for the spoof", count_all(d, carol) == 0 and count_all(d, bob) == 0)

    # The envelope is alice's, the From header bob's.
    c = d.smtp(tls="starttls", login=alice)
    c.mail(alice)
    c.rcpt(carol)
    code, msg = c.data(message(f"Bob <{bob}>", carol, "header spoof"))
    c.close()
    s.check("a From header naming bob gets 550 5.7.1 saying whose address it must be",
            code == 550 and msg.startswith(b"5.7.1") and f"From header must be your own address {alice}".encode() in msg,
            f"{code} {msg!r}")
    s.check("carol got nothing from the header spoof", count_all(d, carol) == 0 and count_all(d, alice) == 0)

    # Alice's own address behind a name or a Sender that says bob: clients
    # show the name, or "bob on behalf of alice".
    for label, head in (("a display name that is bob's address", f'From: "{bob}" <{alice}>\r\n'),
                        ("an encoded-word name that is bob's address",
                         f'From: =?utf-8?q?{bob.replace("@", "=40")}?= <{alice}>\r\n'),
                        ("a Sender header naming bob", f"From: {alice}\r\nSender: {bob}\r\n")):
        c = d.smtp(tls="starttls", login=alice)
        c.mail(alice)
        c.rcpt(carol)
        code, msg = c.data((head + f"To: {carol}\r\nSubject: name spoof\r\n\r\nhi\r\n").encode())
        c.close()
        s.check(f"{label} gets 550 5.7.1 saying whose address it must be",
                code == 550 and msg.startswith(b"5.7.1") and f"must be your own address {alice}".encode() in msg,
                f"{code} {msg!r}")
    s.check("carol got nothing from the name and Sender spoofs", count_all(d, carol) == 0 and count_all(d, alice) == 0)

    # No AUTH at all, over TLS.
    c = d.smtp(tls="starttls")
    code, msg = c.mail(alice)
    s.check("MAIL without AUTH gets 530", code == 530, f"{code} {msg!r}")
    c.close()
    c = d.smtp(tls="implicit")
    code, msg = c.mail(alice)
    s.check("MAIL without AUTH on submissions gets 530", code == 530, f"{code} {msg!r}")
    c.close()

    # Wrong password.
    c = d.smtp(tls="starttls")
    try:
        c.login(alice, "wrong-" + PASSWORD)
        s.check("a wrong password gets 535", False, "login accepted")
    except smtplib.SMTPAuthenticationError as e:
        s.check("a wrong password gets 535", e.smtp_code == 535, e.smtp_code)
    c.close()

    # AUTH in clear text on the submission port.
    c = d.smtp(tls=None)
    plain = base64.b64encode(f"\0{alice}\0{PASSWORD}".encode()).decode()
    code, msg = c.docmd("AUTH", "PLAIN " + plain)
    s.check("AUTH PLAIN without TLS is refused", code >= 500, f"{code} {msg!r}")
    code, msg = c.docmd("AUTH", "LOGIN")
    s.check("AUTH LOGIN without TLS is refused", code >= 500, f"{code} {msg!r}")
    if code == 334:  # finish the exchange so the connection stays usable
        c.docmd(base64.b64encode(alice.encode()).decode())
        c.docmd(base64.b64encode(PASSWORD.encode()).decode())
    code, _ = c.mail(alice)
    s.check("and MAIL is still refused on that connection", code >= 500, code)
    c.rset()
    try:
        c.starttls(context=d.tls_context())
        c.ehlo("client.test")
        c.login(alice, PASSWORD)
        refused = c.sendmail(alice, [bob], message(alice, bob, "after starttls"))
        ok, code = refused == {}, refused
    except smtplib.SMTPException as e:
        ok, code = False, repr(e)
    s.check("the same connection can log in and send after STARTTLS", ok, code)
    c.close()

    # IMAP: LOGIN on the plain port must be refused until STARTTLS.
    i = imaplib.IMAP4(LOOPBACK, d.ports["imap"], timeout=10)
    caps = i.capabilities
    try:
        i.login(alice, PASSWORD)
        s.check("IMAP LOGIN without TLS is refused", False, "login accepted")
    except imaplib.IMAP4.error:
        s.check("IMAP LOGIN without TLS is refused", True)
        s.check("IMAP advertises LOGINDISABLED before STARTTLS", "LOGINDISABLED" in caps, caps)
    try:
        i.starttls(ssl_context=d.tls_context())
        i.login(alice, PASSWORD)
        s.check("IMAP LOGIN works after STARTTLS", True)
    except Exception as e:
        s.check("IMAP LOGIN works after STARTTLS", False, f"{type(e).__name__}: {e}")
    logout(i)
