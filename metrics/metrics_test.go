package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCountsReachTheRegistryUnderPochtaNames(t *testing.T) {
	db := filepath.Join(t.TempDir(), "pochta.db")
	if err := os.WriteFile(db, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := New(reg, db)
	m.IMAP().SessionOpened()
	m.IMAP().SessionOpened()
	m.IMAP().SessionClosed()
	m.IMAP().Command("FETCH")
	m.IMAP().AuthFailed()
	m.SMTP().Connection("submission")
	m.SMTP().Received(1000, 2)
	m.SMTP().Rejected("no_such_user")
	m.SMTP().ConnectionRefused("per_address")
	m.IMAP().ConnectionRefused("total")
	m.SMTP().AuthThrottled()
	m.IMAP().CommandDelayed()

	if got := testutil.ToFloat64(m.imapOpen); got != 1 {
		t.Errorf("sessions open = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.localDeliveries); got != 2 {
		t.Errorf("local deliveries = %v, want 2", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "pochta_") {
			t.Errorf("metric %s does not begin with pochta_", f.GetName())
		}
		seen[f.GetName()] = true
	}
	for _, name := range []string{"pochta_imap_commands_total", "pochta_smtp_bytes_received_total",
		"pochta_smtp_messages_rejected_total", "pochta_auth_failures_total", "pochta_storage_file_size_bytes",
		"pochta_connections_refused_total", "pochta_auth_throttled_total", "pochta_commands_delayed_total"} {
		if !seen[name] {
			t.Errorf("%s not gathered", name)
		}
	}
	if got := testutil.ToFloat64(m.authFailures.WithLabelValues("imap")); got != 1 {
		t.Errorf("imap auth failures = %v", got)
	}
	for _, c := range []struct {
		name string
		got  prometheus.Collector
		want float64
	}{
		{"smtp per_address refusals", m.connectionsRefused.WithLabelValues("smtp", "per_address"), 1},
		{"imap total refusals", m.connectionsRefused.WithLabelValues("imap", "total"), 1},
		{"smtp throttled logins", m.authThrottled.WithLabelValues("smtp"), 1},
		{"imap throttled logins", m.authThrottled.WithLabelValues("imap"), 0},
		{"imap delayed commands", m.commandsDelayed.WithLabelValues("imap"), 1},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
}
