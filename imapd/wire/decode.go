package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// Defaults for the zero fields of Limits.
const (
	DefaultLine    = 64 << 10 // Dovecot's imap_max_line_length
	DefaultLiteral = 64 << 10
	DefaultCommand = 1 << 20
	DefaultDiscard = 1 << 20
)

// LiteralMinusMax is the largest non-synchronising literal a LITERAL-
// server accepts (RFC 7888 section 5).
const LiteralMinusMax = 4096

// Limits bound what one command may cost. Zero fields take the defaults.
type Limits struct {
	// Line bounds the bytes of one command outside its literals.
	Line int64
	// Literal bounds one literal read as a string (mailbox names, search
	// keys, passwords); a streamed literal (APPEND) has its own bound.
	Literal int64
	// Command bounds the bytes of all the literals of one command that
	// are read as strings.
	Command int64
	// Discard bounds what is read and thrown away to stay in step with the
	// client: a refused non-synchronising literal, or the rest of a command
	// after a syntax error. Past it the connection must be closed.
	Discard int64
	// LiteralMinus refuses non-synchronising literals over LiteralMinusMax
	// (the server advertises LITERAL- rather than LITERAL+).
	LiteralMinus bool
}

func (l Limits) withDefaults() Limits {
	if l.Line <= 0 {
		l.Line = DefaultLine
	}
	if l.Literal <= 0 {
		l.Literal = DefaultLiteral
	}
	if l.Command <= 0 {
		l.Command = DefaultCommand
	}
	if l.Discard <= 0 {
		l.Discard = DefaultDiscard
	}
	return l
}

// Error is what a malformed or refused command gets. It is never a
// transport error: those are returned as they are.
type Error struct {
	// No makes the response NO rather than BAD (a well-formed command
	// refused, such as an APPEND over the limit).
	No bool
	// Code is the response code, if any (TOOBIG).
	Code imap.ResponseCode
	// Text is the human-readable reason.
	Text string
	// Fatal means the stream is no longer in step with the client: say
	// BYE and close the connection.
	Fatal bool
}

func (e *Error) Error() string {
	kind := "BAD"
	if e.No {
		kind = "NO"
	}
	if e.Code != "" {
		return fmt.Sprintf("%s [%s] %s", kind, e.Code, e.Text)
	}
	return kind + " " + e.Text
}

// AsError returns err as an *Error, or nil if it is a transport error.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

func syntaxError(format string, args ...any) error {
	return &Error{Text: fmt.Sprintf(format, args...)}
}

// Decoder reads commands. It is not safe for concurrent use; one
// goroutine reads a connection.
type Decoder struct {
	r   *bufio.Reader
	lim Limits
	// Continue is called before the bytes of an accepted synchronising
	// literal are read; it must send a continuation request ("+ ...") and
	// flush it. Nil sends nothing (tests).
	Continue func() error

	line     int64    // command bytes outside literals, this command
	strBytes int64    // literal bytes read as strings, this command
	ended    bool     // nothing more of this command will arrive
	open     *Literal // a streamed literal not read to its end
}

// NewDecoder reads commands from r within lim.
func NewDecoder(r *bufio.Reader, lim Limits) *Decoder {
	return &Decoder{r: r, lim: lim.withDefaults()}
}

// Limits returns the decoder's limits with their defaults filled in.
func (d *Decoder) Limits() Limits { return d.lim }

// SetLimits replaces the limits (before login and after differ).
func (d *Decoder) SetLimits(lim Limits) { d.lim = lim.withDefaults() }

// Reset reads from r from now on (after STARTTLS).
func (d *Decoder) Reset(r *bufio.Reader) {
	d.r = r
	d.Begin()
}

// Begin starts a new command: the per-command bounds start again.
func (d *Decoder) Begin() {
	d.line, d.strBytes, d.ended, d.open = 0, 0, false, nil
}

// Buffered reports whether bytes are waiting in the read buffer (a client
// that pipelined its next command; STARTTLS refuses that).
func (d *Decoder) Buffered() int { return d.r.Buffered() }

func (d *Decoder) peek() (byte, error) {
	if d.open != nil {
		if err := d.drain(); err != nil {
			return 0, err
		}
	}
	b, err := d.r.Peek(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *Decoder) next() (byte, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if d.line >= d.lim.Line {
		return 0, &Error{Text: fmt.Sprintf("Command line longer than %d bytes", d.lim.Line)}
	}
	d.r.ReadByte() //nolint:errcheck // peeked
	d.line++
	return c, nil
}

// Peek returns the next byte without consuming it.
func (d *Decoder) Peek() (byte, error) { return d.peek() }

// Accept consumes c if it is the next byte.
func (d *Decoder) Accept(c byte) (bool, error) {
	b, err := d.peek()
	if err != nil || b != c {
		return false, err
	}
	_, err = d.next()
	return err == nil, err
}

// Expect consumes c or fails with a syntax error naming what.
func (d *Decoder) Expect(c byte, what string) error {
	ok, err := d.Accept(c)
	if err != nil {
		return err
	}
	if !ok {
		return syntaxError("Expected %s", what)
	}
	return nil
}

// SP consumes one space.
func (d *Decoder) SP() error { return d.Expect(' ', "a space") }

// AtEnd reports whether the command line ends here.
func (d *Decoder) AtEnd() (bool, error) {
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	return c == '\r' || c == '\n', nil
}

// End consumes the end of the command (CRLF; a bare LF is accepted).
func (d *Decoder) End() error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	switch c {
	case '\r':
		d.r.ReadByte() //nolint:errcheck // peeked
		if c, err = d.peek(); err != nil {
			return err
		}
		if c != '\n' {
			return syntaxError("CR not followed by LF")
		}
		fallthrough
	case '\n':
		d.r.ReadByte() //nolint:errcheck // peeked
		d.ended = true
		return nil
	}
	return syntaxError("Unexpected %q where the command should end", c)
}

func isAtomChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }
func isTagChar(c byte) bool     { return isAStringChar(c) && c != '+' }
func isListChar(c byte) bool    { return isAStringChar(c) || c == '%' || c == '*' }

func (d *Decoder) readWhile(ok func(byte) bool, what string) (string, error) {
	var b []byte
	for {
		c, err := d.peek()
		if err != nil {
			return "", err
		}
		if !ok(c) {
			break
		}
		if _, err := d.next(); err != nil {
			return "", err
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return "", syntaxError("Expected %s", what)
	}
	return string(b), nil
}

// Tag reads a command tag.
func (d *Decoder) Tag() (string, error) { return d.readWhile(isTagChar, "a tag") }

// Atom reads an atom (a command name, a search key...).
func (d *Decoder) Atom() (string, error) { return d.readWhile(isAtomChar, "an atom") }

// Number reads a 32-bit number.
func (d *Decoder) Number() (uint32, error) {
	n, err := d.Number64()
	if err != nil {
		return 0, err
	}
	if n > 1<<32-1 {
		return 0, syntaxError("Number out of range")
	}
	return uint32(n), nil
}

// NZNumber reads a non-zero 32-bit number.
func (d *Decoder) NZNumber() (uint32, error) {
	n, err := d.Number()
	if err == nil && n == 0 {
		err = syntaxError("Expected a non-zero number")
	}
	return n, err
}

// Number64 reads a 63-bit number (RFC 9051 number64).
func (d *Decoder) Number64() (int64, error) {
	s, err := d.readWhile(isDigit, "a number")
	if err != nil {
		return 0, err
	}
	var n int64
	for _, c := range []byte(s) {
		if n > (1<<63-1-9)/10 {
			return 0, syntaxError("Number out of range")
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// String reads a quoted string or a literal.
func (d *Decoder) String() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if c == '"' {
		return d.quoted()
	}
	if lit, err := d.atLiteral(); lit || err != nil {
		if err != nil {
			return "", err
		}
		return d.stringLiteral()
	}
	return "", syntaxError("Expected a string")
}

// AString reads an astring: an atom (with "]") or a string.
func (d *Decoder) AString() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if lit, err := d.atLiteral(); c == '"' || lit || err != nil {
		if err != nil {
			return "", err
		}
		return d.String()
	}
	return d.readWhile(isAStringChar, "an atom or a string")
}

// NString reads a string or NIL; NIL is reported as ok false.
func (d *Decoder) NString() (s string, ok bool, err error) {
	c, err := d.peek()
	if err != nil {
		return "", false, err
	}
	if c == 'N' || c == 'n' {
		a, err := d.Atom()
		if err != nil {
			return "", false, err
		}
		if !strings.EqualFold(a, "NIL") {
			return "", false, syntaxError("Expected a string or NIL")
		}
		return "", false, nil
	}
	s, err = d.String()
	return s, err == nil, err
}

// ListMailbox reads the pattern of LIST and LSUB: list-chars (with the
// wildcards % and *) or a string.
func (d *Decoder) ListMailbox() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if lit, err := d.atLiteral(); c == '"' || lit || err != nil {
		if err != nil {
			return "", err
		}
		return d.String()
	}
	return d.readWhile(isListChar, "a mailbox pattern")
}

// atLiteral reports whether a literal starts here: "{", or "~{" (literal8;
// a "~" alone is an atom character, as in "~/Mail").
func (d *Decoder) atLiteral() (bool, error) {
	c, err := d.peek()
	if err != nil || c == '{' || c != '~' {
		return c == '{', err
	}
	b, err := d.r.Peek(2)
	if err != nil {
		return false, err
	}
	return b[1] == '{', nil
}

func (d *Decoder) quoted() (string, error) {
	if err := d.Expect('"', "a quoted string"); err != nil {
		return "", err
	}
	var b []byte
	for {
		c, err := d.peek()
		if err != nil {
			return "", err
		}
		switch c {
		case '\r', '\n':
			return "", syntaxError("Quoted string not closed before the end of the line")
		case 0:
			return "", syntaxError("NUL in a quoted string")
		}
		if _, err := d.next(); err != nil {
			return "", err
		}
		switch c {
		case '"':
			if !utf8.Valid(b) {
				return "", syntaxError("Quoted string is not valid UTF-8")
			}
			return string(b), nil
		case '\\':
			e, err := d.peek()
			if err != nil {
				return "", err
			}
			if e != '"' && e != '\\' {
				return "", syntaxError(`Only \" and \\ may be escaped in a quoted string`)
			}
			d.next() //nolint:errcheck // peeked; the line bound was checked for c
			c = e
		}
		b = append(b, c)
	}
}

// literalHeader reads "{n}", "{n+}", "~{n}" or "~{n+}" and the CRLF after
// it.
func (d *Decoder) literalHeader() (n int64, sync, binary bool, err error) {
	if binary, err = d.Accept('~'); err != nil {
		return 0, false, false, err
	}
	if err := d.Expect('{', "a literal"); err != nil {
		return 0, false, false, err
	}
	digits, err := d.readWhile(isDigit, "the size of the literal")
	if err != nil {
		return 0, false, false, err
	}
	plus, err := d.Accept('+')
	if err != nil {
		return 0, false, false, err
	}
	if err := d.Expect('}', "} after the size of the literal"); err != nil {
		return 0, false, false, err
	}
	n, overflow := parseSize(digits)
	if err := d.End(); err != nil {
		return 0, false, false, err
	}
	d.ended = false // the command goes on after the literal
	if overflow {
		if plus {
			return 0, false, false, &Error{Fatal: true, Text: "Literal size out of range"}
		}
		d.ended = true // the client waits for a continuation that never comes
		return 0, false, false, &Error{Code: imap.ResponseCodeTooBig, No: true, Text: "Literal too large"}
	}
	return n, !plus, binary, nil
}

func parseSize(digits string) (n int64, overflow bool) {
	for _, c := range []byte(digits) {
		if n > (1<<63-1-9)/10 {
			return 0, true
		}
		n = n*10 + int64(c-'0')
	}
	return n, false
}

// admit decides a literal of n bytes against max before reading any of
// it: it sends the continuation of an accepted synchronising literal, and
// throws away a refused non-synchronising one (or reports it fatal).
func (d *Decoder) admit(n int64, sync bool, max int64, tooBig *Error) error {
	if err := d.decide(n, sync, max, tooBig); err != nil {
		return err
	}
	if sync && d.Continue != nil {
		return d.Continue()
	}
	return nil
}

// decide is admit without the continuation.
func (d *Decoder) decide(n int64, sync bool, max int64, tooBig *Error) error {
	if !sync && d.lim.LiteralMinus && n > LiteralMinusMax {
		tooBig = &Error{Code: imap.ResponseCodeTooBig,
			Text: fmt.Sprintf("Non-synchronising literals are limited to %d bytes (LITERAL-)", LiteralMinusMax)}
	} else if n <= max {
		return nil
	}
	if sync {
		// No continuation: the client sends neither the literal nor the
		// rest of the command.
		d.ended = true
		return tooBig
	}
	if n > d.lim.Discard {
		return &Error{Fatal: true, Code: imap.ResponseCodeTooBig, Text: tooBig.Text + "; closing the connection"}
	}
	if _, err := io.CopyN(io.Discard, d.r, n); err != nil {
		return err
	}
	return tooBig
}

func (d *Decoder) stringLiteral() (string, error) {
	n, sync, binary, err := d.literalHeader()
	if err != nil {
		return "", err
	}
	max := min(d.lim.Literal, d.lim.Command-d.strBytes)
	tooBig := &Error{Code: imap.ResponseCodeTooBig, Text: fmt.Sprintf("Literal larger than %d bytes", max)}
	if max < d.lim.Literal {
		// The command's budget, not this literal's own bound, ran out.
		tooBig.Text = fmt.Sprintf("Literal of %d bytes past the %d bytes a command's literals may hold in all", n, d.lim.Command)
	}
	if binary {
		max = -1
		tooBig = &Error{Text: "literal8 is only allowed in APPEND"}
	}
	if err := d.admit(n, sync, max, tooBig); err != nil {
		return "", err
	}
	var b bytes.Buffer // grows with the bytes that arrive, not with n
	if _, err := io.CopyN(&b, d.r, n); err != nil {
		return "", err
	}
	d.strBytes += n
	if bytes.IndexByte(b.Bytes(), 0) >= 0 {
		return "", syntaxError("NUL in a literal")
	}
	return b.String(), nil
}

// Literal is a streamed literal (the message of APPEND). Read it to its
// end before reading on; a Decoder call made earlier drains it. It is an
// imap.LiteralReader.
//
// The continuation request of a synchronising literal is sent at the
// first Read, not before: the server has begun taking the message (and
// registered it with its shutdown) by the time the client sends it. If
// the literal is never read, the client never sends it.
type Literal struct {
	size int64
	// Binary is set for literal8 (~{n}, RFC 3516).
	Binary bool
	r      io.LimitedReader
	cont   func() error // the continuation still to send, or nil
}

func (l *Literal) Read(p []byte) (int, error) {
	if l.cont != nil {
		cont := l.cont
		l.cont = nil
		if err := cont(); err != nil {
			return 0, err
		}
	}
	return l.r.Read(p)
}

// Size is the announced size, already checked against the limit.
func (l *Literal) Size() int64 { return l.size }

// Literal reads the header of a literal of at most max bytes and returns
// its bytes as a stream. tooBig is what a larger one gets (NO [TOOBIG] for
// APPEND). A literal8 is accepted only if binary is set.
func (d *Decoder) Literal(max int64, binary bool) (*Literal, error) {
	n, sync, isBinary, err := d.literalHeader()
	if err != nil {
		return nil, err
	}
	tooBig := &Error{No: true, Code: imap.ResponseCodeTooBig, Text: fmt.Sprintf("Message larger than the limit of %d bytes", max)}
	if isBinary && !binary {
		max = -1
		tooBig = &Error{Text: "literal8 is not allowed here"}
	}
	if err := d.decide(n, sync, max, tooBig); err != nil {
		return nil, err
	}
	l := &Literal{size: n, Binary: isBinary, r: io.LimitedReader{R: d.r, N: n}}
	if sync && d.Continue != nil {
		l.cont = d.Continue
	}
	d.open = l
	return l, nil
}

// drain reads the rest of the open literal; the continuation is sent
// first if it was not yet, since the command goes on after the literal.
func (d *Decoder) drain() error {
	l := d.open
	d.open = nil
	_, err := io.Copy(io.Discard, l)
	return err
}

// ReadLine reads one raw line (an AUTHENTICATE response, IDLE's DONE)
// within the line limit, without its CRLF.
func (d *Decoder) ReadLine() (string, error) {
	d.Begin()
	var b []byte
	for {
		c, err := d.peek()
		if err != nil {
			return "", err
		}
		if c == '\r' || c == '\n' {
			if err := d.End(); err != nil {
				return "", err
			}
			return string(b), nil
		}
		if _, err := d.next(); err != nil {
			return "", err
		}
		b = append(b, c)
	}
}

// SkipCommand reads what is left of the current command after an error,
// so that the next read starts at the next command. It discards the
// non-synchronising literals it meets (within Limits.Discard) and stops at
// a synchronising one, whose bytes the client will not send. A fatal
// *Error means it could not.
func (d *Decoder) SkipCommand() error {
	if d.ended {
		return nil
	}
	if l := d.open; l != nil {
		if l.cont != nil {
			// Refused before its continuation: the client sends neither
			// the literal nor the rest of the command.
			d.open, d.ended = nil, true
			return nil
		}
		if err := d.drain(); err != nil {
			return err
		}
	}
	budget := d.lim.Discard
	var tail []byte // the end of the current line, enough for "~{n+}"
	const tailMax = 24
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return err
		}
		if budget--; budget < 0 {
			return &Error{Fatal: true, Text: "Command too long; closing the connection"}
		}
		if c != '\n' {
			if len(tail) == tailMax {
				copy(tail, tail[1:])
				tail = tail[:tailMax-1]
			}
			tail = append(tail, c)
			continue
		}
		tail = bytes.TrimSuffix(tail, []byte("\r"))
		n, sync, ok := trailingLiteral(tail)
		tail = tail[:0]
		if !ok || sync {
			d.ended = true
			return nil
		}
		if n > budget {
			return &Error{Fatal: true, Text: "Command too long; closing the connection"}
		}
		if _, err := io.CopyN(io.Discard, d.r, n); err != nil {
			return err
		}
		budget -= n
	}
}

// trailingLiteral parses a literal header at the end of line.
func trailingLiteral(line []byte) (n int64, sync, ok bool) {
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0, false, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	digits := line[open+1 : len(line)-1]
	sync = true
	if bytes.HasSuffix(digits, []byte("+")) {
		digits, sync = digits[:len(digits)-1], false
	}
	if len(digits) == 0 {
		return 0, false, false
	}
	for _, c := range digits {
		if !isDigit(c) {
			return 0, false, false
		}
	}
	n, overflow := parseSize(string(digits))
	if overflow {
		n = 1<<63 - 1
	}
	return n, sync, true
}

// List reads a parenthesised list, calling item for each element.
func (d *Decoder) List(item func() error) error {
	if err := d.Expect('(', "("); err != nil {
		return err
	}
	if ok, err := d.Accept(')'); ok || err != nil {
		return err
	}
	for {
		if err := item(); err != nil {
			return err
		}
		ok, err := d.Accept(')')
		if ok || err != nil {
			return err
		}
		if err := d.SP(); err != nil {
			return syntaxError("Expected a space or ) in a list")
		}
	}
}

// Flag reads a flag: a system flag (\Seen), or a keyword. With wildcard,
// \* is accepted too.
func (d *Decoder) Flag(wildcard bool) (imap.Flag, error) {
	ok, err := d.Accept('\\')
	if err != nil {
		return "", err
	}
	if !ok {
		a, err := d.Atom()
		return imap.Flag(a), err
	}
	if wildcard {
		if star, err := d.Accept('*'); star || err != nil {
			return imap.FlagWildcard, err
		}
	}
	a, err := d.Atom()
	if err != nil {
		return "", syntaxError("Expected a flag name after \\")
	}
	return imap.Flag(`\` + a), nil
}

// FlagList reads "(" [flag *(SP flag)] ")".
func (d *Decoder) FlagList() ([]imap.Flag, error) {
	var flags []imap.Flag
	err := d.List(func() error {
		f, err := d.Flag(false)
		flags = append(flags, f)
		return err
	})
	return flags, err
}

// DateTime reads a quoted date-time ("17-Jul-1996 02:44:25 -0700").
func (d *Decoder) DateTime() (time.Time, error) {
	s, err := d.quoted()
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse("_2-Jan-2006 15:04:05 -0700", s)
	if err != nil {
		return time.Time{}, syntaxError("Invalid date-time %q", s)
	}
	return t, nil
}

// Date reads a SEARCH date, quoted or not ("1-Feb-1994").
func (d *Decoder) Date() (time.Time, error) {
	c, err := d.peek()
	if err != nil {
		return time.Time{}, err
	}
	var s string
	if c == '"' {
		s, err = d.quoted()
	} else {
		s, err = d.readWhile(func(c byte) bool { return isAtomChar(c) }, "a date")
	}
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse("2-Jan-2006", s)
	if err != nil {
		return time.Time{}, syntaxError("Invalid date %q", s)
	}
	return t, nil
}
