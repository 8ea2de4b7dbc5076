package imapd

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// bodyCountingStore counts the bodies FETCH loads whole and the bodies it
// streams.
type bodyCountingStore struct {
	storage.Store
	loadedLarge *atomic.Int64
	streamed    *atomic.Int64
}

func (s bodyCountingStore) Messages(ctx context.Context, user string, id uint64, uids []imap.UID, opts storage.LoadOptions) ([]*storage.Message, error) {
	msgs, err := s.Store.Messages(ctx, user, id, uids, opts)
	for _, m := range msgs {
		if len(m.Body) > streamBodyOver {
			s.loadedLarge.Add(1)
		}
	}
	return msgs, err
}

func (s bodyCountingStore) ReadBody(ctx context.Context, user string, id uint64, uid imap.UID, fn func(*io.SectionReader) error) error {
	s.streamed.Add(1)
	return s.Store.ReadBody(ctx, user, id, uid, fn)
}

// TestFetchStreamsLargeBodies: FETCH of a message larger than
// streamBodyOver reads it from the store as it writes it instead of
// loading it whole, and every section still comes back exactly.
func TestFetchStreamsLargeBodies(t *testing.T) {
	var loaded, streamed atomic.Int64
	e := newTestEnv(t, withStoreWrapper(func(s storage.Store) storage.Store {
		return bodyCountingStore{Store: s, loadedLarge: &loaded, streamed: &streamed}
	}))
	attachment := bytes.Repeat([]byte{0, 1, 2, 3, 250, 251, 252, 253}, 100_000)
	b64 := base64.StdEncoding.EncodeToString(attachment)
	var lines []string
	for len(b64) > 76 {
		lines = append(lines, b64[:76])
		b64 = b64[76:]
	}
	lines = append(lines, b64)
	raw := []byte("From: bob@example.com\r\nTo: alice@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		strings.Join(lines, "\r\n") + "\r\n--b1--\r\n")
	e.appendMsg(alice, "INBOX", testMessage(bob, alice, "small", "x"))
	e.appendMsg(alice, "INBOX", raw)
	c := e.loginSelect(alice, "INBOX", nil)

	whole := &imap.FetchItemBodySection{Peek: true}
	part := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 300_000, Size: 70_000}}
	text1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
	bin := &imap.FetchItemBinarySection{Part: []int{2}, Peek: true}
	m := fetchOne(t, c, imap.SeqSetNum(2), &imap.FetchOptions{
		BodySection:   []*imap.FetchItemBodySection{whole, part, text1},
		BinarySection: []*imap.FetchItemBinarySection{bin},
	})
	if got := m.FindBodySection(whole); !bytes.Equal(got, raw) {
		t.Errorf("BODY[]: %d bytes that differ from the %d stored", len(got), len(raw))
	}
	if got := m.FindBodySection(part); !bytes.Equal(got, raw[300_000:370_000]) {
		t.Errorf("BODY[]<300000.70000>: %d bytes, not the stored range", len(got))
	}
	if got := string(m.FindBodySection(text1)); got != "see attached" {
		t.Errorf("BODY[1] = %q", got)
	}
	if got := m.FindBinarySection(bin); !bytes.Equal(got, attachment) {
		t.Errorf("BINARY[2]: %d bytes, want the %d-byte attachment", len(got), len(attachment))
	}
	if n := loaded.Load(); n != 0 {
		t.Errorf("FETCH loaded %d large bodies whole", n)
	}
	if n := streamed.Load(); n != 1 {
		t.Errorf("FETCH streamed %d bodies, want 1", n)
	}
	// Small messages still come with their chunk.
	all, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{whole}}).Collect()
	if err != nil || len(all) != 2 || !bytes.Equal(all[1].FindBodySection(whole), raw) || !bytes.Contains(all[0].FindBodySection(whole), []byte("Subject: small")) {
		t.Fatalf("FETCH 1:2 BODY[]: %d messages, %v", len(all), err)
	}
	if n := streamed.Load(); n != 2 {
		t.Errorf("after FETCH 1:2, %d bodies streamed, want 2 (only the large one each time)", n)
	}
	// A partial fetch from past the end of a streamed body is an empty
	// string (RFC 3501 6.4.5); it once panicked and dropped the session.
	past := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: int64(len(raw)) + 1000, Size: 5}}
	m = fetchOne(t, c, imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{past}})
	if got := m.FindBodySection(past); got == nil || len(got) != 0 {
		t.Errorf("BODY[]<%d.5> of a %d-byte message: %q, want an empty string", len(raw)+1000, len(raw), got)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("the session after a partial fetch past the end: %v", err)
	}
}
