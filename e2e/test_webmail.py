"""webmail: the Mail page's API on the real binary. alice signs in and sends
bob a message with an attachment (multipart/form-data, as the page does);
bob reads it over IMAP and gets the file byte for byte; alice's Sent shows
bob under not_delivered until then and [] after (polled); a draft with an
attachment is saved, kept on re-saving, sent (it leaves Drafts) and reaches
bob with its file; a file over max_message_size gets 413 with SMTP's 552
sentence and nothing is stored."""
import email.policy
import json
import os
import uuid

from harness import free_port, fetch, ok, parse, select, wait_for
from test_web import Browser


def multipart(fields, files):
    """A multipart/form-data body: fields [(name, value)], files [(name, type, bytes)]."""
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, value in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for fname, ftype, data in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="attachment"; filename="{fname}"\r\n'
                f"Content-Type: {ftype}\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)


def post_form(b, path, fields, files=()):
    ctype, body = multipart(fields, files)
    r, data = b.request("POST", path, body, {"Content-Type": ctype, "X-CSRF-Token": b.csrf})
    return r.status, json.loads(data or b"null")


def attachments_of(raw):
    """(filename, bytes) of each attachment of a raw message."""
    m = email.message_from_bytes(raw, policy=email.policy.default)
    return [(p.get_filename(), p.get_payload(decode=True)) for p in m.iter_attachments()]


def sent_list(b):
    st, lst = b.json("GET", "/api/v1/messages?mailbox=Sent")
    return lst if st == 200 else None


def run(s):
    port = free_port()
    d = s.daemon(extra=f'\n[web]\nlisten = "127.0.0.1:{port}"\n').start()
    alice, bob = d.add_user("alice"), d.add_user("bob")

    a = Browser(d, port)
    r, _ = a.login(alice)
    s.check("alice signs in", r.status == 303, r.status)
    st, sess = a.json("GET", "/api/v1/session")
    a.csrf = (sess or {}).get("csrf_token")

    report = os.urandom(20000)
    st, res = post_form(a, "/api/v1/send",
                        [("to", bob), ("subject", "quarterly report"), ("text", "The figures are attached."), ("importance", "normal")],
                        [("report.bin", "application/octet-stream", report)])
    s.check("POST /api/v1/send with an attachment is accepted", st == 200 and res == {"sent": True}, f"{st} {res}")

    sent = sent_list(a) or []
    mine = [m for m in sent if m["subject"] == "quarterly report"]
    s.check("alice's Sent lists it with bob under not_delivered",
            len(mine) == 1 and mine[0]["not_delivered"] == [bob], sent)

    c = d.imap(bob)
    msgs = fetch(c, "INBOX", "(FLAGS BODY.PEEK[])")
    got = [m for m in msgs.values() if m["body"] and parse(m["body"]).get("Subject") == "quarterly report"]
    files = attachments_of(got[0]["body"]) if got else []
    s.check("bob's INBOX over IMAP has it with the file byte for byte",
            len(got) == 1 and files == [("report.bin", report)], [f for f, _ in files])
    s.check("it is multipart/mixed", bool(got) and parse(got[0]["body"]).get_content_type() == "multipart/mixed")
    # Reading it over IMAP (FETCH BODY[] sets \Seen) settles alice's tracking.
    select(c, "INBOX", readonly=False)
    ok(c.uid("FETCH", ",".join(str(u) for u in msgs), "(BODY[])"), "UID FETCH BODY[]")

    def settled():
        lst = sent_list(a) or []
        m = [x for x in lst if x["subject"] == "quarterly report"]
        return m and m[0]["not_delivered"] == []
    s.check("alice's not_delivered becomes [] once bob read it over IMAP", wait_for(settled, timeout=10), sent_list(a))

    # A draft with an attachment, saved, re-saved keeping it, then sent.
    st, dr = post_form(a, "/api/v1/drafts", [("to", bob), ("subject", "plan"), ("text", "first")],
                       [("plan.txt", "text/plain", b"step one\n")])
    s.check("the draft is saved with its uid", st == 200 and isinstance((dr or {}).get("uid"), int), f"{st} {dr}")
    uid = (dr or {}).get("uid", 0)
    st, dr = post_form(a, "/api/v1/drafts", [("to", bob), ("subject", "plan"), ("text", "second"),
                                             ("draft_uid", str(uid)), ("keep_attachments", "0")])
    uid = (dr or {}).get("uid", 0)
    st2, draft = a.json("GET", f"/api/v1/messages/{uid}?mailbox=Drafts")
    s.check("the re-saved draft replaced the first and kept its attachment",
            st == 200 and st2 == 200 and "second" in draft.get("text", "") and [x["name"] for x in draft.get("attachments", [])] == ["plan.txt"],
            f"{st} {st2} {draft}")
    st, drafts = a.json("GET", "/api/v1/messages?mailbox=Drafts")
    s.check("Drafts holds one message", st == 200 and len(drafts) == 1, drafts)
    st, res = a.json("POST", "/api/v1/send", {"to": [bob], "subject": "plan", "text": "final", "draft_uid": uid, "keep_attachments": [0]})
    s.check("the draft is sent", st == 200, f"{st} {res}")
    st, drafts = a.json("GET", "/api/v1/messages?mailbox=Drafts")
    s.check("the sent draft left Drafts", st == 200 and drafts == [], drafts)
    plan = [m for m in fetch(c, "INBOX").values() if m["body"] and parse(m["body"]).get("Subject") == "plan"]
    s.check("bob got the draft with its attachment over IMAP",
            len(plan) == 1 and attachments_of(plan[0]["body"]) == [("plan.txt", b"step one\n")],
            [attachments_of(m["body"]) for m in plan])

    # Over the size limit (the default max_message_size, 25 MiB).
    limit = 26214400
    st, res = post_form(a, "/api/v1/send", [("to", bob), ("subject", "too big")],
                        [("big.bin", "application/octet-stream", b"\0" * (limit + 1))])
    s.check("a file over max_message_size gets 413 with SMTP's 552 sentence",
            st == 413 and (res or {}).get("smtp_code") == 552 and str(limit) in (res or {}).get("error", ""), f"{st} {res}")
    s.check("nothing of it was stored", not [m for m in (sent_list(a) or []) if m["subject"] == "too big"])
    c.logout()
