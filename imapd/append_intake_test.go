package imapd

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/pochta/pochta/internal/mimetest"
	"github.com/pochta/pochta/message"
)

// appendRaw APPENDs raw to mailbox and returns the command's error.
func appendRaw(c *imapclient.Client, mailbox string, raw []byte) error {
	cmd := c.Append(mailbox, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// An APPEND nested past the limit gets a tagged NO; nothing is stored and
// FETCH of everything in the mailbox keeps working.
func TestAppendRefusesMIMENestedPastTheLimit(t *testing.T) {
	env := newTestEnv(t)
	c := env.loginSelect(alice, "INBOX", nil)
	if err := appendRaw(c, "INBOX", testMessage(alice, bob, "before", "ok")); err != nil {
		t.Fatal(err)
	}
	err := appendRaw(c, "INBOX", mimetest.Nested(1000))
	expectCode(t, err, imap.ResponseCodeCannot, "APPEND of a 1000-level message")
	if !strings.Contains(err.Error(), fmt.Sprint(message.MaxNesting)) {
		t.Errorf("NO text %q does not name the limit", err)
	}
	if err := appendRaw(c, "INBOX", mimetest.Nested(message.MaxNesting)); err != nil {
		t.Fatalf("APPEND at the limit: %v", err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{
		Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("FETCH 1:* after the refusal: %v", err)
	}
	if len(msgs) != 2 {
		t.Fatalf("FETCH returned %d messages, want 2 (the refused one stored?)", len(msgs))
	}
}

// An APPEND of more MIME parts than the limit gets a tagged NO; nothing is
// stored and FETCH of the mailbox keeps working.
func TestAppendRefusesMoreMIMEPartsThanTheLimit(t *testing.T) {
	env := newTestEnv(t)
	c := env.loginSelect(alice, "INBOX", nil)
	err := appendRaw(c, "INBOX", mimetest.Wide(message.MaxParts))
	expectCode(t, err, imap.ResponseCodeCannot, "APPEND of one part past the limit")
	if !strings.Contains(err.Error(), fmt.Sprint(message.MaxParts)) {
		t.Errorf("NO text %q does not name the limit", err)
	}
	if err := appendRaw(c, "INBOX", mimetest.Wide(message.MaxParts-1)); err != nil {
		t.Fatalf("APPEND at the limit: %v", err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
	}).Collect()
	if err != nil {
		t.Fatalf("FETCH after the refusal: %v", err)
	}
	if len(msgs) != 1 {
		t.Fatalf("FETCH returned %d messages, want 1 (the refused one stored?)", len(msgs))
	}
}

// APPEND with a normal literal stores only CRLF line endings, whatever the
// client sent (a literal8 keeps its bytes: TestAppendLiteral8KeepsBytes).
func TestAppendNormalLiteralNormalisesBareCRAndLF(t *testing.T) {
	env := newTestEnv(t)
	c := env.loginSelect(alice, "INBOX", nil)
	if err := appendRaw(c, "INBOX", []byte("Subject: lines\nFrom: "+alice+"\r\n\r\na\r.\rb\nc\r\n")); err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	var body []byte
	for _, b := range m.BodySection {
		body = b.Bytes
	}
	want := "Subject: lines\r\nFrom: " + alice + "\r\n\r\na\r\n.\r\nb\r\nc\r\n"
	if !bytes.Equal(body, []byte(want)) {
		t.Errorf("stored %q, want %q", body, want)
	}
}
