package config

import "fmt"

// Bounds on what Parse reads. A pochta config is a few kilobytes with keys
// two levels deep; the TOML decoder (and keyLines) take time quadratic in
// the depth of dotted keys, so a file of nothing but "a.a.a…" could keep
// `pochta config check` or a reload busy for minutes (found by fuzzing).
const (
	maxConfigSize = 1 << 20
	// maxKeyDots bounds the dots outside strings and comments in the whole
	// file: they only ever join dotted keys and table names.
	maxKeyDots = 256
	// maxNesting bounds arrays and inline tables inside each other (the
	// decoder is quadratic in nested inline tables too).
	maxNesting = 32
)

// checkShape refuses, in one linear pass, files too large or with more
// dotted-key or bracket nesting than any configuration needs.
func checkShape(name string, data []byte) *Error {
	if len(data) > maxConfigSize {
		return &Error{File: name, Msg: fmt.Sprintf("file is larger than %d bytes; not a pochta configuration", maxConfigSize)}
	}
	dots, depth, line := 0, 0, 1
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '\n':
			line++
		case '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
			i-- // the newline is counted by the loop
		case '"', '\'':
			end := skipString(data, i)
			for _, b := range data[i:end] {
				if b == '\n' {
					line++
				}
			}
			i = end - 1
		case '[', '{':
			depth++
			if depth > maxNesting {
				return &Error{File: name, Line: line, Msg: fmt.Sprintf("arrays or tables nested more than %d deep; not a pochta configuration", maxNesting)}
			}
		case ']', '}':
			depth = max(depth-1, 0)
		case '.':
			dots++
			if dots > maxKeyDots {
				return &Error{File: name, Line: line, Msg: fmt.Sprintf("more than %d dots in keys and table names; not a pochta configuration", maxKeyDots)}
			}
		}
	}
	return nil
}

// skipString returns the index just past the string starting at data[i]
// (basic or literal, single- or multi-line), or len(data) if unterminated.
func skipString(data []byte, i int) int {
	q := data[i]
	if i+2 < len(data) && data[i+1] == q && data[i+2] == q {
		for j := i + 3; j+2 < len(data); j++ {
			if q == '"' && data[j] == '\\' {
				j++
				continue
			}
			if data[j] == q && data[j+1] == q && data[j+2] == q {
				return j + 3
			}
		}
		return len(data)
	}
	for j := i + 1; j < len(data); j++ {
		switch {
		case q == '"' && data[j] == '\\':
			j++
		case data[j] == q, data[j] == '\n':
			return j + 1
		}
	}
	return len(data)
}
