"""metrics: what an operator's Prometheus scrapes from /metrics moves with
what users do. Sending a message moves the SMTP counters and local
deliveries; an open IMAP session shows in the sessions gauge and goes away
when it logs out; commands are counted by name; a wrong password is counted
as an auth failure; every metric of ours is named pochta_."""
import re
import urllib.request

from harness import LOOPBACK, logout, message, wait_for, login_fails


def scrape(d):
    with urllib.request.urlopen(f"http://{LOOPBACK}:{d.ports['metrics']}/metrics", timeout=5) as r:
        return r.read().decode()


def value(text, series):
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def run(s):
    d = s.daemon()
    d.start()
    alice, bob = d.add_user("alice"), d.add_user("bob")

    before = scrape(d)
    d.send(alice, [bob], message(alice, [bob], "counted"))
    after = wait_for(lambda: (lambda t: t if value(t, "pochta_smtp_messages_received_total") > value(before, "pochta_smtp_messages_received_total") else None)(scrape(d)), 5)
    after = after or scrape(d)
    s.check("pochta_smtp_messages_received_total counts the message",
            value(after, "pochta_smtp_messages_received_total") == value(before, "pochta_smtp_messages_received_total") + 1)
    s.check("pochta_smtp_bytes_received_total grows",
            value(after, "pochta_smtp_bytes_received_total") > value(before, "pochta_smtp_bytes_received_total"))
    s.check("pochta_local_deliveries_total counts bob's copy",
            value(after, "pochta_local_deliveries_total") == value(before, "pochta_local_deliveries_total") + 1)

    open_before = value(scrape(d), "pochta_imap_sessions_open")
    c = d.imap(bob)
    c.select("INBOX")
    c.fetch("1", "(FLAGS)")
    during = scrape(d)
    s.check("pochta_imap_sessions_open counts the open session",
            value(during, "pochta_imap_sessions_open") == open_before + 1, value(during, "pochta_imap_sessions_open"))
    s.check("pochta_imap_commands_total counts FETCH by name",
            value(during, 'pochta_imap_commands_total{command="FETCH"}') >= 1)
    logout(c)
    s.check("the sessions gauge goes back down after LOGOUT",
            bool(wait_for(lambda: value(scrape(d), "pochta_imap_sessions_open") == open_before, 5)),
            value(scrape(d), "pochta_imap_sessions_open"))

    failures = value(scrape(d), 'pochta_auth_failures_total{protocol="imap"}')
    s.check("a wrong password is refused", login_fails(d, bob, "wrong-password"))
    s.check("pochta_auth_failures_total{protocol=\"imap\"} counts it",
            value(scrape(d), 'pochta_auth_failures_total{protocol="imap"}') == failures + 1)

    text = scrape(d)
    ours = {m.group(1) for m in re.finditer(r"^# TYPE (\S+)", text, re.M)} - {n for n in re.findall(r"^# TYPE (go_\S+)", text, re.M)}
    s.check("every non-Go metric is named pochta_", all(n.startswith("pochta_") for n in ours),
            sorted(n for n in ours if not n.startswith("pochta_")))
    s.check("pochta_storage_file_size_bytes reports the database", value(text, "pochta_storage_file_size_bytes") > 0)
