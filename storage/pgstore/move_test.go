package pgstore

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
	"github.com/pochta/pochta/storage/boltstore/bolttest"
	"github.com/pochta/pochta/storage/storagetest"
)

// TestMoveRoundTrip moves a realistic bbolt store (storagetest.FillForMove:
// users, subscriptions of a deleted mailbox, flagged messages, read
// tracking with a read and an unread recipient, queue entries in every
// status, day counters, the relay state) into PostgreSQL and from there
// into a new bbolt file: each copy answers the public Store API as the
// first store does, the first file is byte for byte unchanged, and each
// copy goes on working as the first would (leases cleared, the waiting
// entry due, tracking following the unread copy, the unread lifetime, the
// Sent de-duplication, a deleted name's UIDNEXT, new IDs above the copied
// ones).
func TestMoveRoundTrip(t *testing.T) {
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "first.db")
	first, err := boltstore.Open(path, boltstore.Options{PasswordCost: bcrypt.MinCost})
	must(err)
	defer first.Close()
	q := storagetest.FillForMove(t, first)
	want := storagetest.DescribeMoved(t, first)
	hash := func() [32]byte {
		b, err := os.ReadFile(path)
		must(err)
		return sha256.Sum256(b)
	}
	before := hash()
	wantCounts, err := storage.CountExport(ctx, first.(storage.Exporter))
	must(err)
	if wantCounts.Tracking != 6 || wantCounts.Queue != (storage.QueueCounts{Outbox: 3, Held: 1, Sent: 1, Failed: 1}) {
		t.Fatalf("the filled store counts %+v: want 6 sent messages tracked, 3 waiting, 1 held, 1 sent, 1 failed", *wantCounts)
	}

	url := pgtest.New(t)
	pg, err := Open(ctx, url, Options{PasswordCost: bcrypt.MinCost})
	must(err)
	defer pg.Close()
	must(pg.(storage.Importer).Import(ctx, first.(storage.Exporter)))
	if got := storagetest.DescribeMoved(t, pg); got != want {
		t.Errorf("PostgreSQL answers differently from the bbolt store it was copied from:\n%s\nbbolt:\n%s", got, want)
	}
	// The report's body is stored once for its four copies (Sent, bob,
	// carol, the queue), as in the source.
	conn, err := pgx.Connect(ctx, url)
	must(err)
	var bodies, refs int
	must(conn.QueryRow(ctx, "SELECT count(*), coalesce(sum(refcount), 0) FROM bodies").Scan(&bodies, &refs))
	conn.Close(ctx)
	if srcBodies, srcRefs := bolttest.SharedBodies(t, copyOf(t, path)); bodies != srcBodies || refs != srcRefs || bodies != 1 || refs != 4 {
		t.Errorf("PostgreSQL stores %d shared bodies for %d copies, the source %d for %d; want 1 for 4", bodies, refs, srcBodies, srcRefs)
	}

	finalPath := filepath.Join(dir, "final.db")
	final, err := boltstore.Open(finalPath, boltstore.Options{PasswordCost: bcrypt.MinCost})
	must(err)
	defer final.Close()
	imp := final.(storage.Importer)
	if empty, err := imp.Empty(ctx); err != nil || !empty {
		t.Fatalf("a new bbolt file: Empty = %v, %v", empty, err)
	}
	must(imp.Import(ctx, pg.(storage.Exporter)))
	if got := storagetest.DescribeMoved(t, final); got != want {
		t.Errorf("the bbolt store copied back from PostgreSQL answers differently from the first:\n%s\nfirst:\n%s", got, want)
	}
	if empty, err := imp.Empty(ctx); err != nil || empty {
		t.Errorf("after the import Empty = %v, %v; want false", empty, err)
	}
	for name, s := range map[string]storage.Store{"PostgreSQL": pg, "bbolt": final} {
		got, err := storage.CountExport(ctx, s.(storage.Exporter))
		must(err)
		if m := wantCounts.Mismatches(got); len(m) > 0 {
			t.Errorf("%s counts: %q", name, m)
		}
	}
	if hash() != before {
		t.Error("the moves changed the first bbolt file")
	}
	if bodies, refs := bolttest.SharedBodies(t, copyOf(t, finalPath)); bodies != 1 || refs != 4 {
		t.Errorf("the bbolt copy stores %d shared bodies for %d copies; want 1 for 4", bodies, refs)
	}

	// What the unread lifetime meets once carol has read her mail.
	unread := 0
	for _, u := range []string{storagetest.MoveAlice, storagetest.MoveBob} {
		st, err := first.MailboxStatus(ctx, u, storage.Inbox)
		must(err)
		unread += int(st.Unseen)
	}
	for name, s := range map[string]storage.Store{"PostgreSQL": pg, "bbolt": final} {
		stillWorks(t, name, s, q, unread)
	}
}

// stillWorks checks that a moved store passes `pochta check` and carries
// on where the first left off; it changes s.
func stillWorks(t *testing.T, name string, s storage.Store, q storagetest.MovedQueue, unread int) {
	t.Helper()
	ctx := context.Background()
	alice, carol := storagetest.MoveAlice, storagetest.MoveCarol
	if rep, err := s.Check(ctx, false); err != nil || len(rep.Bad) != 0 || rep.Checked == 0 {
		t.Errorf("%s: check of the copy: %+v %v, want every record readable", name, rep, err)
	}
	leased, err := s.QueueEntry(ctx, q.Leased)
	if err != nil {
		t.Fatal(err)
	}
	if leased.LeaseOwner != "" || !leased.LeaseUntil.IsZero() {
		t.Errorf("%s: the copied entry keeps its lease (%q until %v)", name, leased.LeaseOwner, leased.LeaseUntil)
	}
	due, _, err := s.DueQueueEntries(ctx, time.Now(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, e := range due {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, []uint64{q.Waiting, q.Leased}) {
		t.Errorf("%s: due now %v, want the waiting entry %d and the one whose lease was cleared %d", name, ids, q.Waiting, q.Leased)
	}

	// MoveDay's limit counts the mail counted before the move, and its
	// alert, sent before the move, is not sent again.
	now := time.Now()
	c, err := s.ClaimQueueEntry(ctx, storage.QueueClaim{ID: q.Waiting, Now: now, Day: storagetest.MoveDay, HoldUntil: now.Add(time.Hour),
		SystemLimit: 4, SystemAlert: &storage.Notice{Recipients: []string{alice}, Message: &storage.NewMessage{Raw: []byte("Subject: limit\r\n\r\nx\r\n")}},
		Owner: "node-b", LeaseUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Held != storage.LimitSystem || c.Alerted {
		t.Errorf("%s: a claim on %s with the system limit at the 4 counted before the move: %+v, want held without a second alert", name, storagetest.MoveDay, c)
	}

	// Carol reads her copies: the tracking records follow them.
	box, err := s.MailboxStatus(ctx, carol, storage.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	uids, err := s.UIDs(ctx, carol, box.ID)
	if err != nil || len(uids) != 2 {
		t.Fatalf("%s: carol's INBOX %v %v, want her two copies", name, uids, err)
	}
	if _, err := s.StoreFlags(ctx, carol, box.ID, uids, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	sent, err := s.SentStatus(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	state := ""
	for _, m := range sent {
		for _, r := range m.Recipients {
			if m.Subject == "minutes" && r.Address == carol {
				state = r.State
			}
		}
	}
	if state != storage.TrackRead {
		t.Errorf("%s: carol read her copy, alice's Sent shows her %q", name, state)
	}

	// The client's own copy of the message in Sent is taken for the one
	// the server stored.
	st, err := s.MailboxStatus(ctx, alice, storage.Sent)
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: minutes\r\nMessage-ID: <minutes@example.com>\r\n\r\nThe minutes.\r\n"
	if _, err := s.Append(ctx, alice, storage.Sent, &storage.NewMessage{Raw: []byte(raw), Flags: []imap.Flag{imap.FlagSeen}}); err != nil {
		t.Fatal(err)
	}
	if again, err := s.MailboxStatus(ctx, alice, storage.Sent); err != nil || again.Messages != st.Messages {
		t.Errorf("%s: a client's APPEND of the sent message grew Sent from %d to %d messages (%v)", name, st.Messages, again.Messages, err)
	}

	// A name deleted before the move continues from its UIDNEXT.
	if err := s.CreateMailbox(ctx, alice, "Projects/2026"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.MailboxStatus(ctx, alice, "Projects/2026"); err != nil || p.UIDNext != 2 {
		t.Errorf("%s: Projects/2026 created again has UIDNEXT %d (%v), want 2", name, p.UIDNext, err)
	}

	// New records get IDs above the copied ones.
	res, err := s.Deliver(ctx, &storage.Delivery{Sender: alice, SentCopy: &storage.NewMessage{Raw: []byte("Subject: later\r\n\r\nx\r\n")},
		From: alice, Source: storage.SourceUser, External: []string{"z@remote.test"},
		RelayCopy: &storage.NewMessage{Raw: []byte("Subject: later\r\n\r\nx\r\n")}, MessageID: "<later@example.com>", Subject: "later"})
	if err != nil {
		t.Fatal(err)
	}
	if res.QueueID <= max(q.Waiting, q.Retrying, q.Leased, q.Held, q.Sent, q.Failed) {
		t.Errorf("%s: a new queue entry got ID %d, not above the copied ones %+v", name, res.QueueID, q)
	}
	for _, m := range sent {
		if res.TrackingID <= m.ID {
			t.Errorf("%s: a new tracking record got ID %d, not above the copied %d", name, res.TrackingID, m.ID)
		}
	}

	// The unread lifetime meets every unread INBOX message.
	n, err := s.ExpireUnread(ctx, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != unread {
		t.Errorf("%s: the unread lifetime deleted %d messages, want %d", name, n, unread)
	}
}

// copyOf copies the bbolt file at path (open in this process, so bbolt's
// lock keeps it from being opened twice) and returns the copy's path.
func copyOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}
