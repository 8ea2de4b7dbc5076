# pochta: the two commands are `make run` and `make test`.
GO       ?= go
BIN      := bin/pochta
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
PREFIX   ?= /usr/local
DESTDIR  ?=

.PHONY: all build run test unit fuzz e2e lint bench clean install check-systemd check-monitoring imaptest

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pochta

## run: build and start a development instance (data in ./data, loopback ports, self-signed TLS)
run: build
	./$(BIN) serve

## test: lint, service and monitoring files, Go tests (unit + integration on real bbolt and loopback sockets), end-to-end suite
test: lint check-systemd check-monitoring unit fuzz e2e

unit:
	$(GO) test -count=1 -timeout 8m ./...

## fuzz: every fuzz target for FUZZTIME each (about 2 minutes in all); seed corpora are in each package's
## testdata/fuzz/NAME/, and a failing input is written there (rerun: go test -run NAME/FILE ./PKG/)
# Counts, not durations: Go 1.26's fuzz coordinator can fail a target with a
# bare "context deadline exceeded" and no crasher when a -fuzztime duration
# ends on a loaded machine (golang/go#75804, fixed in Go 1.27); a count of
# executions has no deadline to race. 20000 runs take 1-15 s per target here.
FUZZTIME     ?= 20000x
FUZZMINIMIZE ?= 1000x
FUZZ_TARGETS := ./config/:FuzzConfigParse ./smtpd/:FuzzPrepareMessage ./control/:FuzzControlRequest \
	./storage/boltstore/:FuzzDecodeParsed ./storage/boltstore/:FuzzParsedRecordRoundTrip \
	./storage/boltstore/:FuzzEnvelopeRecordRoundTrip ./storage/boltstore/:FuzzMetaAndMailboxRecordRoundTrip \
	./storage/boltstore/:FuzzBodyStructureMatchesGoIMAP \
	./imapd/wire/:FuzzDecoder ./imapd/protocol/:FuzzServerCommands ./imapd/inflate/:FuzzInflateMatchesStdlib
fuzz:
	@failed=""; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; echo "== fuzz $$name $$pkg ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg || failed="$$failed $$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failing:$$failed"; exit 1; fi

e2e: build
	POCHTA_BIN=$(CURDIR)/$(BIN) python3 e2e/run.py

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## bench: Go benchmarks, the load generator against a running daemon on bbolt and then on a throwaway
## PostgreSQL cluster (one node, two nodes on one database; needs Debian's postgresql), and pochta side by
## side with Postfix's smtp-sink and Dovecot (bench/compare: installs postfix and dovecot-imapd if missing; see BENCHMARKS.md)
bench: build
	$(GO) test -run '^$$' -bench . -count 1 ./storage/boltstore/ ./imapd/
	$(GO) run ./bench/loadgen --bin $(CURDIR)/$(BIN) --postgres
	GO=$(GO) bash bench/compare/run.sh

## install: bin/pochta to $(DESTDIR)$(PREFIX)/bin, the unit, the sysusers file, /etc/pochta/pochta.toml.example (run `make build` first)
SYSTEMDUNITDIR ?= /lib/systemd/system
SYSUSERSDIR    ?= /usr/lib/sysusers.d
install:
	@test -x $(BIN) || { echo "$(BIN) is missing: run 'make build' first (as yourself; sudo only for make install)"; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)/etc/pochta
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/pochta
	sed 's|/usr/local/bin/pochta|$(PREFIX)/bin/pochta|g' systemd/pochta.service >$(DESTDIR)$(SYSTEMDUNITDIR)/pochta.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/pochta.service
	install -m 0644 systemd/pochta.sysusers $(DESTDIR)$(SYSUSERSDIR)/pochta.conf
	@# Only the example: a real /etc/pochta/pochta.toml is never overwritten.
	install -m 0644 config.toml.example $(DESTDIR)/etc/pochta/pochta.toml.example

## check-systemd: make install into a temporary root, systemd-analyze verify, exposure <= 2.5, sysusers
check-systemd: build
	MAKE="$(MAKE)" sh systemd/check.sh

## check-monitoring: promtool checks and unit-tests the alert rules (the dashboard is checked by go test ./monitoring/)
check-monitoring:
	sh monitoring/check.sh

clean:
	rm -rf bin

## imaptest: Dovecot's IMAP compliance scripts against a fresh daemon per script group (not part of
## `make test`: imaptest is built by hand with ../shared/tools/imaptest/build.sh; see e2e/imaptest.py)
imaptest: build
	POCHTA_BIN=$(CURDIR)/$(BIN) python3 e2e/imaptest.py
