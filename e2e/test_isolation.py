"""isolation: bob can neither see nor touch alice's folders. Her custom folder
is not in his LIST; SELECT, EXAMINE, STATUS, APPEND, COPY into it (or into any
path that names her) fail; a folder of the same name that bob creates is his
own and empty; alice's folder is unchanged afterwards."""
from harness import fetch, logout, message, ok, select, status

SECRET = "Alice-Secret-Plans"


def refused(fn):
    """True when the IMAP command answers NO/BAD (imaplib returns or raises)."""
    try:
        typ, _ = fn()
        return typ != "OK"
    except Exception:
        return True


def run(s):
    d = s.daemon().start()
    alice, bob = d.add_user("alice"), d.add_user("bob")

    a = d.imap(alice, tls="implicit")
    ok(a.create(f'"{SECRET}"'), "CREATE")
    ok(a.append(f'"{SECRET}"', None, None, message(alice, alice, "the plan")), "APPEND")
    d.send(bob, [alice], message(bob, alice, "hello alice"))
    before = {box: status(a, box) for box in (SECRET, "INBOX")}
    logout(a)

    b = d.imap(bob, tls="implicit")
    listing = b" ".join(x for x in ok(b.list('""', '"*"'), "LIST") if isinstance(x, bytes)).decode()
    s.check("bob's LIST does not show alice's folder", SECRET not in listing, listing)
    s.check("bob's LIST names no other user", "alice" not in listing.lower(), listing)
    listing = b" ".join(x for x in ok(b.list('""', '"%"'), "LIST %") if isinstance(x, bytes)).decode()
    s.check("bob's LIST % does not show it either", SECRET not in listing, listing)
    lsub = b" ".join(x for x in ok(b.lsub('""', '"*"'), "LSUB") if isinstance(x, bytes)).decode()
    s.check("bob's LSUB does not show it", SECRET not in lsub, lsub)

    s.check("SELECT of alice's folder fails", refused(lambda: b.select(f'"{SECRET}"')))
    s.check("EXAMINE of alice's folder fails", refused(lambda: b.select(f'"{SECRET}"', readonly=True)))
    s.check("STATUS of alice's folder fails", refused(lambda: b.status(f'"{SECRET}"', "(MESSAGES)")))
    s.check("APPEND to alice's folder fails",
            refused(lambda: b.append(f'"{SECRET}"', None, None, message(bob, alice, "planted"))))

    others = [f"{alice}/INBOX", f"{alice}/{SECRET}", f"../{alice}/INBOX", "alice/INBOX",
              f"Other Users/{alice}/INBOX", f"#shared/{alice}/INBOX", f"~{alice}/INBOX", f"user/alice/{SECRET}"]
    for box in others:
        s.check(f"SELECT {box!r} fails", refused(lambda: b.select(f'"{box}"')))
        s.check(f"STATUS {box!r} fails", refused(lambda: b.status(f'"{box}"', "(MESSAGES)")))
    select(b, "INBOX", readonly=False)
    ok(b.append('"INBOX"', None, None, message(bob, bob, "bob's own")), "APPEND own")
    select(b, "INBOX", readonly=False)
    s.check("COPY into alice's folder fails", refused(lambda: b.copy("1:*", f'"{SECRET}"')))
    s.check("COPY into a path naming alice fails", refused(lambda: b.copy("1:*", f'"{alice}/INBOX"')))
    s.check("FETCH of a UID bob does not have returns nothing",
            not [x for x in ok(b.uid("FETCH", "1000:2000", "(BODY.PEEK[])"), "UID FETCH") if x])

    # A same-named folder of bob's is a different folder.
    created = not refused(lambda: b.create(f'"{SECRET}"'))
    s.check("bob may create a folder with the same name", created)
    if created:
        s.check("bob's same-named folder is empty", select(b, SECRET) == 0)
        own = fetch(b, SECRET)
        s.check("and holds none of alice's messages", not own, own)
    logout(b)

    a = d.imap(alice, tls="implicit")
    after = {box: status(a, box) for box in (SECRET, "INBOX")}
    got = [m["body"] for m in fetch(a, SECRET).values()]
    logout(a)
    s.check("alice's folders are unchanged by all of that", after == before, f"{before} -> {after}")
    s.check("alice's folder still holds only her message",
            len(got) == 1 and b"the plan" in got[0] and b"planted" not in got[0])
