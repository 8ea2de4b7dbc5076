package smtpd

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/storage"
)

// A recipient whose mailbox is full gets 452 4.2.2 at RCPT; the same
// message still reaches the other recipient, and the sender's Sent copy.
func TestFullMailboxFailsOnlyThatRecipient(t *testing.T) {
	store := openQuotaStore(t, 2000)
	filler := strings.Repeat("x", 1990)
	if _, err := store.Append(context.Background(), carol, storage.Inbox, &storage.NewMessage{Raw: []byte(filler)}); err != nil {
		t.Fatal(err)
	}
	env := startServerWithStore(t, store, nil)
	c := env.login(t, alice)
	if err := c.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(bob, nil); err != nil {
		t.Fatalf("RCPT bob (room left): %v", err)
	}
	// carol has 10 bytes left: a message of unknown size may still come
	// in, but not one announced larger than that.
	if err := c.Rcpt(carol, nil); err != nil {
		t.Fatalf("RCPT carol under her quota: %v", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(alice, &smtp.MailOptions{Size: 500}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(bob, nil); err != nil {
		t.Fatalf("RCPT bob: %v", err)
	}
	wantReply(t, c.Rcpt(carol, nil), 452, smtp.EnhancedCode{4, 2, 2})
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, simpleMessage("")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("DATA after one recipient was refused: %v", err)
	}
	env.onlyMessage(t, bob, storage.Inbox)
	env.onlyMessage(t, alice, storage.Sent)
	if got := env.messages(t, carol, storage.Inbox); len(got) != 1 {
		t.Errorf("carol's INBOX holds %d messages, want only the filler", len(got))
	}

	// Once carol's usage has reached the quota, any message is refused.
	if _, err := store.Append(context.Background(), carol, storage.Drafts, &storage.NewMessage{Raw: []byte("0123456789")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(alice, nil); err != nil {
		t.Fatal(err)
	}
	wantReply(t, c.Rcpt(carol, nil), 452, smtp.EnhancedCode{4, 2, 2})
}
