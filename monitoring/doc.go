// Package monitoring holds what an operator loads into Grafana and
// Prometheus: pochta-dashboard.json (a dashboard importable as is, its data
// source the DS_PROMETHEUS input or variable) and pochta.rules.yml (the
// alerts PochtaDown, PochtaRelayDown, PochtaFailedEntriesRising and
// PochtaDailyLimitReached, unit-tested by pochta.rules.test.yml through
// `make check-monitoring`).
//
// There is no code here. The package's test holds the two files to the
// metric names pochta exports: every query names only known metrics, every
// metric family has a panel, and every pochta_ name is defined in the
// module's Go source, so a renamed metric fails `go test` instead of
// leaving a blank panel.
package monitoring
