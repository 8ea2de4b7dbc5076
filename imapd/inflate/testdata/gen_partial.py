# Regenerates partial_flush.json: IMAP commands compressed the way
# isync/mbsync's zlib does (raw DEFLATE, Z_PARTIAL_FLUSH after each
# command), one chunk per command. Run: python3 gen_partial.py
import json, random, zlib

random.seed(4978)
words = ["INBOX", "FETCH", "UID", "FLAGS", "Seen", "BODY.PEEK[]", "hello", "world", "Subject:", "From:"]
big = "".join(random.choice(words) + (" " if random.random() < 0.9 else "\r\n") for _ in range(8000))
cmds = [
    "a1 CAPABILITY\r\n",
    "a2 LOGIN alice secret\r\n",
    "a3 SELECT INBOX\r\n",
    "a4 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (Subject From)])\r\n",
    "a5 APPEND INBOX {%d+}\r\n%s\r\n" % (len(big), big),
    "a6 NOOP\r\n",
    "a7 LOGOUT\r\n",
]
out = []
for level in (1, 6, 9):
    z = zlib.compressobj(level, zlib.DEFLATED, -15)
    chunks = []
    for c in cmds:
        b = z.compress(c.encode()) + z.flush(zlib.Z_PARTIAL_FLUSH)
        chunks.append({"plain": c, "deflate": b.hex()})
    out.append({"level": level, "chunks": chunks})
with open("partial_flush.json", "w") as f:
    json.dump(out, f)
