package storagetest

// What a move between backends (`pochta migrate`, storage.Exporter and
// storage.Importer) must carry, for the tests of the backends and of the
// command: a store filled through the public API as a small organisation
// would fill it, and a description of everything the public API answers,
// to compare a store with its copy.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// Addresses and the day of the store FillForMove makes.
const (
	MoveAlice = alice
	MoveBob   = bob
	MoveCarol = carol
	// MoveDay is the day whose limits FillForMove's claims count.
	MoveDay = "2030-01-01"
)

// MovedQueue are the IDs of the queue entries FillForMove makes, one per
// state a move must keep.
type MovedQueue struct {
	// Waiting was never tried and is due now; Retrying was tried once,
	// failed temporarily and is due in an hour; Leased is claimed by
	// node-a with its lease running.
	Waiting, Retrying, Leased uint64
	Held, Sent, Failed        uint64
}

// FillForMove fills an empty store: users alice (an admin, with settings
// and web preferences), bob and carol with their passwords ("<name>
// password"); messages with flags and keywords; a mailbox deleted while
// subscribed, one re-created after a deletion, an expunged message; a
// tracked message from alice that bob has read and carol has not, also
// queued for two external recipients; a large one to both and outside,
// its body stored once for its copies; and queue entries in every status
// (waiting, retrying, leased, held, sent, failed), counted toward
// MoveDay's limits with the system limit's alert sent; the relay state is
// "down".
func FillForMove(t *testing.T, s storage.Store) MovedQueue {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{alice, bob, carol} {
		name, _, _ := strings.Cut(u, "@")
		must(s.CreateUser(ctx, u, name+" password", u == alice))
	}
	must(s.SetSettings(ctx, alice, storage.Settings{PollInterval: 90 * time.Second}))
	must(s.SetWebPrefs(ctx, alice, storage.WebPrefs{QueueColumns: []string{"size", "attempts"}, QueueColumnsSet: true, MailPane: "right"}))
	date := time.Date(2026, 11, 3, 4, 5, 6, 123456789, time.UTC)
	app := func(user, box, subject string, flags ...imap.Flag) *storage.Appended {
		t.Helper()
		a, err := s.Append(ctx, user, box, &storage.NewMessage{Raw: []byte(simpleMessage(subject)), Flags: flags, InternalDate: date})
		must(err)
		return a
	}
	app(alice, storage.Inbox, "seen", imap.FlagSeen)
	app(alice, storage.Inbox, "flagged", imap.FlagFlagged, "$Work")
	app(alice, storage.Inbox, "unread")
	must(s.CreateMailbox(ctx, alice, "Projects/2026"))
	must(s.SetSubscribed(ctx, alice, "Projects/2026", true))
	app(alice, "Projects/2026", "plan")
	must(s.DeleteMailbox(ctx, alice, "Projects/2026"))
	must(s.CreateMailbox(ctx, alice, "Archive"))
	app(alice, "Archive", "old", imap.FlagAnswered)
	must(s.DeleteMailbox(ctx, alice, "Archive"))
	must(s.CreateMailbox(ctx, alice, "Archive"))
	app(alice, "Archive", "older", imap.FlagSeen)
	gone := app(alice, "Archive", "gone", imap.FlagSeen)
	expunge(t, s, alice, gone)
	app(bob, storage.Inbox, "to bob")

	// Alice writes to bob and carol, and to two external recipients.
	raw := "From: Alice <alice@example.com>\r\nTo: bob@example.com, carol@example.com, x@remote.test\r\n" +
		"Cc: y@remote.test\r\nSubject: minutes\r\nMessage-ID: <minutes@example.com>\r\n\r\nThe minutes.\r\n"
	res := mustDeliver(t, s, &storage.Delivery{
		Sender: alice, SentCopy: &storage.NewMessage{Raw: []byte(raw)},
		Recipients: []string{bob, carol}, Copy: &storage.NewMessage{Raw: []byte(raw)},
		From: alice, Source: storage.SourceUser,
		External: []string{"x@remote.test", "y@remote.test"}, RelayCopy: &storage.NewMessage{Raw: []byte(raw)},
		MessageID: "<minutes@example.com>", Subject: "minutes",
	})
	markSeen(t, s, ctx, bob, res.Copies[bob])
	q := MovedQueue{Waiting: res.QueueID}

	queue := func(subject string) uint64 {
		t.Helper()
		return mustDeliver(t, s, &storage.Delivery{From: alice, Source: storage.SourceUser, Sender: alice,
			SentCopy: &storage.NewMessage{Raw: []byte(simpleMessage(subject))},
			External: []string{"ext@remote.test"}, RelayCopy: &storage.NewMessage{Raw: []byte(simpleMessage(subject))},
			MessageID: "<" + subject + "@example.com>", Subject: subject}).QueueID
	}
	claim := func(id uint64, systemLimit int) *storage.QueueClaimed {
		t.Helper()
		now := time.Now().UTC()
		c, err := s.ClaimQueueEntry(ctx, storage.QueueClaim{ID: id, Now: now, Day: MoveDay, HoldUntil: now.Add(24 * time.Hour),
			SystemLimit: systemLimit, SystemAlert: textNotice(alice, "Daily system e-mail limit reached"),
			Owner: "node-a", LeaseUntil: now.Add(time.Hour)})
		must(err)
		return c
	}
	settle := func(c *storage.QueueClaimed, status, rcpt, reply string, next time.Time) {
		t.Helper()
		now := time.Now().UTC()
		e := c.Entry
		e.Status, e.Attempts, e.LastAttempt, e.NextAttempt = status, 1, now, next
		for i := range e.Recipients {
			e.Recipients[i].State, e.Recipients[i].Reply = rcpt, reply
		}
		if status == storage.QueueSent {
			e.Sent, e.SentOn = true, &now
		} else {
			e.Error = reply
		}
		_, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: e})
		must(err)
	}
	q.Retrying = queue("retrying")
	settle(claim(q.Retrying, 0), storage.QueueOutbox, storage.RcptPending, "451 4.3.0 try again later", time.Now().Add(time.Hour))
	// The report goes to bob and carol too, its body big enough to be
	// stored once for its four copies.
	report := "From: Alice <alice@example.com>\r\nTo: bob@example.com, carol@example.com, ext@remote.test\r\n" +
		"Subject: sent\r\nMessage-ID: <sent@example.com>\r\n\r\n" + strings.Repeat("A line of the quarterly report.\r\n", 3000)
	q.Sent = mustDeliver(t, s, &storage.Delivery{
		Sender: alice, SentCopy: &storage.NewMessage{Raw: []byte(report)},
		Recipients: []string{bob, carol}, Copy: &storage.NewMessage{Raw: []byte(report)},
		From: alice, Source: storage.SourceUser,
		External: []string{"ext@remote.test"}, RelayCopy: &storage.NewMessage{Raw: []byte(report)},
		MessageID: "<sent@example.com>", Subject: "sent",
	}).QueueID
	settle(claim(q.Sent, 0), storage.QueueSent, storage.RcptSent, "250 2.0.0 queued as 12345", time.Time{})
	q.Failed = queue("failed")
	settle(claim(q.Failed, 0), storage.QueueFailed, storage.RcptFailed, "550 5.1.1 no such user", time.Time{})
	q.Leased = queue("leased")
	if c := claim(q.Leased, 0); c.Entry == nil {
		t.Fatalf("claim of the entry to lease: %+v", c)
	}
	q.Held = queue("held")
	if c := claim(q.Held, 4); c.Held != storage.LimitSystem || !c.Alerted {
		t.Fatalf("claim over the system limit: %+v, want held and alerted", c)
	}
	_, err := s.SetRelayState(ctx, "down", nil)
	must(err)
	return q
}

// DescribeMoved describes everything a client or an operator can read from
// s, as a move must keep it: users with their settings and web
// preferences, subscriptions, every mailbox with its UIDVALIDITY, UIDNEXT,
// HIGHESTMODSEQ, counters and expunged UIDs, every message with its UID, flags, modseq,
// date and body and, for a sender's copy, the read-tracking record that
// follows it (the web interface's Sent page), read tracking, the queue with every field and body but
// the lease (a move clears it), the day counters of MoveDay, and the relay
// state. Mailbox IDs are left out (a destination issues its own) and times
// are shown to the microsecond (PostgreSQL keeps no more).
func DescribeMoved(t *testing.T, s storage.Store) string {
	t.Helper()
	return describe(t, s, true)
}

// describe is DescribeMoved; without moved it keeps mailbox IDs, leases
// and exact times (what a restart must keep).
func describe(t *testing.T, s storage.Store, moved bool) string {
	t.Helper()
	ctx := context.Background()
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	at := func(tm time.Time) int64 {
		if moved {
			return tm.Truncate(time.Microsecond).UnixNano()
		}
		return tm.UnixNano()
	}
	users, err := s.Users(ctx)
	if err != nil {
		t.Fatalf("users: %v", err)
	}
	for _, u := range users {
		add("user %s admin=%v created=%d settings=%+v", u.Address, u.Admin, at(u.Created), u.Settings)
		prefs, err := s.WebPrefs(ctx, u.Address)
		if err != nil {
			t.Fatalf("web preferences of %s: %v", u.Address, err)
		}
		subs, err := s.Subscriptions(ctx, u.Address)
		if err != nil {
			t.Fatalf("subscriptions of %s: %v", u.Address, err)
		}
		add("  prefs %+v subscriptions %q", prefs, subs)
		boxes, err := s.Mailboxes(ctx, u.Address)
		if err != nil {
			t.Fatalf("mailboxes of %s: %v", u.Address, err)
		}
		for _, m := range boxes {
			st := *mustMailbox(t, s, u.Address, m.Name)
			if moved {
				st.ID = 0
			}
			add("  mailbox %+v", st)
			cs, err := s.Changes(ctx, u.Address, m.ID, 1)
			if err != nil {
				t.Fatalf("changes of %s %s: %v", u.Address, m.Name, err)
			}
			add("    vanished %v incomplete=%v", cs.Vanished, cs.VanishedIncomplete)
			uids := mustUIDs(t, s, u.Address, m.ID)
			msgs, err := s.Messages(ctx, u.Address, m.ID, uids, storage.LoadOptions{Body: true})
			if err != nil {
				t.Fatalf("messages of %s %s: %v", u.Address, m.Name, err)
			}
			// The web interface's Sent page: the record of each copy.
			tracked, err := s.SentStatusFor(ctx, u.Address, m.ID, uids)
			if err != nil {
				t.Fatalf("sent status of %s %s: %v", u.Address, m.Name, err)
			}
			for _, msg := range msgs {
				add("    %d %v modseq=%d %d %d %q", msg.UID, msg.Flags, msg.ModSeq, at(msg.InternalDate), msg.Size, msg.Body)
				if rec, ok := tracked[msg.UID]; ok {
					add("      tracked by %d, pending %d", rec.ID, pendingOf(rec))
				}
			}
		}
		sent, err := s.SentStatus(ctx, u.Address)
		if err != nil {
			t.Fatalf("sent status of %s: %v", u.Address, err)
		}
		for _, m := range sent {
			add("  sent %d %s %q %d", m.ID, m.MessageID, m.Subject, at(m.Date))
			for _, r := range m.Recipients {
				add("    %s external=%v %s %d", r.Address, r.External, r.State, at(r.Changed))
			}
		}
		sys, usr, err := s.QueueDayCount(ctx, MoveDay, u.Address)
		if err != nil {
			t.Fatalf("day count of %s: %v", u.Address, err)
		}
		add("  %s counted system=%d user=%d", MoveDay, sys, usr)
	}
	entries, err := s.QueueEntries(ctx, storage.QueueFilter{})
	if err != nil {
		t.Fatalf("queue: %v", err)
	}
	for _, e := range entries {
		full := mustEntry(t, s, e.ID)
		if moved {
			full.LeaseOwner, full.LeaseUntil = "", time.Time{}
		}
		b, err := json.Marshal(full)
		if err != nil {
			t.Fatal(err)
		}
		add("queue %s", b)
	}
	counts, err := s.QueueCounts(ctx)
	if err != nil {
		t.Fatalf("queue counts: %v", err)
	}
	relay, err := s.RelayState(ctx)
	if err != nil {
		t.Fatalf("relay state: %v", err)
	}
	add("queue counts %+v relay %q", counts, relay)
	return strings.Join(out, "\n")
}

func pendingOf(m storage.SentMessage) int {
	n := 0
	for _, r := range m.Recipients {
		if r.Pending() {
			n++
		}
	}
	return n
}
