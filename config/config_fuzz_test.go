package config

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// splitErrors undoes errors.Join: Parse reports every problem at once.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkParseErrors holds what Parse promises about a failure: every problem
// is an *Error naming the file, each with a line inside the file unless it
// is about a key the file did not set.
func checkParseErrors(t *testing.T, name string, data []byte, err error) {
	t.Helper()
	lines := strings.Count(string(data), "\n") + 1
	for _, e := range splitErrors(err) {
		var ce *Error
		if !errors.As(e, &ce) || e != error(ce) {
			t.Fatalf("error %q (%T) is not a *config.Error", e, e)
		}
		if ce.File != name {
			t.Errorf("error %q names file %q, want %q", ce, ce.File, name)
		}
		if ce.Line < 0 || ce.Line > lines {
			t.Errorf("error %q: line %d outside the file's %d lines", ce, ce.Line, lines)
		}
		if ce.Line == 0 && ce.Key != "" && keySetIn(data, ce.Key) {
			t.Errorf("error %q is about a key the file sets, but has no line", ce)
		}
		if ce.Msg == "" || !utf8.ValidString(ce.Error()) && utf8.Valid(data) {
			t.Errorf("error %q: empty or not UTF-8", ce)
		}
	}
}

// keySetIn reports, conservatively, whether the last part of a dotted key
// appears as a bare key at the start of a line of data; the fuzz check only
// demands a line for such keys, so parsing quirks cannot make it lie.
func keySetIn(data []byte, key string) bool {
	last := key[strings.LastIndexByte(key, '.')+1:]
	for l := range strings.SplitSeq(string(data), "\n") {
		l = strings.TrimLeft(l, " \t")
		if rest, ok := strings.CutPrefix(l, last); ok {
			rest = strings.TrimLeft(rest, " \t")
			if strings.HasPrefix(rest, "=") {
				return true
			}
		}
	}
	return false
}

// FuzzConfigParse feeds Parse arbitrary bytes: it never panics, a failure
// is a list of *Error with lines, and a success is a configuration that
// validates and parses the same way again.
func FuzzConfigParse(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("hostname = \"mx.example.test\"\ndomains = [\"example.test\"]\n"))
	f.Add([]byte("[smtp]\nmax_recipients = 0\nsubmission = \"nope\"\n[imap]\nlisten = \"\"\ntls_listen = \"\"\n"))
	f.Add([]byte("[limits]\nsmtp_idle_timeout = \"-1s\"\nmax_connections = 1\nmax_connections_per_address = 5\n"))
	f.Add([]byte("[email_queue]\nrelay = \"\"\nretry_min = \"2d\"\nretry_max = \"1d\"\nrelay_password = \"x\"\nrelay_password_file = \"/x\"\n"))
	f.Add([]byte("[http]\nlisten = \"bad\"\n[email_limit]\ntimezone = \"../../etc/passwd\"\n"))
	f.Add([]byte("a.b.c = 1\n[[x]]\ny = '''\nmulti\n'''\nz = { p = [1, {q = 2}] }\n"))
	f.Add([]byte("hostname = \"unterminated\n"))
	f.Add([]byte("\ufeff[log]\nformat = \"xml\"\ntrace_users = [\"not an address\", 3]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.toml"
		cfg, err := Parse(name, data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a config and an error: %v", err)
			}
			checkParseErrors(t, name, data, err)
			return
		}
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("a config Parse accepted does not validate: %v", err)
		}
		again, err := Parse(name, data)
		if err != nil || plain(again).Hostname != cfg.Hostname || again.DatabasePath() != cfg.DatabasePath() {
			t.Fatalf("parsing the same bytes twice differs: %v", err)
		}
	})
}
