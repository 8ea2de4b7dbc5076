#!/usr/bin/env python3
"""Run imaptest's stress mode against one pochta node, or several sharing
one PostgreSQL database behind a round-robin TCP forwarder.

Build imaptest first (see e2e/imaptest.py). Then, from the project root:

    make build
    python3 e2e/imaptest_stress.py                        # bbolt, one node, 30 s
    python3 e2e/imaptest_stress.py --database postgres://postgres@127.0.0.1:PORT/postgres \
        --nodes 2 --secs 60

With --database, a new database is created on that server (psql) and
every node uses it (node names n0, n1, ...). Ten imaptest clients run for
--secs over 187 varied messages (../shared/tools/imaptest/make_mbox.py);
with several nodes each new connection goes to the next node. imaptest
checks what every client is told against what the others did (MODSEQ
never going back, keywords announced in FLAGS, ...). The script prints its
error lines grouped, and its totals; it exits 1 when imaptest reported an
error other than the password checker's "Too many logins are being
checked" (a documented temporary refusal). Loopback only; everything is
stopped at the end.
"""
import argparse
import itertools
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from imaptest import BIN, TESTS, fresh_database, imaptest_daemon  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")


class Forwarder:
    """Accepts on a loopback port and forwards each connection to the next
    of ports, round robin, until closed."""

    def __init__(self, ports):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((harness.LOOPBACK, 0))
        self.sock.listen(200)
        self.port = self.sock.getsockname()[1]
        self.next = itertools.cycle(ports)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((harness.LOOPBACK, next(self.next)))
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database", help="a PostgreSQL server URL; default: a bbolt file per node")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--secs", type=int, default=30)
    p.add_argument("--clients", type=int, default=10)
    a = p.parse_args()
    if a.nodes > 1 and not a.database:
        p.error("several nodes need --database (they share it)")
    if not os.access(BIN, os.X_OK):
        print(f"imaptest_stress: {BIN} not found: build it with ../shared/tools/imaptest/build.sh", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pochta-stress-") as tmp:
        url = fresh_database(a.database, "stress") if a.database else None
        nodes = []
        for i in range(a.nodes):
            nodes.append(imaptest_daemon(os.path.join(tmp, f"n{i}"), url, f"n{i}"))
        fwd = None
        try:
            for d in nodes:
                d.start()
            nodes[0].add_user("imaptest")
            port = nodes[0].ports["imap"]
            if a.nodes > 1:
                fwd = Forwarder([d.ports["imap"] for d in nodes])
                port = fwd.port
            mbox = os.path.join(tmp, "stress.mbox")
            subprocess.run([sys.executable, os.path.join(SHARED, "tools", "imaptest", "make_mbox.py"), TESTS, mbox],
                           check=True, capture_output=True)
            out = subprocess.run([BIN, f"host={harness.LOOPBACK}", f"port={port}",
                                  "user=" + nodes[0].addr("imaptest"), "pass=" + harness.PASSWORD,
                                  "mbox=" + mbox, f"clients={a.clients}", f"secs={a.secs}"],
                                 capture_output=True, text=True, timeout=a.secs + 120)
        finally:
            if fwd:
                fwd.close()
            for d in nodes:
                d.stop()
    text = out.stdout + out.stderr
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    kinds = {}
    for line in errors:
        k = re.sub(r"\d+", "N", line)[:100]
        kinds[k] = kinds.get(k, 0) + 1
    for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"{n:6}  {k}")
    lines = text.splitlines()
    if "Totals:" in lines:
        print("\n".join(lines[lines.index("Totals:"):][:5]))
    real = [line for line in errors if "Too many logins are being checked" not in line]
    where = f"{a.nodes} node(s) on {'PostgreSQL' if url else 'bbolt'}"
    print(f"imaptest_stress: {where}, {a.clients} clients, {a.secs} s: {len(real)} errors"
          f" ({len(errors) - len(real)} busy logins)")
    return 1 if real else 0


if __name__ == "__main__":
    sys.exit(main())
