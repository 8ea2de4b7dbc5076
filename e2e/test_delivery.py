"""delivery: alice sends to bob and carol over STARTTLS with AUTH; both INBOXes
have the message as soon as 250 came back, and alice's Sent has her copy.
Reading goes over IMAP STARTTLS (bob) and implicit TLS (carol)."""
from harness import by_subject, logout, message, parse


def run(s):
    d = s.daemon().start()
    s.check("self-signed certificate created in data_dir", d.cert and open(d.cert).read().startswith("-----BEGIN"))
    names = s.step("certificate names the hostname", d.cert_names) or []
    s.check("certificate names the hostname", d.hostname in names, names)
    alice, bob, carol = d.add_user("alice"), d.add_user("bob"), d.add_user("carol")

    subject = "Lunch on Friday"
    body = "Shall we meet at noon?\r\n-- \r\nalice\r\n"
    raw = message(alice, [bob, carol], subject, body=body)
    refused = d.send(alice, [bob, carol], raw, tls="starttls")
    s.check("submission over STARTTLS with AUTH accepted both recipients", refused == {}, refused)

    # 250 means stored: no waiting before looking.
    ib = d.imap(bob, tls="starttls")
    got_b = by_subject(ib, "INBOX", subject)
    s.check("bob's INBOX has it (IMAP STARTTLS)", len(got_b) == 1, f"{len(got_b)} copies")
    if got_b:
        m = parse(got_b[0])
        s.check("bob's copy keeps From, To and body byte for byte",
                m["From"] == alice and bob in m["To"] and got_b[0].endswith(b"\r\n\r\n" + body.encode()))
        s.check("bob's copy has a Received header naming the server",
                any(d.hostname in r for r in m.get_all("Received", [])), m.get_all("Received"))
    logout(ib)

    ic = d.imap(carol, tls="implicit")
    got_c = by_subject(ic, "INBOX", subject)
    s.check("carol's INBOX has it (IMAPS)", len(got_c) == 1, f"{len(got_c)} copies")
    logout(ic)

    ia = d.imap(alice, tls="implicit")
    sent = by_subject(ia, "Sent", subject)
    s.check("alice's Sent has exactly one copy", len(sent) == 1, f"{len(sent)} copies")
    inbox = by_subject(ia, "INBOX", subject)
    s.check("alice's own INBOX did not get it", len(inbox) == 0, f"{len(inbox)} copies")
    logout(ia)

    # Same once more over implicit TLS (submissions).
    subject2 = "Over port 465"
    refused = d.send(alice, [bob], message(alice, bob, subject2), tls="implicit")
    ib = d.imap(bob, tls="implicit")
    s.check("submissions (implicit TLS) delivers too", refused == {} and len(by_subject(ib, "INBOX", subject2)) == 1)
    logout(ib)
