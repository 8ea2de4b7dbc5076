package main

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/expiry"
	"github.com/pochta/pochta/queue"
	"github.com/pochta/pochta/tlsconf"
	"github.com/pochta/pochta/trace"
)

// reloader applies a re-read configuration file to the running daemon
// (SIGHUP). What can change live is applied; every other changed section
// is named in a log line as waiting for a restart. A file that does not
// load changes nothing: the daemon keeps running with what it has.
type reloader struct {
	path    string         // "" for the built-in development config
	running *config.Config // the configuration in force
	level   *slog.LevelVar
	certs   *tlsconf.Manager
	queue   *queue.Queue // nil when [email_queue] is disabled
	sweeper *expiry.Sweeper
	trace   *trace.Tracer
	log     *slog.Logger
}

// liveKeys are applied by reload; everything else needs a restart.
var liveKeys = []string{
	"[log] level", "[tls] certificate contents", "[email_queue] relay settings, retries, notices and retention",
	"[email_limit]", "[alerts] admins", "[message_server] message_lifetime",
	"[log] trace_users (for logins from now on)",
}

// reload re-reads the file and applies it.
func (r *reloader) reload() error {
	if r.path == "" {
		return errors.New("no configuration file (built-in development config): nothing to reload")
	}
	next, err := config.Load(r.path)
	if err != nil {
		return fmt.Errorf("reload refused, nothing changed: %w", err)
	}
	var errs []error
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(next.Log.Level)); err == nil {
		r.level.Set(lv)
	}
	if err := r.certs.Reload(); err != nil {
		errs = append(errs, fmt.Errorf("TLS certificate: %w (the previous certificate stays in use)", err))
	}
	if r.queue != nil && next.EmailQueue.Enabled {
		o, err := queueOptions(next)
		if err == nil {
			err = r.queue.Reconfigure(o)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("queue: %w (the previous queue settings stay in force)", err))
		}
	}
	if err := r.sweeper.SetLifetime(next.MessageServer.MessageLifetime.Duration); err != nil {
		errs = append(errs, err)
	}
	r.trace.Set(next.Log.TraceUsers)
	for _, key := range restartNeeded(r.running, next) {
		r.log.Warn("configuration changed but takes effect only after a restart", "key", key)
	}
	r.running = next
	r.log.Info("configuration reloaded", "path", r.path, "applied", liveKeys)
	return errors.Join(errs...)
}

// restartNeeded names the changed settings that reload cannot apply.
func restartNeeded(old, next *config.Config) []string {
	var keys []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	diff("hostname", old.Hostname, next.Hostname)
	diff("domains", old.Domains, next.Domains)
	diff("data_dir", old.DataDir, next.DataDir)
	diff("[message_server] database", old.MessageServer.Database, next.MessageServer.Database)
	diff("[message_server] poll_interval", old.MessageServer.PollInterval, next.MessageServer.PollInterval)
	diff("[message_server] node", old.MessageServer.Node, next.MessageServer.Node)
	diff("[smtp]", old.SMTP, next.SMTP)
	diff("[imap]", old.IMAP, next.IMAP)
	diff("[tls] cert_file, key_file", old.TLS, next.TLS)
	diff("[email_queue] enabled", old.EmailQueue.Enabled, next.EmailQueue.Enabled)
	diff("[metrics]", old.Metrics, next.Metrics)
	diff("[http]", old.HTTP, next.HTTP)
	diff("[control]", old.Control, next.Control)
	diff("[log] format", old.Log.Format, next.Log.Format)
	diff("[limits]", old.Limits, next.Limits)
	return keys
}
