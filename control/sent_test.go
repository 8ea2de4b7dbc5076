package control

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

func TestSentStatusListsPendingRecipientsLocallyAndThroughTheSocket(t *testing.T) {
	local, client, _ := newDaemon(t)
	ctx := context.Background()
	for _, u := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
		if _, err := local.AddUser(ctx, u, "pw-long-enough", false); err != nil {
			t.Fatal(err)
		}
	}
	raw := []byte("From: alice@example.com\r\nSubject: Minutes\r\nMessage-ID: <m1@example.com>\r\n\r\nhi\r\n")
	res, err := local.Store.Deliver(ctx, &storage.Delivery{
		Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: raw},
		Recipients: []string{"bob@example.com", "carol@example.com"}, Copy: &storage.NewMessage{Raw: raw},
		MessageID: "<m1@example.com>", Subject: "Minutes",
	})
	if err != nil {
		t.Fatal(err)
	}
	bobCopy := res.Copies["bob@example.com"]
	if _, err := local.Store.StoreFlags(ctx, "bob@example.com", bobCopy.MailboxID, []imap.UID{bobCopy.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatal(err)
	}

	viaSocket, err := client.SentStatus(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(viaSocket) != 1 {
		t.Fatalf("got %d messages, want 1", len(viaSocket))
	}
	m := viaSocket[0]
	if m.MessageID != "<m1@example.com>" || m.Subject != "Minutes" || len(m.Recipients) != 2 {
		t.Fatalf("message %+v", m)
	}
	if len(m.Pending) != 1 || m.Pending[0] != "carol@example.com" {
		t.Fatalf("pending %v, want carol only", m.Pending)
	}
	if m.Recipients[0].State != storage.TrackRead || m.Recipients[1].State != storage.TrackUnread {
		t.Fatalf("recipients %+v", m.Recipients)
	}
	viaLocal, err := local.SentStatus(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(viaLocal)
	b, _ := json.Marshal(viaSocket)
	if string(a) != string(b) {
		t.Fatalf("local %s\nsocket %s", a, b)
	}

	empty, err := client.SentStatus(ctx, "bob@example.com")
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("bob sent nothing: %#v %v", empty, err)
	}
	if _, err := client.SentStatus(ctx, "nobody@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown user: %v, want ErrNotFound", err)
	}
}
