package monitoring

import (
	"bufio"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// families are the metrics the dashboard and alerts may use by exact name
// (SPEC.md "Metrics" and issue 5); pochta_process_* and go_* come from the
// process and Go collectors and are checked against them.
var families = []string{
	"pochta_smtp_connections_total",
	"pochta_smtp_messages_received_total",
	"pochta_smtp_messages_rejected_total",
	"pochta_smtp_bytes_received_total",
	"pochta_imap_sessions_open",
	"pochta_imap_commands_total",
	"pochta_local_deliveries_total",
	"pochta_queue_entries",
	"pochta_relay_attempts_total",
	"pochta_relay_up",
	"pochta_queue_held_total",
	"pochta_messages_expired_total",
	"pochta_auth_failures_total",
	"pochta_storage_file_size_bytes",
	"pochta_build_info",
}

// promqlWords are PromQL functions, aggregations and keywords: identifiers
// in a query that are not metric names.
var promqlWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`sum min max avg count stddev stdvar topk bottomk quantile count_values group
		by without on ignoring group_left group_right and or unless bool offset
		rate irate increase delta idelta deriv changes resets predict_linear histogram_quantile
		abs ceil floor round clamp clamp_min clamp_max exp ln log2 log10 sqrt time timestamp vector scalar
		absent absent_over_time label_replace label_join sort sort_desc
		avg_over_time min_over_time max_over_time sum_over_time count_over_time last_over_time
		label_values inf nan`) {
		promqlWords[w] = true
	}
}

var (
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	matchers   = regexp.MustCompile(`\{[^}]*\}`)
	ranges     = regexp.MustCompile(`\[[^\]]*\]`)
	grouping   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	variables  = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
	identifier = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	durations  = regexp.MustCompile(`\b\d+(?:ms|[smhdwy])\b`)
)

// metricNames returns the metric names a PromQL expression selects.
func metricNames(expr string) []string {
	e := variables.ReplaceAllString(expr, " ")
	e = quoted.ReplaceAllString(e, " ")
	e = matchers.ReplaceAllString(e, " ")
	e = ranges.ReplaceAllString(e, " ")
	e = grouping.ReplaceAllString(e, " ")
	e = durations.ReplaceAllString(e, " ")
	var names []string
	for _, id := range identifier.FindAllString(e, -1) {
		if !promqlWords[strings.ToLower(id)] {
			names = append(names, id)
		}
	}
	return names
}

func TestMetricNamesFindsSelectorsNotFunctionsOrLabels(t *testing.T) {
	got := metricNames(`sum by (reason) (rate(pochta_smtp_messages_rejected_total{instance=~"$instance",x="go_y"}[$__rate_interval])) / on (job) go_goroutines offset 1h > 0`)
	if want := []string{"pochta_smtp_messages_rejected_total", "go_goroutines"}; !slices.Equal(got, want) {
		t.Errorf("metricNames = %v, want %v", got, want)
	}
}

// collectorNames are the go_* and pochta_process_* names the daemon's Go
// and process collectors export (cmd/pochta/serve.go registers them the
// same way).
func collectorNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "pochta"}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

// checkNames reports every name in expr that is neither a listed family nor
// exported by the collectors (nor in extra).
func checkNames(t *testing.T, where, expr string, collected map[string]bool, extra ...string) []string {
	t.Helper()
	names := metricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: %q selects no metric", where, expr)
	}
	for _, n := range names {
		switch {
		case slices.Contains(families, n), slices.Contains(extra, n):
		case strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "pochta_process_"):
			if !collected[n] {
				t.Errorf("%s: %s is not exported by the Go or process collector", where, n)
			}
		default:
			t.Errorf("%s: %s is not one of pochta's metrics", where, n)
		}
	}
	return names
}

type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("pochta-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("pochta-dashboard.json is not JSON: %v", err)
	}
	return d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

const dsRef = "${DS_PROMETHEUS}"

func TestDashboardQueriesNameOnlyPochtaMetrics(t *testing.T) {
	d := loadDashboard(t)
	collected := collectorNames(t)
	used := map[string]bool{}
	queries := 0
	for _, p := range allPanels(d.Panels) {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			for _, n := range checkNames(t, "panel "+p.Title, tg.Expr, collected) {
				used[n] = true
			}
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for _, f := range families {
		if !used[f] {
			t.Errorf("no panel shows %s", f)
		}
	}
	for _, prefix := range []string{"go_", "pochta_process_"} {
		found := false
		for n := range used {
			found = found || strings.HasPrefix(n, prefix)
		}
		if !found {
			t.Errorf("no panel shows a %s* metric", prefix)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("variable %s: query: %v", v.Name, err)
				continue
			}
			// label_values(METRIC, LABEL): only the first argument is a metric.
			expr := q.Query
			if m := regexp.MustCompile(`^label_values\(([^,]+),`).FindStringSubmatch(expr); m != nil {
				expr = m[1]
			}
			checkNames(t, "variable "+v.Name, expr, collected)
		}
	}
}

func TestDashboardImportsWithAPrometheusInput(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q title %q: both are needed for import", d.UID, d.Title)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one prometheus datasource DS_PROMETHEUS", d.Inputs)
	}
	// A provisioned dashboard gets no __inputs substitution: the variable
	// of the same name resolves ${DS_PROMETHEUS} then.
	hasVar := false
	for _, v := range d.Templating.List {
		if v.Name == "DS_PROMETHEUS" && v.Type == "datasource" {
			hasVar = true
		}
		if v.Datasource != nil && v.Datasource.UID != dsRef {
			t.Errorf("variable %s uses data source %q, want %s", v.Name, v.Datasource.UID, dsRef)
		}
	}
	if !hasVar {
		t.Error("no datasource variable DS_PROMETHEUS")
	}
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
			t.Errorf("panel %q: gridPos %+v does not fit the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != dsRef || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want prometheus %s", p.Title, p.Datasource, dsRef)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && tg.Datasource.UID != dsRef {
				t.Errorf("panel %q query %s: datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
}

// ruleExprs reads the alert names and expressions of a rules file written
// one "expr:" per line (promtool checks the YAML itself).
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("pochta.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules := map[string]string{}
	alert := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "- alert:"); ok {
			alert = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "expr:"); ok && alert != "" {
			rules[alert] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rules
}

func TestAlertRulesCoverTheFourEventsWithPochtaMetrics(t *testing.T) {
	rules := ruleExprs(t)
	collected := collectorNames(t)
	want := map[string]string{
		"PochtaDown":                "up",
		"PochtaRelayDown":           "pochta_relay_up",
		"PochtaFailedEntriesRising": "pochta_queue_entries",
		"PochtaDailyLimitReached":   "pochta_queue_held_total",
	}
	if len(rules) != len(want) {
		t.Errorf("rules %v, want exactly %d alerts", rules, len(want))
	}
	for alert, metric := range want {
		expr, ok := rules[alert]
		if !ok {
			t.Errorf("no alert %s", alert)
			continue
		}
		if names := checkNames(t, "alert "+alert, expr, collected, "up"); !slices.Contains(names, metric) {
			t.Errorf("alert %s: %q does not use %s", alert, expr, metric)
		}
	}
}

// TestEveryPochtaMetricIsDefinedInTheCode keeps the dashboard from drifting
// from the code: each pochta_ family it shows must be a name some package
// registers.
func TestEveryPochtaMetricIsDefinedInTheCode(t *testing.T) {
	defined := map[string]bool{}
	name := regexp.MustCompile(`"(pochta_[a-z0-9_]+)"`)
	err := filepath.WalkDir("..", func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (strings.HasPrefix(e.Name(), ".") && path != ".." || e.Name() == "testdata" || e.Name() == "monitoring") {
			return filepath.SkipDir
		}
		if e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllStringSubmatch(string(data), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !defined[f] {
			t.Errorf("%s is on the dashboard but no Go source outside tests defines it", f)
		}
	}
}

func TestREADMEListsEveryMetricFamily(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Monitoring\n")
	if !ok {
		t.Fatal("README.md has no \"## Monitoring\" section")
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	for _, f := range append(families, "pochta_process_", "go_") {
		if !strings.Contains(section, f) {
			t.Errorf("README's Monitoring section does not list %s", f)
		}
	}
}
