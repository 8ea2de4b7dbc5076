#!/usr/bin/env bash
# bench/compare/run.sh: pochta side by side with the servers people would
# otherwise install, on this machine, in one run (see README.md here).
#
#   SMTP intake of 4 KiB messages at 1, 8 and 32 clients, logged in once per
#   connection before the clock starts: Postfix's smtp-sink (accepts and
#   discards: the protocol ceiling), Postfix delivering into Dovecot over
#   LMTP (the stack people install; timed to Postfix's 250 and to the last
#   message in Dovecot's Maildir) and pochta's submission port (250 after
#   the message is stored durably).
#
#   A new connection, EHLO and AUTH PLAIN for every message (8 clients):
#   Postfix with Dovecot's SASL against pochta, both checking a bcrypt hash
#   of cost 10.
#
#   IMAP with the same messages APPENDed to Dovecot (Maildir) and to pochta:
#   FETCH 1:* (ENVELOPE FLAGS UID), FETCH 1:* (BODY.PEEK[]), UID SEARCH
#   SUBJECT "needle", UID SEARCH BODY "haystack", and both at once.
#
# The servers run interleaved, ROUNDS times (each round runs every measure
# once per server, in the same order), and the tables show the median of
# the rounds with their range, and ratios of the medians. /proc/loadavg is
# recorded at the start and the end: on a shared machine the figures move.
#
# Installs Debian's postfix, dovecot-imapd and dovecot-lmtpd when missing
# (apt-get, without starting their system services), runs everything on
# 127.0.0.1 only, on free unprivileged ports, in a temporary directory with
# its own configs (a private Postfix master with its own config, queue and
# data directories, never the system instance), and stops all of it on
# exit. Prints the tables; the raw results are JSON lines in $OUT (default:
# a file in the temp dir).
#
# Knobs: ROUNDS, SMTP_MESSAGES (per level and round; 1 client sends a
# quarter), AUTH_MESSAGES (per round), IMAP_MESSAGES (per round, each round
# in a mailbox of its own), RUNS (each IMAP query per round; its median
# counts), KEEP=1 keeps the temp dir, ONLY=imap runs only the IMAP part,
# DOVECOT_FILL=maildir fills Dovecot's mailbox by writing its Maildir
# directly instead of APPENDing (for 50,000 messages: Dovecot's APPEND takes
# about 11 ms a message here; the APPEND row is then pochta's alone).
set -euo pipefail

cd "$(dirname "$0")/../.."
GO=${GO:-go}
ROUNDS=${ROUNDS:-3}
SMTP_MESSAGES=${SMTP_MESSAGES:-3000}
AUTH_MESSAGES=${AUTH_MESSAGES:-200}
IMAP_MESSAGES=${IMAP_MESSAGES:-10000}
RUNS=${RUNS:-3}
ONLY=${ONLY:-all}
DOVECOT_FILL=${DOVECOT_FILL:-append}
case "$ONLY" in all | imap) ;; *) echo "compare: ONLY is all or imap, not $ONLY" >&2; exit 2 ;; esac
case "$DOVECOT_FILL" in append | maildir) ;; *) echo "compare: DOVECOT_FILL is append or maildir, not $DOVECOT_FILL" >&2; exit 2 ;; esac
PASSWORD=bench-Pass-1

say() { printf '%s\n' "$*" >&2; }
die() { say "compare: $*"; exit 1; }

# --- install ----------------------------------------------------------------
missing=()
[ -x /usr/sbin/smtp-sink ] || missing+=(postfix)
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
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
[ -x /usr/lib/dovecot/lmtp ] || die "no /usr/lib/dovecot/lmtp after installing dovecot-lmtpd"

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
P_PF=$(free_port) P_LMTP=$(free_port) P_AUTH=$(free_port)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
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
# The same bcrypt cost as pochta's (10), so that a login costs both the same.
hash=$(doveadm pw -s BLF-CRYPT -r 10 -p "$PASSWORD")
: >"$D/passwd"
for u in imap sender reader; do printf '%s@bench.test:%s::::::\n' "$u" "$hash" >>"$D/passwd"; done
chmod 644 "$D/passwd"
cat >"$D/dovecot.conf" <<EOF
# Only what this comparison needs: IMAP and LMTP on loopback ports, the auth
# service Postfix's SASL asks, no TLS, users from a passwd-file with bcrypt
# (cost 10) hashes, Maildir under this directory. Everything else (fsync,
# indexes, caches) is Dovecot's default.
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:$D/mail/%u
first_valid_uid = $(id -u nobody)
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = username_format=%u $D/passwd
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
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $P_LMTP
  }
}
service auth {
  inet_listener {
    address = 127.0.0.1
    port = $P_AUTH
  }
}
protocol imap {
  mail_max_userip_connections = 100
}
EOF
/usr/sbin/dovecot -F -c "$D/dovecot.conf" >"$D/stdout.log" 2>&1 &
pids+=($!)
wait_port "$P_DOVE" dovecot "${pids[-1]}"
wait_port "$P_LMTP" "dovecot lmtp" "${pids[-1]}"
wait_port "$P_AUTH" "dovecot auth" "${pids[-1]}"

# --- postfix ------------------------------------------------------------------
# A private master with its own config, queue and data directories here
# (post-install creates the queue; the postfix command itself would want the
# directory listed in the system's main.cf), smtpd on one loopback port, AUTH
# through Dovecot's auth service, every bench.test recipient delivered to
# Dovecot over LMTP. Queue, process and flow-control settings are Postfix's
# defaults; master.cf is Debian's, unchrooted, with the smtpd port moved.
PF="$WORK/postfix"
mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file_prefixes = $PF
maillog_file = $PF/postfix.log
virtual_mailbox_domains = bench.test
virtual_transport = lmtp:inet:127.0.0.1:$P_LMTP
smtpd_reject_unlisted_recipient = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:$P_AUTH
smtpd_sasl_security_options = noanonymous
smtpd_tls_security_level = none
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
EOF
awk -v port="$P_PF" '
	/^#/ || /^[ \t]*$/ { next }
	/^[ \t]/ { if (keep) print; next }
	{ keep = 0 }
	$1 == "smtp" && $2 == "inet" { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
	$8 == "pipe" || $1 == "tlsmgr" { next }
	{ $5 = "n"; print; keep = 1 }
' /etc/postfix/master.cf >"$PF/etc/master.cf"
MAIL_CONFIG="$PF/etc" /usr/lib/postfix/sbin/post-install config_directory="$PF/etc" meta_directory=/etc/postfix \
	create-missing >"$PF/post-install.log" 2>&1 || die "postfix post-install failed (see $PF/post-install.log)"
chown postfix:postfix "$PF/data" # master's lock file, made by the mail owner
/usr/lib/postfix/sbin/master -c "$PF/etc" -d >"$PF/master.log" 2>&1 &
pids+=($!)
wait_port "$P_PF" postfix "${pids[-1]}"

# delivered counts the messages in reader@bench.test's Maildir at Dovecot.
delivered() { { find "$D/mail/reader@bench.test" -type f \( -path '*/new/*' -o -path '*/cur/*' \) 2>/dev/null || true; } | wc -l; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# smtp_run TARGET ROUND CLIENTS MESSAGES [smtpload flags...]
smtp_run() {
	local target=$1 round=$2 c=$3 n=$4
	shift 4
	case $target in
	smtp-sink)
		# smtp-sink answers AUTH with a plain 250, which no client accepts
		# as a login; AUTH happens before the clock starts, so it is left out.
		"$WORK/bin/smtpload" -target smtp-sink -round "$round" -addr "127.0.0.1:$P_SINK" -clients "$c" -messages "$n" "$@" >>"$RESULTS"
		;;
	pochta)
		"$WORK/bin/smtpload" -target pochta -round "$round" -addr "127.0.0.1:$P_SUB" -user sender@bench.test -pass "$PASSWORD" \
			-clients "$c" -messages "$n" "$@" >>"$RESULTS"
		;;
	postfix)
		# Timed twice: to Postfix's last 250 (smtpload), and to the last
		# message in Dovecot's Maildir (pochta's 250 comes after its store).
		local before t0 line got t1
		before=$(delivered)
		t0=$(date +%s.%N)
		line=$("$WORK/bin/smtpload" -target postfix -round "$round" -addr "127.0.0.1:$P_PF" -user sender@bench.test -pass "$PASSWORD" \
			-clients "$c" -messages "$n" "$@")
		echo "$line" >>"$RESULTS"
		got=$(field "$line" messages)
		for _ in $(seq 3000); do
			[ "$(delivered)" -ge $((before + got)) ] && break
			sleep 0.1
		done
		[ "$(delivered)" -ge $((before + got)) ] || die "Postfix did not deliver $got messages into Dovecot within 5 minutes (see $PF/postfix.log)"
		t1=$(date +%s.%N)
		python3 -c 'import json,sys; r=json.loads(sys.argv[1]); s=float(sys.argv[3])-float(sys.argv[2])
print(json.dumps({"target":"postfix-delivered","round":r.get("round",0),"reconnect":r.get("reconnect",False),"clients":r["clients"],"messages":r["messages"],"seconds":s,"msgs_per_sec":r["messages"]/s}))' \
			"$line" "$t0" "$t1" >>"$RESULTS"
		;;
	esac
}

say "load average at the start: $LOAD_START"
echo "{\"loadavg_start\": \"$LOAD_START\"}" >>"$RESULTS"
for round in $(seq "$ROUNDS"); do
	# --- SMTP -----------------------------------------------------------------
	if [ "$ONLY" = all ]; then
	say "round $round/$ROUNDS: SMTP, 4 KiB messages at 1, 8, 32 clients: smtp-sink, Postfix+Dovecot, pochta"
	for c in 1 8 32; do
		n=$SMTP_MESSAGES
		[ "$c" = 1 ] && n=$((SMTP_MESSAGES / 4))
		for target in smtp-sink postfix pochta; do
			smtp_run "$target" "$round" "$c" "$n"
		done
	done
	say "round $round/$ROUNDS: a new connection and AUTH for each of $AUTH_MESSAGES messages, 8 clients"
	for target in postfix pochta; do
		smtp_run "$target" "$round" 8 "$AUTH_MESSAGES" -reconnect
	done
	fi
	# --- IMAP -----------------------------------------------------------------
	say "round $round/$ROUNDS: IMAP, APPEND $IMAP_MESSAGES messages to a new mailbox, then FETCH and SEARCH ($RUNS runs): Dovecot, pochta"
	fill=()
	[ "$DOVECOT_FILL" = maildir ] && fill=(-maildir "$D/mail/imap@bench.test/.bench$round")
	"$WORK/bin/imapload" -target dovecot -round "$round" -mailbox "bench$round" -addr "127.0.0.1:$P_DOVE" -user imap@bench.test -pass "$PASSWORD" \
		-append "$IMAP_MESSAGES" -runs "$RUNS" "${fill[@]}" >>"$RESULTS"
	"$WORK/bin/imapload" -target pochta -round "$round" -mailbox "bench$round" -addr "127.0.0.1:$P_IMAP" -user imap@bench.test -pass "$PASSWORD" \
		-append "$IMAP_MESSAGES" -runs "$RUNS" >>"$RESULTS"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
echo "{\"loadavg_end\": \"$LOAD_END\"}" >>"$RESULTS"
say "load average at the end: $LOAD_END"

# --- report -------------------------------------------------------------------
python3 - "$RESULTS" "$ONLY" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
only = sys.argv[2]
load = {k: v for r in rows for k, v in r.items() if k.startswith("loadavg")}
rounds = max(r.get("round", 0) for r in rows)

def pick(target, key, **match):
    imap = match.pop("imap", False) or key.startswith(("fetch", "search", "append")) or key == "envelopes"
    vals = [r[key] for r in rows if r.get("target") == target and ("fetch_envelope_ms" in r) == imap and all(r.get(k, False if k == "reconnect" else None) == v for k, v in match.items())]
    if len(vals) != rounds:
        sys.exit(f"expected {rounds} results for {target} {key} {match}, got {len(vals)}")
    return vals

def med(vals):
    return statistics.median(vals)

def cell(vals, fmt):
    m = med(vals)
    if len(vals) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(vals))}–{fmt(max(vals))})"

rate = lambda v: f"{v:,.0f}"
ms = lambda v: f"{v:,.0f} ms" if v >= 10 else f"{v:.1f} ms"
print(f"load average (1, 5, 15 min): start {load.get('loadavg_start')}, end {load.get('loadavg_end')}")
print(f"median of {rounds} interleaved rounds (range in brackets); ratios are of the medians\n")

def smtp_tables():
    print("| SMTP intake, 4 KiB, msgs/s | smtp-sink | Postfix → Dovecot, to 250 | Postfix → Dovecot, all in Maildir | pochta | pochta / Postfix (250) | pochta / Postfix (in Maildir) | p50 pochta / Postfix |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in (1, 8, 32):
        sink = pick("smtp-sink", "msgs_per_sec", clients=c, reconnect=False)
        pf = pick("postfix", "msgs_per_sec", clients=c, reconnect=False)
        pfd = pick("postfix-delivered", "msgs_per_sec", clients=c, reconnect=False)
        po = pick("pochta", "msgs_per_sec", clients=c, reconnect=False)
        n = pick("pochta", "messages", clients=c, reconnect=False)[0]
        p50 = (med(pick("pochta", "p50_ms", clients=c, reconnect=False)), med(pick("postfix", "p50_ms", clients=c, reconnect=False)))
        print(f"| {c} client{'s' if c > 1 else ''} ({n} msgs/round) | {cell(sink, rate)} | {cell(pf, rate)} | {cell(pfd, rate)} | {cell(po, rate)} "
              f"| {med(po) / med(pf):.2f} | {med(po) / med(pfd):.2f} | {p50[0]:.1f} / {p50[1]:.1f} ms |")
    print()
    print("| new connection + EHLO + AUTH PLAIN per message (bcrypt cost 10), 8 clients | Postfix + Dovecot SASL | pochta | pochta / Postfix |")
    print("|---|---:|---:|---:|")
    pf = pick("postfix", "msgs_per_sec", clients=8, reconnect=True)
    pfd = pick("postfix-delivered", "msgs_per_sec", clients=8, reconnect=True)
    po = pick("pochta", "msgs_per_sec", clients=8, reconnect=True)
    n = pick("pochta", "messages", clients=8, reconnect=True)[0]
    print(f"| msgs/s to the 250 ({n} msgs/round) | {cell(pf, rate)} | {cell(po, rate)} | {med(po) / med(pf):.2f} |")
    print(f"| msgs/s until all are in the mailbox | {cell(pfd, rate)} | {cell(po, rate)} | {med(po) / med(pfd):.2f} |")
    p50 = lambda t: pick(t, "p50_ms", clients=8, reconnect=True)
    print(f"| p50 per message | {cell(p50('postfix'), ms)} | {cell(p50('pochta'), ms)} | {med(p50('pochta')) / med(p50('postfix')):.2f} |")
    print()

if only == "all":
    smtp_tables()

im = lambda t, k: pick(t, k, imap=True)
msgs = im("pochta", "messages")[0]
print(f"| IMAP, {msgs:,} messages per round, time | Dovecot | pochta | pochta / Dovecot |")
print("|---|---:|---:|---:|")
def row(label, key, fmt=ms):
    d, p = im("dovecot", key), im("pochta", key)
    print(f"| {label} | {cell(d, fmt)} | {cell(p, fmt)} | {med(p) / med(d):.2f} |")
if any(r.get("filled") == "maildir" for r in rows if r.get("target") == "dovecot"):
    p = im("pochta", "append_seconds")
    print(f"| APPEND, 8 connections (Dovecot's Maildir written directly) | | {cell(p, lambda v: f'{v:.1f} s')} | |")
else:
    row("APPEND, 8 connections", "append_seconds", lambda v: f"{v:.1f} s")
row("FETCH 1:* (ENVELOPE FLAGS UID), first run", "fetch_envelope_first_ms")
row("FETCH 1:* (ENVELOPE FLAGS UID), median", "fetch_envelope_ms")
body_mb = im("pochta", "fetch_body_bytes")[0] / 1e6
row(f"FETCH 1:* (UID BODY.PEEK[]) ({body_mb:.1f} MB)", "fetch_body_ms")
row(f"UID SEARCH SUBJECT needle ({im('pochta', 'search_subject_hits')[0]} hits)", "search_subject_ms")
row(f"UID SEARCH BODY haystack ({im('pochta', 'search_body_hits')[0]} hits)", "search_body_ms")
row(f"UID SEARCH SUBJECT needle BODY haystack ({im('pochta', 'search_hits')[0]} hits)", "search_ms")
row("UID SORT (DATE) ALL", "sort_date_ms")
row("UID SORT (SUBJECT) ALL", "sort_subject_ms")
row(f"EXAMINE (QRESYNC) after 100 flag changes ({im('pochta', 'qresync_fetched')[0]} FETCH)", "qresync_ms")
bad = False
for k in ("messages", "envelopes", "search_hits", "search_subject_hits", "search_body_hits", "sorted", "qresync_fetched"):
    if im("dovecot", k) != im("pochta", k):
        print(f"\nWARNING: the servers disagree on {k}: Dovecot {im('dovecot', k)}, pochta {im('pochta', k)}")
        bad = True
sys.exit(1 if bad else 0)
EOF
