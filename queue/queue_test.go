package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/internal/testclock"
	"github.com/pochta/pochta/storage"
)

const (
	carol = "carol@remote.test"
	dave  = "dave@remote.test"
)

func TestRelaysAnEntryAndMarksItSent(t *testing.T) {
	e := newEnv(t, nil)
	q := e.start()
	if state, _ := q.RelayHealth(); state != "untried" {
		t.Errorf("relay health before anything was sent: %q, want untried", state)
	}
	id := e.send(alice, []string{"Carol@Remote.test", dave}, "hello out there")
	en := e.waitEntry(id, "sent", statusIs(storage.QueueSent))
	if !en.Sent || en.SentOn == nil || en.Attempts != 1 || en.Error != "" {
		t.Errorf("sent entry: sent %v on %v, attempts %d, error %q", en.Sent, en.SentOn, en.Attempts, en.Error)
	}
	for _, r := range en.Recipients {
		if r.State != storage.RcptSent || !strings.HasPrefix(r.Reply, "250 ") {
			t.Errorf("recipient %+v: want sent with the relay's 250", r)
		}
	}
	txs := e.relay.delivered()
	if len(txs) != 1 {
		t.Fatalf("relay got %d messages, want 1", len(txs))
	}
	tx := txs[0]
	if tx.from != alice || !slices.Equal(tx.rcpts, []string{"Carol@Remote.test", dave}) || tx.authed != relayUser {
		t.Errorf("relay transaction from %q to %q login %q", tx.from, tx.rcpts, tx.authed)
	}
	if string(tx.data) != en.Body {
		t.Errorf("relay got\n%q\nwant the queued body\n%q", tx.data, en.Body)
	}
	// Read tracking hears of it in the same commit.
	tracked, err := e.store.SentStatus(context.Background(), alice)
	if err != nil || len(tracked) != 1 {
		t.Fatalf("sent status %+v (%v)", tracked, err)
	}
	relayed := 0
	for _, r := range tracked[0].Recipients {
		if r.External && r.State == storage.TrackRelayed {
			relayed++
		}
	}
	if relayed != 2 {
		t.Errorf("read tracking %+v: want both external recipients relayed", tracked[0].Recipients)
	}
	if got := e.metric("pochta_relay_attempts_total", "result", "sent"); got != 1 {
		t.Errorf("attempts{sent} = %v", got)
	}
	if got := e.metric("pochta_queue_entries", "status", "sent"); got != 1 {
		t.Errorf("entries{sent} = %v", got)
	}
	if got := e.metric("pochta_queue_entries", "status", "outbox"); got != 0 {
		t.Errorf("entries{outbox} = %v", got)
	}
	if got := e.metric("pochta_relay_up"); got != 1 {
		t.Errorf("relay_up = %v", got)
	}
	if state, _ := q.RelayHealth(); state != "up" {
		t.Errorf("relay health after a delivery: %q, want up", state)
	}
	e.lintMetrics()
}

func TestTemporaryFailuresAreRetriedOnTheDoublingScheduleThenReported(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.MaxAttempts = 4
		o.DelayNoticeAfter = 2
		o.RetryMin = 10 * time.Millisecond
		o.RetryMax = 25 * time.Millisecond
	})
	e.relay.set(func(r *testRelay) {
		r.rcptReply[carol] = always(reply(451, smtp.EnhancedCode{4, 3, 0}, "try later"))
	})
	q := e.start()
	id := e.send(alice, []string{carol}, "stubborn")
	en := e.waitEntry(id, "failed", statusIs(storage.QueueFailed))

	if en.Attempts != 4 || en.Error != "451 4.3.0 try later" || en.Sent {
		t.Errorf("failed entry: attempts %d, error %q, sent %v", en.Attempts, en.Error, en.Sent)
	}
	if r := en.Recipients[0]; r.State != storage.RcptFailed || r.Reply != "451 4.3.0 try later" || r.Status != "4.3.0" {
		t.Errorf("recipient %+v", r)
	}
	txs := e.relay.transactions()
	if len(txs) != 4 {
		t.Fatalf("relay saw %d transactions, want one per attempt (4)", len(txs))
	}
	for i := 1; i < len(txs); i++ {
		gap, want := txs[i].at.Sub(txs[i-1].at), q.backoff(i)
		if gap < want {
			t.Errorf("gap before attempt %d: %v, want at least %v", i+1, gap, want)
		}
	}
	if got := []time.Duration{q.backoff(1), q.backoff(2), q.backoff(3)}; !slices.Equal(got, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 25 * time.Millisecond}) {
		t.Errorf("backoff %v: want doubling from retry_min, capped at retry_max", got)
	}

	e.waitSubjects(alice, "Undeliverable: stubborn", 1)
	delayed := e.notices(alice, "Delayed: stubborn")
	if len(delayed) != 1 {
		t.Fatalf("%d Delayed notices, want exactly one", len(delayed))
	}
	d := delayed[0]
	if d.reportType != "delivery-status" || !strings.Contains(d.from, "postmaster@example.test") {
		t.Errorf("delayed notice: report-type %q from %q", d.reportType, d.from)
	}
	f := statusFields(t, d.status)
	if len(f) != 1 || f[0]["action"] != "delayed" || f[0]["final-recipient"] != "rfc822; "+carol ||
		f[0]["diagnostic-code"] != "smtp; 451 4.3.0 try later" || f[0]["will-retry-until"] == "" {
		t.Errorf("delayed notice status fields %v", f)
	}

	und := e.notices(alice, "Undeliverable: stubborn")
	if len(und) != 1 {
		t.Fatalf("%d Undeliverable notices, want one", len(und))
	}
	u := und[0]
	if !slices.Equal(u.parts, []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}) {
		t.Errorf("undeliverable parts %q", u.parts)
	}
	f = statusFields(t, u.status)
	if len(f) != 1 || f[0]["action"] != "failed" || f[0]["status"] != "4.3.0" || f[0]["final-recipient"] != "rfc822; "+carol ||
		f[0]["diagnostic-code"] != "smtp; 451 4.3.0 try later" {
		t.Errorf("undeliverable status fields %v", f)
	}
	if !strings.Contains(u.headers, "Subject: stubborn") || !strings.Contains(u.headers, "Message-ID: "+en.MessageID) {
		t.Errorf("original header missing from the notice:\n%s", u.headers)
	}
	if !strings.Contains(u.text, carol) || !strings.Contains(u.text, "451 4.3.0 try later") {
		t.Errorf("readable part does not name the recipient and the reply:\n%s", u.text)
	}
	if got := e.metric("pochta_relay_attempts_total", "result", "temporary"); got != 4 {
		t.Errorf("attempts{temporary} = %v, want 4", got)
	}
	if got := e.metric("pochta_queue_entries", "status", "failed"); got != 1 {
		t.Errorf("entries{failed} = %v", got)
	}
}

func TestOnlyPendingRecipientsAreRetried(t *testing.T) {
	e := newEnv(t, nil)
	const ok, perm, temp = "ok@remote.test", "perm@remote.test", "temp@remote.test"
	e.relay.set(func(r *testRelay) {
		r.rcptReply[perm] = always(reply(550, smtp.EnhancedCode{5, 1, 1}, "no such user"))
		r.rcptReply[temp] = failFirst(1, reply(452, smtp.EnhancedCode{4, 2, 2}, "mailbox full"))
	})
	e.start()
	id := e.send(alice, []string{ok, perm, temp}, "partial")
	en := e.waitEntry(id, "settled", func(en *storage.QueueEntry) bool { return len(en.Pending()) == 0 })

	// Nobody pending and one failed: failed, though two got it.
	if en.Status != storage.QueueFailed || en.Attempts != 2 || en.Sent {
		t.Errorf("entry status %s attempts %d sent %v", en.Status, en.Attempts, en.Sent)
	}
	want := map[string]string{ok: storage.RcptSent, perm: storage.RcptFailed, temp: storage.RcptSent}
	for _, r := range en.Recipients {
		if r.State != want[r.Address] {
			t.Errorf("recipient %s is %s, want %s", r.Address, r.State, want[r.Address])
		}
	}
	txs := e.relay.delivered()
	if len(txs) != 2 || !slices.Equal(txs[0].rcpts, []string{ok}) || !slices.Equal(txs[1].tried, []string{temp}) {
		t.Fatalf("relay transactions %+v: want ok delivered first, then only temp tried", txs)
	}
	e.waitSubjects(alice, "Undeliverable: partial", 1)
	und := e.notices(alice, "Undeliverable: partial")
	f := statusFields(t, und[0].status)
	if len(und) != 1 || len(f) != 1 || f[0]["final-recipient"] != "rfc822; "+perm || f[0]["status"] != "5.1.1" ||
		f[0]["diagnostic-code"] != "smtp; 550 5.1.1 no such user" {
		t.Errorf("%d notices, status fields %v: want one naming only %s", len(und), f, perm)
	}
	if n := e.subjects(alice, "Delayed:"); len(n) != 0 {
		t.Errorf("Delayed notices with delay_notice_after = 0: %q", n)
	}
}

func TestAPermanentFailureStaysFinalAcrossARestart(t *testing.T) {
	clock := testclock.New(time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, func(o *Options) {
		o.RetryMin, o.RetryMax, o.Now = time.Hour, time.Hour, clock.Now
	})
	const perm, temp = "perm@remote.test", "temp@remote.test"
	e.relay.set(func(r *testRelay) {
		r.rcptReply[perm] = always(reply(550, smtp.EnhancedCode{5, 1, 1}, "no such user"))
		r.rcptReply[temp] = failFirst(1, reply(451, smtp.EnhancedCode{4, 4, 5}, "busy"))
	})
	e.start()
	id := e.send(alice, []string{perm, temp}, "across")
	en := e.waitEntry(id, "first attempt", func(en *storage.QueueEntry) bool { return en.Attempts == 1 })
	if !en.NextAttempt.Equal(clock.Now().Add(time.Hour)) || len(en.Pending()) != 1 {
		t.Fatalf("after attempt 1: next %v pending %q", en.NextAttempt, en.Pending())
	}
	e.waitSubjects(alice, "Undeliverable: across", 1)

	e.restart()
	clock.Set(clock.Now().Add(2 * time.Hour))
	e.q.Wake()
	en = e.waitEntry(id, "settled", func(en *storage.QueueEntry) bool { return len(en.Pending()) == 0 })
	if en.Status != storage.QueueFailed || en.Attempts != 2 {
		t.Errorf("entry status %s attempts %d", en.Status, en.Attempts)
	}
	txs := e.relay.transactions()
	if len(txs) != 2 || !slices.Equal(txs[1].tried, []string{temp}) {
		t.Errorf("relay transactions %+v: the second, after the restart, must try only %s", txs, temp)
	}
	if n := e.subjects(alice, "Undeliverable: across"); len(n) != 1 {
		t.Errorf("%d Undeliverable notices, want the one written with the failure", len(n))
	}
}

func TestUnreachableRelayPausesTheQueueWithoutSpendingAttempts(t *testing.T) {
	e := newEnv(t, nil)
	e.relay.stop()
	e.start()
	ids := []uint64{e.send(alice, []string{carol}, "while down 1"), e.send(bob, []string{dave}, "while down 2")}
	e.waitSubjects(admin, SubjectRelayDown, 1)
	waitFor(t, "relay_up 0", func() bool { return e.metric("pochta_relay_up") == 0 }, nil)

	// The queue keeps probing: let the port answer by hanging up, and count.
	e.relay.start()
	e.relay.set(func(r *testRelay) { r.mode = "hangup" })
	waitFor(t, "three probes", func() bool { return e.relay.hangupCount() >= 3 }, nil)
	for _, id := range ids {
		// An entry started before the queue paused says why it waits; one
		// that was not started yet has no error.
		if en := e.entry(id); en.Attempts != 0 || en.Status != storage.QueueOutbox || (en.Error != "" && !strings.Contains(en.Error, "cannot reach the relay")) {
			t.Errorf("entry %d while the relay is down: attempts %d status %s error %q", id, en.Attempts, en.Status, en.Error)
		}
	}
	if n := len(e.subjects(admin, SubjectRelayDown)); n != 1 {
		t.Errorf("%d down alerts, want one", n)
	}
	if got := e.metric("pochta_relay_attempts_total", "result", "sent"); got != 0 {
		t.Errorf("attempts{sent} = %v while down", got)
	}
	if got := e.metric("pochta_relay_attempts_total", "result", "network"); got < 1 {
		t.Errorf("attempts{network} = %v", got)
	}

	e.relay.set(func(r *testRelay) { r.mode = "accept" })
	for _, id := range ids {
		if en := e.waitEntry(id, "sent", statusIs(storage.QueueSent)); en.Attempts != 1 {
			t.Errorf("entry %d sent after %d attempts, want 1", id, en.Attempts)
		}
	}
	e.waitSubjects(admin, SubjectRelayBack, 1)
	if down, back := e.subjects(admin, SubjectRelayDown), e.subjects(admin, SubjectRelayBack); len(down) != 1 || len(back) != 1 {
		t.Errorf("alerts down %q back %q: want one of each", down, back)
	}
	if got := e.metric("pochta_relay_up"); got != 1 {
		t.Errorf("relay_up = %v after recovery", got)
	}
}

func TestRestartResumesWaitingEntriesAndNeverResendsSentOnes(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	sent := e.send(alice, []string{carol}, "before restart")
	e.waitEntry(sent, "sent", statusIs(storage.QueueSent))

	e.relay.stop()
	waiting := e.send(alice, []string{dave}, "across restart")
	e.waitSubjects(admin, SubjectRelayDown, 1)

	e.restart()
	e.relay.start()
	e.relay.set(func(r *testRelay) { r.mode = "hangup" })
	waitFor(t, "probes after the restart", func() bool { return e.relay.hangupCount() >= 2 }, nil)
	if n := len(e.subjects(admin, SubjectRelayDown)); n != 1 {
		t.Errorf("%d down alerts after a restart with the relay still down, want 1", n)
	}
	if en := e.entry(waiting); en.Attempts != 0 || en.Status != storage.QueueOutbox {
		t.Errorf("waiting entry after restart: attempts %d status %s", en.Attempts, en.Status)
	}

	e.relay.set(func(r *testRelay) { r.mode = "accept" })
	if en := e.waitEntry(waiting, "sent", statusIs(storage.QueueSent)); en.Attempts != 1 {
		t.Errorf("entry sent after %d attempts, want 1", en.Attempts)
	}
	e.waitSubjects(admin, SubjectRelayBack, 1)
	var got []string
	for _, tx := range e.relay.delivered() {
		got = append(got, tx.rcpts...)
	}
	if !slices.Equal(got, []string{carol, dave}) {
		t.Errorf("relay got mail for %q: want each entry exactly once", got)
	}
}

func TestRefusedLoginIsASettingsProblem(t *testing.T) {
	e := newEnv(t, nil)
	e.relay.set(func(r *testRelay) {
		r.authErr = reply(535, smtp.EnhancedCode{5, 7, 8}, "authentication credentials invalid")
	})
	e.start()
	id := e.send(alice, []string{carol}, "login refused")
	e.waitSubjects(admin, SubjectRelaySettings, 1)
	waitFor(t, "more login attempts by the probe", func() bool { return e.relay.authCount() >= 3 }, nil)
	en := e.entry(id)
	if en.Attempts != 0 || en.Status != storage.QueueOutbox || !strings.Contains(en.Error, "535 5.7.8 authentication credentials invalid") {
		t.Errorf("entry: attempts %d status %s error %q", en.Attempts, en.Status, en.Error)
	}
	if n := len(e.subjects(admin, SubjectRelaySettings)); n != 1 {
		t.Errorf("%d settings alerts, want 1", n)
	}
	if got := e.metric("pochta_relay_up"); got != 0 {
		t.Errorf("relay_up = %v", got)
	}

	e.relay.set(func(r *testRelay) { r.authErr = nil })
	e.waitEntry(id, "sent", statusIs(storage.QueueSent))
	e.waitSubjects(admin, SubjectRelayBack, 1)
	if txs := e.relay.delivered(); len(txs) != 1 || txs[0].authed != relayUser {
		t.Errorf("relay transactions %+v", txs)
	}
}

func TestTLSProblemsAreSettingsProblems(t *testing.T) {
	for _, tc := range []struct {
		name, mode, want string
	}{
		{"implicit TLS to a plain relay", TLSImplicit, "TLS handshake"},
		{"STARTTLS to a relay that does not offer it", TLSStartTLS, "does not offer STARTTLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.RelayTLS = tc.mode })
			e.start()
			id := e.send(alice, []string{carol}, "tls")
			e.waitSubjects(admin, SubjectRelaySettings, 1)
			if en := e.entry(id); en.Attempts != 0 || !strings.Contains(en.Error, tc.want) {
				t.Errorf("entry: attempts %d error %q, want %q", en.Attempts, en.Error, tc.want)
			}
			if n := len(e.relay.delivered()); n != 0 {
				t.Errorf("relay got %d messages", n)
			}
		})
	}
}

func TestRelaysOverSTARTTLSAndImplicitTLS(t *testing.T) {
	for _, mode := range []string{TLSStartTLS, TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			serverTLS, pool := selfSigned(t)
			e := newEnv(t, nil)
			e.relay.stop()
			e.relay = newTestRelay(t, func(r *testRelay) {
				r.tlsCfg, r.implicit = serverTLS, mode == TLSImplicit
			})
			e.opts.Relay, e.opts.RelayTLS = e.relay.addr, mode
			e.opts.TLSConfig = &tls.Config{RootCAs: pool}
			e.start()
			id := e.send(alice, []string{carol}, "encrypted")
			e.waitEntry(id, "sent", statusIs(storage.QueueSent))
			if txs := e.relay.delivered(); len(txs) != 1 || !txs[0].tls || txs[0].authed != relayUser {
				t.Errorf("relay transactions %+v: want one over TLS, logged in", txs)
			}
		})
	}
}

func TestDailyLimitsHoldMailUntilTheNextDay(t *testing.T) {
	zone := time.FixedZone("UTC+3", 3*3600)
	clock := testclock.New(time.Date(2030, 1, 1, 22, 0, 0, 0, zone))
	e := newEnv(t, func(o *Options) {
		o.SystemLimit, o.UserLimit = 3, 1
		o.Location, o.Now = zone, clock.Now
		o.Concurrency = 1 // held entries go out in ID order the next day
	})
	e.start()
	midnight := time.Date(2030, 1, 2, 0, 0, 0, 0, zone)
	held := func(id uint64, until time.Time) {
		t.Helper()
		e.waitEntry(id, "held until "+until.String(), func(en *storage.QueueEntry) bool {
			return en.Status == storage.QueueHeld && en.HeldUntil.Equal(until)
		})
	}
	sent := func(id uint64) {
		t.Helper()
		e.waitEntry(id, "sent", statusIs(storage.QueueSent))
	}

	a1 := e.send(alice, []string{carol}, "a1")
	sent(a1)
	a2 := e.send(alice, []string{carol}, "a2")
	held(a2, midnight)
	e.waitSubjects(alice, SubjectUserLimit, 1)
	b1 := e.send(bob, []string{carol}, "b1")
	sent(b1)
	s1 := e.sendSystem("cron@example.test", []string{carol}, "s1") // system mail: no user limit
	sent(s1)
	b2 := e.send(bob, []string{carol}, "b2")
	held(b2, midnight) // the system limit (3) is reached
	e.waitSubjects(admin, SubjectSystemLimit, 1)
	a3 := e.send(alice, []string{carol}, "a3")
	held(a3, midnight)
	// The counter moves just after the entry is held.
	waitFor(t, "held{user} = 1 and held{system} = 2 (a3 is over both limits; the system limit is checked first)", func() bool {
		return e.metric("pochta_queue_held_total", "limit", "user") == 1 && e.metric("pochta_queue_held_total", "limit", "system") == 2
	}, func() string {
		return fmt.Sprint(e.metric("pochta_queue_held_total", "limit", "user"), e.metric("pochta_queue_held_total", "limit", "system"))
	})

	// Counts survive a restart.
	e.restart()
	a4 := e.send(alice, []string{carol}, "a4")
	held(a4, midnight)
	if n, m := len(e.subjects(alice, SubjectUserLimit)), len(e.subjects(admin, SubjectSystemLimit)); n != 1 || m != 1 {
		t.Errorf("alerts on day one: user %d, system %d; want one each", n, m)
	}
	if got := len(e.subjects(bob, SubjectUserLimit)); got != 0 {
		t.Errorf("bob got %d user-limit alerts; his mail was held by the system limit", got)
	}

	// The next day a2 and b2 go out; a3 and a4 are over alice's new limit.
	clock.Set(midnight.Add(time.Second))
	e.q.Wake()
	sent(a2)
	sent(b2)
	held(a3, midnight.AddDate(0, 0, 1))
	held(a4, midnight.AddDate(0, 0, 1))
	e.waitSubjects(alice, SubjectUserLimit, 2)
	sys, usr, err := e.store.QueueDayCount(context.Background(), "2030-01-02", alice)
	if err != nil || sys != 2 || usr != 1 {
		t.Errorf("day two counts: system %d alice %d (%v), want 2 and 1", sys, usr, err)
	}
	if got := len(e.relay.delivered()); got != 5 {
		t.Errorf("relay got %d messages, want 5", got)
	}
}

func TestSystemMailNoticesGoToTheAdmins(t *testing.T) {
	e := newEnv(t, nil)
	e.relay.set(func(r *testRelay) {
		r.rcptReply[carol] = always(reply(550, smtp.EnhancedCode{5, 1, 1}, "no such user"))
	})
	e.start()
	id := e.sendSystem("", []string{carol}, "nightly report")
	e.waitEntry(id, "failed", statusIs(storage.QueueFailed))
	e.waitSubjects(admin, "Undeliverable: nightly report", 1)
	if txs := e.relay.transactions(); len(txs) != 1 || txs[0].from != "" {
		t.Errorf("relay transactions %+v: want MAIL FROM:<>", txs)
	}
	for _, u := range []string{alice, bob} {
		if n := e.subjects(u, "Undeliverable:"); len(n) != 0 {
			t.Errorf("%s got %q", u, n)
		}
	}
}

func TestMisbehavingRelayIsATemporaryFailureWithAClearError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(r *testRelay)
		want  string
	}{
		{"stalls after DATA", func(r *testRelay) { r.stallData = true }, "did not answer in time at end of DATA"},
		{"drops the connection in DATA", func(r *testRelay) { r.closeData = true }, "connection to the relay lost"},
		{"greets with garbage", func(r *testRelay) { r.mode = "garbage" }, "did not greet in SMTP"},
		{"refuses MAIL for now", func(r *testRelay) { r.mailErr = reply(451, smtp.EnhancedCode{4, 7, 1}, "slow down") }, "451 4.7.1 slow down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.MaxAttempts = 1
				o.CommandTimeout, o.DataTimeout = 300*time.Millisecond, 300*time.Millisecond
			})
			e.relay.set(tc.setup)
			e.start()
			id := e.send(alice, []string{carol}, "bad relay")
			en := e.waitEntry(id, "failed", statusIs(storage.QueueFailed))
			if en.Attempts != 1 || !strings.Contains(en.Error, tc.want) {
				t.Errorf("entry: attempts %d error %q, want %q", en.Attempts, en.Error, tc.want)
			}
			if r := en.Recipients[0]; !strings.HasPrefix(r.Status, "4.") {
				t.Errorf("recipient status %q: want a temporary (4.x.x) status", r.Status)
			}
			e.waitSubjects(alice, "Undeliverable: bad relay", 1)
			if n := e.subjects(admin, "Mail relay"); len(n) != 0 {
				t.Errorf("admin alerts %q: a misbehaving relay is not a down relay", n)
			}
			done := make(chan error, 1)
			go func() { done <- e.q.Close() }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Close hangs: a worker is stuck")
			}
		})
	}
}

func TestNothingInAMessageReachesTheCommandStream(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	evil := ".\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<evil@remote.test>\r\nDATA\r\nspam\r\n.\r\n"
	id := e.deliver(&storage.Delivery{Sender: alice, Source: storage.SourceUser}, alice, []string{carol}, "smuggling",
		"X-Note: RCPT TO:<evil@remote.test>\r\n\r\n"+evil)
	en := e.waitEntry(id, "sent", statusIs(storage.QueueSent))
	txs := e.relay.transactions()
	if len(txs) != 1 || !slices.Equal(txs[0].tried, []string{carol}) {
		t.Fatalf("relay transactions %+v: want one, to carol only", txs)
	}
	if string(txs[0].data) != en.Body || !strings.Contains(string(txs[0].data), evil) {
		t.Errorf("relay got\n%q\nwant the body intact\n%q", txs[0].data, en.Body)
	}

	// A stored address with CR LF (say, a damaged record) is refused before
	// it reaches RCPT.
	out := e.q.relay.Load().send(context.Background(), alice, []string{"x@remote.test>\r\nRCPT TO:<evil@remote.test", dave}, stringMessage("Subject: x\r\n\r\nx\r\n"))
	bad := out.rcpts["x@remote.test>\r\nRCPT TO:<evil@remote.test"]
	if bad.kind != rcptPermanent || out.rcpts[dave].kind != rcptSent {
		t.Errorf("outcome %+v: want the bad address refused, dave sent", out)
	}
	for _, tx := range e.relay.transactions() {
		if slices.ContainsFunc(tx.tried, func(a string) bool { return strings.Contains(a, "evil") }) {
			t.Errorf("the relay saw RCPT %q", tx.tried)
		}
	}
}

func TestResendPutsAFailedEntryBackIntoTheOutbox(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxAttempts = 1 })
	e.relay.set(func(r *testRelay) {
		r.rcptReply[carol] = failFirst(1, reply(550, smtp.EnhancedCode{5, 7, 1}, "not now"))
	})
	e.start()
	id := e.send(alice, []string{carol}, "second chance")
	e.waitEntry(id, "failed", statusIs(storage.QueueFailed))
	if _, err := e.store.ResendQueueEntry(context.Background(), id, time.Now()); err != nil {
		t.Fatal(err)
	}
	en := e.waitEntry(id, "sent", statusIs(storage.QueueSent))
	if en.Attempts != 1 {
		t.Errorf("attempts after resend and success: %d, want 1 (reset)", en.Attempts)
	}
	err := e.store.DeleteQueueEntry(context.Background(), 999)
	if !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "999") {
		t.Errorf("delete of an unknown id: %v", err)
	}
}

func TestDefaultRetryScheduleMatchesTheREADME(t *testing.T) {
	q := &Queue{}
	q.opts.Store(&Options{RetryMin: DefaultRetryMin, RetryMax: DefaultRetryMax, MaxAttempts: DefaultMaxAttempts})
	var minutes []string
	var total time.Duration
	for n := 1; n < DefaultMaxAttempts; n++ {
		minutes = append(minutes, strconv.Itoa(int(q.backoff(n).Minutes())))
		total += q.backoff(n)
	}
	want := "5, 10, 20, 40, 80, 160, 240, 240, 240"
	if got := strings.Join(minutes, ", "); got != want {
		t.Fatalf("default gaps %s minutes, want %s", got, want)
	}
	if total != 1035*time.Minute {
		t.Errorf("10 attempts span %v, want 17h15m", total)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not spell out the retry schedule %q", want)
	}
}

// stringMessage is a relayMessage held in memory, for calling send directly.
func stringMessage(s string) relayMessage {
	return relayMessage{size: int64(len(s)), writeTo: func(w io.Writer) (int64, error) {
		n, err := io.WriteString(w, s)
		return int64(n), err
	}}
}

// A big message (its body shared with the Sent copy in the store) reaches
// the relay byte for byte, streamed from the store.
func TestRelaysABigMessageStreamedFromTheStore(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	body := strings.Repeat(strings.Repeat("z", 76)+"\r\n", (1<<20)/78)
	raw := "From: " + alice + "\r\nTo: carol@remote.test\r\nSubject: big\r\nMessage-ID: <big@example.test>\r\n\r\n" + body
	res, err := e.store.Deliver(context.Background(), &storage.Delivery{
		Sender: alice, Source: storage.SourceUser, SentCopy: &storage.NewMessage{Raw: []byte(raw)},
		From: alice, External: []string{"carol@remote.test"}, RelayCopy: &storage.NewMessage{Raw: []byte(raw)},
		MessageID: "<big@example.test>", Subject: "big",
	})
	if err != nil {
		t.Fatal(err)
	}
	e.waitEntry(res.QueueID, "sent", statusIs(storage.QueueSent))
	txs := e.relay.delivered()
	if len(txs) != 1 {
		t.Fatalf("relay got %d messages, want 1", len(txs))
	}
	if string(txs[0].data) != raw {
		t.Fatalf("relay got %d bytes, want the %d-byte message as queued", len(txs[0].data), len(raw))
	}
}
