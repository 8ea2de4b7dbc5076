package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/control"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/storage/pgstore"
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
	if cfg.DatabaseURL() != "" {
		return localAPI(cfg, nil)
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
	return localAPI(cfg, store)
}

// localAPI is the control API working on the database itself: store, or,
// when nil, the PostgreSQL database the configuration names (its schema
// migrated; the URL says where, so no data directory is involved).
func localAPI(cfg *config.Config, store storage.Store) (control.API, func(), error) {
	if store == nil {
		var err error
		if store, err = openPostgres(cfg, slog.New(slog.DiscardHandler), false); err != nil {
			return nil, nil, err
		}
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

// openPostgres opens the PostgreSQL database of [message_server] database
// (issue 13): the store several nodes share. An error names the server
// without the URL's password.
func openPostgres(cfg *config.Config, logger *slog.Logger, housekeeping bool) (storage.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), postgresOpenTimeout)
	defer cancel()
	store, err := pgstore.Open(ctx, cfg.DatabaseURL(), pgstore.Options{Logger: logger, Quota: cfg.MessageServer.Quota, Housekeeping: housekeeping})
	if err != nil {
		// One line: a driver error lists each address it tried on a
		// line of its own.
		msg := strings.Join(strings.Fields(redactURL(err.Error(), cfg)), " ")
		return nil, fmt.Errorf("[message_server] database %s: %s", cfg.RedactedDatabase(), msg)
	}
	return store, nil
}

// postgresOpenTimeout bounds connecting to PostgreSQL and migrating its
// schema at start.
const postgresOpenTimeout = 30 * time.Second

// redactURL removes the database URL's password from an error text (a
// driver error may quote the connection string).
func redactURL(msg string, cfg *config.Config) string {
	u, err := url.Parse(cfg.DatabaseURL())
	if err != nil || u.User == nil {
		return msg
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
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
