package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzDecoder reads arbitrary input as a session of commands, as the
// server does: every command either decodes or fails with an *Error, a
// failed one is skipped, and a fatal error ends the session. Nothing
// panics, nothing reads past its limits, and a refused literal's bytes are
// never decoded as a command.
func FuzzDecoder(f *testing.F) {
	for _, seed := range []string{
		"a001 LOGIN SMITH SESAME\r\n",
		"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n",
		"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n",
		"A654 FETCH 2:4,7:* (FLAGS BODY.PEEK[TEXT]<0.10>)\r\n",
		"a FETCH 0:5 FLAGS\r\nb NOOP\r\n",
		"x APPEND INBOX {40+}\r\na CREATE evil\r\na CREATE evil\r\nabcdefghij\r\nz NOOP\r\n",
		"a LOGIN ~{3+}\r\nabc x\r\n",
		"a SEARCH SINCE 1-Feb-1994 TEXT \"x\\\"y\"\r\n",
		"a LIST \"\" %\r\na STORE $ +FLAGS (\\Seen \\*)\r\n",
	} {
		f.Add([]byte(seed))
	}
	lim := Limits{Line: 200, Literal: 50, Command: 100, Discard: 300}
	f.Fuzz(func(t *testing.T, in []byte) {
		d := NewDecoder(bufio.NewReaderSize(bytes.NewReader(in), 16), lim)
		for range 50 {
			c, err := readCommand(d)
			if err == nil {
				if len(c.tag) == 0 || strings.ContainsAny(c.tag, " +\r\n") {
					t.Fatalf("decoded tag %q", c.tag)
				}
				continue
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			e := AsError(err)
			if e == nil {
				t.Fatalf("error %v is neither an *Error nor the end of the input", err)
			}
			if e.Fatal {
				return
			}
			if err := d.SkipCommand(); err != nil {
				if AsError(err) == nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("SkipCommand: %v", err)
				}
				return
			}
		}
	})
}
