package config

import (
	"strconv"
	"strings"
)

// keyLines finds the line on which each key of a TOML document is defined,
// keyed by the dotted path ("smtp.max_recipients"); a table header gives the
// line of the table itself ("smtp"). BurntSushi/toml keeps these positions
// private, so they are recovered here from the text. The text must already
// have parsed as TOML: this scanner only tells keys from values and skips
// strings, arrays and inline tables, it does not check syntax. Keys inside
// inline tables and arrays are not listed; lineOf falls back to the
// enclosing key.
func keyLines(text string) map[string]int {
	s := &lineScanner{text: strings.TrimPrefix(text, "\ufeff"), line: 1}
	lines := make(map[string]int)
	var table []string
	for {
		s.skipSpace()
		if s.eof() {
			return lines
		}
		switch s.peek() {
		case '#':
			s.skipComment()
		case '[':
			s.pos++
			if !s.eof() && s.peek() == '[' {
				s.pos++
			}
			table = s.key()
			record(lines, table, s.line)
			for !s.eof() && s.peek() == ']' {
				s.pos++
			}
		default:
			k := s.key()
			if len(k) == 0 { // Unreachable in valid TOML; never loop forever.
				s.pos++
				continue
			}
			full := append(append([]string{}, table...), k...)
			record(lines, full, s.line)
			if !s.eof() && s.peek() == '=' {
				s.pos++
			}
			s.skipValue()
		}
	}
}

// record notes the line of key and of every prefix not yet seen, so that a
// dotted key ("a.b.c = 1") also places the implicit tables it creates.
func record(lines map[string]int, key []string, line int) {
	for i := 1; i <= len(key); i++ {
		p := strings.Join(key[:i], ".")
		if _, ok := lines[p]; !ok {
			lines[p] = line
		}
	}
}

type lineScanner struct {
	text string
	pos  int
	line int
}

func (s *lineScanner) eof() bool  { return s.pos >= len(s.text) }
func (s *lineScanner) peek() byte { return s.text[s.pos] }

func (s *lineScanner) skipSpace() {
	for !s.eof() {
		switch s.peek() {
		case '\n':
			s.line++
		case ' ', '\t', '\r':
		default:
			return
		}
		s.pos++
	}
}

func (s *lineScanner) skipComment() {
	for !s.eof() && s.peek() != '\n' {
		s.pos++
	}
}

// key reads a possibly dotted, possibly quoted key, stopping at the first
// byte that cannot continue it ("=" or "]"), which the caller consumes.
func (s *lineScanner) key() []string {
	var parts []string
	for !s.eof() {
		for !s.eof() && (s.peek() == ' ' || s.peek() == '\t') {
			s.pos++
		}
		if s.eof() {
			break
		}
		switch c := s.peek(); c {
		case '"':
			start := s.pos
			s.pos++
			for !s.eof() && s.peek() != '"' {
				if s.peek() == '\\' {
					s.pos++
				}
				s.pos++
			}
			s.pos++
			raw := s.text[start:min(s.pos, len(s.text))]
			if u, err := strconv.Unquote(raw); err == nil {
				parts = append(parts, u)
			} else {
				parts = append(parts, strings.Trim(raw, `"`))
			}
		case '\'':
			s.pos++
			start := s.pos
			for !s.eof() && s.peek() != '\'' {
				s.pos++
			}
			parts = append(parts, s.text[start:s.pos])
			s.pos++
		default:
			start := s.pos
			for !s.eof() && isBareKeyByte(s.peek()) {
				s.pos++
			}
			if s.pos == start {
				return parts
			}
			parts = append(parts, s.text[start:s.pos])
		}
		for !s.eof() && (s.peek() == ' ' || s.peek() == '\t') {
			s.pos++
		}
		if s.eof() || s.peek() != '.' {
			break
		}
		s.pos++
	}
	return parts
}

func isBareKeyByte(c byte) bool {
	return c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// skipValue moves past one value: to the end of its line once every array
// and inline table opened in it is closed, skipping strings and comments.
func (s *lineScanner) skipValue() {
	depth := 0
	for !s.eof() {
		switch s.peek() {
		case '\n':
			s.line++
			s.pos++
			if depth <= 0 {
				return
			}
		case '#':
			s.skipComment()
		case '[', '{':
			depth++
			s.pos++
		case ']', '}':
			depth--
			s.pos++
		case '"':
			s.skipString('"', true)
		case '\'':
			s.skipString('\'', false)
		default:
			s.pos++
		}
	}
}

// skipString moves past a basic (escapes) or literal string, single-line or
// multi-line (TOML's triple-quoted forms).
func (s *lineScanner) skipString(q byte, escapes bool) {
	triple := strings.Repeat(string(q), 3)
	if strings.HasPrefix(s.text[s.pos:], triple) {
		s.pos += 3
		for !s.eof() {
			c := s.peek()
			switch {
			case escapes && c == '\\':
				s.pos++
				if !s.eof() && s.peek() == '\n' {
					s.line++
				}
			case c == '\n':
				s.line++
			case strings.HasPrefix(s.text[s.pos:], triple):
				s.pos += 3
				// Up to two quotes may directly precede the closing
				// delimiter and belong to the string.
				for i := 0; i < 2 && !s.eof() && s.peek() == q; i++ {
					s.pos++
				}
				return
			}
			s.pos++
		}
		return
	}
	s.pos++
	for !s.eof() && s.peek() != q && s.peek() != '\n' {
		if escapes && s.peek() == '\\' {
			s.pos++
		}
		s.pos++
	}
	s.pos++
}
