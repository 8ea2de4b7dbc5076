"""Queue lease and retention, through the real binary: a sent entry carries
no lease once its attempt is recorded, the configured node name is the
daemon's, and with `[email_queue] retention = "2s"` the start-up sweep
removes the sent entry (and counts it) while a waiting one stays."""

import time

from harness import message, wait_for
from test_queue import Relay, entry, entry_in, fast_queue, metric


def configure(d, node, retention):
    with open(d.config) as f:
        cfg = f.read()
    cfg = cfg.replace("[message_server]\n", f'[message_server]\nnode = "{node}"\n', 1)
    cfg = cfg.replace("[email_queue]\n", f'[email_queue]\nretention = "{retention}"\n', 1)
    with open(d.config, "w") as f:
        f.write(cfg)


def run(s):
    d = s.daemon()
    fast_queue(d)
    configure(d, "e2e-node-1", "2s")
    relay = Relay(d.ports["relay"])
    try:
        scenario(s, d, relay)
    finally:
        relay.stop()


def scenario(s, d, relay):
    d.start()
    alice = d.add_user("alice")
    ext = "someone@remote.test"
    d.send(alice, [ext], message(alice, [ext], "retention sent"))
    sent = wait_for(lambda: entry_in(d, "retention sent", "sent"), 15)
    s.check("the entry is relayed", bool(sent), entry(d, "retention sent"))
    if sent:
        s.check("a recorded attempt leaves no lease", not sent.get("lease_owner") and not sent.get("lease_until"), sent)
    s.check("the daemon logs its node name", "node=e2e-node-1" in d.tail(1 << 20), "")

    # One that cannot go out (the relay is down): stays outbox whatever its age.
    relay.stop()
    waiting_to = "later@remote.test"
    d.send(alice, [waiting_to], message(alice, [waiting_to], "retention waiting"))
    w = wait_for(lambda: entry_in(d, "retention waiting", "outbox"), 15)
    s.check("the second entry is waiting", bool(w), entry(d, "retention waiting"))

    d.stop()
    # Retention is 2 s of wall-clock time after the entry settled: that
    # time has to pass; pochta is not what is waited for.
    stopped = time.monotonic()
    wait_for(lambda: time.monotonic() - stopped > 2.5, 5, step=0.1)
    d.start()
    gone = wait_for(lambda: entry(d, "retention sent") is None, 15)
    s.check("the start-up sweep removed the sent entry past its retention", bool(gone), entry(d, "retention sent"))
    e = entry(d, "retention waiting")
    s.check("the waiting entry stays", bool(e) and e["status"] == "outbox", e)
    s.check("pochta_queue_entries_removed_total{status=sent} counts it",
            wait_for(lambda: metric(d, "pochta_queue_entries_removed_total", 'status="sent"') == 1, 10),
            metric(d, "pochta_queue_entries_removed_total", 'status="sent"'))
    status = d.cli("sent", "status", alice, "--json").stdout
    s.check("the sender's read tracking still lists the message", "retention sent" in status, status)
