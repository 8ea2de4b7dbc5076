package storagetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

const (
	alice = "alice@example.com"
	bob   = "bob@example.com"
	carol = "carol@example.com"
)

// reopen closes s and opens its data again, as a restart does.
func (b Backend) reopen(t *testing.T, s storage.Store, location string) storage.Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return b.Open(t, location)
}

func mustCreateUser(t testing.TB, s storage.Store, addr string) {
	t.Helper()
	if err := s.CreateUser(context.Background(), addr, "secret", false); err != nil {
		t.Fatalf("create user %s: %v", addr, err)
	}
}

func mustMailbox(t testing.TB, s storage.Store, user, name string) *storage.MailboxStatus {
	t.Helper()
	st, err := s.MailboxStatus(context.Background(), user, name)
	if err != nil {
		t.Fatalf("mailbox %s of %s: %v", name, user, err)
	}
	return st
}

func mustAppend(t testing.TB, s storage.Store, user, mailbox string, raw string, flags ...imap.Flag) *storage.Appended {
	t.Helper()
	a, err := s.Append(context.Background(), user, mailbox, &storage.NewMessage{Raw: []byte(raw), Flags: flags})
	if err != nil {
		t.Fatalf("append to %s of %s: %v", mailbox, user, err)
	}
	return a
}

func mustUIDs(t testing.TB, s storage.Store, user string, id uint64) []imap.UID {
	t.Helper()
	uids, err := s.UIDs(context.Background(), user, id)
	if err != nil {
		t.Fatalf("uids: %v", err)
	}
	return uids
}

var loadAll = storage.LoadOptions{Envelope: true, BodyStructure: true, Body: true}

func loadOne(t testing.TB, s storage.Store, user string, id uint64, uid imap.UID) *storage.Message {
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

func mailboxNames(t *testing.T, s storage.Store, user string) string {
	t.Helper()
	list, err := s.Mailboxes(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list {
		names = append(names, m.Name)
	}
	return strings.Join(names, " ")
}

func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func simpleMessage(subject string) string {
	return "From: Alice <alice@example.com>\r\n" +
		"To: Bob <bob@example.com>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0200\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.com>\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Hello " + subject + "\r\n"
}

// NestedMessage is a multipart/mixed with a multipart/alternative, an
// attachment and a forwarded message, with every envelope field set; the
// backends' own tests use it too.
const NestedMessage = "Date: Tue, 03 Feb 2026 10:11:12 -0500\r\n" +
	"From: \"Alice A.\" <alice@example.com>\r\n" +
	"Sender: Secretary <sec@example.com>\r\n" +
	"Reply-To: replies@example.com\r\n" +
	"To: Bob <bob@example.com>, carol@example.org\r\n" +
	"Cc: Dave <dave@example.net>\r\n" +
	"Bcc: eve@example.com\r\n" +
	"Subject: =?utf-8?q?Quarterly_r=C3=A9port?=\r\n" +
	"In-Reply-To: <parent@example.com>\r\n" +
	"Message-ID: <nested-1@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"Content-Language: en, fr\r\n" +
	"Content-Location: http://example.com/msg\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/alternative; boundary=\"inner\"\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Hello Bob,=0D=0A\r\n" +
	"numbers attached.\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	"<p>Hello Bob,</p>\r\n" +
	"--inner--\r\n" +
	"--outer\r\n" +
	"Content-Type: application/pdf; name=\"report.pdf\"\r\n" +
	"Content-Disposition: attachment; filename=\"report.pdf\"; size=12\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-ID: <part2@example.com>\r\n" +
	"Content-Description: The report\r\n" +
	"Content-Language: de\r\n" +
	"Content-Location: report.pdf\r\n" +
	"\r\n" +
	"JVBERi0xLjQKJcfs\r\n" +
	"--outer\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"Content-Disposition: inline\r\n" +
	"\r\n" +
	"From: Frank <frank@example.com>\r\n" +
	"To: alice@example.com\r\n" +
	"Subject: Forwarded\r\n" +
	"Date: Wed, 01 Jan 2025 00:00:00 +0000\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"Inner body.\r\n" +
	"--outer--\r\n"

// EventLog records events from Listen. A store publishes a commit's events
// before answering its callers, so a snapshot taken after a write returns
// already holds that write's events.
type EventLog struct {
	mu     sync.Mutex
	events []storage.Event
}

// Listen starts recording s's events, but for "account changes may have
// been missed" (EventAccount without a user), which a shared backend may
// send whenever its link to the other nodes was broken, and which follows
// no write.
func Listen(s storage.Store) *EventLog {
	l := &EventLog{}
	s.Listen(func(ev storage.Event) {
		if ev.Kind == storage.EventAccount && ev.User == "" {
			return
		}
		l.mu.Lock()
		l.events = append(l.events, ev)
		l.mu.Unlock()
	})
	return l
}

// Snapshot returns the events recorded so far.
func (l *EventLog) Snapshot() []storage.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]storage.Event(nil), l.events...)
}

// withUsers opens a new store holding the given users.
func (b Backend) withUsers(t *testing.T, users ...string) (storage.Store, string) {
	t.Helper()
	s, location := b.New(t)
	for _, u := range users {
		mustCreateUser(t, s, u)
	}
	return s, location
}

// submit delivers one message from alice to rcpts, as smtpd does (the Sent
// copy even asks for \Seen, which tracking must override).
func submit(t *testing.T, s storage.Store, subject string, rcpts ...string) *storage.DeliveryResult {
	t.Helper()
	raw := []byte(simpleMessage(subject))
	res, err := s.Deliver(context.Background(), &storage.Delivery{
		Sender:     alice,
		SentCopy:   &storage.NewMessage{Raw: raw, Flags: []imap.Flag{imap.FlagSeen}},
		Recipients: rcpts,
		Copy:       &storage.NewMessage{Raw: raw},
		From:       alice,
		Source:     storage.SourceUser,
		MessageID:  "<" + subject + "@example.com>",
		Subject:    subject,
	})
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if res.TrackingID == 0 {
		t.Fatalf("delivery %q got no tracking record", subject)
	}
	return res
}

func isSeen(t *testing.T, s storage.Store, user string, a *storage.Appended) bool {
	t.Helper()
	return slices.Contains(loadOne(t, s, user, a.MailboxID, a.UID).Flags, imap.FlagSeen)
}

// states returns recipient -> state of the record with the given ID.
func states(t *testing.T, s storage.Store, user string, id uint64) map[string]string {
	t.Helper()
	list, err := s.SentStatus(context.Background(), user)
	if err != nil {
		t.Fatalf("sent status: %v", err)
	}
	for _, m := range list {
		if m.ID == id {
			out := make(map[string]string)
			for _, r := range m.Recipients {
				out[r.Address] = r.State
			}
			return out
		}
	}
	return nil
}

func markSeen(t *testing.T, s storage.Store, ctx context.Context, user string, a *storage.Appended) {
	t.Helper()
	if _, err := s.StoreFlags(ctx, user, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagSeen}); err != nil {
		t.Fatalf("store \\Seen for %s: %v", user, err)
	}
}

func expunge(t *testing.T, s storage.Store, user string, a *storage.Appended) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.StoreFlags(ctx, user, a.MailboxID, []imap.UID{a.UID}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if gone, err := s.Expunge(ctx, user, a.MailboxID, nil); err != nil || len(gone) != 1 {
		t.Fatalf("expunge: %v %v", gone, err)
	}
}

// snapshot describes everything a client or an operator can read from s
// (describe). Two stores with the same data describe themselves the same.
func snapshot(t *testing.T, s storage.Store) string {
	t.Helper()
	return describe(t, s, false)
}
