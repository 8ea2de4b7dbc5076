// Package metrics owns pochta's Prometheus metrics: their names, labels and
// help texts, all in one place so the dashboard and alert rules in
// monitoring/ have one source to match. The servers do not import
// client_golang: each declares a small interface of the counts it makes
// (imapd.Metrics, smtpd.Metrics) and this package implements them.
//
// Every metric is registered on the registry passed to New; nothing is
// global. Labels are low-cardinality by design: never an address, a user or
// a mailbox name.
package metrics

import (
	"os"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the daemon's own metrics.
type Metrics struct {
	smtpConnections *prometheus.CounterVec
	smtpReceived    prometheus.Counter
	smtpBytes       prometheus.Counter
	smtpRejected    *prometheus.CounterVec
	localDeliveries prometheus.Counter
	authFailures    *prometheus.CounterVec
	imapOpen        prometheus.Gauge
	imapCommands    *prometheus.CounterVec
	panics          *prometheus.CounterVec

	// The abuse limits (package abuse), by protocol (smtp, imap).
	connectionsRefused *prometheus.CounterVec
	authThrottled      *prometheus.CounterVec
	commandsDelayed    *prometheus.CounterVec

	queue *Queue // queue.go
}

// New creates the metrics and registers them on reg. databasePath is the
// bbolt file whose size pochta_storage_file_size_bytes reports.
func New(reg prometheus.Registerer, databasePath string) *Metrics {
	m := &Metrics{
		smtpConnections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_smtp_connections_total",
			Help: "SMTP connections accepted, by listener (submission, submissions, inbound).",
		}, []string{"listener"}),
		smtpReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pochta_smtp_messages_received_total",
			Help: "Messages accepted over SMTP (answered 250 after DATA).",
		}),
		smtpBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pochta_smtp_bytes_received_total",
			Help: "Bytes of messages accepted over SMTP.",
		}),
		smtpRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_smtp_messages_rejected_total",
			Help: "SMTP commands refused, by reason.",
		}, []string{"reason"}),
		localDeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pochta_local_deliveries_total",
			Help: "Copies delivered into local INBOXes.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_auth_failures_total",
			Help: "Failed logins, by protocol (smtp, imap).",
		}, []string{"protocol"}),
		imapOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pochta_imap_sessions_open",
			Help: "IMAP connections open now.",
		}),
		imapCommands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_imap_commands_total",
			Help: "IMAP commands received, by command name.",
		}, []string{"command"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_panics_total",
			Help: "Panics recovered inside one session or request, by component.",
		}, []string{"component"}),
		connectionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_connections_refused_total",
			Help: "Connections refused at connect, by protocol (smtp, imap) and reason " +
				"(per_address, total: [limits] connection limits; not_trusted: the inbound port's trusted_networks).",
		}, []string{"protocol", "reason"}),
		authThrottled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_auth_throttled_total",
			Help: "Login attempts slowed down or refused by the failed-login limits, by protocol (smtp, imap).",
		}, []string{"protocol"}),
		commandsDelayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_commands_delayed_total",
			Help: "Commands read late because the session was over [limits] commands_per_second, by protocol (smtp, imap).",
		}, []string{"protocol"}),
	}
	reg.MustRegister(m.smtpConnections, m.smtpReceived, m.smtpBytes, m.smtpRejected, m.localDeliveries,
		m.authFailures, m.imapOpen, m.imapCommands, m.panics,
		m.connectionsRefused, m.authThrottled, m.commandsDelayed)
	m.queue = newQueue(reg)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pochta_storage_file_size_bytes",
		Help: "Size of the bbolt database file.",
	}, func() float64 {
		fi, err := os.Stat(databasePath)
		if err != nil {
			return 0
		}
		return float64(fi.Size())
	}))
	for _, p := range []string{"smtp", "imap"} {
		m.authFailures.WithLabelValues(p)
		m.authThrottled.WithLabelValues(p)
		m.commandsDelayed.WithLabelValues(p)
	}
	return m
}

// IMAP returns the counts imapd makes.
func (m *Metrics) IMAP() *IMAP { return &IMAP{m} }

// IMAP implements imapd.Metrics.
type IMAP struct{ m *Metrics }

// SessionOpened implements imapd.Metrics.
func (i *IMAP) SessionOpened() { i.m.imapOpen.Inc() }

// SessionClosed implements imapd.Metrics.
func (i *IMAP) SessionClosed() { i.m.imapOpen.Dec() }

// Command implements imapd.Metrics.
func (i *IMAP) Command(name string) { i.m.imapCommands.WithLabelValues(name).Inc() }

// Panic implements imapd.Metrics.
func (i *IMAP) Panic() { i.m.panics.WithLabelValues("imap").Inc() }

// AuthFailed implements imapd.Metrics.
func (i *IMAP) AuthFailed() { i.m.authFailures.WithLabelValues("imap").Inc() }

// ConnectionRefused implements imapd.Metrics.
func (i *IMAP) ConnectionRefused(reason string) {
	i.m.connectionsRefused.WithLabelValues("imap", reason).Inc()
}

// AuthThrottled implements imapd.Metrics.
func (i *IMAP) AuthThrottled() { i.m.authThrottled.WithLabelValues("imap").Inc() }

// CommandDelayed implements imapd.Metrics.
func (i *IMAP) CommandDelayed() { i.m.commandsDelayed.WithLabelValues("imap").Inc() }

// SMTP returns the counts smtpd makes.
func (m *Metrics) SMTP() *SMTP { return &SMTP{m} }

// SMTP implements smtpd.Metrics.
type SMTP struct{ m *Metrics }

// Connection counts one accepted connection on listener.
func (s *SMTP) Connection(listener string) { s.m.smtpConnections.WithLabelValues(listener).Inc() }

// Received counts one accepted message of size bytes delivered to
// localCopies local INBOXes.
func (s *SMTP) Received(size int, localCopies int) {
	s.m.smtpReceived.Inc()
	s.m.smtpBytes.Add(float64(size))
	s.m.localDeliveries.Add(float64(localCopies))
}

// Rejected counts one refused command by reason (a short fixed word such
// as "no_such_user", "spoofed_sender", "too_big").
func (s *SMTP) Rejected(reason string) { s.m.smtpRejected.WithLabelValues(reason).Inc() }

// AuthFailed counts one failed AUTH.
func (s *SMTP) AuthFailed() { s.m.authFailures.WithLabelValues("smtp").Inc() }

// Panic counts one recovered panic.
func (s *SMTP) Panic() { s.m.panics.WithLabelValues("smtp").Inc() }

// ConnectionRefused counts one connection refused at connect by reason.
func (s *SMTP) ConnectionRefused(reason string) {
	s.m.connectionsRefused.WithLabelValues("smtp", reason).Inc()
}

// AuthThrottled counts one AUTH slowed down or refused by the limits.
func (s *SMTP) AuthThrottled() { s.m.authThrottled.WithLabelValues("smtp").Inc() }

// CommandDelayed counts one command read late because of the command rate.
func (s *SMTP) CommandDelayed() { s.m.commandsDelayed.WithLabelValues("smtp").Inc() }
