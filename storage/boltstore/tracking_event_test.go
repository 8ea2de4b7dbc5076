package boltstore

import (
	"context"
	"testing"

	"github.com/pochta/pochta/storage"
)

// TestEachSettledRecipientPublishesEventTracking: the web interface's
// `sent` event follows every change of a message's "not delivered" list.
func TestEachSettledRecipientPublishesEventTracking(t *testing.T) {
	s := trackingStore(t)
	events := listen(s)
	res := submit(t, s, "minutes", bob, carol)
	count := func() (n int, last storage.Event) {
		for _, ev := range events.Snapshot() {
			if ev.Kind == storage.EventTracking {
				n, last = n+1, ev
			}
		}
		return n, last
	}
	if n, _ := count(); n != 0 {
		t.Fatalf("%d tracking events at delivery, want 0", n)
	}
	markSeen(t, s, storage.WithOrigin(context.Background(), storage.Origin{Session: 1}), bob, res.Copies[bob])
	n, ev := count()
	if n != 1 || ev.User != alice || ev.TrackingID != res.TrackingID || ev.MailboxID != res.Sent.MailboxID || ev.UID != res.Sent.UID || !ev.Origin.IsZero() {
		t.Fatalf("after bob read: %d events, last %+v; want one for alice's Sent copy, no origin", n, ev)
	}
	markSeen(t, s, context.Background(), bob, res.Copies[bob]) // again: nothing changes
	if n, _ := count(); n != 1 {
		t.Fatalf("reading a read copy again published a tracking event")
	}
	expunge(t, s, carol, res.Copies[carol])
	if n, _ := count(); n != 2 {
		t.Fatalf("carol deleting her copy unread: %d tracking events, want 2", n)
	}
}
