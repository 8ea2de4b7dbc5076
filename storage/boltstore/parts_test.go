package boltstore

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/internal/mimetest"
	"github.com/pochta/pochta/message"
	"github.com/pochta/pochta/storage"
)

// wideBodyStructure is a multipart of children text parts: children+1
// parts in all.
func wideBodyStructure(children int) imap.BodyStructure {
	bs := &imap.BodyStructureMultiPart{Subtype: "mixed"}
	for range children {
		bs.Children = append(bs.Children, &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain"})
	}
	return bs
}

// The encoder and the decoder share the part limit: a record at the limit
// reads back, and past it nothing is written.
func TestParsedRecordPartLimitIsShared(t *testing.T) {
	rec, err := encodeParsed(&envelope.Envelope{}, wideBodyStructure(message.MaxParts-1))
	if err != nil {
		t.Fatalf("%d parts: encode: %v", message.MaxParts, err)
	}
	if _, _, err := decodeParsed(rec, true, true); err != nil {
		t.Fatalf("%d parts: the decoder refuses what the encoder wrote: %v", message.MaxParts, err)
	}
	_, err = encodeParsed(&envelope.Envelope{}, wideBodyStructure(message.MaxParts))
	if !errors.Is(err, message.ErrTooManyParts) || !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("%d parts: encode gave %v, want ErrTooManyParts and ErrInvalid", message.MaxParts+1, err)
	}
}

// Intake of a wide message costs the same per part at 1,000 parts as at
// 10,000 (the limit), counted in bytes allocated by the check, the parse
// and the encoding. Before, each part allocated a 32 KiB copy buffer,
// and the garbage collector's work grew with the square of the count
// (80,000 empty parts took 9 s).
func TestIntakeCostIsLinearInParts(t *testing.T) {
	perPart := func(children int) float64 {
		raw := mimetest.Wide(children)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := message.CheckStructure(raw); err != nil {
			t.Fatalf("%d parts: %v", children+1, err)
		}
		env, bs := parseMessage(raw, true)
		if _, err := encodeParsed(env, bs); err != nil {
			t.Fatalf("%d parts: encode: %v", children+1, err)
		}
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / float64(children+1)
	}
	at1k, at10k := perPart(1000), perPart(message.MaxParts-1)
	t.Logf("bytes allocated per part: %.0f at 1k parts, %.0f at 10k", at1k, at10k)
	if at10k > 1.5*at1k {
		t.Errorf("intake allocates %.0f bytes per part at 10k parts, %.0f at 1k: not linear", at10k, at1k)
	}
	if at10k > 4096 {
		t.Errorf("intake allocates %.0f bytes per empty part, want under 4 KiB", at10k)
	}
}

// Append refuses a message of more than MaxParts parts and the mailbox
// keeps reading; one at the limit is stored and reads back.
func TestAppendRefusesTooManyPartsAndMailboxStaysReadable(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.test")
	_, err := s.Append(ctx, "alice@example.test", storage.Inbox, &storage.NewMessage{Raw: mimetest.Wide(message.MaxParts)})
	if !errors.Is(err, message.ErrTooManyParts) {
		t.Fatalf("append of %d parts: %v, want ErrTooManyParts", message.MaxParts+1, err)
	}
	if _, err := s.Append(ctx, "alice@example.test", storage.Inbox, &storage.NewMessage{Raw: mimetest.Wide(message.MaxParts - 1)}); err != nil {
		t.Fatalf("append at the limit: %v", err)
	}
	box, err := s.Mailbox(ctx, "alice@example.test", storage.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	uids, err := s.UIDs(ctx, "alice@example.test", box.ID)
	if err != nil || len(uids) != 1 {
		t.Fatalf("uids %v, err %v; want one message", uids, err)
	}
	if _, err := s.Messages(ctx, "alice@example.test", box.ID, uids, storage.LoadOptions{Envelope: true, BodyStructure: true, Body: true}); err != nil {
		t.Fatalf("FETCH of the mailbox: %v", err)
	}
}
