package smtpd

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/storage"
)

// Submit is the submission session without a connection: the same refusals
// with the same replies, and the same copies when it accepts.
func TestSubmitRefusesAsSubmissionDoes(t *testing.T) {
	env := startServer(t, nil)
	ctx := context.Background()
	local := netip.MustParseAddr("127.0.0.1")
	code := func(err error) int {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se.Code
		}
		return 0
	}
	cases := []struct {
		name  string
		rcpts []string
		raw   string
		want  int
	}{
		{"another user's From", []string{bob}, "From: " + bob + "\r\nSubject: x\r\n\r\nx\r\n", 550},
		{"unknown local user", []string{"nobody@" + testDomain}, "Subject: x\r\n\r\nx\r\n", 550},
		{"address literal", []string{"x@[192.0.2.1]"}, "Subject: x\r\n\r\nx\r\n", 550},
		{"no recipients", nil, "Subject: x\r\n\r\nx\r\n", 554},
		{"too many recipients", []string{bob, carol, bob, carol, bob, carol}, "Subject: x\r\n\r\nx\r\n", 452},
		{"too large", []string{bob}, "Subject: x\r\n\r\n" + strings.Repeat("x", testMaxSize+1) + "\r\n", 552},
	}
	for _, c := range cases {
		if err := env.srv.Submit(ctx, alice, "web", local, c.rcpts, []byte(c.raw)); code(err) != c.want {
			t.Errorf("%s: %v, want a %d reply", c.name, err, c.want)
		}
	}
	if st, _ := env.store.MailboxStatus(ctx, bob, storage.Inbox); st.Messages != 0 {
		t.Fatalf("refused submissions delivered %d messages", st.Messages)
	}
	if err := env.srv.Submit(ctx, alice, "web", local, []string{bob, "x@remote.example"}, []byte("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("submit: %v", err)
	}
	sent, _ := env.store.MailboxStatus(ctx, alice, storage.Sent)
	in, _ := env.store.MailboxStatus(ctx, bob, storage.Inbox)
	queued, err := env.store.QueueEntries(ctx, storage.QueueFilter{})
	if err != nil || sent.Messages != 1 || in.Messages != 1 || len(queued) != 1 {
		t.Fatalf("after submit: Sent %d, bob's INBOX %d, queue %d (%v)", sent.Messages, in.Messages, len(queued), err)
	}
}
