package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// testDecoder reads input and counts the continuation requests it sends.
func testDecoder(input string, lim Limits) (*Decoder, *int) {
	d := NewDecoder(bufio.NewReader(strings.NewReader(input)), lim)
	n := new(int)
	d.Continue = func() error { *n++; return nil }
	return d, n
}

// command is one decoded command in the generic form the tests compare:
// tag, name, and the arguments as tokens.
type command struct {
	tag, name string
	args      []string
}

// readCommand decodes one command generically: lists in parentheses,
// strings, sequence sets, flags and astrings, each rendered as a token.
// The real server asks for what each command expects; this is enough to
// prove the grammar.
func readCommand(d *Decoder) (command, error) {
	d.Begin()
	var c command
	var err error
	if c.tag, err = d.Tag(); err != nil {
		return c, err
	}
	if err = d.SP(); err != nil {
		return c, err
	}
	if c.name, err = d.Atom(); err != nil {
		return c, err
	}
	for {
		end, err := d.AtEnd()
		if err != nil {
			return c, err
		}
		if end {
			return c, d.End()
		}
		if err := d.SP(); err != nil {
			return c, err
		}
		var tok string
		if n := len(c.args); n > 0 && dateKeys[c.args[n-1]] {
			var date time.Time
			date, err = d.Date()
			tok = "date:" + date.Format(time.DateOnly)
		} else {
			tok, err = readToken(d, 0)
		}
		if err != nil {
			return c, err
		}
		c.args = append(c.args, tok)
	}
}

// dateKeys are the SEARCH keys followed by a date.
var dateKeys = map[string]bool{"SINCE": true, "BEFORE": true, "ON": true, "SENTSINCE": true, "SENTBEFORE": true, "SENTON": true}

func readToken(d *Decoder, depth int) (string, error) {
	if depth > 8 {
		return "", syntaxError("Too deep")
	}
	b, err := d.Peek()
	if err != nil {
		return "", err
	}
	switch {
	case b == '(':
		var items []string
		err := d.List(func() error {
			t, err := readToken(d, depth+1)
			items = append(items, t)
			return err
		})
		return "(" + strings.Join(items, " ") + ")", err
	case b == '"' || b == '{' || (b == '~' && peek2(d) == '{'):
		s, err := d.String()
		return "s:" + s, err
	case isDigit(b) || b == '*' || b == '$':
		set, err := d.SeqSet()
		if err != nil {
			return "", err
		}
		if imap.IsSearchRes(set) {
			return "set:$", nil
		}
		return "set:" + set.String(), nil
	case b == '\\':
		f, err := d.Flag(true)
		return "flag:" + string(f), err
	case b == '%':
		return d.ListMailbox()
	}
	return d.AString()
}

// RFC 9051 and RFC 3501 example commands, as the client sends them.
func TestDecodeRFCExamples(t *testing.T) {
	tests := []struct {
		rfc, in string
		want    command
		conts   int // continuation requests the server sends
	}{
		{"9051 6.2.3", "a001 LOGIN SMITH SESAME\r\n",
			command{"a001", "LOGIN", []string{"SMITH", "SESAME"}}, 0},
		{"3501 4.3 literal", "A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n",
			command{"A001", "LOGIN", []string{"s:FRED FOOBAR", "s:fat man"}}, 2},
		{"7888 LITERAL+", "A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n",
			command{"A001", "LOGIN", []string{"s:FRED FOOBAR", "s:fat man"}}, 0},
		{"9051 6.3.9 LIST", "A101 LIST \"\" \"\"\r\n",
			command{"A101", "LIST", []string{"s:", "s:"}}, 0},
		{"9051 6.3.9 LIST wildcards", "A202 LIST ~/Mail/ %\r\n",
			command{"A202", "LIST", []string{"~/Mail/", "%"}}, 0},
		{"9051 6.3.11 STATUS", "A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
			command{"A042", "STATUS", []string{"blurdybloop", "(UIDNEXT MESSAGES)"}}, 0},
		{"9051 6.4.4 SEARCH", "A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
			command{"A282", "SEARCH", []string{"FLAGGED", "SINCE", "date:1994-02-01", "NOT", "FROM", "s:Smith"}}, 0},
		{"9051 6.4.5 FETCH", "A654 FETCH 2:4 (FLAGS BODY.PEEK[TEXT]<0.2048>)\r\n",
			command{"A654", "FETCH", []string{"set:2:4", "(FLAGS BODY.PEEK[TEXT]<0.2048>)"}}, 0},
		{"9051 6.4.6 STORE", "A003 STORE 2:4 +FLAGS (\\Deleted)\r\n",
			command{"A003", "STORE", []string{"set:2:4", "+FLAGS", "(flag:\\Deleted)"}}, 0},
		{"9051 6.4.9 UID FETCH", "A999 UID FETCH 4827313:4828442 FLAGS\r\n",
			command{"A999", "UID", []string{"FETCH", "set:4827313:4828442", "FLAGS"}}, 0},
		{"9051 9 sequence-set", "A1 COPY 2,4:7,9,12:* meeting\r\n",
			command{"A1", "COPY", []string{"set:2,4:7,9,12:*", "meeting"}}, 0},
		{"5182 SEARCHRES", "A2 UID COPY $ Archive\r\n",
			command{"A2", "UID", []string{"COPY", "set:$", "Archive"}}, 0},
		{"9051 quoted escapes", "A3 CREATE \"a \\\"b\\\" \\\\c\"\r\n",
			command{"A3", "CREATE", []string{`s:a "b" \c`}}, 0},
		{"bare LF", "A4 NOOP\n",
			command{"A4", "NOOP", nil}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.rfc, func(t *testing.T) {
			d, conts := testDecoder(tt.in, Limits{})
			got, err := readCommand(d)
			if err != nil {
				t.Fatalf("readCommand(%q): %v", tt.in, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("readCommand(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if *conts != tt.conts {
				t.Errorf("continuations = %d, want %d", *conts, tt.conts)
			}
		})
	}
}

// RFC 9051 6.3.12: the APPEND example, its message streamed.
func TestDecodeAppendStreamsTheMessage(t *testing.T) {
	msg := "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example>\r\n" +
		"Subject: afternoon meeting\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
	in := fmt.Sprintf("A003 APPEND saved-messages (\\Seen) {%d}\r\n%s\r\nA004 NOOP\r\n", len(msg), msg)
	d, conts := testDecoder(in, Limits{})
	d.Begin()
	tag, _ := d.Tag()
	d.SP()
	name, _ := d.Atom()
	d.SP()
	box, _ := d.AString()
	d.SP()
	flags, err := d.FlagList()
	if err != nil {
		t.Fatal(err)
	}
	d.SP()
	lit, err := d.Literal(1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	if *conts != 0 {
		t.Errorf("continuation sent before the literal was read")
	}
	body, err := io.ReadAll(lit)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.End(); err != nil {
		t.Fatal(err)
	}
	if tag != "A003" || name != "APPEND" || box != "saved-messages" || fmt.Sprint(flags) != `[\Seen]` {
		t.Errorf("got %s %s %s %v", tag, name, box, flags)
	}
	if string(body) != msg || *conts != 1 {
		t.Errorf("body %q after %d continuations, want the message after 1", body, *conts)
	}
	next, err := readCommand(d)
	if err != nil || next.tag != "A004" {
		t.Errorf("next command = %v, %v; want A004 NOOP", next, err)
	}
}

// A literal the server left unread (the APPEND failed early) is drained
// before the next command is read; its bytes never parse as commands.
func TestDecodeUnreadLiteralIsDrained(t *testing.T) {
	d, _ := testDecoder("a APPEND x {16+}\r\nb CREATE evil\r\n\r\nc NOOP\r\n", Limits{})
	d.Begin()
	d.Tag()
	d.SP()
	d.Atom()
	d.SP()
	d.AString()
	d.SP()
	if _, err := d.Literal(100, false); err != nil {
		t.Fatal(err)
	}
	if err := d.SkipCommand(); err != nil {
		t.Fatal(err)
	}
	next, err := readCommand(d)
	if err != nil || next.tag != "c" {
		t.Fatalf("next command = %v, %v; want c NOOP", next, err)
	}
}

// A synchronising APPEND literal refused by the server before it read
// any of it gets no continuation, so the client sends nothing more: the
// next line is the next command.
func TestUnreadSyncLiteralIsNeverRequested(t *testing.T) {
	d, conts := testDecoder("a APPEND x {16}\r\nc NOOP\r\n", Limits{})
	d.Begin()
	d.Tag()
	d.SP()
	d.Atom()
	d.SP()
	d.AString()
	d.SP()
	if _, err := d.Literal(100, false); err != nil {
		t.Fatal(err)
	}
	if err := d.SkipCommand(); err != nil {
		t.Fatal(err)
	}
	if next, err := readCommand(d); err != nil || next.tag != "c" || *conts != 0 {
		t.Fatalf("next command = %v, %v after %d continuations; want c NOOP after none", next, err, *conts)
	}
}

func TestDecodeDatesAndNumbers(t *testing.T) {
	d, _ := testDecoder(`"17-Jul-1996 02:44:25 -0700" " 7-Feb-1994 21:52:25 -0800" 1-Feb-1994 "14-Mar-2020" 4294967295 4294967296 `, Limits{})
	dt, err := d.DateTime()
	if want := time.Date(1996, 7, 17, 2, 44, 25, 0, time.FixedZone("", -7*3600)); err != nil || !dt.Equal(want) {
		t.Errorf("DateTime = %v, %v; want %v", dt, err, want)
	}
	d.SP()
	if dt, err = d.DateTime(); err != nil || dt.Day() != 7 {
		t.Errorf("DateTime with a space-padded day = %v, %v", dt, err)
	}
	d.SP()
	if dt, err = d.Date(); err != nil || dt.Month() != time.February || dt.Year() != 1994 {
		t.Errorf("Date = %v, %v", dt, err)
	}
	d.SP()
	if dt, err = d.Date(); err != nil || dt.Day() != 14 {
		t.Errorf("quoted Date = %v, %v", dt, err)
	}
	d.SP()
	if n, err := d.Number(); err != nil || n != 4294967295 {
		t.Errorf("Number = %d, %v", n, err)
	}
	d.SP()
	if _, err := d.Number(); AsError(err) == nil {
		t.Errorf("Number past 32 bits: err = %v, want a syntax error", err)
	}
}

// RFC 9051 9: seq-number is nz-number or "*"; "FETCH 0:5" is a syntax
// error, answered BAD (issue 12).
func TestSequenceSetZeroIsBAD(t *testing.T) {
	for _, in := range []string{"0:5", "0", "1:0", "3,0", "1:", ":5", "1,", "x"} {
		d, _ := testDecoder(in+" ", Limits{})
		_, err := d.SeqSet()
		e := AsError(err)
		if e == nil || e.No || e.Fatal {
			t.Errorf("SeqSet(%q) error = %v, want BAD", in, err)
		}
	}
	for in, want := range map[string]string{"*:3": "3:*", "5:2": "2:5", "1,3:4,7:*": "1,3:4,7:*"} {
		d, _ := testDecoder(in+" ", Limits{})
		set, err := d.SeqSet()
		if err != nil || set.String() != want {
			t.Errorf("SeqSet(%q) = %v, %v; want %s", in, set, err, want)
		}
	}
}

func TestSyntaxErrorsAreBADAndTheNextCommandIsRead(t *testing.T) {
	for _, bad := range []string{
		"a LOGIN \"unterminated\r\n",
		"a LOGIN \"bad \\x escape\"\r\n",
		"a LIST (\r\n",
		"a CREATE {5x}\r\n",
		"a CREATE {5}trailing\r\n",
		"+ NOOP\r\n",
		"a\r\n",
		"a FETCH 0:5 FLAGS\r\n",
		"a LOGIN \"\xff\xfe\" x\r\n",
		"a LOGIN {3+}\r\n\x00ab x\r\n",
	} {
		d, _ := testDecoder(bad+"b NOOP\r\n", Limits{})
		_, err := readCommand(d)
		e := AsError(err)
		if e == nil || e.No || e.Fatal {
			t.Errorf("%q: error = %v, want BAD", bad, err)
			continue
		}
		if err := d.SkipCommand(); err != nil {
			t.Errorf("%q: SkipCommand: %v", bad, err)
			continue
		}
		next, err := readCommand(d)
		if err != nil || next.tag != "b" {
			t.Errorf("%q: next command = %v, %v; want b NOOP", bad, next, err)
		}
	}
}

// A line over Limits.Line is BAD; the rest of it is skipped and the
// connection goes on. Past Limits.Discard it must be closed.
func TestLineLimit(t *testing.T) {
	long := "a CREATE " + strings.Repeat("x", 200) + "\r\nb NOOP\r\n"
	d, _ := testDecoder(long, Limits{Line: 100, Discard: 1000})
	_, err := readCommand(d)
	if e := AsError(err); e == nil || e.Fatal || !strings.Contains(e.Text, "longer than 100") {
		t.Fatalf("over-long line: error = %v, want BAD about the length", err)
	}
	if err := d.SkipCommand(); err != nil {
		t.Fatal(err)
	}
	if next, err := readCommand(d); err != nil || next.tag != "b" {
		t.Errorf("next command = %v, %v; want b NOOP", next, err)
	}

	d, _ = testDecoder("a CREATE "+strings.Repeat("x", 5000)+"\r\nb NOOP\r\n", Limits{Line: 100, Discard: 1000})
	readCommand(d)
	if e := AsError(d.SkipCommand()); e == nil || !e.Fatal {
		t.Errorf("line past the discard bound: SkipCommand error = %v, want fatal", e)
	}
}

// A synchronising literal over the limit gets NO [TOOBIG] without a
// continuation request; the client then sends nothing more of the command.
func TestSyncLiteralOverLimitIsRefusedWithoutContinuation(t *testing.T) {
	d, conts := testDecoder("a LOGIN {500}\r\nb NOOP\r\n", Limits{Literal: 100})
	_, err := readCommand(d)
	e := AsError(err)
	if e == nil || e.Code != imap.ResponseCodeTooBig || e.Fatal {
		t.Fatalf("error = %v, want [TOOBIG]", err)
	}
	if *conts != 0 {
		t.Errorf("%d continuation requests sent for a refused literal", *conts)
	}
	if err := d.SkipCommand(); err != nil {
		t.Fatal(err)
	}
	if next, err := readCommand(d); err != nil || next.tag != "b" {
		t.Errorf("next command = %v, %v; want b NOOP", next, err)
	}
}

// Issue 9 item 3: the bytes of a refused LITERAL+ literal never run as
// commands, whether it is read and discarded or the connection is closed.
func TestRefusedLiteralPlusIsNeverParsed(t *testing.T) {
	evil := strings.Repeat("a CREATE evil\r\n", 100) // 1500 bytes
	for _, tt := range []struct {
		name  string
		lim   Limits
		fatal bool
	}{
		{"discarded", Limits{Discard: 4096}, false},
		{"connection closed", Limits{Discard: 1000}, true},
		{"LITERAL- discarded", Limits{Discard: 8192, LiteralMinus: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := evil
			if tt.lim.LiteralMinus {
				body = strings.Repeat(evil, 4) // over 4096
			}
			in := fmt.Sprintf("x APPEND INBOX {%d+}\r\n%s\r\nz NOOP\r\n", len(body), body)
			d, _ := testDecoder(in, tt.lim)
			var ran []string
			for range 10 {
				d.Begin()
				tag, err := d.Tag()
				if err == nil {
					err = d.SP()
				}
				var name string
				if err == nil {
					name, err = d.Atom()
				}
				if err == nil && name == "APPEND" {
					d.SP()
					d.AString()
					d.SP()
					_, err = d.Literal(1000, false)
				}
				if err == nil {
					err = d.SkipCommand()
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					e := AsError(err)
					if e == nil {
						t.Fatal(err)
					}
					if name == "APPEND" && e.Code != imap.ResponseCodeTooBig {
						t.Errorf("APPEND refused with %v, want [TOOBIG]", e)
					}
					if e.Fatal {
						ran = append(ran, "closed")
						break
					}
					if err := d.SkipCommand(); err != nil {
						ran = append(ran, "closed")
						break
					}
				}
				ran = append(ran, tag+" "+name)
			}
			want := "[x APPEND z NOOP]"
			if tt.fatal {
				want = "[closed]"
			}
			if fmt.Sprint(ran) != want {
				t.Errorf("commands = %v, want %s", ran, want)
			}
		})
	}
}

// The literals of one command are bounded together, not only one by one.
func TestCommandLiteralBudget(t *testing.T) {
	lit := strings.Repeat("y", 60)
	in := "a SEARCH"
	for range 5 {
		in += fmt.Sprintf(" TEXT {60+}\r\n%s", lit)
	}
	in += "\r\nb NOOP\r\n"
	d, _ := testDecoder(in, Limits{Literal: 100, Command: 200, Discard: 1000})
	_, err := readCommand(d)
	if e := AsError(err); e == nil || e.Code != imap.ResponseCodeTooBig {
		t.Fatalf("error = %v, want [TOOBIG] once 200 bytes of literals are read", err)
	}
	// It names the command's budget, not a literal bound of "0 bytes".
	if e := AsError(err); !strings.Contains(e.Text, "200 bytes a command's literals may hold in all") {
		t.Errorf("text %q does not name the command's 200-byte budget", e.Text)
	}
	if err := d.SkipCommand(); err != nil {
		t.Fatal(err)
	}
	if next, err := readCommand(d); err != nil || next.tag != "b" {
		t.Errorf("next command = %v, %v; want b NOOP", next, err)
	}
}

// A size too large for any integer: a synchronising literal is refused
// and the connection goes on; a non-synchronising one cannot be skipped.
func TestLiteralSizeOverflow(t *testing.T) {
	huge := strings.Repeat("9", 30)
	d, _ := testDecoder("a LOGIN {"+huge+"}\r\nb NOOP\r\n", Limits{})
	_, err := readCommand(d)
	if e := AsError(err); e == nil || e.Fatal || e.Code != imap.ResponseCodeTooBig {
		t.Fatalf("sync: error = %v, want [TOOBIG], not fatal", err)
	}
	d.SkipCommand()
	if next, err := readCommand(d); err != nil || next.tag != "b" {
		t.Errorf("next command = %v, %v; want b NOOP", next, err)
	}
	d, _ = testDecoder("a LOGIN {"+huge+"+}\r\nb NOOP\r\n", Limits{})
	if _, err := readCommand(d); AsError(err) == nil || !AsError(err).Fatal {
		t.Errorf("non-sync: error = %v, want fatal", err)
	}
}

// literal8 is allowed only where the caller allows it (APPEND under
// BINARY); elsewhere it is BAD and its bytes are skipped.
func TestLiteral8(t *testing.T) {
	d, _ := testDecoder("a LOGIN ~{3+}\r\nabc x\r\nb NOOP\r\n", Limits{})
	if _, err := readCommand(d); AsError(err) == nil || AsError(err).Fatal {
		t.Fatalf("literal8 as a string: %v, want BAD", err)
	}
	d.SkipCommand()
	if next, err := readCommand(d); err != nil || next.tag != "b" {
		t.Errorf("next command = %v, %v; want b NOOP", next, err)
	}
	d, _ = testDecoder("~{4}\r\na\x00\x01b", Limits{})
	lit, err := d.Literal(10, true)
	if err != nil || !lit.Binary {
		t.Fatalf("Literal(binary) = %v, %v", lit, err)
	}
	if b, _ := io.ReadAll(lit); string(b) != "a\x00\x01b" {
		t.Errorf("literal8 bytes = %q", b)
	}
}

// The promise that matters for memory: nothing is allocated from the size
// a client announces, only from the bytes that arrive.
func TestNoAllocationFromAnnouncedSize(t *testing.T) {
	in := "a LOGIN {1000000000+}\r\nonly a few bytes"
	lim := Limits{Literal: 2 << 30, Command: 2 << 30}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d, _ := testDecoder(in, lim)
	_, err := readCommand(d)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("error = %v, want the end of the input", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("a 1 GB announced literal with 16 bytes sent allocated %d bytes", grew)
	}
}

func TestReadLine(t *testing.T) {
	d, _ := testDecoder("DONE\r\n"+strings.Repeat("x", 50)+"\r\n", Limits{Line: 20})
	if l, err := d.ReadLine(); err != nil || l != "DONE" {
		t.Errorf("ReadLine = %q, %v", l, err)
	}
	if _, err := d.ReadLine(); AsError(err) == nil {
		t.Errorf("ReadLine over the limit: %v, want BAD", err)
	}
}

func peek2(d *Decoder) byte {
	b, err := d.r.Peek(2)
	if err != nil {
		return 0
	}
	return b[1]
}
