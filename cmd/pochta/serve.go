package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pochta/pochta/auth"
	"github.com/pochta/pochta/autoconfig"
	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/control"
	"github.com/pochta/pochta/expiry"
	"github.com/pochta/pochta/imapd"
	"github.com/pochta/pochta/metrics"
	"github.com/pochta/pochta/queue"
	"github.com/pochta/pochta/smtpd"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/tlsconf"
	"github.com/pochta/pochta/trace"
	"github.com/pochta/pochta/web"
)

// shutdownGrace bounds how long SMTP DATA and IMAP APPEND in flight may take
// to finish once the daemon is told to stop.
const shutdownGrace = 30 * time.Second

func serveCommand() *command {
	return &command{
		name: "serve", args: "",
		summary: "runs the daemon in the foreground (systemd runs this)",
		run: func(ctx context.Context, e *env, _ []string) error {
			cfg, path, err := config.Resolve(e.o.config)
			if err != nil {
				return err
			}
			return serve(ctx, e, cfg, path)
		},
	}
}

// listener is one socket the daemon serves, bound before anything is
// announced so that a taken port fails the start instead of half-starting.
type listener struct {
	name  string
	addr  string
	l     net.Listener
	serve func(net.Listener) error
}

// serve wires the daemon together: config -> storage -> servers -> signals.
func serve(ctx context.Context, e *env, cfg *config.Config, cfgPath string) error {
	logger, level := newLogger(e.stderr, cfg.Log.Format, cfg.Log.Level)
	// Libraries that log through slog's default get the same handler.
	slog.SetDefault(logger)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	// One registry for the whole daemon, handed to every package that
	// counts something (no package-level metric globals).
	reg := newRegistry()
	counts := metrics.New(reg, cfg.DatabasePath())
	var store storage.Store
	var err error
	if cfg.DatabaseURL() != "" {
		// PostgreSQL (issue 13): the data directory still holds the
		// control socket and the certificates.
		// This node takes part in the cluster's housekeeping; a command
		// does not.
		if store, err = openPostgres(cfg, logger, true); err != nil {
			return err
		}
	} else {
		if store, err = boltstore.Open(cfg.DatabasePath(), boltstore.Options{Logger: logger, Quota: cfg.MessageServer.Quota}); err != nil {
			return err
		}
		if err := makePrivate(logger, cfg.DatabasePath()); err != nil {
			store.Close()
			return err
		}
	}
	defer func() {
		if err := store.Close(); err != nil {
			logger.Error("closing the database", "err", err)
		}
	}()
	// The unread-lifetime sweep; stopped (by the deferred call, which runs
	// before the store's Close) before the database closes.
	sweeper, err := expiry.New(expiry.Options{
		Store:      store,
		Lifetime:   cfg.MessageServer.MessageLifetime.Duration,
		Registerer: reg,
		Logger:     logger.With("component", "expiry"),
	})
	if err != nil {
		return err
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		sweeper.Run(sweepCtx)
	}()
	defer func() {
		stopSweep()
		<-sweepDone
	}()
	// The outbound queue starts before the servers, so the first message
	// queued is picked up, and stops (deferred) after them and before the
	// store closes.
	var q *queue.Queue
	if cfg.EmailQueue.Enabled {
		if q, err = startQueue(ctx, cfg, store, reg, counts.Queue(), logger); err != nil {
			return err
		}
		defer q.Close()
	}

	certs, err := tlsconf.Load(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.DataDir, cfg.Hostname)
	if err != nil {
		return err
	}
	// One set of traced users for both servers; reload swaps it.
	tracer := trace.New(logger)
	tracer.Set(cfg.Log.TraceUsers)
	reloads := &reloader{path: cfgPath, running: cfg, level: level, certs: certs, queue: q, sweeper: sweeper, trace: tracer, log: logger}
	limits := newSharedLimits(cfg.Limits)
	// One password checker for every port: its login cache must be
	// dropped on every password change, so the control API changes users
	// through the store it guards.
	logins := auth.New(auth.Options{Check: store.Authenticate, Logins: limits.logins})
	smtpServer, err := smtpd.New(smtpd.Options{
		Hostname:          cfg.Hostname,
		Domains:           cfg.Domains,
		Store:             store,
		TLSConfig:         certs.TLSConfig(),
		MaxMessageSize:    cfg.SMTP.MaxMessageSize,
		SpoolDir:          cfg.DataDir,
		MaxRecipients:     cfg.SMTP.MaxRecipients,
		AllowInsecureAuth: cfg.SMTP.AllowInsecureAuth,
		TrustedNetworks:   cfg.SMTP.TrustedPrefixes(),
		QueueEnabled:      cfg.EmailQueue.Enabled,
		Logger:            logger.With("proto", "smtp"),
		Metrics:           counts.SMTP(),
		ReadTimeout:       cfg.Limits.SMTPIdleTimeout.Duration,
		Auth:              logins,
		Connections:       limits.connections,
		CommandRate:       limits.commandRate,
		Trace:             tracer,
	})
	if err != nil {
		return err
	}
	imapServer, err := imapd.New(imapd.Options{
		Store:             store,
		TLSConfig:         certs.TLSConfig(),
		AllowInsecureAuth: cfg.IMAP.AllowInsecureAuth,
		MaxMessageSize:    cfg.SMTP.MaxMessageSize,
		Logger:            logger.With("proto", "imap"),
		Metrics:           counts.IMAP(),
		IdleTimeout:       cfg.Limits.IMAPIdleTimeout.Duration,
		CommandTimeout:    cfg.Limits.IMAPCommandTimeout.Duration,
		Auth:              logins,
		Connections:       limits.connections,
		CommandRate:       limits.commandRate,
		Trace:             tracer,
		CompressDeflate:   true, // SPEC: COMPRESS=DEFLATE
	})
	if err != nil {
		return err
	}

	// A password changed or a user deleted, here or on another node
	// sharing the database: cached logins go, a deleted user's IMAP
	// sessions end. Waited for before the store closes.
	var accountWork sync.WaitGroup
	defer accountWork.Wait()
	store.Listen(followAccounts(store, logins.Follow, imapServer.EndUserSessions, &accountWork))

	api := &control.Local{
		Store:           logins.Guard(store),
		Version:         version,
		PollInterval:    cfg.MessageServer.PollInterval.Duration,
		MessageLifetime: cfg.MessageServer.MessageLifetime.Duration,
		Domains:         cfg.Domains,
		Running:         true,
		OnUserDeleted:   imapServer.EndUserSessions,
		Relay:           func() control.RelayState { return relayState(reloads.current(), q) },
	}
	controlServer := &http.Server{Handler: control.Handler(api, logger), ReadHeaderTimeout: 10 * time.Second}
	metricsServer := &http.Server{Handler: metricsHandler(reg), ReadHeaderTimeout: 10 * time.Second}
	// Public: Thunderbird autoconfig and Outlook autodiscover.
	httpServer := &http.Server{
		Handler:           autoconfig.New(autoconfig.FromConfig(cfg, logger.With("component", "autoconfig"))),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		MaxHeaderBytes: 16 << 10,
	}
	// The web interface: queue page, alert centre, JSON API (HTTPS).
	webServer, err := web.New(web.Options{
		Store: store, Auth: logins, TLSConfig: certs.TLSConfig(), HSTS: !certs.SelfSigned(),
		PollInterval: cfg.MessageServer.PollInterval.Duration, Postmaster: cfg.Postmaster(),
		Submit: smtpServer.Submit, MaxMessageSize: cfg.SMTP.MaxMessageSize,
		Logger: logger.With("component", "web"),
	})
	if err != nil {
		return err
	}

	listeners := []*listener{
		{name: "smtp submission", addr: cfg.SMTP.Submission, serve: smtpServer.ServeSubmission},
		{name: "smtp submissions", addr: cfg.SMTP.Submissions, serve: smtpServer.ServeSubmissions},
		{name: "smtp inbound", addr: cfg.SMTP.Inbound, serve: smtpServer.ServeInbound},
		{name: "imap", addr: cfg.IMAP.Listen, serve: imapServer.Serve},
		{name: "imaps", addr: cfg.IMAP.TLSListen, serve: imapServer.ServeTLS},
		{name: "metrics", addr: cfg.Metrics.Listen, serve: metricsServer.Serve},
		{name: "http autoconfig", addr: cfg.HTTP.Listen, serve: httpServer.Serve},
		{name: "web", addr: cfg.Web.Listen, serve: webServer.Serve},
	}
	for _, ln := range listeners {
		if ln.addr == "" {
			continue
		}
		if ln.l, err = net.Listen("tcp", ln.addr); err != nil {
			closeListeners(listeners)
			return fmt.Errorf("%s: %w", ln.name, err)
		}
	}
	controlListener, err := control.Listen(cfg.SocketPath())
	if err != nil {
		closeListeners(listeners)
		return err
	}
	listeners = append(listeners, &listener{name: "control", addr: cfg.SocketPath(), l: controlListener, serve: controlServer.Serve})

	errc := make(chan error, len(listeners))
	for _, ln := range listeners {
		if ln.l == nil {
			continue
		}
		logger.Info("listening", "service", ln.name, "addr", ln.l.Addr().String())
		go func(ln *listener) {
			if err := ln.serve(ln.l); err != nil && !isClosedErr(err) {
				errc <- fmt.Errorf("%s: %w", ln.name, err)
			}
		}(ln)
	}
	if cfgPath == "" {
		printDevelopmentHint(e.stderr, cfg)
	}
	logger.Info("pochta started", "version", version, "config", cfgPath, "database", cfg.RedactedDatabase())
	notifySystemd(logger, daemon.SdNotifyReady)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
wait:
	for {
		select {
		case <-ctx.Done():
			logger.Info("stopping: signal received")
			break wait
		case err := <-errc:
			logger.Error("a server failed; stopping", "err", err)
			runErr = err
			break wait
		case <-hup:
			notifySystemd(logger, daemon.SdNotifyReloading)
			reloads.reload()
			notifySystemd(logger, daemon.SdNotifyReady)
		}
	}

	notifySystemd(logger, daemon.SdNotifyStopping)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	// Both stop accepting at once, then each lets what is in flight (an
	// SMTP transaction, an IMAP command such as APPEND) finish within
	// shutdownGrace, telling idle clients at once (421, BYE).
	var stopping sync.WaitGroup
	stopping.Go(func() {
		if err := smtpServer.Shutdown(shutdownCtx); err != nil {
			logger.Warn("smtp shutdown", "err", err)
		}
	})
	stopping.Go(func() {
		if err := imapServer.Shutdown(shutdownCtx); err != nil {
			logger.Warn("imap shutdown", "err", err)
		}
	})
	stopping.Wait()
	_ = metricsServer.Shutdown(shutdownCtx)
	_ = httpServer.Shutdown(shutdownCtx)
	_ = webServer.Shutdown(shutdownCtx)
	_ = controlServer.Shutdown(shutdownCtx)
	_ = os.Remove(cfg.SocketPath())
	logger.Info("pochta stopped")
	return runErr
}

func closeListeners(ls []*listener) {
	for _, ln := range ls {
		if ln.l != nil {
			ln.l.Close()
		}
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) || strings.Contains(err.Error(), "server closed")
}

func notifySystemd(logger *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		logger.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// newRegistry makes the daemon's Prometheus registry with the Go and
// process collectors and pochta_build_info.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "pochta"}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "pochta_build_info",
			Help:        "Build information; the value is always 1.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)
	return reg
}

// metricsHandler serves reg at /metrics.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// newLogger makes the daemon's logger; level can be changed while it runs
// (reload).
func newLogger(w io.Writer, format, level string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	lv.Set(l)
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lv
	}
	return slog.New(slog.NewTextHandler(w, opts)), lv
}

func printDevelopmentHint(w io.Writer, cfg *config.Config) {
	domain := cfg.Domains[0]
	dataDir := cfg.DataDir
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs // admin commands run from elsewhere need --config or this directory
	}
	admin := "postmaster@" + domain
	if len(cfg.Alerts.Admins) > 0 {
		admin = cfg.Alerts.Admins[0]
	}
	fmt.Fprintf(w, `
pochta is running a development instance (no config file): data in %s.
Next: create the admin, who receives the server's alerts, in another terminal:

    ./bin/pochta user add %s --admin

and a first user:

    ./bin/pochta user add alice@%s

Then point a mail client at it (user name = the full address):
    IMAP  %s (STARTTLS)   or %s (SSL/TLS)
    SMTP  %s (STARTTLS)   or %s (SSL/TLS)
    Web   https://%s/ (sign in with the address and password: Mail, and the E-mail Queue)
The certificate is self-signed (%s/tls-cert.pem): import it as trusted (README: "Trusting the development certificate").
Mail for other domains goes to the development relay %s; it waits in the queue until something listens there (README: "The development relay").
Stop with Ctrl-C.

`, dataDir, admin, domain, cfg.IMAP.Listen, cfg.IMAP.TLSListen, cfg.SMTP.Submission, cfg.SMTP.Submissions, cfg.Web.Listen, dataDir, cfg.EmailQueue.Relay)
}

// relayState is what `pochta status` shows for the relay: the queue's view
// while it runs.
func relayState(cfg *config.Config, q *queue.Queue) control.RelayState {
	if q == nil || cfg.EmailQueue.Relay == "" {
		return control.RelayState{Address: cfg.EmailQueue.Relay, State: control.RelayNotConfigured}
	}
	state, since := q.RelayHealth()
	rs := control.RelayState{Address: cfg.EmailQueue.Relay, State: state}
	if !since.IsZero() {
		rs.Since = &since
	}
	return rs
}

// relayWithoutDaemon is the relay's state when no daemon runs: nobody
// watches it, unless there is none to watch.
func relayWithoutDaemon(cfg *config.Config) control.RelayState {
	if !cfg.EmailQueue.Enabled || cfg.EmailQueue.Relay == "" {
		return control.RelayState{Address: cfg.EmailQueue.Relay, State: control.RelayNotConfigured}
	}
	return control.RelayState{Address: cfg.EmailQueue.Relay, State: control.RelayUnknown}
}

// followAccounts is the store listener for storage.EventAccount: forget
// (the login cache's) gets every event at once; a deletion ends the
// user's sessions (end), off the writer's goroutine since the sessions are
// told BYE, once the user is read back as gone: on PostgreSQL anyone who
// may connect to the database can send a notification, and a forged one
// must not end a user's sessions (a forged password change only empties
// the cache). work tracks what runs.
func followAccounts(store storage.Store, forget func(storage.Event), end func(user string), work *sync.WaitGroup) func(storage.Event) {
	return func(ev storage.Event) {
		forget(ev)
		if ev.Kind != storage.EventAccount || !ev.Deleted || ev.User == "" {
			return
		}
		work.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := store.User(ctx, ev.User); errors.Is(err, storage.ErrNotFound) {
				end(ev.User)
			}
		})
	}
}
