package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/control"
	"github.com/pochta/pochta/storage"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// loadConfig finds and loads the configuration as SPEC.md describes.
func loadConfig(e *env) (*config.Config, error) {
	cfg, _, err := config.Resolve(e.o.config)
	if err != nil {
		return nil, err
	}
	e.log, _ = newLogger(e.stderr, cfg.Log.Format, cfg.Log.Level)
	return cfg, nil
}

// adminAPI returns the control API of the running daemon, or, when none
// runs, one working on the database directly. close releases it.
func adminAPI(cfg *config.Config) (api control.API, close func(), err error) {
	client, err := control.Dial(cfg.SocketPath())
	if err == nil {
		return client, func() {}, nil
	}
	if !errors.Is(err, control.ErrNoDaemon) {
		return nil, nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("data directory: %w", err)
	}
	store, err := storage.Open(cfg.DatabasePath(), storage.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		if errors.Is(err, storage.ErrLocked) {
			return nil, nil, fmt.Errorf("the database %s is held by a running daemon, but its control socket %s does not answer: %w",
				cfg.DatabasePath(), cfg.SocketPath(), err)
		}
		return nil, nil, err
	}
	local := &control.Local{
		Store:           store,
		Version:         version,
		PollInterval:    cfg.MessageServer.PollInterval.Duration,
		MessageLifetime: cfg.MessageServer.MessageLifetime.Duration,
		Domains:         cfg.Domains,
		Relay:           func() control.RelayState { return relayWithoutDaemon(cfg) },
	}
	return local, func() { store.Close() }, nil
}
