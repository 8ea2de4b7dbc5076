package smtpd

import (
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
)

// countingMetrics records what the server counts.
type countingMetrics struct {
	mu          sync.Mutex
	connections map[string]int
	received    int
	local       int
	rejected    map[string]int
	authFailed  int
	refused     map[string]int
	throttled   int
	delayed     int
}

func newCountingMetrics() *countingMetrics {
	return &countingMetrics{connections: map[string]int{}, rejected: map[string]int{}, refused: map[string]int{}}
}

func (m *countingMetrics) Connection(l string) { m.mu.Lock(); m.connections[l]++; m.mu.Unlock() }
func (m *countingMetrics) Received(_, local int) {
	m.mu.Lock()
	m.received++
	m.local += local
	m.mu.Unlock()
}
func (m *countingMetrics) Rejected(r string) { m.mu.Lock(); m.rejected[r]++; m.mu.Unlock() }
func (m *countingMetrics) AuthFailed()       { m.mu.Lock(); m.authFailed++; m.mu.Unlock() }
func (m *countingMetrics) Panic()            {}
func (m *countingMetrics) ConnectionRefused(r string) {
	m.mu.Lock()
	m.refused[r]++
	m.mu.Unlock()
}
func (m *countingMetrics) AuthThrottled()  { m.mu.Lock(); m.throttled++; m.mu.Unlock() }
func (m *countingMetrics) CommandDelayed() { m.mu.Lock(); m.delayed++; m.mu.Unlock() }

// snapshot returns a copy of the counts, safe to read while the server runs.
func (m *countingMetrics) snapshot() (refused map[string]int, throttled, delayed int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	refused = make(map[string]int, len(m.refused))
	for k, v := range m.refused {
		refused[k] = v
	}
	return refused, m.throttled, m.delayed
}

func TestMetricsCountDeliveriesRefusalsAndFailedLogins(t *testing.T) {
	m := newCountingMetrics()
	e := startServer(t, func(o *Options) { o.Metrics = m })

	c := e.login(t, alice)
	msg := "Subject: counted\r\n\r\nhello\r\n"
	if err := send(c, alice, []string{bob, carol}, msg); err != nil {
		t.Fatal(err)
	}
	if err := send(c, alice, []string{"nobody@" + testDomain}, msg); err == nil {
		t.Fatal("unknown recipient accepted")
	}
	_ = c.Reset()
	if err := send(c, bob, []string{carol}, msg); err == nil {
		t.Fatal("spoofed sender accepted")
	}

	bad := e.dialStartTLS(t)
	if err := bad.Auth(sasl.NewPlainClient("", alice, "wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.received != 1 || m.local != 2 {
		t.Errorf("received %d messages with %d local copies, want 1 and 2", m.received, m.local)
	}
	if m.rejected["no_such_user"] != 1 || m.rejected["spoofed_sender"] != 1 {
		t.Errorf("rejected = %v", m.rejected)
	}
	if m.authFailed != 1 {
		t.Errorf("auth failures = %d, want 1", m.authFailed)
	}
	if m.connections["submission"] != 2 {
		t.Errorf("connections = %v, want 2 on submission", m.connections)
	}
}
