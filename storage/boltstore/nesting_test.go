package boltstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/internal/mimetest"
	"github.com/pochta/pochta/message"
	"github.com/pochta/pochta/storage"
)

// nestedBodyStructure is depth multiparts around one text part.
func nestedBodyStructure(depth int) imap.BodyStructure {
	var bs imap.BodyStructure = &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain"}
	for range depth {
		bs = &imap.BodyStructureMultiPart{Subtype: "mixed", Children: []imap.BodyStructure{bs}}
	}
	return bs
}

// The encoder and the decoder share one limit: whatever is written at the
// limit reads back, and past it nothing is written.
func TestParsedRecordNestingLimitIsShared(t *testing.T) {
	for _, depth := range []int{message.MaxNesting - 1, message.MaxNesting} {
		rec, err := encodeParsed(&envelope.Envelope{}, nestedBodyStructure(depth))
		if err != nil {
			t.Fatalf("depth %d: encode: %v", depth, err)
		}
		if _, _, err := decodeParsed(rec, true, true); err != nil {
			t.Fatalf("depth %d: the decoder refuses what the encoder wrote: %v", depth, err)
		}
	}
	for _, depth := range []int{message.MaxNesting + 1, 1000} {
		_, err := encodeParsed(&envelope.Envelope{}, nestedBodyStructure(depth))
		if !errors.Is(err, message.ErrTooDeep) || !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("depth %d: encode gave %v, want ErrTooDeep and ErrInvalid", depth, err)
		}
	}
}

// Before the shared limit a 1000-level message was stored and then every
// FETCH of the mailbox failed. Now Append refuses it and the mailbox keeps
// reading; one at the limit is stored and reads back.
func TestAppendRefusesDeepMIMEAndMailboxStaysReadable(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.test")
	_, err := s.Append(ctx, "alice@example.test", storage.Inbox, &storage.NewMessage{Raw: mimetest.Nested(1000)})
	if !errors.Is(err, message.ErrTooDeep) {
		t.Fatalf("append of 1000 levels: %v, want ErrTooDeep", err)
	}
	if _, err := s.Append(ctx, "alice@example.test", storage.Inbox, &storage.NewMessage{Raw: mimetest.Nested(message.MaxNesting)}); err != nil {
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

// Refusing a deep message costs the same at depth 1000 as at 10000: the
// intake check stops at the limit and nothing parses the rest. Counted in
// allocations; before the check, parsing allocated per level and took
// time quadratic in the depth.
func TestAppendRefusalCostDoesNotGrowWithDepth(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.test")
	allocs := func(depth int) float64 {
		raw := mimetest.Nested(depth)
		return testing.AllocsPerRun(3, func() {
			_, _ = s.Append(ctx, "alice@example.test", storage.Inbox, &storage.NewMessage{Raw: raw})
		})
	}
	at1000, at10000 := allocs(1000), allocs(10000)
	if at10000 > at1000+20 {
		t.Errorf("refusing 10000 levels allocates %.0f times, 1000 levels %.0f", at10000, at1000)
	}
}

// bodyDepth is the number of containers around the deepest part of bs, as
// the record encoder counts them.
func bodyDepth(bs imap.BodyStructure) int {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		d := 0
		for _, c := range bs.Children {
			d = max(d, 1+bodyDepth(c))
		}
		return d
	case *imap.BodyStructureSinglePart:
		if bs.MessageRFC822 != nil && bs.MessageRFC822.BodyStructure != nil {
			return 1 + bodyDepth(bs.MessageRFC822.BodyStructure)
		}
	}
	return 0
}

// The intake check and the parser agree on the depth of tricky messages:
// CheckStructure refuses exactly those whose parsed body structure is too
// deep to encode. An undercount would let the parser walk a deep message
// (time quadratic in its depth) only for the encoder to refuse it.
func TestCheckStructureAgreesWithTheParser(t *testing.T) {
	nest := func(depth int, contentType func(i int) string, delim func(i int) string) []byte {
		var b strings.Builder
		b.WriteString("Subject: tricky\r\n")
		for i := range depth {
			b.WriteString("Content-Type: " + contentType(i) + "\r\n\r\n" + delim(i) + "\r\n")
		}
		b.WriteString("Content-Type: text/plain\r\n\r\nx\r\n")
		return []byte(b.String())
	}
	cases := map[string][]byte{
		"plain boundaries": mimetest.Nested(message.MaxNesting + 50),
		"encoded-word boundaries": nest(message.MaxNesting+50,
			func(i int) string { return fmt.Sprintf(`multipart/mixed; boundary="=?utf-8?q?b%d?="`, i) },
			func(i int) string { return fmt.Sprintf("--b%d", i) }),
		"one boundary for all levels": nest(message.MaxNesting+50,
			func(int) string { return "multipart/mixed; boundary=same" },
			func(int) string { return "--same" }),
		"broken parameters": nest(message.MaxNesting+50,
			func(int) string { return "multipart/mixed; boundary=x; =broken" },
			func(int) string { return "--" }),
		"folded content type": nest(message.MaxNesting+50,
			func(i int) string { return fmt.Sprintf("multipart/mixed;\r\n boundary=f%d", i) },
			func(i int) string { return fmt.Sprintf("--f%d", i) }),
		"second content type ignored": nest(message.MaxNesting+50,
			func(i int) string { return fmt.Sprintf("multipart/mixed; boundary=s%d\r\nContent-Type: text/plain", i) },
			func(i int) string { return fmt.Sprintf("--s%d", i) }),
		"boundary with trailing blanks": nest(message.MaxNesting+50,
			func(i int) string { return fmt.Sprintf("multipart/mixed; boundary=t%d", i) },
			func(i int) string { return fmt.Sprintf("--t%d \t", i) }),
		"encapsulated messages": nest(message.MaxNesting+50,
			func(int) string { return "message/rfc822" },
			func(int) string { return "Subject: inner" }),
	}
	for name, raw := range cases {
		depth := bodyDepth(extractBodyStructure(raw))
		tooDeep := message.CheckStructure(raw) != nil
		t.Logf("%s: parsed depth %d, refused %v", name, depth, tooDeep)
		if tooDeep != (depth > message.MaxNesting) {
			t.Errorf("%s: CheckStructure refuses %v, parsed depth %d (limit %d)", name, tooDeep, depth, message.MaxNesting)
		}
	}
}
