package pgstore_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pochta/pochta/storage"
)

// A message larger than BodyMax comes back with its header and no body;
// ReadBody streams it whole across several chunks, and a delivery's
// copies read back byte for byte though they share one stored body.
func TestLargeMessagesAreStreamed(t *testing.T) {
	be := postgresBackend()
	s, dsn := be.New(t)
	ctx := context.Background()
	for _, u := range []string{"alice@example.com", "bob@example.com"} {
		if err := s.CreateUser(ctx, u, "secret", false); err != nil {
			t.Fatal(err)
		}
	}
	header := "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: big\r\n\r\n"
	raw := []byte(header + strings.Repeat("0123456789abcdef\r\n", 40000)) // 720 kB: three chunks
	res, err := s.Deliver(ctx, &storage.Delivery{
		Sender: "alice@example.com", SentCopy: &storage.NewMessage{Raw: raw},
		Recipients: []string{"bob@example.com"}, Copy: &storage.NewMessage{Raw: raw},
		From: "alice@example.com", Source: storage.SourceUser, MessageID: "<big@example.com>", Subject: "big",
	})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var bodies, refs int64
	if err := pool.QueryRow(ctx, "SELECT count(*), coalesce(sum(refcount), 0)::bigint FROM bodies").Scan(&bodies, &refs); err != nil {
		t.Fatal(err)
	}
	if bodies != 1 || refs != 2 {
		t.Errorf("%d stored bodies referred to %d times, want the one body shared by the two copies", bodies, refs)
	}
	for user, a := range map[string]*storage.Appended{"alice@example.com": res.Sent, "bob@example.com": res.Copies["bob@example.com"]} {
		msgs, err := s.Messages(ctx, user, a.MailboxID, []imap.UID{a.UID}, storage.LoadOptions{Body: true, BodyMax: 1000, Header: true})
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: messages %v, %v", user, msgs, err)
		}
		if m := msgs[0]; m.Body != nil || string(m.Header) != header || m.Size != int64(len(raw)) {
			t.Errorf("%s: over BodyMax: body %d bytes, header %q, size %d; want no body, the header, %d", user, len(m.Body), m.Header, m.Size, len(raw))
		}
		var got []byte
		err = s.ReadBody(ctx, user, a.MailboxID, a.UID, func(r *io.SectionReader) error {
			got, err = io.ReadAll(r)
			return err
		})
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("%s: ReadBody gave %d bytes (%v), want the %d stored", user, len(got), err, len(raw))
		}
	}
	small := []byte(header + "hi\r\n")
	a, err := s.Append(ctx, "bob@example.com", storage.Inbox, &storage.NewMessage{Raw: small})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := s.Messages(ctx, "bob@example.com", a.MailboxID, []imap.UID{a.UID}, storage.LoadOptions{Body: true, BodyMax: 1000})
	if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Body, small) {
		t.Fatalf("within BodyMax: %v, %v; want the whole message", msgs, err)
	}
}
