package queue

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pochta/pochta/internal/testclock"
	"github.com/pochta/pochta/metrics"
	"github.com/pochta/pochta/storage"
)

// flap takes the relay down (it hangs up before its greeting) until the
// queue notices on an attempt, then lets it answer until the queue has
// delivered that attempt's entry.
func (e *env) flap(n int) {
	e.t.Helper()
	e.relay.set(func(r *testRelay) { r.mode = "hangup" })
	id := e.send(alice, []string{carol}, fmt.Sprintf("flap %d", n))
	waitFor(e.t, fmt.Sprintf("flap %d: relay_up 0", n), func() bool { return e.metric("pochta_relay_up") == 0 }, nil)
	e.relay.set(func(r *testRelay) { r.mode = "accept" })
	e.waitEntry(id, fmt.Sprintf("flap %d: sent", n), statusIs(storage.QueueSent))
	waitFor(e.t, fmt.Sprintf("flap %d: relay_up 1", n), func() bool { return e.metric("pochta_relay_up") == 1 }, nil)
}

func TestAFlappingRelayAlertsTheAdminsOncePerInterval(t *testing.T) {
	clock := testclock.New(time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC))
	mreg := prometheus.NewRegistry()
	counts := metrics.New(mreg, "")
	e := newEnv(t, func(o *Options) {
		o.Now, o.RelayAlertInterval, o.Metrics = clock.Now, time.Hour, counts.Queue()
	})
	suppressed := func(alert string) float64 {
		saved := e.reg
		e.reg = mreg
		defer func() { e.reg = saved }()
		return e.metric("pochta_relay_alerts_suppressed_total", "alert", alert)
	}
	e.start()

	for i := 1; i <= 6; i++ {
		e.flap(i)
		clock.Advance(5 * time.Minute)
	}
	waitFor(t, "5 suppressed back-online alerts", func() bool { return suppressed("back") == 5 }, nil)
	if down, back := e.subjects(admin, SubjectRelayDown), e.subjects(admin, SubjectRelayBack); len(down) != 1 || len(back) != 1 {
		t.Errorf("6 flaps within the hour mailed down %q and back %q; want one of each", down, back)
	}
	if got := suppressed("down"); got != 5 {
		t.Errorf("suppressed down alerts = %v, want 5", got)
	}

	// An hour after the first alert, the next flap is mailed again.
	clock.Advance(time.Hour)
	e.flap(7)
	e.waitSubjects(admin, SubjectRelayBack, 2)
	if down := e.subjects(admin, SubjectRelayDown); len(down) != 2 {
		t.Errorf("a flap past the interval mailed %d down alerts in all, want 2", len(down))
	}

	// Down again within the interval, and it stays down: not mailed now,
	// but once the interval is over the admins are told.
	clock.Advance(10 * time.Minute)
	e.relay.set(func(r *testRelay) { r.mode = "hangup" })
	id := e.send(alice, []string{carol}, "stays down")
	waitFor(t, "down again suppressed", func() bool { return suppressed("down") == 6 }, nil)
	if down := e.subjects(admin, SubjectRelayDown); len(down) != 2 {
		t.Fatalf("the quiet interval mailed a down alert: %d in all, want 2", len(down))
	}
	clock.Advance(time.Hour)
	e.waitSubjects(admin, SubjectRelayDown, 3)
	e.relay.set(func(r *testRelay) { r.mode = "accept" })
	e.waitEntry(id, "sent", statusIs(storage.QueueSent))
	e.waitSubjects(admin, SubjectRelayBack, 3)
}
