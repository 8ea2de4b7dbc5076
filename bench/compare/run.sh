#!/usr/bin/env bash
# bench/compare/run.sh: pochta side by side with the servers people would
# otherwise install, on this machine, in one run (see README.md here).
#
#   SMTP intake of 4 KiB messages at 1, 8 and 32 clients: Postfix's
#   smtp-sink (accepts and discards: the protocol ceiling) and pochta's
#   submission port (stores every message durably), same client, same
#   message (AUTH PLAIN to pochta before the clock starts; smtp-sink
#   does not really implement AUTH).
#
#   IMAP with the same 10,000 messages APPENDed to Dovecot (Maildir) and to
#   pochta: FETCH 1:* (ENVELOPE FLAGS), FETCH 1:* (BODY.PEEK[]) and
#   UID SEARCH SUBJECT "needle" BODY "haystack".
#
# Installs Debian's postfix and dovecot-imapd when missing (apt-get, without
# starting their system services), runs everything on 127.0.0.1 only, on
# free unprivileged ports, in a temporary directory with its own configs,
# and stops all of it on exit. Prints the tables with ratios; the raw
# results are JSON lines in $OUT (default: bench/compare/results.jsonl is
# not written unless OUT is set).
#
# Knobs: SMTP_MESSAGES (per level; 1 client sends a quarter), IMAP_MESSAGES,
# RUNS (each IMAP query; the median is shown), KEEP=1 keeps the temp dir.
set -euo pipefail

cd "$(dirname "$0")/../.."
GO=${GO:-go}
SMTP_MESSAGES=${SMTP_MESSAGES:-3000}
IMAP_MESSAGES=${IMAP_MESSAGES:-10000}
RUNS=${RUNS:-3}
PASSWORD=bench-Pass-1

say() { printf '%s\n' "$*" >&2; }
die() { say "compare: $*"; exit 1; }

# --- install ----------------------------------------------------------------
missing=()
[ -x /usr/sbin/smtp-sink ] || missing+=(postfix)
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
if [ ${#missing[@]} -gt 0 ]; then
	SUDO=
	[ "$(id -u)" = 0 ] || SUDO=sudo
	say "installing ${missing[*]} (Debian packages; their system services are not started)"
	echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
	# policy-rc.d answering 101 is Debian's way to keep maintainer scripts
	# from starting services: the system-wide dovecot would otherwise listen
	# on every address. Only a file we created is removed again.
	policy_created=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
		$SUDO chmod 755 /usr/sbin/policy-rc.d
		policy_created=1
	fi
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
		{ [ -z "$policy_created" ] || $SUDO rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
	[ -z "$policy_created" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi
[ -x /usr/sbin/smtp-sink ] || die "no /usr/sbin/smtp-sink after installing postfix"
[ -x /usr/sbin/dovecot ] || die "no /usr/sbin/dovecot after installing dovecot-imapd"

# --- temp dir, cleanup --------------------------------------------------------
WORK=$(mktemp -d /tmp/pochta-compare.XXXXXX)
chmod 755 "$WORK" # Dovecot's unprivileged processes must traverse it
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "${KEEP:-}" ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port name pid
	for _ in $(seq 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		kill -0 "$3" 2>/dev/null || die "$2 exited before listening (see $WORK)"
		sleep 0.05
	done
	die "$2 did not listen on 127.0.0.1:$1 within 10 s"
}

say "building pochta and the load tools"
$GO build -o "$WORK/bin/pochta" ./cmd/pochta
$GO build -o "$WORK/bin/smtpload" ./bench/compare/smtpload
$GO build -o "$WORK/bin/imapload" ./bench/compare/imapload
RESULTS=${OUT:-$WORK/results.jsonl}
: >"$RESULTS"

# --- pochta -------------------------------------------------------------------
P_SUB=$(free_port) P_IMAP=$(free_port) P_SINK=$(free_port) P_DOVE=$(free_port)
mkdir -p "$WORK/pochta"
cat >"$WORK/pochta.toml" <<EOF
hostname = "bench.test"
domains = ["bench.test"]
data_dir = "$WORK/pochta"
[smtp]
submission = "127.0.0.1:$P_SUB"
submissions = ""
inbound = ""
allow_insecure_auth = true
[imap]
listen = "127.0.0.1:$P_IMAP"
tls_listen = ""
allow_insecure_auth = true
[email_queue]
enabled = false
[metrics]
listen = ""
[limits]
# The load tools are one client address issuing commands as fast as they
# can; the per-session pacing and the per-address connection limit would
# measure the limits, not the server.
commands_per_second = 0
max_connections_per_address = 0
[log]
level = "warn"
EOF
for u in sender reader imap; do
	printf '%s\n' "$PASSWORD" | "$WORK/bin/pochta" user add "$u@bench.test" --password-stdin --config "$WORK/pochta.toml" >/dev/null
done
"$WORK/bin/pochta" serve --config "$WORK/pochta.toml" >"$WORK/pochta.log" 2>&1 &
pids+=($!)
wait_port "$P_SUB" pochta "${pids[-1]}"
wait_port "$P_IMAP" pochta "${pids[-1]}"

# --- smtp-sink ----------------------------------------------------------------
# -u: drop root after binding; -m: as many connections as the load opens.
/usr/sbin/smtp-sink -u nobody -m 256 "127.0.0.1:$P_SINK" 1024 >"$WORK/smtp-sink.log" 2>&1 &
pids+=($!)
wait_port "$P_SINK" smtp-sink "${pids[-1]}"

# --- dovecot ------------------------------------------------------------------
D="$WORK/dovecot"
mkdir -p "$D/mail" "$D/home"
chown nobody:nogroup "$D/mail" "$D/home"
printf 'imap@bench.test:{PLAIN}%s::::::\n' "$PASSWORD" >"$D/passwd"
chmod 644 "$D/passwd"
cat >"$D/dovecot.conf" <<EOF
# Only what this comparison needs: IMAP on one loopback port, no TLS, one
# user from a passwd-file, Maildir under this directory. Everything else
# (fsync, indexes, caches) is Dovecot's default.
protocols = imap
listen = 127.0.0.1
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:$D/mail/%u
first_valid_uid = $(id -u nobody)
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $D/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$D/home/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $P_DOVE
  }
  inet_listener imaps {
    port = 0
  }
}
protocol imap {
  mail_max_userip_connections = 100
}
EOF
/usr/sbin/dovecot -F -c "$D/dovecot.conf" >"$D/stdout.log" 2>&1 &
pids+=($!)
wait_port "$P_DOVE" dovecot "${pids[-1]}"

# --- SMTP ---------------------------------------------------------------------
say "SMTP: 4 KiB messages at 1, 8, 32 clients, smtp-sink then pochta"
for c in 1 8 32; do
	n=$SMTP_MESSAGES
	[ "$c" = 1 ] && n=$((SMTP_MESSAGES / 4))
	# smtp-sink answers AUTH with a plain 250, which no client accepts as
	# a login; AUTH happens before the clock starts, so it is left out there.
	"$WORK/bin/smtpload" -target smtp-sink -addr "127.0.0.1:$P_SINK" \
		-clients "$c" -messages "$n" >>"$RESULTS"
	"$WORK/bin/smtpload" -target pochta -addr "127.0.0.1:$P_SUB" -user sender@bench.test -pass "$PASSWORD" \
		-clients "$c" -messages "$n" >>"$RESULTS"
done

# --- IMAP ---------------------------------------------------------------------
say "IMAP: APPEND $IMAP_MESSAGES messages to Dovecot, then FETCH and SEARCH ($RUNS runs)"
"$WORK/bin/imapload" -target dovecot -addr "127.0.0.1:$P_DOVE" -user imap@bench.test -pass "$PASSWORD" \
	-append "$IMAP_MESSAGES" -runs "$RUNS" >>"$RESULTS"
say "IMAP: the same for pochta"
"$WORK/bin/imapload" -target pochta -addr "127.0.0.1:$P_IMAP" -user imap@bench.test -pass "$PASSWORD" \
	-append "$IMAP_MESSAGES" -runs "$RUNS" >>"$RESULTS"

# --- report -------------------------------------------------------------------
python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
smtp = [r for r in rows if "msgs_per_sec" in r]
imap = {r["target"]: r for r in rows if "fetch_envelope_ms" in r}

print("| SMTP, 4 KiB messages | smtp-sink msgs/s | pochta msgs/s | pochta / smtp-sink | pochta p50 | pochta p99 |")
print("|---|---:|---:|---:|---:|---:|")
for c in sorted({r["clients"] for r in smtp}):
    s = next(r for r in smtp if r["clients"] == c and r["target"] == "smtp-sink")
    p = next(r for r in smtp if r["clients"] == c and r["target"] == "pochta")
    print(f"| {c} client{'s' if c > 1 else ''} ({p['messages']} msgs) | {s['msgs_per_sec']:,.0f} | {p['msgs_per_sec']:,.0f} "
          f"| {p['msgs_per_sec'] / s['msgs_per_sec']:.2f} | {p['p50_ms']:.2f} ms | {p['p99_ms']:.2f} ms |")
print()
d, p = imap["dovecot"], imap["pochta"]
print(f"| IMAP, {p['messages']:,} messages (Dovecot {d['messages']:,}) | Dovecot | pochta | pochta / Dovecot (time) |")
print("|---|---:|---:|---:|")
def row(label, key, unit="ms"):
    print(f"| {label} | {d[key]:,.0f} {unit} | {p[key]:,.0f} {unit} | {p[key] / d[key]:.2f} |")
print(f"| APPEND, 8 connections | {d['append_seconds']:.1f} s ({d['append_per_sec']:,.0f}/s) "
      f"| {p['append_seconds']:.1f} s ({p['append_per_sec']:,.0f}/s) | {p['append_seconds'] / d['append_seconds']:.2f} |")
row("FETCH 1:* (ENVELOPE FLAGS UID), first run", "fetch_envelope_first_ms")
row("FETCH 1:* (ENVELOPE FLAGS UID), median", "fetch_envelope_ms")
row(f"FETCH 1:* (UID BODY.PEEK[]), median ({p['fetch_body_bytes'] / 1e6:.1f} MB)", "fetch_body_ms")
row(f"UID SEARCH SUBJECT needle BODY haystack, median ({p['search_hits']} hits)", "search_ms")
if d["search_hits"] != p["search_hits"] or d["messages"] != p["messages"] or d["envelopes"] != p["envelopes"]:
    print(f"\nWARNING: the servers disagree: Dovecot {d['messages']} messages / {d['search_hits']} hits, "
          f"pochta {p['messages']} / {p['search_hits']}")
    sys.exit(1)
EOF
