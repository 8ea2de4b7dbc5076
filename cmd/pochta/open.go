package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/control"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
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
// runs, one working on the database directly. close releases it. Where no
// database exists it fails (noDatabaseError) rather than create one: a
// command run from the wrong directory must not answer from a new, empty
// store as if every user were gone.
func adminAPI(cfg *config.Config) (api control.API, close func(), err error) {
	return openAdminAPI(cfg, false)
}

// withAPICreating is withAPI for the one admin command that may start a
// store, `user add`: with no database yet, it creates one.
func withAPICreating(e *env, fn func(control.API) error) error {
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	api, done, err := openAdminAPI(cfg, true)
	if err != nil {
		return err
	}
	defer done()
	return fn(api)
}

func openAdminAPI(cfg *config.Config, create bool) (api control.API, close func(), err error) {
	client, err := control.Dial(cfg.SocketPath())
	if err == nil {
		return client, func() {}, nil
	}
	if !errors.Is(err, control.ErrNoDaemon) {
		return nil, nil, err
	}
	if err := checkBackend(cfg); err != nil {
		return nil, nil, err
	}
	if create {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("data directory: %w", err)
		}
	}
	store, err := boltstore.Open(cfg.DatabasePath(), boltstore.Options{Logger: slog.New(slog.DiscardHandler), MustExist: !create})
	if err != nil {
		if errors.Is(err, storage.ErrNoDatabase) {
			return nil, nil, noDatabaseError(cfg)
		}
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

// checkBackend refuses a configuration whose database this build cannot
// open: a PostgreSQL URL (issue 13) is recognised, so it is never taken for
// a file name, but the backend is not built in yet.
func checkBackend(cfg *config.Config) error {
	if cfg.DatabaseURL() == "" {
		return nil
	}
	return fmt.Errorf("[message_server] database is a PostgreSQL URL (%s), but the PostgreSQL backend is not available in this build of pochta yet; set database to a bbolt file name such as \"pochta.db\"",
		cfg.RedactedDatabase())
}

// noDatabaseError says where the command looked and how to point it at the
// right place.
func noDatabaseError(cfg *config.Config) error {
	path, err := filepath.Abs(cfg.DatabasePath())
	if err != nil {
		path = cfg.DatabasePath()
	}
	where := "give the configuration that names it with --config FILE (or $" + config.EnvVar + ")"
	if !filepath.IsAbs(cfg.DataDir) {
		where += fmt.Sprintf(", or run the command in the directory the daemon (`make run`) was started in: data_dir %q is relative to the current directory", cfg.DataDir)
	}
	return fmt.Errorf("no database at %s (this command does not create one); %s", path, where)
}
