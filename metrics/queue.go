package metrics

import "github.com/prometheus/client_golang/prometheus"

// Queue implements queue.Metrics: the counts of the outbound queue that
// are not its own (the queue registers its attempt and entry metrics
// itself).
type Queue struct {
	alertsSuppressed *prometheus.CounterVec
	entriesRemoved   *prometheus.CounterVec
}

func newQueue(reg prometheus.Registerer) *Queue {
	q := &Queue{
		alertsSuppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_relay_alerts_suppressed_total",
			Help: "Relay down / back online changes not mailed to the admins because the pair was already sent within [email_queue] relay_alert_interval, by alert (down, back).",
		}, []string{"alert"}),
		entriesRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_queue_entries_removed_total",
			Help: "Sent and failed queue entries removed with their bodies because they outlived [email_queue] retention, by status (sent, failed).",
		}, []string{"status"}),
	}
	for _, s := range []string{"sent", "failed"} {
		q.entriesRemoved.WithLabelValues(s)
	}
	for _, a := range []string{"down", "back"} {
		q.alertsSuppressed.WithLabelValues(a)
	}
	reg.MustRegister(q.alertsSuppressed, q.entriesRemoved)
	return q
}

// Queue returns the counts the outbound queue makes.
func (m *Metrics) Queue() *Queue { return m.queue }

// RelayAlertSuppressed implements queue.Metrics; alert is "down" or "back".
func (q *Queue) RelayAlertSuppressed(alert string) {
	q.alertsSuppressed.WithLabelValues(alert).Inc()
}

// QueueEntriesRemoved implements queue.Metrics; status is "sent" or
// "failed".
func (q *Queue) QueueEntriesRemoved(status string, n int) {
	if n > 0 {
		q.entriesRemoved.WithLabelValues(status).Add(float64(n))
	}
}
