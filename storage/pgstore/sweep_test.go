package pgstore

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
)

// The sweep removes tombstones older than the cutoff only, and Changes
// from before a removed one says its vanished list is incomplete.
func TestSweepTombstonesMarksTheFeedIncomplete(t *testing.T) {
	ctx := context.Background()
	b, err := openBackend(ctx, pgtest.New(t), Options{PasswordCost: bcrypt.MinCost, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := storage.New(b, storage.RulesOptions{PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateUser(ctx, "alice@example.com", "secret", false); err != nil {
		t.Fatal(err)
	}
	var uids []imap.UID
	var box uint64
	for range 3 {
		a, err := s.Append(ctx, "alice@example.com", storage.Inbox, &storage.NewMessage{
			Raw: []byte("Subject: x\r\n\r\nx\r\n"), Flags: []imap.Flag{imap.FlagDeleted}})
		if err != nil {
			t.Fatal(err)
		}
		uids, box = append(uids, a.UID), a.MailboxID
	}
	if _, err := s.Expunge(ctx, "alice@example.com", box, uids[:2]); err != nil {
		t.Fatal(err)
	}
	// The first expunge is old; the second is not.
	if _, err := b.pool.Exec(ctx, "UPDATE expunged SET expunged_at = now() - interval '40 days' WHERE uid = $1", int64(uids[0])); err != nil {
		t.Fatal(err)
	}
	if n, err := b.sweepTombstones(ctx, time.Now().Add(-storage.TombstoneLifetime)); err != nil || n != 1 {
		t.Fatalf("swept %d (%v), want the one old tombstone", n, err)
	}
	cs, err := s.Changes(ctx, "alice@example.com", box, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !cs.VanishedIncomplete || len(cs.Vanished) != 1 || cs.Vanished[0] != uids[1] {
		t.Errorf("changes since 0: %+v, want incomplete with only UID %d", cs, uids[1])
	}
	st, err := s.MailboxStatus(ctx, "alice@example.com", storage.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	// Since the modseq after the old expunge, nothing is missing.
	var floor uint64
	if err := b.pool.QueryRow(ctx, "SELECT vanished_floor FROM mailboxes WHERE id = $1", int64(box)).Scan(&floor); err != nil {
		t.Fatal(err)
	}
	cs, err = s.Changes(ctx, "alice@example.com", box, floor)
	if err != nil || cs.VanishedIncomplete || cs.HighestModSeq != st.HighestModSeq {
		t.Errorf("changes since the floor %d: %+v (%v), want complete", floor, cs, err)
	}
}
