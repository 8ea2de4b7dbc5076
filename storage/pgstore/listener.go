package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ListenerAppName is the application_name of a Listener's connection, so an
// operator can tell it apart in pg_stat_activity.
const ListenerAppName = "pochta-listener"

// Hint is what a Listener reports: something may have changed, go and read
// the change feed (the payloads say where; the feed is the truth), or an
// event another node sent whole (Events).
type Hint struct {
	// Notifications is how many NOTIFYs this hint coalesces (0 for a hint
	// that only reports a (re)connection).
	Notifications int
	// MayHaveMissed: the listener was not listening for a while (it had
	// not connected yet, or its connection broke and was re-established),
	// so notifications sent meanwhile are lost; read the feed from the last
	// position you know rather than waiting for the next hint.
	MayHaveMissed bool
	// Payloads are the distinct payloads of the notifications coalesced,
	// in arrival order, at most MaxHintPayloads of them; beyond that
	// PayloadsOverflow is set and the rest are dropped (the reader then
	// looks at everything, as after MayHaveMissed). Payloads that begin
	// with "event " (an event carried whole, see eventNote) are kept apart
	// in Events, in arrival order, at most MaxHintEvents, so that many
	// mailbox changes never drop them; beyond that EventsOverflow is set.
	Payloads         []string
	PayloadsOverflow bool
	Events           []string
	EventsOverflow   bool
}

// MaxHintPayloads bounds the distinct payloads one Hint keeps, and
// MaxHintEvents its carried events.
const (
	MaxHintPayloads = 256
	MaxHintEvents   = 1024
)

// Listener keeps one dedicated connection LISTENing on a set of channels and
// turns what arrives into coalesced Hints: however many notifications come
// in while nobody waits, the next Wait returns one Hint. It never blocks on a
// slow reader. The first hint after Run starts, and the first after every
// reconnection, has MayHaveMissed set, and is given only once LISTEN is in
// effect again, so a reader that reads the feed on it misses nothing.
type Listener struct {
	cfg      *pgx.ConnConfig
	channels []string
	log      *slog.Logger

	// probe is how long the connection may stay silent before it is
	// pinged, so a dead TCP connection is noticed.
	probe time.Duration

	mu      sync.Mutex
	pending bool
	hint    Hint
	wake    chan struct{} // capacity 1: a hint is pending
}

// NewListener prepares a listener on dsn for channels (plain identifiers;
// each is quoted). It connects only when Run is called.
func NewListener(dsn string, log *slog.Logger, channels ...string) (*Listener, error) {
	if len(channels) == 0 {
		return nil, errors.New("pgstore: listener: no channels")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listener: %w", err)
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = ListenerAppName
	if log == nil {
		log = slog.Default()
	}
	return &Listener{
		cfg:      cfg,
		channels: append([]string(nil), channels...),
		log:      log,
		probe:    30 * time.Second,
		wake:     make(chan struct{}, 1),
	}, nil
}

// Run listens until ctx ends, reconnecting with backoff (100ms doubling to
// 5s) whenever the connection fails. It returns ctx's error.
func (l *Listener) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		listened, err := l.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if listened {
			backoff = 100 * time.Millisecond
		}
		l.log.Warn("pgstore: listener connection lost; reconnecting", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if backoff *= 2; backoff > 5*time.Second {
			backoff = 5 * time.Second
		}
	}
}

// session connects, LISTENs, reports MayHaveMissed and forwards
// notifications until the connection fails; listened reports whether it got
// as far as LISTEN.
func (l *Listener) session(ctx context.Context) (listened bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := pgx.ConnectConfig(cctx, l.cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	for _, ch := range l.channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return false, fmt.Errorf("LISTEN %s: %w", ch, err)
		}
	}
	l.signal(0, true, "")
	for {
		wctx, cancel := context.WithTimeout(ctx, l.probe)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.signal(1, false, n.Payload)
			continue
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
			return true, fmt.Errorf("ping: %w", err)
		default:
			return true, fmt.Errorf("waiting for notifications: %w", err)
		}
	}
}

func (l *Listener) signal(n int, missed bool, payload string) {
	l.mu.Lock()
	l.pending = true
	l.hint.Notifications += n
	l.hint.MayHaveMissed = l.hint.MayHaveMissed || missed
	switch {
	case n == 0:
	case strings.HasPrefix(payload, "event "):
		if len(l.hint.Events) == MaxHintEvents {
			l.hint.Events, l.hint.EventsOverflow = nil, true
		} else if !l.hint.EventsOverflow {
			l.hint.Events = append(l.hint.Events, payload)
		}
	case !l.hint.PayloadsOverflow && !slices.Contains(l.hint.Payloads, payload):
		if len(l.hint.Payloads) == MaxHintPayloads {
			l.hint.Payloads, l.hint.PayloadsOverflow = nil, true
		} else {
			l.hint.Payloads = append(l.hint.Payloads, payload)
		}
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Wait blocks until a hint is pending (or ctx ends) and returns it, clearing
// it: everything that arrived since the previous Wait, in one Hint.
func (l *Listener) Wait(ctx context.Context) (Hint, error) {
	for {
		select {
		case <-ctx.Done():
			return Hint{}, ctx.Err()
		case <-l.wake:
		}
		l.mu.Lock()
		h, ok := l.hint, l.pending
		l.hint, l.pending = Hint{}, false
		l.mu.Unlock()
		if ok {
			return h, nil
		}
	}
}

// Execer is what runs a statement: a *pgxpool.Pool, *pgx.Conn or pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Notify sends a notification on channel through conn (any connection or
// transaction of the pool): a hint to every node's Listener. Inside a
// transaction it is delivered at commit, and not at all on rollback.
func Notify(ctx context.Context, conn Execer, channel string) error {
	if _, err := conn.Exec(ctx, "SELECT pg_notify($1, '')", channel); err != nil {
		return fmt.Errorf("pgstore: notify %s: %w", channel, err)
	}
	return nil
}
