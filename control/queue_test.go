package control

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pochta/pochta/storage"
)

// queueSome queues one message from alice to an external address.
func queueSome(t *testing.T, l *Local, subject string) uint64 {
	t.Helper()
	ctx := context.Background()
	raw := []byte("From: alice@example.com\r\nTo: carol@remote.test\r\nSubject: " + subject + "\r\n\r\nhi\r\n")
	res, err := l.Store.Deliver(ctx, &storage.Delivery{
		Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: raw},
		From: "alice@example.com", Source: storage.SourceUser,
		External: []string{"carol@remote.test"}, RelayCopy: &storage.NewMessage{Raw: raw}, Subject: subject,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.QueueID
}

func TestQueueAnswersAreTheSameOverTheSocket(t *testing.T) {
	local, client, _ := newDaemon(t)
	ctx := context.Background()
	if _, err := local.AddUser(ctx, "alice@example.com", "pw-long-enough", false); err != nil {
		t.Fatal(err)
	}
	id := queueSome(t, local, "one")
	queueSome(t, local, "two")

	f := storage.QueueFilter{Status: storage.QueueOutbox, User: "alice@example.com"}
	viaClient, err := client.QueueList(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	viaLocal, _ := local.QueueList(ctx, f)
	if len(viaClient) != 2 || len(viaLocal) != 2 || viaClient[0].ID != id || viaClient[0].Subject != "one" || viaClient[1].Body != "" {
		t.Fatalf("list via socket %+v, local %d entries", viaClient, len(viaLocal))
	}
	if !viaClient[0].Date.Equal(viaLocal[0].Date) || !reflect.DeepEqual(viaClient[0].To, viaLocal[0].To) {
		t.Errorf("client %+v != local %+v", viaClient[0], viaLocal[0])
	}
	shown, err := client.QueueShow(ctx, id)
	if err != nil || !strings.Contains(shown.Body, "Subject: one") {
		t.Fatalf("show: %+v %v", shown, err)
	}
	st, err := client.Status(ctx)
	if err != nil || st.Queue != (storage.QueueCounts{Outbox: 2}) {
		t.Errorf("status queue counts %+v (%v)", st.Queue, err)
	}

	_, err = client.QueueResend(ctx, id)
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "only failed or sent") {
		t.Errorf("resend of a waiting entry: %v", err)
	}
	if err := client.QueueDelete(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		client.QueueDelete(ctx, id),
		func() error { _, err := client.QueueResend(ctx, 777); return err }(),
		func() error { _, err := client.QueueShow(ctx, 777); return err }(),
	} {
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("unknown entry: %v, want not found", err)
		}
	}
	if err := client.QueueDelete(ctx, 777); err == nil || !strings.Contains(err.Error(), "777") {
		t.Errorf("error %v does not name the id", err)
	}
	_, err = client.QueueList(ctx, storage.QueueFilter{Status: "stuck"})
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "outbox, held, sent, failed") {
		t.Errorf("bad status over the socket: %v", err)
	}
}
