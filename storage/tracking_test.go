package storage

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	bolt "go.etcd.io/bbolt"
)

const (
	alice = "alice@example.com"
	bob   = "bob@example.com"
	carol = "carol@example.com"
)

// trackingStore opens a store with alice, bob and carol.
func trackingStore(t *testing.T) *boltStore {
	t.Helper()
	s, _ := openTestStore(t)
	for _, u := range []string{alice, bob, carol} {
		mustCreateUser(t, s, u)
	}
	return s
}

// submit delivers one message from alice to rcpts, as smtpd does (the Sent
// copy even asks for \Seen, which tracking must override).
func submit(t *testing.T, s Store, subject string, rcpts ...string) *DeliveryResult {
	t.Helper()
	raw := []byte(simpleMessage(subject))
	res, err := s.Deliver(context.Background(), &Delivery{
		Sender:     alice,
		SentCopy:   &NewMessage{Raw: raw, Flags: []imap.Flag{imap.FlagSeen}},
		Recipients: rcpts,
		Copy:       &NewMessage{Raw: raw},
		From:       alice,
		Source:     SourceUser,
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

func flagsOf(t *testing.T, s Store, user string, a *Appended) []imap.Flag {
	t.Helper()
	return loadOne(t, s, user, a.MailboxID, a.UID).Flags
}

func isSeen(t *testing.T, s Store, user string, a *Appended) bool {
	t.Helper()
	return slices.Contains(flagsOf(t, s, user, a), imap.FlagSeen)
}

// states returns recipient -> state of the record with the given ID.
func states(t *testing.T, s Store, user string, id uint64) map[string]string {
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

func markSeen(t *testing.T, s Store, ctx context.Context, user string, a *Appended) {
	t.Helper()
	if _, err := s.StoreFlags(ctx, user, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatalf("store \\Seen for %s: %v", user, err)
	}
}

func expunge(t *testing.T, s Store, user string, a *Appended) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.StoreFlags(ctx, user, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if gone, err := s.Expunge(ctx, user, a.MailboxID, nil); err != nil || len(gone) != 1 {
		t.Fatalf("expunge: %v %v", gone, err)
	}
}

func TestSentCopyTurnsSeenOnlyWhenTheSecondRecipientReads(t *testing.T) {
	s := trackingStore(t)
	events := listen(s)
	res := submit(t, s, "report", bob, carol)

	if isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy is \\Seen while both recipients are pending")
	}
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackUnread || got[carol] != TrackUnread {
		t.Fatalf("after delivery: %v", got)
	}

	markSeen(t, s, context.Background(), bob, res.Copies[bob])
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackRead || got[carol] != TrackUnread {
		t.Fatalf("after bob read: %v", got)
	}
	if isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy is \\Seen while carol has not read hers")
	}
	if st := mustMailbox(t, s, alice, Sent); st.Unseen != 1 {
		t.Fatalf("Sent unseen = %d, want 1", st.Unseen)
	}

	// carol's session marks her copy; the event for alice's Sent copy must
	// not carry carol's session as origin, or it would be filtered.
	markSeen(t, s, WithOrigin(context.Background(), Origin{Session: 1}), carol, res.Copies[carol])
	if got := states(t, s, alice, res.TrackingID); got[carol] != TrackRead {
		t.Fatalf("after carol read: %v", got)
	}
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen after everyone read it")
	}
	if st := mustMailbox(t, s, alice, Sent); st.Unseen != 0 {
		t.Fatalf("Sent unseen = %d, want 0", st.Unseen)
	}
	var found bool
	for _, ev := range events.snapshot() {
		if ev.Kind == EventFlags && ev.User == alice && ev.MailboxID == res.Sent.MailboxID && ev.UID == res.Sent.UID {
			found = true
			if !ev.Origin.IsZero() || !slices.Contains(ev.Flags, imap.FlagSeen) {
				t.Errorf("Sent copy event %+v: want \\Seen and no origin", ev)
			}
		}
	}
	if !found {
		t.Fatal("no EventFlags for the Sent copy")
	}
}

func TestUnreadCopyExpungedCountsAsDeleted(t *testing.T) {
	s := trackingStore(t)
	res := submit(t, s, "ignored", bob, carol)
	expunge(t, s, bob, res.Copies[bob])
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackDeleted || got[carol] != TrackUnread {
		t.Fatalf("after bob deleted his copy: %v", got)
	}
	if isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy \\Seen while carol is pending")
	}
	markSeen(t, s, context.Background(), carol, res.Copies[carol])
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen once nobody is pending")
	}
	// A read copy deleted later stays "read".
	expunge(t, s, carol, res.Copies[carol])
	if got := states(t, s, alice, res.TrackingID); got[carol] != TrackRead {
		t.Fatalf("carol's read copy deleted: %v", got)
	}
}

func TestExpiredCopyIsReportedExpiredAndSettlesTheSentCopy(t *testing.T) {
	s := trackingStore(t)
	events := listen(s)
	raw := []byte(simpleMessage("old news"))
	old := time.Now().Add(-48 * time.Hour)
	res, err := s.Deliver(context.Background(), &Delivery{
		Sender:     alice,
		SentCopy:   &NewMessage{Raw: raw, InternalDate: old},
		Recipients: []string{bob},
		Copy:       &NewMessage{Raw: raw, InternalDate: old},
		MessageID:  "<old@example.com>",
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.ExpireUnread(context.Background(), time.Now().Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("expire: %d, %v; want 1", n, err)
	}
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackExpired {
		t.Fatalf("after expiry: %v", got)
	}
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen after the only recipient's copy expired")
	}
	if st := mustMailbox(t, s, bob, Inbox); st.Messages != 0 || st.Unseen != 0 {
		t.Fatalf("bob's INBOX after expiry: %+v", st)
	}
	if st := mustMailbox(t, s, alice, Sent); st.Messages != 1 {
		t.Fatalf("the sender's old unread copy in Sent was touched: %+v", st)
	}
	var expunged bool
	for _, ev := range events.snapshot() {
		if ev.Kind == EventExpunge && ev.User == bob && ev.UID == res.Copies[bob].UID {
			expunged = true
		}
	}
	if !expunged {
		t.Fatal("no EventExpunge for the expired copy")
	}
}

// externalRecord makes a tracked message with external recipients without
// the queue: the Sent copy is appended, then trackDelivery runs as Deliver
// would run it.
func externalRecord(t *testing.T, s *boltStore, rcpts ...string) (uint64, *Appended) {
	t.Helper()
	sent := mustAppend(t, s, alice, Sent, simpleMessage("abroad"))
	id, err := write(s, context.Background(), 0, func(tx *bolt.Tx, ev *eventList) (uint64, error) {
		res := &DeliveryResult{Sent: sent, Copies: map[string]*Appended{}}
		err := trackDelivery(tx, &Delivery{Sender: alice, External: rcpts, MessageID: "<abroad@example.com>"}, res, time.Now(), ev)
		return res.TrackingID, err
	})
	if err != nil || id == 0 {
		t.Fatalf("track: %d %v", id, err)
	}
	return id, sent
}

func setExternal(t *testing.T, s *boltStore, id uint64, rcpt, state string) error {
	t.Helper()
	_, err := write(s, context.Background(), 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		return struct{}{}, setExternalState(tx, id, rcpt, state, ev)
	})
	return err
}

func TestExternalRecipientsSettleFromTheQueuesOutcome(t *testing.T) {
	s := trackingStore(t)
	id, sent := externalRecord(t, s, "x@example.net", "Y@example.org")
	if got := states(t, s, alice, id); got["x@example.net"] != TrackQueued || got["Y@example.org"] != TrackQueued {
		t.Fatalf("after delivery: %v", got)
	}
	if err := setExternal(t, s, id, "x@example.net", TrackRelayed); err != nil {
		t.Fatal(err)
	}
	if isSeen(t, s, alice, sent) {
		t.Fatal("Sent copy \\Seen while y is still queued")
	}
	if err := setExternal(t, s, id, "y@EXAMPLE.org", TrackFailed); err != nil {
		t.Fatal(err)
	}
	if got := states(t, s, alice, id); got["x@example.net"] != TrackRelayed || got["Y@example.org"] != TrackFailed {
		t.Fatalf("after the queue's outcome: %v", got)
	}
	if !isSeen(t, s, alice, sent) {
		t.Fatal("Sent copy not \\Seen once the queue is done with everyone")
	}
	if err := setExternal(t, s, id, "x@example.net", "read"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("state \"read\" for an external recipient: %v, want ErrInvalid", err)
	}
	for _, noop := range []func() error{
		func() error { return setExternal(t, s, 0, "x@example.net", TrackRelayed) },
		func() error { return setExternal(t, s, id+100, "x@example.net", TrackRelayed) },
		func() error { return setExternal(t, s, id, "stranger@example.net", TrackRelayed) },
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
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackUnread {
		t.Fatalf("a move is not a deletion: %v", got)
	}
	// alice files her Sent copy in Trash; it is still the one to mark.
	mvSent, err := s.Move(ctx, alice, res.Sent.MailboxID, []imap.UID{res.Sent.UID}, Trash)
	if err != nil {
		t.Fatal(err)
	}
	later := mustMailbox(t, s, bob, "Later")
	markSeen(t, s, ctx, bob, &Appended{MailboxID: later.ID, UID: mv.DestUIDs[0]})
	markSeen(t, s, ctx, carol, res.Copies[carol])
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackRead || got[carol] != TrackRead {
		t.Fatalf("after both read: %v", got)
	}
	trash := mustMailbox(t, s, alice, Trash)
	if !isSeen(t, s, alice, &Appended{MailboxID: trash.ID, UID: mvSent.DestUIDs[0]}) {
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
	if _, err := s.Move(ctx, bob, res.Copies[bob].MailboxID, []imap.UID{res.Copies[bob].UID}, Trash); err != nil {
		t.Fatal(err)
	}
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackDeleted || got[carol] != TrackUnread {
		t.Fatalf("after bob moved his unread copy to Trash: %v, want bob deleted", got)
	}
	// carol's client copies to Trash and expunges the original.
	if _, err := s.Copy(ctx, carol, res.Copies[carol].MailboxID, []imap.UID{res.Copies[carol].UID}, Trash); err != nil {
		t.Fatal(err)
	}
	expunge(t, s, carol, res.Copies[carol])
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackDeleted || got[carol] != TrackDeleted {
		t.Fatalf("after carol copied to Trash and expunged: %v, want both deleted", got)
	}
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen once nobody is pending")
	}
	// Reading it in Trash later changes nothing: deleted stays deleted.
	trash := mustMailbox(t, s, bob, Trash)
	uids, err := s.UIDs(ctx, bob, trash.ID)
	if err != nil || len(uids) != 1 {
		t.Fatalf("bob's Trash: %v %v", uids, err)
	}
	markSeen(t, s, ctx, bob, &Appended{MailboxID: trash.ID, UID: uids[0]})
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackDeleted {
		t.Fatalf("after bob read it in Trash: %v", got)
	}
}

func TestDeletedSentCopyDoesNotBreakReading(t *testing.T) {
	s := trackingStore(t)
	res := submit(t, s, "regret", bob)
	expunge(t, s, alice, res.Sent)
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackUnread {
		t.Fatalf("record of a pending message whose Sent copy is gone: %v", got)
	}
	markSeen(t, s, context.Background(), bob, res.Copies[bob])
	// Nobody pending and no Sent copy: the record has nothing left to say.
	if got := states(t, s, alice, res.TrackingID); got != nil {
		t.Fatalf("record kept after it settled without a Sent copy: %v", got)
	}
}

func TestDeletingUsersSettlesTheirPart(t *testing.T) {
	s := trackingStore(t)
	ctx := context.Background()
	res := submit(t, s, "farewell", bob, carol)
	markSeen(t, s, ctx, carol, res.Copies[carol])
	if err := s.DeleteUser(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if got := states(t, s, alice, res.TrackingID); got[bob] != TrackDeleted {
		t.Fatalf("bob deleted with his copy unread: %v", got)
	}
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("Sent copy not \\Seen once the last pending recipient was deleted")
	}
	// The sender goes: the recipients' tracked copies must not trip anything.
	res2 := submit(t, s, "last words", carol)
	if err := s.DeleteUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	markSeen(t, s, ctx, carol, res2.Copies[carol])
	if _, err := s.SentStatus(ctx, alice); !errors.Is(err, ErrNotFound) {
		t.Fatalf("sent status of a deleted user: %v", err)
	}
}

func TestSentStatusListsOnlyTheUsersOwnMessages(t *testing.T) {
	s := trackingStore(t)
	ctx := context.Background()
	first := submit(t, s, "one", bob)
	second := submit(t, s, "two", carol)
	list, err := s.SentStatus(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != first.TrackingID || list[1].ID != second.TrackingID {
		t.Fatalf("alice's list %+v", list)
	}
	if list[0].MessageID != "<one@example.com>" || list[0].Subject != "one" || list[0].Date.IsZero() {
		t.Fatalf("record %+v", list[0])
	}
	if !list[0].Recipients[0].Pending() {
		t.Fatalf("bob should be pending: %+v", list[0].Recipients)
	}
	if list, err := s.SentStatus(ctx, bob); err != nil || len(list) != 0 {
		t.Fatalf("bob sent nothing: %+v %v", list, err)
	}
	if _, err := s.SentStatus(ctx, "nobody@example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

func TestInboundMailIsNotTracked(t *testing.T) {
	s := trackingStore(t)
	res, err := s.Deliver(context.Background(), &Delivery{
		Recipients: []string{bob},
		Copy:       &NewMessage{Raw: []byte(simpleMessage("notice"))},
		Source:     SourceSystem,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.TrackingID != 0 {
		t.Fatalf("system mail got tracking record %d", res.TrackingID)
	}
}

func TestTrackingSurvivesReopen(t *testing.T) {
	s, path := openTestStore(t)
	for _, u := range []string{alice, bob} {
		mustCreateUser(t, s, u)
	}
	res := submit(t, s, "durable", bob)
	s = reopen(t, s, path)
	markSeen(t, s, context.Background(), bob, res.Copies[bob])
	if !isSeen(t, s, alice, res.Sent) {
		t.Fatal("tracking lost across a reopen")
	}
}
