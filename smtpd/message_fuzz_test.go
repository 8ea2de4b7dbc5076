package smtpd

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// fuzzField is one header field as the fuzz oracle sees it: a first line
// and its continuation lines, CRLF included.
type fuzzField struct {
	name string // "" for lines before any field
	text string
}

// oracleHeader splits the header of a prepared copy (everything before the
// first empty line, or all of it) into fields. It is deliberately simpler
// than scanHeader: it only has to read what prepareMessage wrote.
func oracleHeader(t *testing.T, b []byte) []fuzzField {
	t.Helper()
	head := string(b)
	if i := strings.Index(head, "\r\n\r\n"); i >= 0 {
		head = head[:i+2]
	} else if strings.HasPrefix(head, "\r\n") {
		return nil
	}
	var fields []fuzzField
	for head != "" {
		line := head
		if i := strings.Index(head, "\r\n"); i >= 0 {
			line = head[:i+2]
		}
		head = head[len(line):]
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) == 0 {
				t.Fatalf("header starts with a continuation line %q", line)
			}
			fields[len(fields)-1].text += line
			continue
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			t.Fatalf("header line %q is not a field", line)
		}
		name := strings.TrimRight(line[:colon], " \t")
		for _, c := range []byte(name) {
			if c < 33 || c > 126 {
				t.Fatalf("header line %q has a bad field name", line)
			}
		}
		fields = append(fields, fuzzField{name: name, text: line})
	}
	return fields
}

// withoutBcc is the header with every Bcc field (and its continuation
// lines) dropped.
func withoutBcc(fields []fuzzField) string {
	var b strings.Builder
	for _, f := range fields {
		if !strings.EqualFold(f.name, "Bcc") {
			b.WriteString(f.text)
		}
	}
	return b.String()
}

func joinFields(fields []fuzzField) string {
	var b strings.Builder
	for _, f := range fields {
		b.WriteString(f.text)
	}
	return b.String()
}

// FuzzPrepareMessage feeds prepareMessage (header scanning, Bcc removal,
// Message-ID, Date, Subject and importance handling) and receivedField
// arbitrary bytes. Whatever comes in: no panic; each copy starts with its
// trace fields (Return-Path, then Received) and ends with the message's own
// body bytes; the sender's copy is the normalised message with header lines
// only inserted; the recipients' and the relay's copies are that same
// message minus its Bcc fields and nothing else; a Message-ID and a Date
// are always present.
func FuzzPrepareMessage(f *testing.F) {
	f.Add([]byte(fullHeader+"To: b@example.test\r\nBcc: c@example.test,\r\n d@example.test\r\nSubject: s\r\n\r\nbody\r\n"), "client.test", "<>")
	f.Add([]byte("Subject: =?utf-8?q?caf=C3=A9?=\nImportance: high\nX-Priority: 1 (Highest)\n\nbare LF body\n"), "[127.0.0.1]", "a@b")
	f.Add([]byte("no header at all\r\n"), "", "")
	f.Add([]byte("From: a@example.test\r\nSubject: no final newline"), "x\r\ny", "a@b")
	f.Add([]byte(" continuation first\r\nBcc: x\r\n\r\n"), "ok", "a@b")
	f.Add([]byte("bcc : obsolete spacing\r\nBCC:\r\n\tfolded\r\nTo: x\r\n\r\nBcc: body line\r\n"), "h", "a@b")
	f.Add([]byte("Message-ID:   \r\nDate:\r\nSubject: =?bogus?x?zz?=\r\n\r\n"), "h", "a@b")
	f.Add([]byte("\r\n\r\nonly a body\r\n"), "h", "a@b")
	f.Add([]byte("A: b\r\n\rX\r\n\x00\xff\n.\r\n"), "h\x00", "a@b")
	f.Fuzz(func(t *testing.T, raw []byte, helo, returnPath string) {
		received := receivedField(receivedInfo{
			helo: helo, remote: netip.MustParseAddr("127.0.0.1"), hostname: testHostname,
			protocol: withProtocol(true, true), id: "ABC", rcpt: bob, date: testNow,
		})
		checkReceived(t, received)
		in := prepareInput{received: received, returnPath: returnPath, hostname: testHostname, now: testNow}
		m := prepareMessage(bytes.Clone(raw), in)

		// Independent of message.NormalizeLineEndings: every LF and
		// every bare CR ends up as CRLF.
		norm := bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
		norm = bytes.ReplaceAll(bytes.ReplaceAll(norm, []byte("\r"), []byte("\n")), []byte("\n"), []byte("\r\n"))

		if !bytes.HasPrefix(m.sent, []byte(received)) {
			t.Fatalf("sender's copy does not start with the Received field:\n%q", m.sent)
		}
		sent := m.sent[len(received):]
		if bytes.HasPrefix(sent, []byte("Received:")) {
			t.Fatalf("sender's copy has a second Received at the top (the original had none): %q", m.sent)
		}
		checkInsertedOnly(t, norm, sent)
		checkBodyKept(t, norm, sent)

		sentFields := oracleHeader(t, sent)
		var hasID, hasDate bool
		for _, fl := range sentFields {
			hasID = hasID || strings.EqualFold(fl.name, "Message-ID")
			hasDate = hasDate || strings.EqualFold(fl.name, "Date")
		}
		if !hasID || !hasDate {
			t.Fatalf("sender's copy lacks Message-ID (%v) or Date (%v):\n%q", hasID, hasDate, sent)
		}
		// A bare CR inside the field survives unfolding; the queue checks
		// for CR and LF before reusing the ID in a header.
		if m.messageID == "" || strings.Contains(m.messageID, "\n") {
			t.Fatalf("message ID %q is empty or spans lines", m.messageID)
		}
		wantRest := withoutBcc(sentFields) + string(sent[len(joinFields(sentFields)):])

		rp := "Return-Path: <" + returnPath + ">\r\n" + received
		for _, c := range []struct {
			name, prefix string
			copy         []byte
		}{{"recipients'", rp, m.delivered}, {"relay", received, m.relayed}} {
			if !bytes.HasPrefix(c.copy, []byte(c.prefix)) {
				t.Fatalf("%s copy does not start with its trace fields:\n%q", c.name, c.copy)
			}
			rest := c.copy[len(c.prefix):]
			for _, fl := range oracleHeader(t, rest) {
				if strings.EqualFold(fl.name, "Bcc") {
					t.Fatalf("%s copy keeps a Bcc field %q:\n%q", c.name, fl.text, c.copy)
				}
			}
			if string(rest) != wantRest {
				t.Fatalf("%s copy is not the sender's copy minus Bcc:\n got %q\nwant %q", c.name, rest, wantRest)
			}
		}
	})
}

// checkReceived: the Received field is CRLF lines, folded with a tab, and
// the client-chosen EHLO name cannot add a line or a field.
func checkReceived(t *testing.T, received string) {
	t.Helper()
	if !strings.HasPrefix(received, "Received: from ") || !strings.HasSuffix(received, "\r\n") {
		t.Fatalf("Received field malformed: %q", received)
	}
	lines := strings.Split(strings.TrimSuffix(received, "\r\n"), "\r\n")
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\n\x00") {
			t.Fatalf("Received line %q holds a control character", l)
		}
		if i > 0 && !strings.HasPrefix(l, "\t") {
			t.Fatalf("Received continuation %q does not start with a tab", l)
		}
	}
}

// checkInsertedOnly: out is norm with bytes inserted at one place (header
// lines added), nothing removed or changed.
func checkInsertedOnly(t *testing.T, norm, out []byte) {
	t.Helper()
	if len(out) < len(norm) {
		t.Fatalf("sender's copy is shorter than the message:\n got %q\nfrom %q", out, norm)
	}
	p := 0
	for p < len(norm) && out[p] == norm[p] {
		p++
	}
	s := 0
	for s < len(norm)-p && out[len(out)-1-s] == norm[len(norm)-1-s] {
		s++
	}
	if p+s < len(norm) {
		t.Fatalf("sender's copy changes the message beyond inserting header lines:\n got %q\nfrom %q", out, norm)
	}
}

// checkBodyKept: everything from the first empty line of the message on is
// the body (or part of it) and ends every copy byte for byte.
func checkBodyKept(t *testing.T, norm, out []byte) {
	t.Helper()
	var body []byte
	switch i := bytes.Index(norm, []byte("\r\n\r\n")); {
	case bytes.HasPrefix(norm, []byte("\r\n")):
		body = norm
	case i >= 0:
		body = norm[i+2:]
	}
	if !bytes.HasSuffix(out, body) {
		t.Fatalf("body not kept byte for byte:\n got %q\nbody %q", out, body)
	}
}

// Found by FuzzPrepareMessage: with BDAT the data may end inside the
// header, without a final CRLF. When that last field was a Bcc, dropping
// it left the CRLF completing it behind as an empty line, so the
// recipients' copy had an empty header and the Message-ID and Date fields
// added after it became body text.
func TestPrepareMessageDropsBccThatEndsTheDataWithoutNewline(t *testing.T) {
	m := prepareForTest("From: a@example.test\r\nTo: b@example.test\r\nBcc: c@example.test")
	h := headerOf(m.delivered)
	if strings.Contains(h, "Bcc") || !strings.Contains(h, "\r\nMessage-ID: <") || !strings.Contains(h, "\r\nDate: ") {
		t.Errorf("recipients' header lacks Message-ID or Date, or keeps Bcc:\n%q", m.delivered)
	}
	if strings.Contains(string(m.delivered), "\r\n\r\n") {
		t.Errorf("recipients' copy has an empty line, so part of its header is body:\n%q", m.delivered)
	}
	if want := "Received: test\r\nFrom: a@example.test\r\nTo: b@example.test\r\nBcc: c@example.test\r\nMessage-ID: <"; !strings.HasPrefix(string(m.sent), want) {
		t.Errorf("sender's copy:\n%q\nwant prefix %q", m.sent, want)
	}
}
