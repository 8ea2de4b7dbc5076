// Package queue owns outbound mail: it relays the queue entries the store
// keeps (one per submitted message with recipients outside the local
// domains) through the configured upstream SMTP server, and makes sure the
// sender hears of every recipient that does not get the message.
//
// Semantics (SPEC.md "Queue"; the contract and the rules live in
// storage/queue*.go, the bbolt records in storage/boltstore/queue.go):
//
//   - Per recipient: a 2xx to RCPT followed by a 2xx to the end of DATA
//     settles a recipient (sent). A 5xx to its RCPT, or to MAIL or DATA for
//     everyone in that transaction, fails it for good. A 4xx, a timeout, a
//     reply that is not SMTP, or a connection lost after the relay's
//     greeting leaves it pending. Only pending recipients are tried again.
//     Errors are classified once, where the relay's answer is read
//     (relay.go); the reply is kept verbatim and reused in the notices.
//   - Retries: the gap after attempt n is RetryMin·2^(n-1), at most
//     RetryMax; once MaxAttempts attempts have been made, recipients still
//     pending fail. With the defaults (5m, 4h, 10 attempts) the gaps are 5,
//     10, 20, 40, 80, 160, 240, 240 and 240 minutes: about 17 hours.
//   - An entry is outbox while someone is pending, sent when everyone was
//     accepted, failed when nobody is pending and someone failed.
//   - Notices: every recipient that fails is reported once in an
//     "Undeliverable:" delivery status notification (RFC 3464,
//     multipart/report) carrying the relay's reply and the original header,
//     written in the same transaction that records the failure, so a crash
//     can lose neither. After DelayNoticeAfter attempts with someone still
//     pending, one "Delayed:" notice. User mail's notices go to the
//     sender's INBOX; system mail's (the trusted inbound port) to Admins.
//   - Relay health: not reaching the relay at all (connection refused or
//     timed out, closed before the greeting, a 4xx greeting) is not the
//     message's fault: no attempt is spent, the queue pauses, the admins get
//     "Mail relay is down" once, and the relay is probed (connect, TLS, AUTH,
//     QUIT) every HealthCheckInterval; the first complete answer gives "Mail
//     relay is back online" and the queue resumes. The pair is mailed at
//     most once per RelayAlertInterval: a relay that flaps is down again
//     within the interval is logged and counted
//     (pochta_relay_alerts_suppressed_total), not mailed, and so is its
//     coming back; if it is still down when the interval ends, the admins
//     get "Mail relay is down" then. A refused login (5xx to
//     AUTH), a failed TLS handshake, a relay without STARTTLS or AUTH when
//     they are configured, or a 5xx greeting is a settings problem: "Cannot
//     connect to the mail relay" once, and the same pause. The state is
//     stored, so a restart neither repeats nor loses an alert.
//   - Daily limits: before an entry's first attempt of the day that is not
//     yet counted, the server's count for the day is checked against
//     SystemLimit, then the sender's against UserLimit (system mail counts
//     toward the first only). Over a limit the entry is held until the next
//     midnight in Location, and the admins (system limit) or the sender
//     (user limit) get one alert per day. An entry counts once, toward the
//     day of the attempt that relays it; an attempt that relays nothing
//     gives its count back. Counts live in the store.
//   - Durability: entries, attempts, counts and the relay state live in the
//     store; after a restart (or kill -9) waiting entries resume. A sent
//     entry is never sent again; the one window for a duplicate is a crash
//     between the relay's 250 and the commit that records it, after which
//     that entry is tried again.
//   - Leases (lease.go): a claim leases the entry to this node (Node) for
//     Lease, renewed while the attempt runs; no other node or store handle
//     claims it meanwhile, and an attempt that died with its node is taken
//     over once the lease runs out.
//   - Retention (retention.go): sent and failed entries, with their
//     bodies, are removed Retention after they settle (0 keeps them), at
//     Start and every RetentionInterval.
//   - Nothing in a message can reach the SMTP command stream: envelope
//     addresses are checked when queued and again before use (no controls,
//     spaces or angle brackets; go-smtp also refuses CR and LF), and the body
//     goes through the DATA dot-stuffer.
//
// Concurrency: one scheduler goroutine (run) decides what to start. It
// wakes on storage.EventQueued, on a timer set to the next due entry (which
// also covers the end of a hold at midnight), and when a worker finishes.
// At most Concurrency workers attempt deliveries at once, each on its own
// entry; the in-flight set keeps an entry from being started twice here,
// and the lease keeps it from being started anywhere else. While
// the relay is down the scheduler starts nothing and probes instead.
package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pochta/pochta/storage"
)

// Relay TLS modes, as [email_queue] relay_tls spells them.
const (
	TLSStartTLS = "starttls" // plain connection upgraded with STARTTLS (RFC 3207)
	TLSImplicit = "tls"      // TLS from the first byte (RFC 8314)
	TLSNone     = "none"     // no TLS (trusted networks and tests only)
)

// Relay health states, as stored.
const (
	relayUp       = ""
	relayDown     = "down"
	relaySettings = "settings"
)

// Defaults for zero Options fields.
const (
	DefaultMaxAttempts         = 10
	DefaultRetryMin            = 5 * time.Minute
	DefaultRetryMax            = 4 * time.Hour
	DefaultHealthCheckInterval = time.Minute
	DefaultRelayAlertInterval  = time.Hour
	DefaultConcurrency         = 4
	// RFC 5321 4.5.3.2 recommends 5 minutes for the replies to commands and
	// 10 for the reply to the end of DATA.
	DefaultDialTimeout    = 30 * time.Second
	DefaultCommandTimeout = 5 * time.Minute
	DefaultDataTimeout    = 10 * time.Minute
)

// recordTimeout bounds writing an attempt's result; it does not depend on
// the queue's context, so a result in hand is recorded even at shutdown.
const recordTimeout = 30 * time.Second

// Options configure a Queue.
type Options struct {
	// Store holds the entries. Required.
	Store storage.Store
	// Relay is the upstream server, host:port. Required.
	Relay string
	// RelayTLS is TLSStartTLS (default), TLSImplicit or TLSNone.
	RelayTLS string
	// Username, when set, logs in with AUTH PLAIN (RFC 4616).
	Username, Password string
	// TLSConfig verifies the relay; nil means the system roots and the
	// relay's host name.
	TLSConfig *tls.Config
	// Hostname is our EHLO name and the Reporting-MTA of notices. Required.
	Hostname string
	// Postmaster is the sender of alerts and notices. Required.
	Postmaster string
	// Admins receive the relay and system-limit alerts and the notices of
	// system mail.
	Admins []string

	MaxAttempts int
	// DelayNoticeAfter is the number of attempts after which the sender
	// gets one "Delayed:" notice; 0 never sends one.
	DelayNoticeAfter    int
	RetryMin, RetryMax  time.Duration
	HealthCheckInterval time.Duration
	// RelayAlertInterval is the least time between two "Mail relay is
	// down" alerts (each with its "back online"); 0 means one hour.
	RelayAlertInterval time.Duration

	// SystemLimit and UserLimit are relayed messages per day; 0 is no
	// limit. Location is where days begin (nil: time.Local).
	SystemLimit, UserLimit int
	Location               *time.Location

	// Concurrency bounds the deliveries in progress.
	Concurrency int
	// DialTimeout bounds connecting, CommandTimeout each reply (and the
	// TLS handshake), DataTimeout sending the message and the reply to it.
	DialTimeout, CommandTimeout, DataTimeout time.Duration

	// Node names this process among those sharing the store: the owner
	// of its leases ([message_server] node). "" means the host name. Fixed
	// at New.
	Node string
	// Lease is how long a claim holds an entry without renewal (default
	// DefaultLease); LeaseRenew how often an attempt renews it (default
	// Lease/4).
	Lease, LeaseRenew time.Duration
	// Retention is how long sent and failed entries are kept after they
	// settle; 0 keeps them. RetentionInterval is the pause between
	// sweeps (default DefaultRetentionInterval).
	Retention, RetentionInterval time.Duration

	// Now is the clock (tests move days with it); nil means time.Now.
	Now func() time.Time
	// Metrics receives the counts package metrics keeps; nil means none.
	Metrics Metrics
	// Registerer receives the queue's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives the log lines; nil means slog.Default().
	Logger *slog.Logger
}

// Metrics receives the queue's counts that package metrics registers.
type Metrics interface {
	// RelayAlertSuppressed counts a relay change not mailed to the
	// admins; alert is "down" or "back".
	RelayAlertSuppressed(alert string)
	// QueueEntriesRemoved counts n entries of status ("sent" or
	// "failed") removed by retention.
	QueueEntriesRemoved(status string, n int)
}

type noMetrics struct{}

func (noMetrics) RelayAlertSuppressed(string)     {}
func (noMetrics) QueueEntriesRemoved(string, int) {}

// Queue relays queued mail. Create it with New, then Start it; Close stops
// it.
type Queue struct {
	// opts and relay are swapped whole by Reconfigure; readers load them
	// once per decision (opt()) and never see a half-updated set.
	opts  atomic.Pointer[Options]
	relay atomic.Pointer[relay]
	store storage.Store
	log   *slog.Logger
	m     *queueMetrics

	wake chan struct{}

	// alertMu orders the relay alert decisions (relayFailed, relayBack)
	// with their store writes, and guards what the admins were told.
	alertMu  sync.Mutex
	recorded string    // the health last stored: what the admins were told
	lastDown time.Time // q.now() of the last "Mail relay is down" mailed

	mu        sync.Mutex
	inflight  map[uint64]bool
	state     string    // relay health (relayUp, relayDown, relaySettings)
	nextProbe time.Time // real time; meaningful while state != relayUp
	since     time.Time // real time the state last changed (or Start)
	tried     bool      // an attempt or probe has reached (or failed to reach) the relay since Start
	started   bool
	cancel    context.CancelFunc
	done      chan struct{}
	workers   sync.WaitGroup
}

// New checks opts, fills in defaults and registers the metrics. It does not
// start delivering: call Start.
func New(opts Options) (*Queue, error) {
	o, err := normalize(opts)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		store:    o.Store,
		log:      o.Logger,
		wake:     make(chan struct{}, 1),
		inflight: make(map[uint64]bool),
		done:     make(chan struct{}),
	}
	q.opts.Store(&o)
	q.relay.Store(newRelay(&o))
	m, err := newMetrics(o.Registerer, o.Store)
	if err != nil {
		return nil, err
	}
	q.m = m
	o.Store.Listen(func(ev storage.Event) {
		if ev.Kind == storage.EventQueued {
			q.Wake()
		}
	})
	return q, nil
}

// Reconfigure applies new settings to a running queue (configuration
// reload): relay, credentials, retries, limits, admins. The store, clock,
// metrics and logger stay those given to New. Attempts in progress finish
// with the settings they started with.
func (q *Queue) Reconfigure(opts Options) error {
	cur := q.opt()
	opts.Store, opts.Now, opts.Registerer, opts.Logger, opts.Metrics = cur.Store, cur.Now, nil, cur.Logger, cur.Metrics
	opts.Node = cur.Node
	o, err := normalize(opts)
	if err != nil {
		return err
	}
	q.opts.Store(&o)
	q.relay.Store(newRelay(&o))
	q.log.Info("queue reconfigured", "relay", o.Relay, "relay_tls", o.RelayTLS,
		"system_limit", o.SystemLimit, "user_limit", o.UserLimit, "max_attempts", o.MaxAttempts)
	q.Wake() // a raised limit or a new relay may make entries due now
	return nil
}

func (q *Queue) opt() *Options { return q.opts.Load() }

func newRelay(o *Options) *relay {
	return &relay{
		addr:           o.Relay,
		mode:           o.RelayTLS,
		username:       o.Username,
		password:       o.Password,
		hostname:       o.Hostname,
		tlsConfig:      o.TLSConfig,
		dialTimeout:    o.DialTimeout,
		commandTimeout: o.CommandTimeout,
		dataTimeout:    o.DataTimeout,
	}
}

// normalize checks opts and fills in defaults.
func normalize(opts Options) (Options, error) {
	o := opts
	switch {
	case o.Store == nil:
		return o, errors.New("queue: no store")
	case o.Relay == "":
		return o, errors.New("queue: no relay address")
	case o.Hostname == "":
		return o, errors.New("queue: no hostname")
	case o.Postmaster == "":
		return o, errors.New("queue: no postmaster address")
	}
	if o.RelayTLS == "" {
		o.RelayTLS = TLSStartTLS
	}
	if o.RelayTLS != TLSStartTLS && o.RelayTLS != TLSImplicit && o.RelayTLS != TLSNone {
		return o, fmt.Errorf("queue: relay TLS mode %q: want starttls, tls or none", o.RelayTLS)
	}
	setDefault(&o.MaxAttempts, DefaultMaxAttempts)
	setDefault(&o.RetryMin, DefaultRetryMin)
	setDefault(&o.RetryMax, DefaultRetryMax)
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	setDefault(&o.HealthCheckInterval, DefaultHealthCheckInterval)
	setDefault(&o.RelayAlertInterval, DefaultRelayAlertInterval)
	setDefault(&o.Concurrency, DefaultConcurrency)
	setDefault(&o.DialTimeout, DefaultDialTimeout)
	setDefault(&o.CommandTimeout, DefaultCommandTimeout)
	setDefault(&o.DataTimeout, DefaultDataTimeout)
	setDefault(&o.Lease, DefaultLease)
	setDefault(&o.LeaseRenew, o.Lease/4)
	setDefault(&o.RetentionInterval, DefaultRetentionInterval)
	if o.LeaseRenew >= o.Lease {
		return o, fmt.Errorf("queue: lease renewal every %s does not renew a lease of %s in time", o.LeaseRenew, o.Lease)
	}
	if o.Retention < 0 {
		return o, fmt.Errorf("queue: negative retention %s", o.Retention)
	}
	if o.Node == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			o.Node = h
		} else {
			o.Node = o.Hostname
		}
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Start resumes the stored relay state and starts the scheduler and the
// retention sweep. Entries that were waiting, or in the middle of an
// attempt of this node when the daemon stopped, are tried at once.
func (q *Queue) Start(ctx context.Context) error {
	state, err := q.store.RelayState(ctx)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := q.releaseOwnLeases(ctx); err != nil {
		return err
	}
	q.alertMu.Lock() // before q.mu, as in relayFailed
	q.recorded = state
	q.alertMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return errors.New("queue: already started")
	}
	q.started = true
	q.state = state
	q.since = time.Now()
	q.nextProbe = time.Now() // a relay recorded as down is probed at once
	q.m.relayUp.Set(boolFloat(state == relayUp))
	runCtx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	q.workers.Add(1) // run waits for it, as for the workers
	go func() {
		defer q.workers.Done()
		q.housekeep(runCtx)
	}()
	go q.run(runCtx)
	q.log.Info("queue started", "relay", q.opt().Relay, "relay_tls", q.opt().RelayTLS, "relay_state", stateName(state),
		"node", q.opt().Node, "retention", q.opt().Retention)
	// Alerts to an address that is not a user go nowhere; say so now
	// rather than when the relay goes down.
	for _, a := range q.opt().Admins {
		if _, err := q.store.User(ctx, a); errors.Is(err, storage.ErrNotFound) {
			q.log.Info("queue: an [alerts] admin is not a user yet, so alerts to it are dropped; create it with `pochta user add "+a+" --admin`", "admin", a)
		}
	}
	return nil
}

// Close stops the scheduler and the deliveries in progress (an interrupted
// attempt is not counted and is tried again after a restart) and waits for
// them. The store must stay open until Close returns.
func (q *Queue) Close() error {
	q.mu.Lock()
	started, cancel := q.started, q.cancel
	q.mu.Unlock()
	if !started {
		return nil
	}
	cancel()
	<-q.done
	return nil
}

// Wake makes the scheduler look for due entries now. The store's
// EventQueued calls it; tests call it after moving the clock.
func (q *Queue) Wake() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *Queue) now() time.Time { return q.opt().Now() }

func (q *Queue) paused() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.state != relayUp
}

// run is the scheduler (see the package comment).
func (q *Queue) run(ctx context.Context) {
	defer close(q.done)
	defer q.workers.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Duration(-1)
		if q.paused() {
			q.mu.Lock()
			d := time.Until(q.nextProbe)
			q.mu.Unlock()
			if d <= 0 {
				q.probe(ctx)
				if ctx.Err() != nil {
					return
				}
				continue
			}
			wait = d
		} else {
			next, err := q.dispatch(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				q.log.Error("queue: finding due entries failed", "err", err)
				wait = min(q.opt().RetryMin, time.Minute)
			case !next.IsZero():
				wait = max(next.Sub(q.now()), 0)
			}
		}
		timer.Stop()
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// dispatch starts workers for due entries while there is room and returns
// when the next later entry falls due (zero: none, or no room now; a
// finishing worker wakes the scheduler).
func (q *Queue) dispatch(ctx context.Context) (time.Time, error) {
	q.mu.Lock()
	busy := len(q.inflight)
	q.mu.Unlock()
	free := q.opt().Concurrency - busy
	if free <= 0 {
		return time.Time{}, nil
	}
	// Entries in flight are due too and come first; asking for busy+free
	// leaves room for free others.
	due, next, err := q.store.DueQueueEntries(ctx, q.now(), busy+free)
	if err != nil {
		return time.Time{}, err
	}
	for _, e := range due {
		if free == 0 {
			break
		}
		q.mu.Lock()
		if q.state != relayUp {
			q.mu.Unlock()
			break
		}
		if q.inflight[e.ID] {
			q.mu.Unlock()
			continue
		}
		q.inflight[e.ID] = true
		q.mu.Unlock()
		free--
		q.workers.Add(1)
		go q.work(ctx, e)
	}
	return next, nil
}

// work runs one attempt; a panic costs that attempt only.
func (q *Queue) work(ctx context.Context, e storage.QueueEntry) {
	defer q.workers.Done()
	defer func() {
		if p := recover(); p != nil {
			q.log.Error("queue: delivery attempt panicked", "id", e.ID, "panic", p)
		}
		q.mu.Lock()
		delete(q.inflight, e.ID)
		q.mu.Unlock()
		q.Wake()
	}()
	q.attempt(ctx, e)
}

// probe checks a relay marked down; see relayFailed and relayBack.
func (q *Queue) probe(ctx context.Context) {
	f := q.relay.Load().probe(ctx)
	q.mu.Lock()
	q.nextProbe = time.Now().Add(q.opt().HealthCheckInterval)
	q.mu.Unlock()
	switch {
	case ctx.Err() != nil:
	case f == nil:
		q.relayBack()
	case f.fault == faultUnreachable || f.fault == faultSettings:
		q.relayFailed(f)
	default:
		q.log.Info("queue: relay still not usable", "relay", q.opt().Relay, "err", f.text)
	}
}

// relayFailed pauses the queue and alerts the admins once per change of
// state, at most once per RelayAlertInterval for "down".
func (q *Queue) relayFailed(f *failure) {
	state := relayDown
	if f.fault == faultSettings {
		state = relaySettings
	}
	q.alertMu.Lock()
	defer q.alertMu.Unlock()
	now := q.now()
	q.mu.Lock()
	prev := q.state
	q.state = state
	q.tried = true
	if prev == relayUp {
		q.nextProbe = time.Now().Add(q.opt().HealthCheckInterval)
	}
	if prev != state {
		q.since = time.Now()
	}
	q.mu.Unlock()
	quiet := state == relayDown && !q.lastDown.IsZero() && now.Sub(q.lastDown) < q.opt().RelayAlertInterval
	q.m.relayUp.Set(0)
	if prev != state {
		q.log.Warn("queue paused: the mail relay is not usable", "relay", q.opt().Relay, "state", stateName(state), "err", f.text)
		q.Wake()
	}
	switch {
	case q.recorded == state:
		return // the admins know
	case quiet:
		if prev != state {
			q.log.Info("queue: relay alert not mailed: the relay went down again within relay_alert_interval",
				"alert", SubjectRelayDown, "last_alert", q.lastDown, "relay_alert_interval", q.opt().RelayAlertInterval)
			q.opt().Metrics.RelayAlertSuppressed("down")
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if _, err := q.store.SetRelayState(ctx, state, q.relayAlert(state, f.text)); err != nil {
		q.log.Error("queue: recording the relay state failed", "state", stateName(state), "err", err)
		return
	}
	q.recorded = state
	if state == relayDown {
		q.lastDown = now
	}
}

// relayBack resumes the queue after the relay answered. "Back online" is
// mailed only when the admins were told it was not.
func (q *Queue) relayBack() {
	q.alertMu.Lock()
	defer q.alertMu.Unlock()
	q.mu.Lock()
	prev := q.state
	q.state = relayUp
	q.tried = true
	if prev != relayUp {
		q.since = time.Now()
	}
	q.mu.Unlock()
	q.m.relayUp.Set(1)
	if prev == relayUp {
		return
	}
	q.log.Info("queue resumed: the mail relay answers again", "relay", q.opt().Relay)
	q.Wake()
	if q.recorded == relayUp {
		q.log.Info("queue: relay alert not mailed: its down alert was not mailed either", "alert", SubjectRelayBack)
		q.opt().Metrics.RelayAlertSuppressed("back")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if _, err := q.store.SetRelayState(ctx, relayUp, q.relayAlert(relayUp, "")); err != nil {
		q.log.Error("queue: recording the relay state failed", "state", "up", "err", err)
		return
	}
	q.recorded = relayUp
}

// RelayHealth reports the relay's state ("up", "down" or "settings") and
// since when; before Start it reports "up" and the zero time. "untried"
// is an "up" that no attempt or probe has confirmed since the start (the
// state recorded before, or the assumption of a fresh database).
func (q *Queue) RelayHealth() (state string, since time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state == relayUp && !q.tried {
		return "untried", q.since
	}
	return stateName(q.state), q.since
}

func stateName(s string) string {
	if s == relayUp {
		return "up"
	}
	return s
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// day returns today's key in the limits' time zone and the next midnight
// there.
func (q *Queue) day(now time.Time) (string, time.Time) {
	t := now.In(q.opt().Location)
	return t.Format(time.DateOnly), time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, q.opt().Location)
}

// backoff is the gap after the n-th attempt: RetryMin doubled n-1 times,
// at most RetryMax.
func (q *Queue) backoff(n int) time.Duration {
	d := q.opt().RetryMin
	for i := 1; i < n && d < q.opt().RetryMax; i++ {
		d *= 2
	}
	return min(d, q.opt().RetryMax)
}
