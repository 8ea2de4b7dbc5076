package metrics

import "github.com/prometheus/client_golang/prometheus"

// Queue implements queue.Metrics: the counts of the outbound queue that
// are not its own (the queue registers its attempt and entry metrics
// itself).
type Queue struct {
	alertsSuppressed *prometheus.CounterVec
}

func newQueue(reg prometheus.Registerer) *Queue {
	q := &Queue{
		alertsSuppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_relay_alerts_suppressed_total",
			Help: "Relay down / back online changes not mailed to the admins because the pair was already sent within [email_queue] relay_alert_interval, by alert (down, back).",
		}, []string{"alert"}),
	}
	for _, a := range []string{"down", "back"} {
		q.alertsSuppressed.WithLabelValues(a)
	}
	reg.MustRegister(q.alertsSuppressed)
	return q
}

// Queue returns the counts the outbound queue makes.
func (m *Metrics) Queue() *Queue { return m.queue }

// RelayAlertSuppressed implements queue.Metrics; alert is "down" or "back".
func (q *Queue) RelayAlertSuppressed(alert string) {
	q.alertsSuppressed.WithLabelValues(alert).Inc()
}
