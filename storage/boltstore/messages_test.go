package boltstore

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
)

var loadAll = storage.LoadOptions{Envelope: true, BodyStructure: true, Body: true}

func loadOne(t *testing.T, s storage.Store, user string, id uint64, uid imap.UID) *storage.Message {
	t.Helper()
	msgs, err := s.Messages(context.Background(), user, id, []imap.UID{uid}, loadAll)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("message %d: got %d messages", uid, len(msgs))
	}
	return msgs[0]
}

func TestAppendedMessageLoadsBackWithParsedStructure(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	date := time.Date(2026, 2, 3, 4, 5, 6, 0, time.FixedZone("", 3*3600))
	a, err := s.Append(ctx, "alice@example.com", "INBOX", &storage.NewMessage{
		Raw: []byte(nestedMessage), Flags: []imap.Flag{`\seen`, "$Important"}, InternalDate: date,
	})
	if err != nil {
		t.Fatal(err)
	}
	inbox := mustMailbox(t, s, "alice@example.com", storage.Inbox)
	if a.MailboxID != inbox.ID || a.UIDValidity != inbox.UIDValidity || a.UID != 1 || inbox.UIDNext != 2 {
		t.Errorf("appended %+v into %+v", a, inbox)
	}
	m := loadOne(t, s, "alice@example.com", a.MailboxID, a.UID)
	if !bytes.Equal(m.Body, []byte(nestedMessage)) || m.Size != int64(len(nestedMessage)) {
		t.Error("body or size differ")
	}
	if !m.InternalDate.Equal(date) {
		t.Errorf("internal date %v, want %v", m.InternalDate, date)
	}
	if want := []imap.Flag{imap.FlagSeen, "$Important"}; !reflect.DeepEqual(m.Flags, want) {
		t.Errorf("flags %v, want %v", m.Flags, want)
	}
	env, bs := parseMessage([]byte(nestedMessage), true)
	if err := sameEnvelope(env, m.Envelope); err != nil {
		t.Error(err)
	}
	if err := sameBodyStructure(bs, m.BodyStructure); err != nil {
		t.Error(err)
	}

	// Only what is asked for is loaded.
	msgs, err := s.Messages(ctx, "alice@example.com", a.MailboxID, []imap.UID{a.UID}, storage.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := msgs[0]; m.Envelope != nil || m.BodyStructure != nil || m.Body != nil || m.Size == 0 {
		t.Errorf("bare load: %+v", m)
	}
}
