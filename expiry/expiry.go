// Package expiry enforces the unread-message lifetime ([message_server]
// message_lifetime, the seed's "message lifetime"): an INBOX message still
// without \Seen that long after its internal date is deleted.
//
// Promises:
//   - The sweep runs every Interval (by default half the lifetime, and never
//     less often than every 5 seconds), so a message is gone within one
//     interval of expiring; with a lifetime of a few seconds that is well
//     inside ten seconds.
//   - Deletion goes through storage.ExpireUnread: one transaction per batch,
//     EXPUNGE events for IMAP sessions that have the INBOX open, and the
//     sender's read tracking shows the recipient as "expired". Read
//     messages, Sent, Drafts and every other mailbox are never touched.
//   - A sweep with nothing due costs one small read transaction.
//   - pochta_messages_expired_total counts deleted messages.
//   - On a store several nodes share, only the node that leads the
//     cluster's housekeeping (storage.Leading) sweeps; the others skip the
//     round and ask again at the next.
//   - The clock is injectable (Options.Now) for tests.
package expiry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pochta/pochta/storage"
)

// MaxInterval is the longest pause between sweeps, whatever the lifetime.
const MaxInterval = 5 * time.Second

// minInterval keeps a tiny lifetime from turning the sweep into a busy loop.
const minInterval = 100 * time.Millisecond

// Store is the part of storage.Store the sweep uses.
type Store interface {
	ExpireUnread(ctx context.Context, cutoff time.Time) (int, error)
}

// Options configure a Sweeper.
type Options struct {
	Store Store
	// Lifetime is [message_server] message_lifetime; 0 disables the sweep.
	Lifetime time.Duration
	// Interval between sweeps; 0 means min(Lifetime/2, MaxInterval).
	Interval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Registerer receives pochta_messages_expired_total; nil: not exported.
	Registerer prometheus.Registerer
	// Logger receives one line per sweep that deleted something, and
	// errors; nil means slog.Default().
	Logger *slog.Logger
}

// Sweeper deletes expired unread messages.
type Sweeper struct {
	store   Store
	now     func() time.Time
	log     *slog.Logger
	expired prometheus.Counter
	// fixed is Options.Interval: when set, reloads keep it.
	fixed time.Duration

	mu       sync.Mutex
	lifetime time.Duration
	interval time.Duration
	// changed is closed and replaced when SetLifetime changes the
	// lifetime, so Run picks up the new interval at once.
	changed chan struct{}
}

// New checks the options and registers the counter.
func New(o Options) (*Sweeper, error) {
	if o.Store == nil {
		return nil, errors.New("expiry: no store")
	}
	if o.Lifetime < 0 {
		return nil, fmt.Errorf("expiry: negative message lifetime %s", o.Lifetime)
	}
	s := &Sweeper{store: o.Store, fixed: o.Interval, now: o.Now, log: o.Logger, changed: make(chan struct{})}
	s.lifetime, s.interval = o.Lifetime, intervalFor(o.Lifetime, o.Interval)
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.expired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pochta_messages_expired_total",
		Help: "Unread INBOX messages deleted because they outlived [message_server] message_lifetime.",
	})
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.expired); err != nil {
			return nil, fmt.Errorf("expiry: register metric: %w", err)
		}
	}
	return s, nil
}

func intervalFor(lifetime, fixed time.Duration) time.Duration {
	if fixed > 0 {
		return max(fixed, minInterval)
	}
	return max(min(lifetime/2, MaxInterval), minInterval)
}

// Interval is the pause between sweeps.
func (s *Sweeper) Interval() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.interval
}

// SetLifetime changes the lifetime of a running sweeper (configuration
// reload); 0 turns sweeping off until a later SetLifetime turns it on.
func (s *Sweeper) SetLifetime(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("expiry: negative message lifetime %s", d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d == s.lifetime {
		return nil
	}
	s.lifetime, s.interval = d, intervalFor(d, s.fixed)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *Sweeper) current() (lifetime, interval time.Duration, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lifetime, s.interval, s.changed
}

// Sweep deletes what has expired now and returns how many messages went.
// With the lifetime off it does nothing.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	lifetime, _, _ := s.current()
	if lifetime <= 0 {
		return 0, nil
	}
	cutoff := s.now().Add(-lifetime)
	n, err := s.store.ExpireUnread(ctx, cutoff)
	// A failed batch may follow successful ones: count what did go.
	s.expired.Add(float64(n))
	if n > 0 {
		s.log.Info("expired unread messages", "count", n, "lifetime", lifetime.String(), "cutoff", cutoff)
	}
	if err != nil {
		return n, fmt.Errorf("expiry: %w", err)
	}
	return n, nil
}

// Run sweeps at once and then every Interval until ctx ends. With the
// lifetime off it waits for SetLifetime to turn it on.
func (s *Sweeper) Run(ctx context.Context) {
	for {
		lifetime, interval, changed := s.current()
		if lifetime > 0 && storage.Leading(ctx, s.store, storage.JobExpiry) {
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("unread lifetime sweep failed; retrying at the next interval", "err", err)
			}
		}
		var timer *time.Timer
		var tick <-chan time.Time
		if lifetime > 0 {
			timer = time.NewTimer(interval)
			tick = timer.C
		}
		select {
		case <-ctx.Done():
		case <-tick:
		case <-changed:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}
