package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pochta/pochta/storage"
)

// queueMetrics are the queue's metrics (SPEC.md "Metrics"). Labels are
// fixed small sets: never an address.
type queueMetrics struct {
	attempts *prometheus.CounterVec
	relayUp  prometheus.Gauge
	held     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, store storage.Store) (*queueMetrics, error) {
	m := &queueMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_relay_attempts_total",
			Help: "Delivery attempts to the mail relay, by result: sent (everyone tried was accepted), temporary (someone left for a retry), permanent (refused for good), network (relay unreachable or refusing our login/TLS; not counted as an attempt of the entry).",
		}, []string{"result"}),
		relayUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pochta_relay_up",
			Help: "1 while the mail relay is usable, 0 while the queue is paused because it is not.",
		}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pochta_queue_held_total",
			Help: "Queue entries held until the next day by a daily limit, by limit (system, user).",
		}, []string{"limit"}),
	}
	for _, r := range []string{"sent", "temporary", "permanent", "network"} {
		m.attempts.WithLabelValues(r)
	}
	for _, l := range []string{storage.LimitSystem, storage.LimitUser} {
		m.held.WithLabelValues(l)
	}
	m.relayUp.Set(1)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.attempts, m.relayUp, m.held, &entriesCollector{store: store}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("queue: metrics: %w", err)
		}
	}
	return m, nil
}

// entriesCollector reports pochta_queue_entries from the store's counts at
// scrape time (one small read), so the gauge is right even for changes made
// by the CLI without a daemon.
type entriesCollector struct {
	store storage.Store
}

var entriesDesc = prometheus.NewDesc("pochta_queue_entries",
	"Queue entries by status (outbox, held, sent, failed).", []string{"status"}, nil)

func (c *entriesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- entriesDesc }

func (c *entriesCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.store.QueueCounts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(entriesDesc, err)
		return
	}
	for _, s := range storage.QueueStatuses {
		ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(counts.ByStatus(s)), s)
	}
}
