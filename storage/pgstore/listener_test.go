package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
)

// waitHint waits for the listener's next hint, failing after 10 seconds.
func waitHint(t *testing.T, l *Listener) Hint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := l.Wait(ctx)
	if err != nil {
		t.Fatalf("no hint within 10s: %v", err)
	}
	return h
}

func startListener(t *testing.T, dsn string, channels ...string) *Listener {
	t.Helper()
	l, err := NewListener(dsn, slog.New(slog.DiscardHandler), channels...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return l
}

// One node's NOTIFYs reach another node's listener as coalesced hints:
// nothing is lost, a rolled-back notification is not delivered, and the
// first hint says that what happened before the listener started may have
// been missed.
func TestListenerHints(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	other := pool(t, dsn)
	l := startListener(t, dsn, "mail", "queue")

	if h := waitHint(t, l); !h.MayHaveMissed || h.Notifications != 0 {
		t.Fatalf("first hint %+v, want MayHaveMissed and no notifications", h)
	}

	// A rolled-back transaction's notification never arrives; a committed
	// one's does, once, at commit. The listener is then caught up.
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := Notify(ctx, tx, "mail"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 25
	err = pgx.BeginFunc(ctx, other, func(tx pgx.Tx) error {
		for i := range n {
			// Distinct payloads: PostgreSQL folds identical ones in a
			// transaction, and this test counts deliveries.
			if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", []string{"mail", "queue"}[i%2], fmt.Sprint(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, wakes := 0, 0
	for got < n {
		h := waitHint(t, l)
		if h.MayHaveMissed {
			t.Fatalf("hint %+v says missed while connected", h)
		}
		got += h.Notifications
		wakes++
	}
	if got != n {
		t.Fatalf("hints counted %d notifications, want %d (the rolled-back one must not arrive)", got, n)
	}
	// Nothing more is pending: another round trip gives exactly one.
	if err := Notify(ctx, other, "queue"); err != nil {
		t.Fatal(err)
	}
	if h := waitHint(t, l); h.Notifications != 1 || h.MayHaveMissed {
		t.Fatalf("hint %+v after one notification, want exactly 1", h)
	}
	t.Logf("%d notifications in %d wake-ups", n, wakes)
}

// Hints coalesce: a reader that was away gets one hint for everything that
// arrived meanwhile.
func TestListenerCoalesces(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	other := pool(t, dsn)
	l := startListener(t, dsn, "mail")
	waitHint(t, l) // listening
	for i := range 10 {
		if _, err := other.Exec(ctx, "SELECT pg_notify('mail', $1)", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A notification on the same connection after the ten arrives after
	// them; once the count reaches 11 every earlier one is in.
	if _, err := other.Exec(ctx, "SELECT pg_notify('mail', 'last')"); err != nil {
		t.Fatal(err)
	}
	got, wakes := 0, 0
	payloads := map[string]int{}
	for got < 11 {
		h := waitHint(t, l)
		got += h.Notifications
		wakes++
		for _, p := range h.Payloads {
			payloads[p]++
		}
	}
	if got != 11 || wakes > 11 {
		t.Fatalf("%d notifications in %d wake-ups, want 11 in at most 11", got, wakes)
	}
	// Each payload arrives, once: a watch reads only what they name.
	want := map[string]int{"last": 1}
	for i := range 10 {
		want[fmt.Sprint(i)] = 1
	}
	if !maps.Equal(payloads, want) {
		t.Fatalf("payloads %v, want each of 0..9 and last once", payloads)
	}
	select {
	case <-l.wake:
		l.mu.Lock()
		pending := l.pending
		l.mu.Unlock()
		if pending {
			t.Fatal("a hint is still pending after all notifications were counted")
		}
	default:
	}
}

// A listener whose connection is killed reconnects by itself and says that
// it may have missed notifications; it then gets new ones again.
func TestListenerReconnects(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	admin := pool(t, dsn)
	l := startListener(t, dsn, "mail")
	waitHint(t, l)

	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, ListenerAppName).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listener backends, want 1", killed)
	}
	// Sent while the listener is down (or maybe just before it noticed):
	// it may or may not arrive; the hint must say "may have missed".
	if err := Notify(ctx, admin, "mail"); err != nil {
		t.Fatal(err)
	}
	h := waitHint(t, l)
	for !h.MayHaveMissed {
		// The notification beat the termination: it is a plain hint.
		h = waitHint(t, l)
	}
	if err := Notify(ctx, admin, "mail"); err != nil {
		t.Fatal(err)
	}
	if h := waitHint(t, l); h.Notifications != 1 || h.MayHaveMissed {
		t.Fatalf("hint %+v after reconnecting and one notification, want exactly 1", h)
	}
}

// A hint keeps each distinct payload once; past MaxHintPayloads it keeps
// none and says so, and the next hint starts afresh.
func TestHintPayloadsAreBounded(t *testing.T) {
	l, err := NewListener("postgres://127.0.0.1/x", slog.New(slog.DiscardHandler), "mail")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"7", "9", "7"} {
		l.signal(1, false, p)
	}
	if h := waitHint(t, l); !slices.Equal(h.Payloads, []string{"7", "9"}) || h.PayloadsOverflow || h.Notifications != 3 {
		t.Fatalf("hint %+v, want payloads [7 9] from 3 notifications", h)
	}
	for i := range MaxHintPayloads + 1 {
		l.signal(1, false, fmt.Sprint(i))
	}
	if h := waitHint(t, l); h.Payloads != nil || !h.PayloadsOverflow {
		t.Fatalf("hint with %d payloads, overflow %v; want none kept and overflow", len(h.Payloads), h.PayloadsOverflow)
	}
	l.signal(1, false, "queue")
	if h := waitHint(t, l); !slices.Equal(h.Payloads, []string{"queue"}) || h.PayloadsOverflow {
		t.Fatalf("hint after an overflowed one: %+v", h)
	}
	// Carried events are kept apart, each (not deduplicated), and many
	// mailbox changes do not drop them.
	for i := range MaxHintPayloads + 1 {
		l.signal(1, false, fmt.Sprint(i))
	}
	l.signal(1, false, "event a {}")
	l.signal(1, false, "event a {}")
	if h := waitHint(t, l); !h.PayloadsOverflow || !slices.Equal(h.Events, []string{"event a {}", "event a {}"}) || h.EventsOverflow {
		t.Fatalf("hint: payloads overflow %v, events %q (overflow %v); want both events kept", h.PayloadsOverflow, h.Events, h.EventsOverflow)
	}
	for range MaxHintEvents + 1 {
		l.signal(1, false, "event a {}")
	}
	if h := waitHint(t, l); h.Events != nil || !h.EventsOverflow || h.PayloadsOverflow {
		t.Fatalf("hint with %d events, overflow %v; want none kept and overflow", len(h.Events), h.EventsOverflow)
	}
}

// What a hint makes a watch read: only the named mailboxes and the queue
// when it is sure of them, everything otherwise; other nodes' read-tracking
// changes come whole in their payloads, this node's own are left out.
func TestScopeOfHint(t *testing.T) {
	mine, err := eventNote("me", storage.Event{Kind: storage.EventTracking, User: "alice@example.com", MailboxID: 3, UID: 9, TrackingID: 4})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := eventNote("them", storage.Event{Kind: storage.EventTracking, User: "bob@example.com", MailboxID: 5, UID: 2, TrackingID: 6})
	if err != nil {
		t.Fatal(err)
	}
	anyAccount := []storage.Event{{Kind: storage.EventAccount}}
	bobs := []storage.Event{{Kind: storage.EventTracking, User: "bob@example.com", MailboxID: 5, UID: 2, TrackingID: 6}}
	for _, c := range []struct {
		h    Hint
		want catchUpScope
	}{
		{Hint{Notifications: 2, Payloads: []string{"12", "queue"}}, catchUpScope{boxes: []int64{12}, queue: true}},
		{Hint{Notifications: 1, Payloads: []string{"5"}}, catchUpScope{boxes: []int64{5}}},
		{Hint{Notifications: 2, Payloads: []string{"5", "mailboxes"}}, catchUpScope{full: true, boxes: []int64{5}}},
		{Hint{Notifications: 1, Payloads: []string{""}}, catchUpScope{full: true}},
		{Hint{Notifications: 1, Events: []string{"event them {"}}, catchUpScope{}},
		{Hint{Notifications: 1, Payloads: []string{"5"}, MayHaveMissed: true}, catchUpScope{full: true, boxes: []int64{5}, carried: anyAccount}},
		{Hint{Notifications: 300, PayloadsOverflow: true}, catchUpScope{full: true}}, // many mailboxes: no flush
		{Hint{Notifications: 3, Payloads: []string{"7"}, Events: []string{mine, theirs}}, catchUpScope{boxes: []int64{7}, carried: bobs}},
		{Hint{Notifications: 2000, PayloadsOverflow: true, Events: []string{theirs}}, catchUpScope{full: true, carried: bobs}},
		{Hint{Notifications: 2000, EventsOverflow: true}, catchUpScope{full: true, carried: anyAccount}},
	} {
		got := scopeOf(c.h, "me")
		if got.full != c.want.full || !slices.Equal(got.boxes, c.want.boxes) || got.queue != c.want.queue || !slices.EqualFunc(got.carried, c.want.carried, func(a, b storage.Event) bool {
			return a.Kind == b.Kind && a.User == b.User && a.MailboxID == b.MailboxID && a.UID == b.UID && a.TrackingID == b.TrackingID
		}) {
			t.Errorf("scopeOf(%+v) = %+v, want %+v", c.h, *got, c.want)
		}
	}
}
