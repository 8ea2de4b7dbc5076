package main

import (
	"encoding"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/expiry"
	"github.com/pochta/pochta/queue"
	"github.com/pochta/pochta/tlsconf"
	"github.com/pochta/pochta/trace"
)

// reloader applies a re-read configuration file to the running daemon
// (SIGHUP). What can change live is applied; the one log line of a reload
// names every changed key and, apart, the sections waiting for a restart.
// A file that does not load changes nothing: the daemon keeps running with
// what it has, and the line gives the first error.
type reloader struct {
	path    string         // "" for the built-in development config
	running *config.Config // the configuration in force
	level   *slog.LevelVar
	certs   *tlsconf.Manager
	queue   *queue.Queue // nil when [email_queue] is disabled
	sweeper *expiry.Sweeper
	trace   *trace.Tracer
	log     *slog.Logger

	mu sync.Mutex // guards running, which `pochta status` reads
}

// reload re-reads the file, applies it and logs one line: what changed
// ("configuration reloaded: email_limit.user_limit 2000→10, log.level
// info→debug"), or why nothing did (the first error, file:line:key).
func (r *reloader) reload() {
	if r.path == "" {
		r.log.Warn("reload refused, nothing changed: no configuration file (built-in development config)")
		return
	}
	next, err := config.Load(r.path)
	if err != nil {
		r.log.Error("reload refused, nothing changed: " + firstError(err))
		return
	}
	var errs []string
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(next.Log.Level)); err == nil {
		r.level.Set(lv)
	}
	if err := r.certs.Reload(); err != nil {
		errs = append(errs, fmt.Sprintf("TLS certificate: %v (the previous certificate stays in use)", err))
	}
	if r.queue != nil && next.EmailQueue.Enabled {
		o, err := queueOptions(next)
		if err == nil {
			err = r.queue.Reconfigure(o)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("queue: %v (the previous queue settings stay in force)", err))
		}
	}
	if err := r.sweeper.SetLifetime(next.MessageServer.MessageLifetime.Duration); err != nil {
		errs = append(errs, err.Error())
	}
	r.trace.Set(next.Log.TraceUsers)
	r.mu.Lock()
	old := r.running
	r.running = next
	r.mu.Unlock()

	line := "configuration reloaded: " + describeChanges(configChanges(old, next))
	if restart := restartNeeded(old, next); len(restart) > 0 {
		line += "; after a restart only: " + strings.Join(restart, ", ")
	}
	if len(errs) > 0 {
		r.log.Error(line + "; not applied: " + strings.Join(errs, "; "))
		return
	}
	r.log.Info(line)
}

// current is the configuration in force.
func (r *reloader) current() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// firstError is the first of the errors config.Load joined (each names
// file:line:key), with a count of the others.
func firstError(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%s (and %d more: pochta config check lists them)", lines[0], len(lines)-1)
}

// configChange is one key whose value differs between two configurations.
type configChange struct {
	key       string // "email_limit.user_limit"
	old, next string
}

// configChanges lists every key that differs, in the order of the schema,
// named by their TOML keys. Secrets are not shown, only that they changed.
func configChanges(old, next *config.Config) []configChange {
	var out []configChange
	var walk func(prefix string, a, b reflect.Value)
	walk = func(prefix string, a, b reflect.Value) {
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			av, bv := a.Field(i), b.Field(i)
			if av.Kind() == reflect.Struct && !isScalar(av) {
				walk(key, av, bv)
				continue
			}
			if reflect.DeepEqual(av.Interface(), bv.Interface()) {
				continue
			}
			c := configChange{key: key, old: showValue(av), next: showValue(bv)}
			if strings.Contains(tag, "password") {
				c.old, c.next = "", ""
			}
			out = append(out, c)
		}
	}
	walk("", reflect.ValueOf(*old), reflect.ValueOf(*next))
	return out
}

// isScalar is true for struct types that are one value in TOML (durations).
func isScalar(v reflect.Value) bool {
	_, ok := v.Interface().(encoding.TextMarshaler)
	return ok
}

func showValue(v reflect.Value) string {
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		b, err := m.MarshalText()
		if err == nil {
			return string(b)
		}
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return `""`
		}
		return v.String()
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = showValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

func describeChanges(changes []configChange) string {
	if len(changes) == 0 {
		return "nothing changed"
	}
	parts := make([]string, len(changes))
	for i, c := range changes {
		if c.old == "" && c.next == "" {
			parts[i] = c.key + " changed"
			continue
		}
		parts[i] = c.key + " " + c.old + "→" + c.next
	}
	return strings.Join(parts, ", ")
}

// restartNeeded names the changed settings that reload cannot apply.
func restartNeeded(old, next *config.Config) []string {
	var keys []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	diff("hostname", old.Hostname, next.Hostname)
	diff("domains", old.Domains, next.Domains)
	diff("data_dir", old.DataDir, next.DataDir)
	diff("[message_server] database", old.MessageServer.Database, next.MessageServer.Database)
	diff("[message_server] poll_interval", old.MessageServer.PollInterval, next.MessageServer.PollInterval)
	diff("[message_server] node", old.MessageServer.Node, next.MessageServer.Node)
	diff("[smtp]", old.SMTP, next.SMTP)
	diff("[imap]", old.IMAP, next.IMAP)
	diff("[tls] cert_file, key_file", old.TLS, next.TLS)
	diff("[email_queue] enabled", old.EmailQueue.Enabled, next.EmailQueue.Enabled)
	diff("[metrics]", old.Metrics, next.Metrics)
	diff("[http]", old.HTTP, next.HTTP)
	diff("[control]", old.Control, next.Control)
	diff("[log] format", old.Log.Format, next.Log.Format)
	diff("[limits]", old.Limits, next.Limits)
	return keys
}
