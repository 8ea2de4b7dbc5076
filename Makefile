# pochta: the two commands are `make run` and `make test`.
GO       ?= go
BIN      := bin/pochta
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
PREFIX   ?= /usr/local
DESTDIR  ?=

.PHONY: all build run test unit e2e lint bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pochta

## run: build and start a development instance (data in ./data, loopback ports, self-signed TLS)
run: build
	./$(BIN) serve

## test: lint, Go tests (unit + integration on real bbolt and loopback sockets), end-to-end suite
test: lint unit e2e

unit:
	$(GO) test -count=1 -timeout 8m ./...

e2e: build
	POCHTA_BIN=$(CURDIR)/$(BIN) python3 e2e/run.py

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## bench: Go benchmarks and the load generator against a running daemon (see BENCHMARKS.md)
bench: build
	$(GO) test -run '^$$' -bench . -count 1 ./storage/ ./imapd/
	$(GO) run ./bench/loadgen --bin $(CURDIR)/$(BIN)

clean:
	rm -rf bin
