package queue

import (
	"strings"
	"testing"

	"github.com/pochta/pochta/storage"
)

func TestReconfigurePointsAWaitingQueueAtTheRightRelay(t *testing.T) {
	// The daemon starts with a wrong relay address (nothing listens
	// there); the operator fixes the config and reloads: the waiting entry
	// goes out through the new relay without a restart.
	e := newEnv(t, nil)
	good := e.opts.Relay
	e.relay.stop()
	e.start()
	id := e.send(alice, []string{carol}, "after the reload")
	e.waitSubjects(admin, SubjectRelayDown, 1)

	e.relay.start()
	o := e.opts
	o.Relay = good
	o.UserLimit = 5
	if err := e.q.Reconfigure(o); err != nil {
		t.Fatal(err)
	}
	if en := e.waitEntry(id, "sent", statusIs(storage.QueueSent)); en.Attempts != 1 {
		t.Errorf("sent after %d attempts, want 1", en.Attempts)
	}
	if got := e.q.opt().UserLimit; got != 5 {
		t.Errorf("user limit after reload = %d, want 5", got)
	}

	o.RelayTLS = "smoke-signals"
	if err := e.q.Reconfigure(o); err == nil || !strings.Contains(err.Error(), "smoke-signals") {
		t.Fatalf("a bad relay_tls was accepted: %v", err)
	}
	if got := e.q.opt().RelayTLS; got != TLSNone {
		t.Errorf("a refused reload changed relay_tls to %q", got)
	}
}
