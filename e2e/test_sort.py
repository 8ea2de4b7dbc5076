"""sort: a mail client's SORT and THREAD (RFC 5256) through Python's
imaplib: a mailing-list folder sorted by date, by subject (reply markers and
list tags ignored), by sender, newest first; THREAD REFERENCES puts the
replies under what they answer, THREAD ORDEREDSUBJECT groups by subject;
UID SORT names UIDs; an unknown charset is NO [BADCHARSET]."""

from harness import capabilities, logout, message, ok, select


def run(s):
    d = s.daemon().start()
    alice = d.add_user("alice")
    c = d.imap(alice, tls="implicit")
    caps = capabilities(c)
    for cap in ("SORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT", "ESORT"):
        s.check(f"{cap} is advertised after login", cap in caps, caps)

    # Appended out of date order: 1 is the newest, 3 the oldest.
    folder = [
        ("Carol <carol@example.com>", "Re: [team] Lunch plans", "Wed, 03 Jan 2024 12:00:00 +0000",
         "<lunch-2@example.com>", "<lunch-1@example.com>"),
        ("Bob <bob@example.com>", "Budget 2024", "Tue, 02 Jan 2024 09:00:00 +0000", "<budget@example.com>", None),
        ("Alice <alice@example.com>", "[team] Lunch plans", "Mon, 01 Jan 2024 08:00:00 +0000",
         "<lunch-1@example.com>", None),
        ("Dave <dave@example.com>", "Fwd: Budget 2024", "Tue, 02 Jan 2024 10:00:00 +0000",
         "<budget-fwd@example.com>", "<budget@example.com>"),
    ]
    for frm, subject, date, mid, refs in folder:
        headers = {"Date": date}
        if refs:
            headers["References"] = refs
        raw = message(frm, alice, subject, headers=headers, mid=mid)
        ok(c.append("INBOX", None, None, raw), "APPEND")
    select(c, "INBOX")

    def sort(criteria, *search):
        return ok(c.sort(criteria, "UTF-8", *search), "SORT")[0].split()

    s.check("SORT (DATE) is oldest first", sort("(DATE)", "ALL") == [b"3", b"2", b"4", b"1"], sort("(DATE)", "ALL"))
    s.check("SORT (REVERSE DATE) is newest first", sort("(REVERSE DATE)", "ALL") == [b"1", b"4", b"2", b"3"],
            sort("(REVERSE DATE)", "ALL"))
    s.check("SORT (SUBJECT DATE) ignores Re:, Fwd: and [team]",
            sort("(SUBJECT DATE)", "ALL") == [b"2", b"4", b"3", b"1"], sort("(SUBJECT DATE)", "ALL"))
    s.check("SORT (FROM) orders by sender", sort("(FROM)", "ALL") == [b"3", b"2", b"1", b"4"], sort("(FROM)", "ALL"))
    s.check("SORT takes SEARCH criteria", sort("(DATE)", "SUBJECT", "lunch") == [b"3", b"1"],
            sort("(DATE)", "SUBJECT", "lunch"))
    data = ok(c.uid("SORT", "(REVERSE DATE)", "UTF-8", "ALL"), "UID SORT")
    s.check("UID SORT answers UIDs", data[0].split() == [b"1", b"4", b"2", b"3"], data)

    data = ok(c.thread("REFERENCES", "UTF-8", "ALL"), "THREAD")
    s.check("THREAD REFERENCES puts each reply under its original", data == [b"(3 1)(2 4)"], data)
    data = ok(c.thread("ORDEREDSUBJECT", "UTF-8", "ALL"), "THREAD")
    s.check("THREAD ORDEREDSUBJECT groups by subject", data == [b"(3 1)(2 4)"], data)
    data = ok(c.uid("THREAD", "REFERENCES", "UTF-8", "FROM", "dave"), "UID THREAD")
    s.check("UID THREAD takes SEARCH criteria", data == [b"(4)"], data)

    typ, data = c._simple_command("SORT", "(DATE)", "KOI8-R", "ALL")
    s.check("an unknown charset is NO [BADCHARSET]", typ == "NO" and b"BADCHARSET" in data[0], (typ, data))
    s.works("the session goes on", lambda: ok(c.noop(), "NOOP"))
    logout(c)
