package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRemovedQueueEntriesAreCountedByStatus(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := New(reg, "").Queue()
	q.QueueEntriesRemoved("sent", 3)
	q.QueueEntriesRemoved("failed", 0)
	q.QueueEntriesRemoved("failed", 2)
	if got := testutil.ToFloat64(q.entriesRemoved.WithLabelValues("sent")); got != 3 {
		t.Errorf("removed{sent} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(q.entriesRemoved.WithLabelValues("failed")); got != 2 {
		t.Errorf("removed{failed} = %v, want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, "pochta_queue_entries_removed_total"); err != nil || n != 2 {
		t.Errorf("gathered %d series (%v), want 2", n, err)
	}
	problems, err := testutil.GatherAndLint(reg, "pochta_queue_entries_removed_total")
	if err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
