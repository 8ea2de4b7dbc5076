#!/bin/sh
# Checks what an operator installs as a service (run by `make check-systemd`,
# part of `make test`; needs bin/pochta built):
#   1. `make install DESTDIR=...` puts the binary, the unit, the sysusers
#      file and the example config where they belong, rewrites the unit's
#      paths to $(PREFIX), and leaves an existing pochta.toml alone;
#   2. `systemd-analyze verify` accepts the installed unit;
#   3. `systemd-analyze security --offline=yes` rates it 2.5 or lower;
#   4. systemd-sysusers reads the sysusers file and would create the user.
# systemd-analyze and systemd-sysusers come with Debian's systemd package,
# which .ci/run installs when they are missing; without them this fails.
set -eu
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
MAX_EXPOSURE=2.5

fail() { echo "check-systemd: FAIL: $*" >&2; exit 1; }
for tool in systemd-analyze systemd-sysusers; do
	command -v "$tool" >/dev/null 2>&1 || fail "$tool not found: apt-get install systemd (.ci/run does)"
done
[ -x bin/pochta ] || fail "bin/pochta is missing: run make build"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0

# 1. make install, default PREFIX, over an existing configuration.
dest=$tmp/root
mkdir -p "$dest/etc/pochta"
echo 'hostname = "kept.example"' >"$dest/etc/pochta/pochta.toml"
$MAKE --no-print-directory -s install DESTDIR="$dest" >/dev/null
expected="etc/pochta/pochta.toml
etc/pochta/pochta.toml.example
lib/systemd/system/pochta.service
usr/lib/sysusers.d/pochta.conf
usr/local/bin/pochta"
got=$(cd "$dest" && find . -type f | sed 's|^\./||' | LC_ALL=C sort)
[ "$got" = "$expected" ] || fail "make install DESTDIR: files
$got
want
$expected"
[ "$(cat "$dest/etc/pochta/pochta.toml")" = 'hostname = "kept.example"' ] || fail "make install changed an existing pochta.toml"
[ -x "$dest/usr/local/bin/pochta" ] || fail "installed binary is not executable"
cmp -s config.toml.example "$dest/etc/pochta/pochta.toml.example" || fail "pochta.toml.example differs from config.toml.example"
grep -qx 'ExecStart=/usr/local/bin/pochta serve --config /etc/pochta/pochta.toml' "$dest/lib/systemd/system/pochta.service" ||
	fail "installed unit's ExecStart is not /usr/local/bin/pochta serve"
passed=$((passed + 1))

# PREFIX is written into every command of the unit.
dest2=$tmp/prefixed
$MAKE --no-print-directory -s install DESTDIR="$dest2" PREFIX=/opt/pochta >/dev/null
[ -x "$dest2/opt/pochta/bin/pochta" ] || fail "PREFIX=/opt/pochta: no $dest2/opt/pochta/bin/pochta"
unit2=$dest2/lib/systemd/system/pochta.service
grep -qx 'ExecStart=/opt/pochta/bin/pochta serve --config /etc/pochta/pochta.toml' "$unit2" || fail "PREFIX=/opt/pochta: ExecStart not rewritten"
! grep -q /usr/local/bin "$unit2" || fail "PREFIX=/opt/pochta: the unit still names /usr/local/bin"
passed=$((passed + 1))

# 2. verify checks that every Exec path is an executable, so point the
# installed unit at the installed binary (the same rewrite as PREFIX does).
mkdir -p "$tmp/verify"
sed "s|/usr/local/bin/pochta|$dest/usr/local/bin/pochta|g" "$dest/lib/systemd/system/pochta.service" >"$tmp/verify/pochta.service"
out=$(systemd-analyze verify "$tmp/verify/pochta.service" 2>&1) || fail "systemd-analyze verify:
$out"
# verify exits 0 on some warnings; any line about our unit is one.
if echo "$out" | grep -q 'pochta\.service'; then
	fail "systemd-analyze verify warns:
$out"
fi
passed=$((passed + 1))

# 3. Exposure, as systemd rates it (--threshold is in tenths).
for unit in systemd/pochta.service "$dest/lib/systemd/system/pochta.service"; do
	report=$(systemd-analyze security --offline=yes --threshold=25 "$unit" 2>&1) ||
		fail "systemd-analyze security rates $unit above $MAX_EXPOSURE:
$(echo "$report" | grep -E '✗|Overall')"
	level=$(echo "$report" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	[ -n "$level" ] || fail "no exposure level in the systemd-analyze security output for $unit"
	awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }' || fail "$unit: exposure $level > $MAX_EXPOSURE"
done
echo "check-systemd: exposure $level (at most $MAX_EXPOSURE)"
passed=$((passed + 1))

# 4. sysusers: the file parses and creates the pochta user and group.
out=$(systemd-sysusers --root="$dest" --dry-run "$dest/usr/lib/sysusers.d/pochta.conf" 2>&1) || fail "systemd-sysusers: $out"
if echo "$out" | grep -q 'pochta\.conf:'; then
	fail "systemd-sysusers complains: $out"
fi
echo "$out" | grep -q "Creating user 'pochta'" || fail "systemd-sysusers would not create the pochta user: $out"
passed=$((passed + 1))

echo "check-systemd: $passed passed, 0 failed"
