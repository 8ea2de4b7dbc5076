package storagetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/storage"
)

// queueDelivery is alice's message to bob (local), x (To), y (Cc) and z
// (Bcc, kept only in the Sent copy).
func queueDelivery(subject string) *storage.Delivery {
	head := "From: Alice <alice@example.com>\r\n" +
		"To: Bob <bob@example.com>, X <X@Remote.test>\r\n" +
		"Cc: y@remote.test\r\n"
	rest := "Subject: " + subject + "\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.com>\r\n" +
		"Content-Type: Multipart/Mixed; boundary=b\r\n" +
		"\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n--b--\r\n"
	sent := head + "Bcc: z@remote.test\r\n" + rest
	relayed := head + rest
	return &storage.Delivery{
		Sender:     alice,
		SentCopy:   &storage.NewMessage{Raw: []byte(sent)},
		Recipients: []string{bob},
		Copy:       &storage.NewMessage{Raw: []byte(relayed)},
		From:       alice,
		Source:     storage.SourceUser,
		External:   []string{"X@Remote.test", "y@remote.test", "z@remote.test"},
		RelayCopy:  &storage.NewMessage{Raw: []byte(relayed)},
		MessageID:  "<" + strings.ReplaceAll(subject, " ", ".") + "@example.com>",
		Subject:    subject,
	}
}

func mustDeliver(t *testing.T, s storage.Store, d *storage.Delivery) *storage.DeliveryResult {
	t.Helper()
	res, err := s.Deliver(context.Background(), d)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	return res
}

func mustEntry(t *testing.T, s storage.Store, id uint64) *storage.QueueEntry {
	t.Helper()
	e, err := s.QueueEntry(context.Background(), id)
	if err != nil {
		t.Fatalf("queue entry %d: %v", id, err)
	}
	return e
}

func textNotice(to, subject string) *storage.Notice {
	raw := "From: postmaster@example.com\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n\r\nbody\r\n"
	return &storage.Notice{Recipients: []string{to}, Message: &storage.NewMessage{Raw: []byte(raw)}}
}

func queueDeliverQueuesExternalRecipients(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	events := Listen(s)
	d := queueDelivery("quarterly report")
	res := mustDeliver(t, s, d)
	if res.QueueID == 0 || res.Sent == nil || res.Copies[bob] == nil {
		t.Fatalf("result %+v: want a queue entry, a Sent copy and bob's copy", res)
	}
	e := mustEntry(t, s, res.QueueID)
	if e.Status != storage.QueueOutbox || e.Source != storage.SourceUser || e.User != alice || e.From != alice {
		t.Errorf("entry %+v", e)
	}
	if !slices.Equal(e.To, []string{"X@Remote.test"}) || !slices.Equal(e.Cc, []string{"y@remote.test"}) || !slices.Equal(e.Bcc, []string{"z@remote.test"}) {
		t.Errorf("to %q cc %q bcc %q: want the external recipients grouped by header field, Bcc from the Sent copy", e.To, e.Cc, e.Bcc)
	}
	if e.Subject != "quarterly report" || e.MimeType != "multipart/mixed" || e.MessageID != d.MessageID {
		t.Errorf("subject %q mime %q message-id %q", e.Subject, e.MimeType, e.MessageID)
	}
	if e.Body != string(d.RelayCopy.Raw) || e.Size != int64(len(d.RelayCopy.Raw)) || strings.Contains(e.Body, "Bcc") {
		t.Errorf("body %q (size %d): want the relay copy without Bcc", e.Body, e.Size)
	}
	if len(e.Recipients) != 3 || e.Pending()[0] != "X@Remote.test" || e.Attempts != 0 || e.Sent || e.SentOn != nil {
		t.Errorf("recipients %+v attempts %d", e.Recipients, e.Attempts)
	}
	if e.NextAttempt.IsZero() || e.Date.IsZero() || e.NextAttempt.After(time.Now()) {
		t.Errorf("date %v next attempt %v: want due at once", e.Date, e.NextAttempt)
	}
	if !slices.ContainsFunc(events.Snapshot(), func(ev storage.Event) bool { return ev.Kind == storage.EventQueued && ev.QueueID == e.ID }) {
		t.Error("no EventQueued for the new entry")
	}
	if c, _ := s.QueueCounts(context.Background()); c != (storage.QueueCounts{Outbox: 1}) {
		t.Errorf("counts %+v", c)
	}
}

func queueDeliverWithAnUnrelayableAddressStoresNothing(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	d := queueDelivery("injection")
	d.External = []string{"x@remote.test>\r\nRCPT TO:<evil@elsewhere.test"}
	_, err := s.Deliver(context.Background(), d)
	wantErr(t, err, storage.ErrInvalid, "deliver with CR LF in an external address")
	if st := mustMailbox(t, s, alice, storage.Sent); st.Messages != 0 {
		t.Errorf("Sent holds %d messages after a failed delivery", st.Messages)
	}
	if st := mustMailbox(t, s, bob, storage.Inbox); st.Messages != 0 {
		t.Errorf("bob's INBOX holds %d messages after a failed delivery", st.Messages)
	}
	if l, _ := s.QueueEntries(context.Background(), storage.QueueFilter{}); len(l) != 0 {
		t.Errorf("queue holds %d entries after a failed delivery", len(l))
	}
}

func queueSystemMailHasSourceSystem(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	raw := []byte("From: monitor@example.com\r\nTo: ops@remote.test\r\nSubject: disk full\r\n\r\n99%\r\n")
	res := mustDeliver(t, s, &storage.Delivery{From: "", Source: storage.SourceSystem, External: []string{"ops@remote.test"},
		RelayCopy: &storage.NewMessage{Raw: raw}, Subject: "disk full"})
	e := mustEntry(t, s, res.QueueID)
	if e.Source != storage.SourceSystem || e.User != "" || e.From != "" || !slices.Equal(e.To, []string{"ops@remote.test"}) || e.MimeType != "text/plain" {
		t.Errorf("entry %+v", e)
	}
}

func queueFilterSelectsAndRejectsUnknownValues(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	mustDeliver(t, s, queueDelivery("one"))
	sys := mustDeliver(t, s, &storage.Delivery{From: "cron@example.com", Source: storage.SourceSystem, External: []string{"a@remote.test"},
		RelayCopy: &storage.NewMessage{Raw: []byte("Subject: two\r\n\r\nx\r\n")}})
	if _, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: func() *storage.QueueEntry {
		e := mustEntry(t, s, sys.QueueID)
		e.Status = storage.QueueFailed
		return e
	}()}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    storage.QueueFilter
		want int
	}{
		{storage.QueueFilter{}, 2},
		{storage.QueueFilter{Status: storage.QueueOutbox}, 1},
		{storage.QueueFilter{Status: storage.QueueFailed, Source: storage.SourceSystem}, 1},
		{storage.QueueFilter{Source: storage.SourceUser, User: "ALICE@example.com"}, 1},
		{storage.QueueFilter{User: "cron@example.com"}, 1},
		{storage.QueueFilter{Status: storage.QueueSent}, 0},
	} {
		l, err := s.QueueEntries(ctx, tc.f)
		if err != nil || len(l) != tc.want {
			t.Errorf("filter %+v: %d entries, %v; want %d", tc.f, len(l), err, tc.want)
		}
		for _, e := range l {
			if e.Body != "" {
				t.Errorf("list carries the body of entry %d", e.ID)
			}
		}
	}
	_, err := s.QueueEntries(ctx, storage.QueueFilter{Status: "queued"})
	wantErr(t, err, storage.ErrInvalid, "status queued")
	if !strings.Contains(err.Error(), "outbox, held, sent, failed") {
		t.Errorf("error %q does not name the statuses", err)
	}
	_, err = s.QueueEntries(ctx, storage.QueueFilter{Source: "robot"})
	wantErr(t, err, storage.ErrInvalid, "source robot")
}

func queueDueEntriesEarliestFirst(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	var ids []uint64
	for _, subj := range []string{"a", "b", "c"} {
		ids = append(ids, mustDeliver(t, s, queueDelivery(subj)).QueueID)
	}
	// Push the first one an hour into the future.
	later := time.Now().Add(time.Hour)
	e := mustEntry(t, s, ids[0])
	e.NextAttempt = later
	if _, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: e}); err != nil {
		t.Fatal(err)
	}
	due, next, err := s.DueQueueEntries(ctx, time.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].ID != ids[1] || due[1].ID != ids[2] {
		t.Fatalf("due %v, want entries %d and %d", entryIDs(due), ids[1], ids[2])
	}
	if next.UnixNano() != later.UnixNano() {
		t.Errorf("next %v, want %v", next, later)
	}
	due, _, _ = s.DueQueueEntries(ctx, time.Now(), 1)
	if len(due) != 1 {
		t.Errorf("max 1 gave %d entries", len(due))
	}
	// Sent entries leave the index.
	e = mustEntry(t, s, ids[1])
	e.Status = storage.QueueSent
	if _, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: e}); err != nil {
		t.Fatal(err)
	}
	due, _, _ = s.DueQueueEntries(ctx, time.Now(), 10)
	if len(due) != 1 || due[0].ID != ids[2] {
		t.Errorf("due after one was sent: %v", entryIDs(due))
	}
}

func entryIDs(l []storage.QueueEntry) []uint64 {
	var out []uint64
	for _, e := range l {
		out = append(out, e.ID)
	}
	return out
}

func queueClaimLimitsSystemFirstAndCountsSurviveReopen(t *testing.T, b Backend) {
	s, path := b.withUsers(t, alice, bob)
	mustCreateUser(t, s, "admin@example.com")
	ctx := context.Background()
	var ids []uint64
	for _, subj := range []string{"a", "b", "c", "d"} {
		ids = append(ids, mustDeliver(t, s, queueDelivery(subj)).QueueID)
	}
	now := time.Now()
	midnight := now.Add(time.Hour)
	claim := func(s storage.Store, id uint64, sysLimit, userLimit int) *storage.QueueClaimed {
		t.Helper()
		res, err := s.ClaimQueueEntry(ctx, storage.QueueClaim{ID: id, Now: now, Day: "2030-01-01", HoldUntil: midnight,
			Owner: "node-a", LeaseUntil: now.Add(time.Minute), SystemLimit: sysLimit, UserLimit: userLimit,
			SystemAlert: textNotice("admin@example.com", "Daily system e-mail limit reached"),
			UserAlert:   textNotice(alice, "Daily e-mail limit reached")})
		if err != nil {
			t.Fatalf("claim %d: %v", id, err)
		}
		return res
	}
	if r := claim(s, ids[0], 2, 1); r.Entry == nil || !r.Counted || r.Entry.Header == "" || r.Entry.CountedDay != "2030-01-01" {
		t.Fatalf("first claim %+v: want the entry, counted, with its header", r)
	}
	// The user's limit (1) is reached; the system's (2) is not.
	r := claim(s, ids[1], 2, 1)
	if r.Entry != nil || r.Held != storage.LimitUser || !r.Alerted {
		t.Fatalf("second claim %+v: want held by the user limit, alerted", r)
	}
	if e := mustEntry(t, s, ids[1]); e.Status != storage.QueueHeld || !e.HeldUntil.Equal(midnight) {
		t.Errorf("held entry: status %s until %v", e.Status, e.HeldUntil)
	}
	if st := mustMailbox(t, s, alice, storage.Inbox); st.Messages != 1 {
		t.Errorf("alice got %d alerts, want 1", st.Messages)
	}
	// Both limits reached: the system limit is named, being checked first.
	s = b.reopen(t, s, path)
	if sys, usr, err := s.QueueDayCount(ctx, "2030-01-01", alice); err != nil || sys != 1 || usr != 1 {
		t.Fatalf("counts after reopen: system %d user %d (%v), want 1 and 1", sys, usr, err)
	}
	r = claim(s, ids[2], 1, 1)
	if r.Held != storage.LimitSystem || !r.Alerted {
		t.Fatalf("third claim %+v: want held by the system limit", r)
	}
	r = claim(s, ids[3], 1, 1)
	if r.Held != storage.LimitSystem || r.Alerted {
		t.Fatalf("fourth claim %+v: want held again, without a second alert that day", r)
	}
	if st := mustMailbox(t, s, "admin@example.com", storage.Inbox); st.Messages != 1 {
		t.Errorf("the admin got %d system alerts, want 1", st.Messages)
	}
	// Not due before the hold ends.
	if r := claim(s, ids[3], 0, 0); r.Entry != nil || r.Held != "" {
		t.Errorf("claim of a held entry before midnight: %+v", r)
	}
	// The next day: out it goes.
	res, err := s.ClaimQueueEntry(ctx, storage.QueueClaim{ID: ids[3], Now: midnight, Day: "2030-01-02", HoldUntil: midnight.Add(24 * time.Hour), SystemLimit: 1, UserLimit: 1,
		Owner: "node-a", LeaseUntil: midnight.Add(time.Minute)})
	if err != nil || res.Entry == nil || res.Entry.Status != storage.QueueOutbox {
		t.Fatalf("claim the next day: %+v %v", res, err)
	}
}

func queueSettleWritesNoticesAndRefusesAStaleEntry(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	id := mustDeliver(t, s, queueDelivery("final")).QueueID
	claimed, err := s.ClaimQueueEntry(ctx, storage.QueueClaim{ID: id, Now: time.Now(), Day: "2030-01-01", HoldUntil: time.Now().Add(time.Hour),
		Owner: "node-a", LeaseUntil: time.Now().Add(time.Minute)})
	if err != nil || claimed.Entry == nil {
		t.Fatalf("claim: %+v %v", claimed, err)
	}
	e := claimed.Entry
	e.Status, e.Attempts, e.Error = storage.QueueFailed, 1, "550 5.1.1 no such user"
	for i := range e.Recipients {
		e.Recipients[i].State, e.Recipients[i].Reply = storage.RcptFailed, e.Error
	}
	e.Subject = "changed by the updater"
	saved, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: e, Uncount: true, Notices: []storage.Notice{*textNotice(alice, "Undeliverable: final")}})
	if err != nil {
		t.Fatal(err)
	}
	if saved.Status != storage.QueueFailed || saved.Subject != "final" || saved.CountedDay != "" {
		t.Errorf("saved %+v: want failed, subject kept, count given back", saved)
	}
	if sys, usr, _ := s.QueueDayCount(ctx, "2030-01-01", alice); sys != 0 || usr != 0 {
		t.Errorf("counts after Uncount: %d %d", sys, usr)
	}
	if st := mustMailbox(t, s, alice, storage.Inbox); st.Messages != 1 {
		t.Errorf("alice's INBOX holds %d messages, want the notice", st.Messages)
	}
	// The claim's copy is stale now.
	_, err = s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: e})
	wantErr(t, err, storage.ErrInvalid, "update with a stale revision")
	// A notice whose recipient is not a user is skipped, not an error.
	fresh := mustEntry(t, s, id)
	if _, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: fresh, Notices: []storage.Notice{*textNotice("gone@example.com", "x")}}); err != nil {
		t.Errorf("notice to a missing user: %v", err)
	}
	if c, _ := s.QueueCounts(ctx); c != (storage.QueueCounts{Failed: 1}) {
		t.Errorf("counts %+v", c)
	}
}

func queueResendAndDelete(t *testing.T, b Backend) {
	s, _ := b.withUsers(t, alice, bob)
	ctx := context.Background()
	id := mustDeliver(t, s, queueDelivery("again")).QueueID

	_, err := s.ResendQueueEntry(ctx, id, time.Now())
	wantErr(t, err, storage.ErrInvalid, "resend of an entry still in the outbox")

	e := mustEntry(t, s, id)
	e.Status, e.Attempts, e.Error, e.DelayNotified = storage.QueueFailed, 10, "451 later", true
	e.Recipients[0].State = storage.RcptSent
	e.Recipients[1].State, e.Recipients[1].Reply = storage.RcptFailed, "550 no"
	e.Recipients[2].State = storage.RcptFailed
	if _, err := s.UpdateQueueEntry(ctx, storage.QueueUpdate{Entry: e}); err != nil {
		t.Fatal(err)
	}
	events := Listen(s)
	r, err := s.ResendQueueEntry(ctx, id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != storage.QueueOutbox || r.Attempts != 0 || r.Error != "" || r.DelayNotified {
		t.Errorf("resent %+v", r)
	}
	if got := r.Pending(); !slices.Equal(got, []string{"y@remote.test", "z@remote.test"}) || r.Recipients[1].Reply != "" {
		t.Errorf("pending after resend %q (%+v): want the failed ones only", got, r.Recipients)
	}
	if !slices.ContainsFunc(events.Snapshot(), func(ev storage.Event) bool { return ev.Kind == storage.EventQueued && ev.QueueID == id }) {
		t.Error("resend did not wake the queue")
	}
	if due, _, _ := s.DueQueueEntries(ctx, time.Now(), 10); len(due) != 1 {
		t.Errorf("resent entry not due: %v", entryIDs(due))
	}

	for _, f := range []func() error{
		func() error { _, err := s.ResendQueueEntry(ctx, 4242, time.Now()); return err },
		func() error { return s.DeleteQueueEntry(ctx, 4242) },
	} {
		err := f()
		wantErr(t, err, storage.ErrNotFound, "unknown id")
		if !strings.Contains(err.Error(), "4242") {
			t.Errorf("error %q does not name the id", err)
		}
	}
	if err := s.DeleteQueueEntry(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = s.QueueEntry(ctx, id)
	wantErr(t, err, storage.ErrNotFound, "deleted entry")
	if due, _, _ := s.DueQueueEntries(ctx, time.Now(), 10); len(due) != 0 {
		t.Errorf("deleted entry still due")
	}
	if c, _ := s.QueueCounts(ctx); c != (storage.QueueCounts{}) {
		t.Errorf("counts after delete %+v", c)
	}
}

func queueRelayStateAlertsOnlyWhenItChanges(t *testing.T, b Backend) {
	s, path := b.withUsers(t, alice, bob)
	ctx := context.Background()
	for i, tc := range []struct {
		state   string
		changed bool
	}{{"down", true}, {"down", false}, {"", true}, {"", false}} {
		changed, err := s.SetRelayState(ctx, tc.state, textNotice(bob, "relay "+tc.state))
		if err != nil || changed != tc.changed {
			t.Fatalf("step %d: set %q: changed %v (%v), want %v", i, tc.state, changed, err, tc.changed)
		}
	}
	if st := mustMailbox(t, s, bob, storage.Inbox); st.Messages != 2 {
		t.Errorf("bob got %d alerts, want 2", st.Messages)
	}
	if _, err := s.SetRelayState(ctx, "settings", nil); err != nil {
		t.Fatal(err)
	}
	s = b.reopen(t, s, path)
	if st, err := s.RelayState(ctx); err != nil || st != "settings" {
		t.Errorf("relay state after reopen %q (%v)", st, err)
	}
}

func queueReadsOnAFreshStoreAreEmpty(t *testing.T, b Backend) {
	s, _ := b.New(t)
	ctx := context.Background()
	if l, err := s.QueueEntries(ctx, storage.QueueFilter{}); err != nil || l == nil || len(l) != 0 {
		t.Errorf("entries %v %v: want an empty, non-nil list", l, err)
	}
	if due, next, err := s.DueQueueEntries(ctx, time.Now(), 5); err != nil || len(due) != 0 || !next.IsZero() {
		t.Errorf("due %v %v %v", due, next, err)
	}
	_, err := s.QueueEntry(ctx, 1)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("entry 1: %v", err)
	}
}
