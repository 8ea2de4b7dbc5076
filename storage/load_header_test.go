package storage

import (
	"bufio"
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"
)

// TestHeaderLoadsTheRawHeaderAlone checks LoadOptions.Header: the raw
// message up to the empty line that ends its header, whatever the line
// ends, without the body unless asked for, and never sharing memory a
// caller could write through into the body.
func TestHeaderLoadsTheRawHeaderAlone(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	mustCreateUser(t, s, "alice@example.com")
	for _, tc := range []struct{ name, raw, header string }{
		{"CRLF", "Subject: a\r\nFrom: b@example.com\r\n\r\nbody\r\n\r\nmore\r\n", "Subject: a\r\nFrom: b@example.com\r\n\r\n"},
		{"LF", "Subject: a\nX: b\n\nbody\n\nmore\n", "Subject: a\nX: b\n\n"},
		{"folded", "Subject: a\r\n b\r\n\r\nbody\r\n", "Subject: a\r\n b\r\n\r\n"},
		{"LF blank line after CRLF lines", "Subject: a\r\n\nbody\r\n\r\n", "Subject: a\r\n\n"},
		{"no body", "Subject: only a header\r\n", "Subject: only a header\r\n"},
		{"no header", "\r\nbody\r\n\r\n", "\r\n"},
		{"no header, LF", "\nbody\n\n", "\n"},
	} {
		a := mustAppend(t, s, "alice@example.com", Inbox, tc.raw)
		msgs, err := s.Messages(ctx, "alice@example.com", a.MailboxID, []imap.UID{a.UID}, LoadOptions{Header: true})
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: load header: %v, %d messages", tc.name, err, len(msgs))
		}
		m := msgs[0]
		if string(m.Header) != tc.header || m.Body != nil {
			t.Errorf("%s: header %q, body %q; want header %q, no body", tc.name, m.Header, m.Body, tc.header)
		}
		// textproto.ReadHeader finds the same fields in the header alone.
		full, fullErr := textproto.ReadHeader(bufio.NewReader(bytes.NewReader([]byte(tc.raw))))
		alone, aloneErr := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(m.Header)))
		if (fullErr == nil) != (aloneErr == nil) || !reflect.DeepEqual(fields(full), fields(alone)) {
			t.Errorf("%s: header alone parses to %v (%v), the message to %v (%v)", tc.name, fields(alone), aloneErr, fields(full), fullErr)
		}

		msgs, err = s.Messages(ctx, "alice@example.com", a.MailboxID, []imap.UID{a.UID}, LoadOptions{Header: true, Body: true})
		if err != nil {
			t.Fatal(err)
		}
		m = msgs[0]
		if string(m.Header) != tc.header || string(m.Body) != tc.raw {
			t.Errorf("%s: with the body: header %q, body %q", tc.name, m.Header, m.Body)
		}
		if grown := append(m.Header, 'X'); string(m.Body) != tc.raw || string(grown) != tc.header+"X" {
			t.Errorf("%s: appending to Header changed Body to %q", tc.name, m.Body)
		}
	}
}

func fields(h textproto.Header) []string {
	var out []string
	for f := h.Fields(); f.Next(); {
		out = append(out, f.Key()+": "+f.Value())
	}
	return out
}
