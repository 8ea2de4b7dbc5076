package boltstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

const (
	alice = "alice@example.com"
	bob   = "bob@example.com"
	carol = "carol@example.com"
)

// trackingStore opens a store with alice, bob and carol.
func trackingStore(t *testing.T) *testStore {
	t.Helper()
	s, _ := openTestStore(t)
	for _, u := range []string{alice, bob, carol} {
		mustCreateUser(t, s, u)
	}
	return s
}

// submit delivers one message from alice to rcpts, as smtpd does (the Sent
// copy even asks for \Seen, which tracking must override).
func submit(t *testing.T, s storage.Store, subject string, rcpts ...string) *storage.DeliveryResult {
	t.Helper()
	raw := []byte(simpleMessage(subject))
	res, err := s.Deliver(context.Background(), &storage.Delivery{
		Sender:     alice,
		SentCopy:   &storage.NewMessage{Raw: raw, Flags: []imap.Flag{imap.FlagSeen}},
		Recipients: rcpts,
		Copy:       &storage.NewMessage{Raw: raw},
		From:       alice,
		Source:     storage.SourceUser,
		MessageID:  "<" + subject + "@example.com>",
		Subject:    subject,
	})
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if res.TrackingID == 0 {
		t.Fatalf("delivery %q got no tracking record", subject)
	}
	return res
}

func flagsOf(t *testing.T, s storage.Store, user string, a *storage.Appended) []imap.Flag {
	t.Helper()
	return loadOne(t, s, user, a.MailboxID, a.UID).Flags
}

func isSeen(t *testing.T, s storage.Store, user string, a *storage.Appended) bool {
	t.Helper()
	return slices.Contains(flagsOf(t, s, user, a), imap.FlagSeen)
}

// states returns recipient -> state of the record with the given ID.
func states(t *testing.T, s storage.Store, user string, id uint64) map[string]string {
	t.Helper()
	list, err := s.SentStatus(context.Background(), user)
	if err != nil {
		t.Fatalf("sent status: %v", err)
	}
	for _, m := range list {
		if m.ID == id {
			out := make(map[string]string)
			for _, r := range m.Recipients {
				out[r.Address] = r.State
			}
			return out
		}
	}
	return nil
}

func markSeen(t *testing.T, s storage.Store, ctx context.Context, user string, a *storage.Appended) {
	t.Helper()
	if _, err := s.StoreFlags(ctx, user, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatalf("store \\Seen for %s: %v", user, err)
	}
}

func expunge(t *testing.T, s storage.Store, user string, a *storage.Appended) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.StoreFlags(ctx, user, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if gone, err := s.Expunge(ctx, user, a.MailboxID, nil); err != nil || len(gone) != 1 {
		t.Fatalf("expunge: %v %v", gone, err)
	}
}

// externalRecord makes a tracked message with external recipients without
// the queue: the Sent copy is appended, then trackDelivery runs as Deliver
// would run it.
func externalRecord(t *testing.T, s *testStore, rcpts ...string) (uint64, *storage.Appended) {
	t.Helper()
	sent := mustAppend(t, s, alice, storage.Sent, simpleMessage("abroad"))
	id, err := write(s.boltStore, context.Background(), 0, func(tx *bolt.Tx, ev *eventList) (uint64, error) {
		res := &storage.DeliveryResult{Sent: sent, Copies: map[string]*storage.Appended{}}
		err := storage.TrackDelivery(records(tx), &storage.Delivery{Sender: alice, External: rcpts, MessageID: "<abroad@example.com>"}, res, time.Now(), ev)
		return res.TrackingID, err
	})
	if err != nil || id == 0 {
		t.Fatalf("track: %d %v", id, err)
	}
	return id, sent
}

func setExternal(t *testing.T, s *testStore, id uint64, rcpt, state string) error {
	t.Helper()
	_, err := write(s.boltStore, context.Background(), 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		return struct{}{}, storage.SetExternalState(records(tx), id, rcpt, state, ev)
	})
	return err
}

func TestExternalRecipientsSettleFromTheQueuesOutcome(t *testing.T) {
	s := trackingStore(t)
	id, sent := externalRecord(t, s, "x@example.net", "Y@example.org")
	if got := states(t, s, alice, id); got["x@example.net"] != storage.TrackQueued || got["Y@example.org"] != storage.TrackQueued {
		t.Fatalf("after delivery: %v", got)
	}
	if err := setExternal(t, s, id, "x@example.net", storage.TrackRelayed); err != nil {
		t.Fatal(err)
	}
	if isSeen(t, s, alice, sent) {
		t.Fatal("Sent copy \\Seen while y is still queued")
	}
	if err := setExternal(t, s, id, "y@EXAMPLE.org", storage.TrackFailed); err != nil {
		t.Fatal(err)
	}
	if got := states(t, s, alice, id); got["x@example.net"] != storage.TrackRelayed || got["Y@example.org"] != storage.TrackFailed {
		t.Fatalf("after the queue's outcome: %v", got)
	}
	if !isSeen(t, s, alice, sent) {
		t.Fatal("Sent copy not \\Seen once the queue is done with everyone")
	}
	if err := setExternal(t, s, id, "x@example.net", "read"); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("state \"read\" for an external recipient: %v, want ErrInvalid", err)
	}
	for _, noop := range []func() error{
		func() error { return setExternal(t, s, 0, "x@example.net", storage.TrackRelayed) },
		func() error { return setExternal(t, s, id+100, "x@example.net", storage.TrackRelayed) },
		func() error { return setExternal(t, s, id, "stranger@example.net", storage.TrackRelayed) },
	} {
		if err := noop(); err != nil {
			t.Fatalf("unknown record or recipient: %v, want a no-op", err)
		}
	}
}

func TestMovedCopiesStayTracked(t *testing.T) {
	s := trackingStore(t)
	ctx := context.Background()
	res := submit(t, s, "filed", bob, carol)
	if err := s.CreateMailbox(ctx, bob, "Later"); err != nil {
		t.Fatal(err)
	}
	mv, err := s.Move(ctx, bob, res.Copies[bob].MailboxID, []imap.UID{res.Copies[bob].UID}, "Later")
	if err != nil || len(mv.DestUIDs) != 1 {
		t.Fatalf("move: %+v %v", mv, err)
	}
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackUnread {
		t.Fatalf("a move is not a deletion: %v", got)
	}
	// alice files her Sent copy in Trash; it is still the one to mark.
	mvSent, err := s.Move(ctx, alice, res.Sent.MailboxID, []imap.UID{res.Sent.UID}, storage.Trash)
	if err != nil {
		t.Fatal(err)
	}
	later := mustMailbox(t, s, bob, "Later")
	markSeen(t, s, ctx, bob, &storage.Appended{MailboxID: later.ID, UID: mv.DestUIDs[0]})
	markSeen(t, s, ctx, carol, res.Copies[carol])
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackRead || got[carol] != storage.TrackRead {
		t.Fatalf("after both read: %v", got)
	}
	trash := mustMailbox(t, s, alice, storage.Trash)
	if !isSeen(t, s, alice, &storage.Appended{MailboxID: trash.ID, UID: mvSent.DestUIDs[0]}) {
		t.Fatal("the Sent copy moved to Trash did not get \\Seen")
	}
	if trash.Unseen != 0 {
		t.Fatalf("Trash unseen = %d", trash.Unseen)
	}
}

func TestUnreadCopyInTrashIsDeletedWhetherMovedOrCopiedAndExpunged(t *testing.T) {
	s := trackingStore(t)
	ctx := context.Background()
	res := submit(t, s, "unwanted", bob, carol)
	// bob's client has MOVE.
	if _, err := s.Move(ctx, bob, res.Copies[bob].MailboxID, []imap.UID{res.Copies[bob].UID}, storage.Trash); err != nil {
		t.Fatal(err)
	}
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackDeleted || got[carol] != storage.TrackUnread {
		t.Fatalf("after bob moved his unread copy to Trash: %v, want bob deleted", got)
	}
	// carol's client copies to Trash and expunges the original.
	if _, err := s.Copy(ctx, carol, res.Copies[carol].MailboxID, []imap.UID{res.Copies[carol].UID}, storage.Trash); err != nil {
		t.Fatal(err)
	}
	expunge(t, s, carol, res.Copies[carol])
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackDeleted || got[carol] != storage.TrackDeleted {
		t.Fatalf("after carol copied to Trash and expunged: %v, want both deleted", got)
	}
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen once nobody is pending")
	}
	// Reading it in Trash later changes nothing: deleted stays deleted.
	trash := mustMailbox(t, s, bob, storage.Trash)
	uids, err := s.UIDs(ctx, bob, trash.ID)
	if err != nil || len(uids) != 1 {
		t.Fatalf("bob's Trash: %v %v", uids, err)
	}
	markSeen(t, s, ctx, bob, &storage.Appended{MailboxID: trash.ID, UID: uids[0]})
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackDeleted {
		t.Fatalf("after bob read it in Trash: %v", got)
	}
}

func TestDeletedSentCopyDoesNotBreakReading(t *testing.T) {
	s := trackingStore(t)
	res := submit(t, s, "regret", bob)
	expunge(t, s, alice, res.Sent)
	if got := states(t, s, alice, res.TrackingID); got[bob] != storage.TrackUnread {
		t.Fatalf("record of a pending message whose Sent copy is gone: %v", got)
	}
	markSeen(t, s, context.Background(), bob, res.Copies[bob])
	// Nobody pending and no Sent copy: the record has nothing left to say.
	if got := states(t, s, alice, res.TrackingID); got != nil {
		t.Fatalf("record kept after it settled without a Sent copy: %v", got)
	}
}
