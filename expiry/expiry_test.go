package expiry

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/storage/storagetest"
)

const bob = "bob@example.com"

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func openStore(t *testing.T) storage.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "pochta.db"), boltstore.Options{PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.CreateUser(context.Background(), bob, "pw", false); err != nil {
		t.Fatal(err)
	}
	return s
}

func deliverAt(t *testing.T, s storage.Store, subject string, date time.Time, flags ...imap.Flag) {
	t.Helper()
	raw := "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: " + subject + "\r\n\r\nhi\r\n"
	if _, err := s.Append(context.Background(), bob, storage.Inbox, &storage.NewMessage{Raw: []byte(raw), InternalDate: date, Flags: flags}); err != nil {
		t.Fatal(err)
	}
}

func inboxCount(t *testing.T, s storage.Store) uint32 {
	t.Helper()
	st, err := s.MailboxStatus(context.Background(), bob, storage.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	return st.Messages
}

func TestSweepDeletesUnreadMailOnceTheClockPassesTheLifetime(t *testing.T) {
	s := openStore(t)
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	deliverAt(t, s, "unread", t0)
	deliverAt(t, s, "read", t0, imap.FlagSeen)
	clk := &clock{t: t0}
	reg := prometheus.NewRegistry()
	sw, err := New(Options{Store: s, Lifetime: 7 * 24 * time.Hour, Now: clk.now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}

	clk.set(t0.Add(7*24*time.Hour - time.Second))
	if n, err := sw.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("a second before the lifetime ends: deleted %d, %v", n, err)
	}
	clk.set(t0.Add(7*24*time.Hour + time.Second))
	if n, err := sw.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("a second after: deleted %d, %v; want 1", n, err)
	}
	if got := inboxCount(t, s); got != 1 {
		t.Fatalf("INBOX holds %d messages, want the read one only", got)
	}
	if got := testutil.ToFloat64(sw.expired); got != 1 {
		t.Fatalf("pochta_messages_expired_total = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "pochta_messages_expired_total"); err != nil || n != 1 {
		t.Fatalf("counter not on the registry: %d %v", n, err)
	}
}

func TestZeroLifetimeNeverDeletesUntilAReloadTurnsItOn(t *testing.T) {
	s := openStore(t)
	expunged := make(chan imap.UID, 10)
	s.Listen(func(ev storage.Event) {
		if ev.Kind == storage.EventExpunge {
			expunged <- ev.UID
		}
	})
	deliverAt(t, s, "ancient", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	sw, err := New(Options{Store: s, Lifetime: 0})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := sw.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("lifetime off: deleted %d, %v", n, err)
	}
	stop := run(sw)
	if got := inboxCount(t, s); got != 1 {
		t.Fatalf("INBOX holds %d", got)
	}
	// A configuration reload sets a lifetime: the running sweeper
	// deletes the old unread message without a restart.
	if err := sw.SetLifetime(24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	select {
	case <-expunged:
	case <-time.After(10 * time.Second):
		t.Fatal("the reloaded lifetime did not expire the old message")
	}
	if err := sw.SetLifetime(-time.Second); err == nil {
		t.Fatal("a negative lifetime was accepted")
	}
	stopWithin(t, stop)
}

func TestRunKeepsSweepingUntilCancelled(t *testing.T) {
	s := openStore(t)
	expunged := make(chan imap.UID, 10)
	s.Listen(func(ev storage.Event) {
		if ev.Kind == storage.EventExpunge {
			expunged <- ev.UID
		}
	})
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	clk := &clock{t: t0.Add(time.Hour)}
	sw, err := New(Options{Store: s, Lifetime: time.Minute, Interval: 20 * time.Millisecond, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(sw)
	wait := func(what string) {
		t.Helper()
		select {
		case <-expunged:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not expired", what)
		}
	}
	deliverAt(t, s, "first", t0)
	wait("the first message")
	deliverAt(t, s, "second", t0)
	wait("a message that arrived after the first sweep")
	stopWithin(t, stop)
}

func TestIntervalFollowsTheLifetime(t *testing.T) {
	s := openStore(t)
	for _, c := range []struct{ lifetime, want time.Duration }{
		{2 * time.Second, time.Second},
		{7 * 24 * time.Hour, MaxInterval},
		{50 * time.Millisecond, minInterval},
	} {
		sw, err := New(Options{Store: s, Lifetime: c.lifetime})
		if err != nil {
			t.Fatal(err)
		}
		if sw.Interval() != c.want {
			t.Errorf("lifetime %s: interval %s, want %s", c.lifetime, sw.Interval(), c.want)
		}
	}
	if _, err := New(Options{Store: s, Lifetime: -time.Second}); err == nil {
		t.Error("a negative lifetime was accepted")
	}
}

// On a store several nodes share, a node that does not lead the cluster's
// housekeeping skips its sweeps; once it leads, it sweeps.
func TestOnlyTheLeadingNodeSweeps(t *testing.T) {
	s := storagetest.NewFollower(openStore(t))
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	clk := &clock{t: t0.Add(time.Hour)}
	deliverAt(t, s, "expired", t0)
	sw, err := New(Options{Store: s, Lifetime: time.Minute, Interval: 20 * time.Millisecond, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer run(sw)()
	for range 3 { // three rounds asked and skipped
		select {
		case <-s.Asked:
		case <-time.After(10 * time.Second):
			t.Fatal("the sweeper never asked whether it leads")
		}
	}
	if n := inboxCount(t, s); n != 1 {
		t.Fatalf("a node that does not lead swept: INBOX holds %d, want 1", n)
	}
	s.Lead.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for inboxCount(t, s) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the node did not sweep once it led")
		}
		<-s.Asked
	}
}

// run starts sw.Run; the function returned stops it and waits.
func run(sw *Sweeper) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sw.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// stopWithin calls stop and fails the test if Run does not end within 10 s.
func stopWithin(t *testing.T, stop func()) {
	t.Helper()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}
