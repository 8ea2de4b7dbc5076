package boltstore

import (
	"context"
	"strings"
	"testing"

	"github.com/pochta/pochta/storage"
)

// The queue's contract is tested in storagetest; these helpers serve the
// tests of how the bbolt backend does it.

const (
	qAlice = "alice@example.com"
	qBob   = "bob@example.com"
)

// queueDelivery is alice's message to bob (local), x (To), y (Cc) and z
// (Bcc, kept only in the Sent copy).
func queueDelivery(subject string) *storage.Delivery {
	head := "From: Alice <alice@example.com>\r\n" +
		"To: Bob <bob@example.com>, X <X@Remote.test>\r\n" +
		"Cc: y@remote.test\r\n"
	rest := "Subject: " + subject + "\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.com>\r\n" +
		"Content-Type: Multipart/Mixed; boundary=b\r\n" +
		"\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n--b--\r\n"
	sent := head + "Bcc: z@remote.test\r\n" + rest
	relayed := head + rest
	return &storage.Delivery{
		Sender:     qAlice,
		SentCopy:   &storage.NewMessage{Raw: []byte(sent)},
		Recipients: []string{qBob},
		Copy:       &storage.NewMessage{Raw: []byte(relayed)},
		From:       qAlice,
		Source:     storage.SourceUser,
		External:   []string{"X@Remote.test", "y@remote.test", "z@remote.test"},
		RelayCopy:  &storage.NewMessage{Raw: []byte(relayed)},
		MessageID:  "<" + strings.ReplaceAll(subject, " ", ".") + "@example.com>",
		Subject:    subject,
	}
}

func queueStore(t *testing.T) (*testStore, string) {
	t.Helper()
	s, path := openTestStore(t)
	mustCreateUser(t, s, qAlice)
	mustCreateUser(t, s, qBob)
	return s, path
}

func mustDeliver(t *testing.T, s storage.Store, d *storage.Delivery) *storage.DeliveryResult {
	t.Helper()
	res, err := s.Deliver(context.Background(), d)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	return res
}

func mustEntry(t *testing.T, s storage.Store, id uint64) *storage.QueueEntry {
	t.Helper()
	e, err := s.QueueEntry(context.Background(), id)
	if err != nil {
		t.Fatalf("queue entry %d: %v", id, err)
	}
	return e
}

func entryIDs(l []storage.QueueEntry) []uint64 {
	var out []uint64
	for _, e := range l {
		out = append(out, e.ID)
	}
	return out
}
