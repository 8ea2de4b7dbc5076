package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Error is one problem with the configuration. Load and Validate return
// every problem found, each as an *Error, joined with errors.Join.
type Error struct {
	File string // the config file; "" for a Config built in code
	Line int    // 1-based; 0 when the value did not come from the file
	Key  string // dotted key ("smtp.max_recipients"); "" when none applies
	Msg  string

	// unknown marks an unknown key, reported as `unknown key "a.b"` rather
	// than prefixed with the key like the others.
	unknown bool
}

// Error formats as "file:line: [section] key: message".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" && !e.unknown {
		b.WriteString(displayKey(e.Key))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// displayKey writes "smtp.max_recipients" as "[smtp] max_recipients", the
// way the key appears in the file.
func displayKey(key string) string {
	if section, name, ok := strings.Cut(key, "."); ok {
		return "[" + section + "] " + name
	}
	if _, isSection := sectionFields[key]; isSection {
		return "[" + key + "]"
	}
	return key
}

// source is where a loaded Config came from, kept so Validate can point at
// the line of a bad value.
type source struct {
	file    string
	lines   map[string]int      // key -> line, from keyLines
	defined map[string]struct{} // keys the file set
}

// lineOf returns the line of key, or of the nearest enclosing key found
// (keys inside inline tables have no line of their own).
func (s *source) lineOf(key string) int {
	for key != "" {
		if l, ok := s.lines[key]; ok {
			return l
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// errorFor builds the error for key, with file and line when the file set
// that key.
func (s *source) errorFor(key, msg string) *Error {
	e := &Error{Key: key, Msg: msg}
	if s == nil {
		return e
	}
	e.File = s.file
	if _, ok := s.defined[key]; ok {
		e.Line = s.lineOf(key)
	}
	return e
}

// joinErrors orders errors by line (errors without a line last, in the
// order found) and joins them, so the first one printed is the first one in
// the file.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool {
		li, lj := errs[i].Line, errs[j].Line
		if (li == 0) != (lj == 0) {
			return lj == 0
		}
		return li < lj
	})
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

// systemPath is SystemPath; tests point it elsewhere.
var systemPath = SystemPath

// Resolve finds the configuration as SPEC.md promises: the --config flag,
// else $POCHTA_CONFIG, else /etc/pochta/pochta.toml if it exists, else the
// built-in Development configuration with path "". A file that is named but
// missing is an error, not a silent fall back to defaults.
func Resolve(flagPath string) (cfg *Config, path string, err error) {
	path = flagPath
	if path == "" {
		path = os.Getenv(EnvVar)
	}
	if path == "" {
		_, err := os.Stat(systemPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return Development(), "", nil
		case err != nil:
			return nil, systemPath, fmt.Errorf("config: %w", err)
		}
		path = systemPath
	}
	cfg, err = Load(path)
	if err != nil {
		return nil, path, err
	}
	return cfg, path, nil
}

// Load reads the TOML file at path over Defaults and validates the result.
// Errors name the file, line and key, all of them at once.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load on data already read; name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	if e := checkShape(name, data); e != nil {
		return nil, joinErrors([]*Error{e})
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			// The lexer counts a line break it stumbles on as the next
			// line; the byte offset says where the mistake really is.
			if st := pe.Position.Start; st > 0 && st <= len(data) {
				line = 1 + strings.Count(string(data[:st]), "\n")
			}
			return nil, joinErrors([]*Error{{
				File: name, Line: line, Key: pe.LastKey,
				Msg: "invalid TOML: " + pe.Message,
			}})
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cfg := Defaults()
	cfg.src = &source{
		file:    name,
		lines:   keyLines(string(data)),
		defined: make(map[string]struct{}),
	}
	d := &decoder{src: cfg.src}
	d.table("", raw, reflect.ValueOf(cfg).Elem())
	// Validate even when decoding failed, so one run reports every mistake.
	errs := append(d.errs, cfg.validate()...)
	if err := joinErrors(errs); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decoder copies a decoded TOML document onto a Config field by field, so
// that each wrong key gets its own error instead of the first one stopping
// the decode.
type decoder struct {
	src  *source
	errs []*Error
}

var durationType = reflect.TypeFor[Duration]()

// fieldsOf maps TOML key names to field indexes of struct type t.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" {
			m[tag] = i
		}
	}
	return m
}

// sectionFields lists every table of Config and its keys; it names the
// known keys in "did you mean" hints.
var sectionFields = func() map[string]map[string]int {
	t := reflect.TypeFor[Config]()
	m := map[string]map[string]int{"": fieldsOf(t)}
	for name, i := range m[""] {
		if ft := t.Field(i).Type; ft.Kind() == reflect.Struct && ft != durationType {
			m[name] = fieldsOf(ft)
		}
	}
	return m
}()

func (d *decoder) fail(key, msg string) {
	d.errs = append(d.errs, d.src.errorFor(key, msg))
}

func (d *decoder) table(prefix string, m map[string]any, rv reflect.Value) {
	fields := fieldsOf(rv.Type())
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		d.src.defined[path] = struct{}{}
		i, ok := fields[k]
		if !ok {
			e := d.src.errorFor(path, "unknown key "+fmt.Sprintf("%q", path)+suggest(fields, prefix, k))
			e.unknown = true
			d.errs = append(d.errs, e)
			continue
		}
		d.value(path, m[k], rv.Field(i))
	}
}

func (d *decoder) value(key string, v any, fv reflect.Value) {
	switch {
	case fv.Type() == durationType:
		s, ok := v.(string)
		if !ok {
			d.fail(key, fmt.Sprintf(`must be a duration in quotes such as "5m" or "7d", not %s`, tomlType(v)))
			return
		}
		dur, err := ParseDuration(s)
		if err != nil {
			d.fail(key, err.Error())
			return
		}
		fv.Set(reflect.ValueOf(Duration{dur}))
	case fv.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.fail(key, fmt.Sprintf("must be a table ([%s]), not %s", key, tomlType(v)))
			return
		}
		d.table(key, m, fv)
	case fv.Kind() == reflect.String:
		s, ok := v.(string)
		if !ok {
			d.fail(key, "must be a string in quotes, not "+tomlType(v))
			return
		}
		fv.SetString(s)
	case fv.Kind() == reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.fail(key, "must be true or false, not "+tomlType(v))
			return
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Int || fv.Kind() == reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			d.fail(key, "must be a whole number, not "+tomlType(v))
			return
		}
		if fv.OverflowInt(n) {
			d.fail(key, fmt.Sprintf("%d is too large", n))
			return
		}
		fv.SetInt(n)
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
		list, ok := v.([]any)
		if !ok {
			d.fail(key, `must be a list of strings such as ["a", "b"], not `+tomlType(v))
			return
		}
		out := make([]string, 0, len(list))
		for i, item := range list {
			s, ok := item.(string)
			if !ok {
				d.fail(key, fmt.Sprintf("item %d must be a string in quotes, not %s", i+1, tomlType(item)))
				return
			}
			out = append(out, s)
		}
		fv.Set(reflect.ValueOf(out))
	default:
		// A field type the schema added without teaching the decoder.
		d.fail(key, fmt.Sprintf("cannot be decoded into %s", fv.Type()))
	}
}

// tomlType names the TOML type of a decoded value for error messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// suggest returns ` (did you mean "imap.listen"?)` when a known key of the
// same table is a small typo away from the unknown one.
func suggest(fields map[string]int, prefix, unknown string) string {
	best, bestDist := "", 3
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if dist := editDistance(name, unknown); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if best == "" {
		return ""
	}
	if prefix != "" {
		best = prefix + "." + best
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
