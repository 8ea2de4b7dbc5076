"""siege: every attack of issue 9 at once, for a bounded time, while a
normal user keeps sending and reading mail.

The attacks run together in threads for SIEGE_SECONDS, each in a bounded
loop: a 1,000-level MIME message over SMTP (554) and an 80,000-part one;
an over-limit LITERAL+ APPEND whose literal carries CREATE lines (closed,
nothing created); a client trickling SMTP bytes (closed at the bound);
idle connections that never log in, from 127.0.0.2 to 127.0.0.5, re-opened
when evicted; password guessers for another account from 127.0.0.6 on; a
forged From header (550 5.7.1); a SIZE=25 MB hint followed by a DATA that
never comes; and four 5 MB messages at once. Meanwhile the bystander
submits a message and reads it back, again and again: every round must
succeed within ROUND_LIMIT seconds, the daemon must stay up, mallory must
own no smuggled mailbox, and the daemon's resident memory, sampled every
100 ms, must stay under RSS_LIMIT. The peak is printed."""
import socket
import threading
import time

from harness import LOOPBACK, PASSWORD, by_subject, logout, message, wait_for
from test_hostile import Raw, rss, smtp_login
from test_nesting import nested, wide

SIEGE_SECONDS = 12
ROUND_LIMIT = 10
RSS_LIMIT = 400 << 20


def connect_from(port, source, timeout=5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((LOOPBACK, port))
    return s


def run(s):
    d = s.daemon(extra='[limits]\nsmtp_idle_timeout = "3s"\nimap_command_timeout = "3s"\n'
                       'max_connections = 200\n').start()
    for u in ("ctl", "ctl2", "mallory", "victim"):
        d.add_user(u)
    # mallory signs in once before the siege, so her attacks start from a
    # cached login; otherwise a dozen first logins at once meet the password
    # checker's bounded queue and some get its documented 454 (CI saw one).
    smtp_login(d, "mallory").close()
    stop = threading.Event()
    outcomes = {}  # attack -> list of short results
    lock = threading.Lock()

    def note(name, what):
        with lock:
            outcomes.setdefault(name, []).append(what)

    def loop(name, fn, pause=0.05):
        def body():
            while not stop.is_set():
                try:
                    note(name, fn())
                except Exception as e:  # an attack may be cut off; that is its point
                    note(name, f"{type(e).__name__}")
                stop.wait(pause)
        return threading.Thread(target=body, name=name, daemon=True)

    mallory, victim = d.addr("mallory"), d.addr("victim")

    def deep_mime():
        r = smtp_login(d, "mallory")
        try:
            r.send(f"MAIL FROM:<{mallory}>\r\nRCPT TO:<{victim}>\r\nDATA\r\n".encode())
            r.until(b"354")
            body = nested(mallory, victim, 1000, "deep") if time.monotonic() % 2 < 1 else wide(mallory, victim, 80000, "wide")
            r.send(body.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
            return r.until(b"5")[-1][:3].decode(errors="replace")
        finally:
            r.close()

    def smuggle():
        r = Raw(d.ports["imap"], 5)
        try:
            r.line()
            r.send(f'a LOGIN "{mallory}" "{PASSWORD}"\r\n'.encode())
            r.until(b"a ")
            r.send(b"b APPEND INBOX {30000000+}\r\n" + b"c CREATE evil\r\n" * 200)
            got = r.until(b"b ", limit=20)
            return b"".join(got)[:12].decode(errors="replace")
        finally:
            r.close()

    def trickle():
        r = Raw(d.ports["sub"], 8)
        try:
            r.line()
            for ch in b"EHLO trickle.test":
                r.send(bytes([ch]))
                if stop.wait(0.3):
                    break
            return "sent"
        except OSError:
            return "closed"
        finally:
            r.close()

    idlers = []

    def prelogin():
        # Keep ten idle strangers per address; the server may evict them.
        for i in range(2, 6):
            while len([c for c in idlers if c[0] == i]) < 10:
                try:
                    c = connect_from(d.ports["imap"], f"127.0.0.{i}")
                    c.recv(200)
                    idlers.append((i, c))
                except OSError:
                    break
        alive = []
        for i, c in idlers:
            try:
                c.setblocking(False)
                if c.recv(100) == b"":
                    c.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                c.close()
                continue
            alive.append((i, c))
        idlers[:] = alive
        return len(alive)

    guess_n = [0]

    def guess():
        guess_n[0] += 1
        c = connect_from(d.ports["imap"], f"127.0.{1 + guess_n[0] % 200}.{6 + guess_n[0] % 200}")
        try:
            c.recv(200)
            c.sendall(f'g LOGIN "{victim}" "wrong-{guess_n[0]}"\r\n'.encode())
            return c.recv(200)[:8].decode(errors="replace")
        finally:
            c.close()

    def spoof():
        r = smtp_login(d, "mallory")
        try:
            r.send(f"MAIL FROM:<{mallory}>\r\nRCPT TO:<{victim}>\r\nDATA\r\n".encode())
            r.until(b"354")
            r.send(message(f"Victim <{victim}>", victim, "forged") + b"\r\n.\r\n")
            return r.until(b"5")[-1][:9].decode(errors="replace")
        finally:
            r.close()

    def size_hint():
        r = smtp_login(d, "mallory")
        try:
            r.send(f"MAIL FROM:<{mallory}> SIZE=26214400\r\nRCPT TO:<{victim}>\r\nDATA\r\n".encode())
            r.until(b"354")
            buf, closed = r.drain(time.monotonic() + 8)
            return "closed" if closed else "open"
        finally:
            r.close()

    big = message(mallory, victim, "big", body=("x" * 998 + "\r\n") * 5000)

    def big_message():
        d.send(mallory, [victim], big, tls=None)
        return "sent"

    attacks = [loop("deep MIME", deep_mime), loop("LITERAL+ smuggling", smuggle),
               loop("trickling SMTP", trickle), loop("pre-login idlers", prelogin, 0.5),
               loop("spoofed From", spoof), loop("SIZE hint, no DATA", size_hint)]
    attacks += [loop(f"password guesser {i}", guess, 0.02) for i in range(5)]
    attacks += [loop(f"5 MB sender {i}", big_message, 0.2) for i in range(4)]

    peak = [0]

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], rss(d))
            except OSError:
                pass
            stop.wait(0.1)
    sampler = threading.Thread(target=sample, daemon=True)

    sampler.start()
    for t in attacks:
        t.start()
    rounds, failures, slowest = 0, [], 0.0
    end = time.monotonic() + SIEGE_SECONDS
    while time.monotonic() < end:
        rounds += 1
        subject = f"bystander {rounds}"
        t0 = time.monotonic()
        try:
            d.send(d.addr("ctl"), [d.addr("ctl2")], message(d.addr("ctl"), d.addr("ctl2"), subject), tls=None)
            c = d.imap(d.addr("ctl2"), timeout=ROUND_LIMIT)
            try:
                if not wait_for(lambda: by_subject(c, "INBOX", subject), timeout=ROUND_LIMIT):
                    failures.append(f"round {rounds}: not in INBOX")
            finally:
                logout(c)
        except Exception as e:
            failures.append(f"round {rounds}: {type(e).__name__}: {e}")
        slowest = max(slowest, time.monotonic() - t0)
    stop.set()
    for t in attacks:
        t.join(timeout=15)
    for _, c in idlers:
        c.close()

    s.check(f"the bystander's {rounds} rounds all succeeded during the siege", rounds >= 3 and not failures,
            failures[:5])
    s.check(f"each bystander round under {ROUND_LIMIT} s (slowest {slowest:.1f} s)", slowest < ROUND_LIMIT)
    s.check("the daemon is still running", d.running(), d.tail(300))
    s.check("every attack ran", all(outcomes.get(t.name) for t in attacks), sorted(outcomes))
    s.check("deep and wide MIME were refused with 554", "554" in outcomes.get("deep MIME", []) and
            all(o in ("554", "ConnectionResetError", "BrokenPipeError", "timeout") for o in outcomes["deep MIME"]),
            outcomes.get("deep MIME", [])[:5])
    s.check("the forged From was refused with 550 5.7.1", outcomes.get("spoofed From") and
            all(o.startswith("550 5.7.1") for o in outcomes["spoofed From"] if o[:1].isdigit()),
            outcomes.get("spoofed From", [])[:5])
    c = d.imap(mallory)
    try:
        typ, boxes = c.list()
    finally:
        logout(c)
    s.check("no smuggled CREATE ran: mallory owns no mailbox 'evil'",
            typ == "OK" and not any(b'"evil"' in b or b.endswith(b" evil") for b in boxes), boxes)
    s.check(f"peak daemon RSS {peak[0] >> 20} MiB under {RSS_LIMIT >> 20} MiB", 0 < peak[0] < RSS_LIMIT)
    print(f"   (siege: {rounds} bystander rounds, slowest {slowest:.1f} s; daemon peak RSS {peak[0] >> 20} MiB)")
    for name in sorted(outcomes):
        seen = {}
        for o in outcomes[name]:
            seen[o] = seen.get(o, 0) + 1
        print(f"   ({name}: {', '.join(f'{k!r} x{v}' for k, v in sorted(seen.items()))})")
