#!/bin/sh
# Checks the alert rules (run by `make check-monitoring`, part of `make test`):
# promtool's syntax check, then the rule unit tests in pochta.rules.test.yml.
# promtool comes with Debian's prometheus package, which .ci/run installs
# when it is missing; without it this fails rather than skipping.
# The dashboard is checked by `go test ./monitoring/`.
set -eu
cd "$(dirname "$0")"
command -v promtool >/dev/null 2>&1 || {
	echo "check-monitoring: FAIL: promtool not found: apt-get install prometheus (.ci/run does)" >&2
	exit 1
}
promtool check rules pochta.rules.yml
promtool test rules pochta.rules.test.yml
echo "check-monitoring: 2 passed, 0 failed"
