package pgstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pochta/pochta/internal/pgtest"
)

// mirror is node B's view of a mailbox, kept up to date from the feed only.
type mirror struct {
	since uint64
	msgs  map[uint64]string // uid -> flags
}

func (m *mirror) apply(cs *ChangeSet) {
	for _, c := range cs.Changed {
		m.msgs[c.UID] = fmt.Sprint(c.Flags)
	}
	for _, uid := range cs.Vanished {
		delete(m.msgs, uid)
	}
	m.since = cs.HighestModSeq
}

// truth is the mailbox as stored.
func truth(t *testing.T, p *pgxpool.Pool, mbox int64) map[uint64]string {
	t.Helper()
	rows, err := p.Query(context.Background(), "SELECT uid, flags FROM messages WHERE mailbox_id = $1", mbox)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uint64]string{}
	for rows.Next() {
		var uid uint64
		var flags []string
		if err := rows.Scan(&uid, &flags); err != nil {
			t.Fatal(err)
		}
		out[uid] = fmt.Sprint(flags)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// follow waits for hints and reads the feed until node B's view is want
// and, with untilMissed, until a hint has said it may have missed some (a
// hint still pending from before can bring the view up to date first).
func (m *mirror) follow(t *testing.T, l *Listener, p *pgxpool.Pool, mbox int64, want map[uint64]string, untilMissed bool) (missed bool) {
	t.Helper()
	for !maps.Equal(m.msgs, want) || (untilMissed && !missed) {
		h := waitHint(t, l)
		missed = missed || h.MayHaveMissed
		cs, err := Changes(context.Background(), p, mbox, m.since)
		if err != nil {
			t.Fatal(err)
		}
		if cs.VanishedIncomplete {
			t.Fatal("feed says expunges are missing; nothing was swept")
		}
		m.apply(cs)
	}
	return missed
}

// Node B follows node A's deliveries, flag changes and expunges through
// NOTIFY hints and the change feed; when B's listener connection is killed
// and A changes the mailbox meanwhile, B is told it may have missed hints
// and catches up from the feed, missing nothing.
func TestFeedCatchUpAcrossNodes(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	a, b := pool(t, dsn), pool(t, dsn)
	mbox, _ := setupMailbox(t, a)
	l := startListener(t, dsn, ChannelMailbox)
	waitHint(t, l) // listening

	view := &mirror{msgs: map[uint64]string{}}
	msg := NewMessage{Own: []byte("Subject: hi\r\n\r\nhi\r\n"), InternalDate: time.Now(), Size: 19}
	for range 3 {
		if _, err := AppendMessage(ctx, a, mbox, msg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := SetFlags(ctx, a, mbox, 2, []string{`\Seen`, "$Important"}); err != nil {
		t.Fatal(err)
	}
	if gone, err := Expunge(ctx, a, mbox, []uint64{1, 99}); err != nil || !slices.Equal(gone, []uint64{1}) {
		t.Fatalf("expunged %v (err %v), want [1]", gone, err)
	}
	view.follow(t, l, b, mbox, truth(t, a, mbox), false)

	// B's listener dies; A keeps changing the mailbox.
	var killed int
	if err := a.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()", ListenerAppName).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listener backends (err %v), want 1", killed, err)
	}
	for range 2 {
		if _, err := AppendMessage(ctx, a, mbox, msg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := SetFlags(ctx, a, mbox, 3, []string{`\Flagged`}); err != nil {
		t.Fatal(err)
	}
	if _, err := Expunge(ctx, a, mbox, []uint64{2}); err != nil {
		t.Fatal(err)
	}
	want := truth(t, a, mbox)
	if len(want) != 3 {
		t.Fatalf("mailbox holds %v, want UIDs 3, 4, 5", want)
	}
	// B must be told it may have missed hints (else waitHint fails after
	// 10 s) and catch up from the feed.
	view.follow(t, l, b, mbox, want, true)

	// The counters STATUS reads agree with the messages.
	var msgs, unseen, size int64
	if err := b.QueryRow(ctx, "SELECT messages, unseen, size FROM mailboxes WHERE id = $1", mbox).Scan(&msgs, &unseen, &size); err != nil {
		t.Fatal(err)
	}
	if msgs != 3 || unseen != 3 || size != 3*19 {
		t.Fatalf("mailbox counters messages %d unseen %d size %d, want 3, 3, %d", msgs, unseen, size, 3*19)
	}
}
