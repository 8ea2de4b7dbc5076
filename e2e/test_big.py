"""big: a 5 MB message with a random attachment arrives byte-identical: bob's
BODY[] is what alice sent from its first header line on (the server only
prepends Received), and the decoded attachment has the same SHA-256."""
import hashlib
import re
import time

from harness import fetch, logout, parse, big_message


def run(s):
    d = s.daemon().start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    subject = "Quarterly report (5 MB)"
    raw, payload = big_message(alice, bob, subject, 3_800_000)
    s.check("test message is about 5 MB", 5_000_000 <= len(raw) <= 5_500_000, len(raw))

    t0 = time.monotonic()
    refused = d.send(alice, [bob], raw)
    s.check("5 MB message accepted", refused == {}, refused)
    took = time.monotonic() - t0

    c = d.imap(bob, tls="implicit")
    msgs = [m for m in fetch(c, "INBOX", "(RFC822.SIZE BODY.PEEK[])").values() if m["body"]]
    logout(c)
    s.check("bob's INBOX has exactly one message", len(msgs) == 1, len(msgs))
    if not msgs:
        return
    got = msgs[0]["body"]
    first = raw.split(b"\r\n", 1)[0] + b"\r\n"
    at = got.find(first)
    s.check("the original header block starts after server-added lines", at >= 0)
    prefix = got[:at] if at >= 0 else b""
    added = [h.lower() for h in re.findall(rb"^([A-Za-z0-9-]+):", prefix, re.M)]
    s.check("the server prepended a Received header and nothing but trace headers",
            b"received" in added and set(added) <= {b"received", b"return-path", b"delivered-to"}, added)
    same = at >= 0 and got[at:] == raw
    detail = ""
    if not same and at >= 0:
        tail = got[at:]
        diff = next((i for i, (a, b) in enumerate(zip(tail, raw)) if a != b), min(len(tail), len(raw)))
        detail = f"sent {len(raw)} bytes, got {len(tail)}; first difference at byte {diff}"
    s.check("BODY[] from the first original header on is byte-identical", same, detail)
    size = re.search(rb"RFC822\.SIZE (\d+)", msgs[0]["meta"])
    s.check("RFC822.SIZE equals the length of BODY[]", size and int(size.group(1)) == len(got),
            f"{size and size.group(1)} vs {len(got)}")
    att = [p for p in parse(got).walk() if p.get_filename() == "random.bin"]
    digest = hashlib.sha256(att[0].get_payload(decode=True)).hexdigest() if att else None
    s.check("attachment SHA-256 matches", digest == hashlib.sha256(payload).hexdigest(), digest)

    c = d.imap(alice, tls="implicit")
    sent = [m for m in fetch(c, "Sent", "(BODY.PEEK[])").values() if m["body"]]
    logout(c)
    body = sent[0]["body"] if len(sent) == 1 else b""
    s.check("alice's Sent copy is byte-identical too (from the first original header on)",
            body.find(first) >= 0 and body[body.find(first):] == raw, f"{len(sent)} copies, {len(body)} bytes vs {len(raw)}")
    s.check("submission of 5 MB took under 20 s", took < 20, f"{took:.1f}s")
