"""web: the real binary serves the web interface on [web] listen over HTTPS.
Signing in through the form sets a Secure, HttpOnly, SameSite=Strict cookie
and lands on /mail; the queue API shows alice her queued mail and bob none
of it; a change without the CSRF token is refused, with it the entry is gone
for `pochta queue list` too; a wrong password gets the form back with no
cookie; `pochta user passwd` ends the session."""
import http.client
import json
import urllib.parse

from harness import PASSWORD, free_port, message


class Browser:
    """A cookie-keeping HTTPS client of the web interface (no redirects)."""

    def __init__(self, d, port):
        self.d, self.port, self.cookie, self.csrf = d, port, None, None

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.d.tls_context(), timeout=15)
        h = dict(headers or {})
        if self.cookie:
            h["Cookie"] = self.cookie
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def login(self, address, password=PASSWORD):
        body = urllib.parse.urlencode({"address": address, "password": password})
        r, data = self.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        for k, v in r.getheaders():
            if k.lower() == "set-cookie" and v.startswith("pochta_session="):
                self.cookie = v.split(";", 1)[0]
        return r, data

    def json(self, method, path, obj=None, csrf=True):
        h = {"Content-Type": "application/json"}
        if csrf and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        r, data = self.request(method, path, json.dumps(obj) if obj is not None else None, h)
        return r.status, json.loads(data or b"null")


def run(s):
    port = free_port()
    d = s.daemon(extra=f'\n[web]\nlisten = "127.0.0.1:{port}"\n').start()
    alice, bob = d.add_user("alice"), d.add_user("bob")
    d.send(alice, ["someone@elsewhere.test"], message(alice, "someone@elsewhere.test", "to the outside"))

    a = Browser(d, port)
    r, _ = a.login(alice)
    set_cookie = r.getheader("Set-Cookie") or ""
    s.check("sign-in answers 303 to /mail", r.status == 303 and r.getheader("Location") == "/mail", f"{r.status} {r.getheader('Location')}")
    s.check("the session cookie is Secure, HttpOnly, SameSite=Strict",
            all(x in set_cookie for x in ("pochta_session=", "Secure", "HttpOnly", "SameSite=Strict")), set_cookie)
    st, sess = a.json("GET", "/api/v1/session")
    a.csrf = (sess or {}).get("csrf_token")
    s.check("GET /api/v1/session names alice with a CSRF token and the poll interval",
            st == 200 and sess.get("address") == alice and a.csrf and sess.get("poll_interval") == 300, f"{st} {sess}")

    st, entries = a.json("GET", "/api/v1/queue")
    ids = [e["id"] for e in entries] if st == 200 else []
    s.check("alice sees her queued mail with the queue list fields",
            st == 200 and len(entries) == 1 and entries[0]["subject"] == "to the outside" and entries[0]["status"] == "outbox"
            and all(k in entries[0] for k in ("id", "source", "from", "to", "cc", "bcc", "mime_type", "date", "attempts", "sent", "sent_on", "error", "size")),
            f"{st} {entries}")

    b = Browser(d, port)
    b.login(bob)
    st, bob_sees = b.json("GET", "/api/v1/queue")
    s.check("bob sees none of alice's mail", st == 200 and bob_sees == [], f"{st} {bob_sees}")
    if ids:
        st, _ = b.json("GET", f"/api/v1/queue/{ids[0]}")
        s.check("bob asking for alice's entry gets 403", st == 403, st)
        st, err = a.json("POST", "/api/v1/queue/delete", {"ids": ids}, csrf=False)
        s.check("a delete without the CSRF token gets 403 {error}", st == 403 and "error" in (err or {}), f"{st} {err}")
        st, res = a.json("POST", "/api/v1/queue/delete", {"ids": ids})
        s.check("with the token the delete is done", st == 200 and res == {"deleted": ids}, f"{st} {res}")
        s.check("the entry is gone for `pochta queue list` too", d.queue() == [], d.queue())

    st, err = a.json("POST", "/api/v1/queue/resend", None)
    s.check("an empty body gets 400 {error}", st == 400 and "error" in (err or {}), f"{st} {err}")

    w = Browser(d, port)
    r, page = w.login(alice, "wrong password")
    s.check("a wrong password answers the form again without a cookie",
            r.status == 401 and w.cookie is None and b'id="login-form"' in page, r.status)

    r, page = a.request("GET", "/queue")
    csp = r.getheader("Content-Security-Policy") or ""
    s.check("the queue page renders with a CSP that allows no inline script",
            r.status == 200 and b"E-mail Queue" in page and "script-src 'self'" in csp and "unsafe-inline" not in csp, f"{r.status} {csp}")

    d.cli("user", "passwd", alice, "--password-stdin", stdin="a new password\n")
    st, _ = a.json("GET", "/api/v1/session")
    s.check("`pochta user passwd` ends alice's session", st == 401, st)
