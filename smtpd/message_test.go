package smtpd

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	testNow         = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	regexpMessageID = regexp.MustCompile(`<[A-Z2-7]+@mail\.example\.test>`)
)

func prepareForTest(raw string) editedMessage {
	return prepareMessage([]byte(raw), prepareInput{
		received:   "Received: test\r\n",
		returnPath: alice,
		hostname:   testHostname,
		now:        testNow,
	})
}

const fullHeader = "From: a@example.test\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\nMessage-ID: <x@example.test>\r\n"

func TestPrepareMessageStripsFoldedBccOnlyFromDelivered(t *testing.T) {
	raw := fullHeader +
		"To: b@example.test\r\n" +
		"BCC: c@example.test,\r\n" +
		"  d@example.test,\r\n" +
		"\te@example.test\r\n" +
		"Subject: s\r\n" +
		"bcc: f@example.test\r\n" +
		"\r\n" +
		"Bcc: this line is body text\r\n"
	m := prepareForTest(raw)

	wantDelivered := "Return-Path: <alice@example.test>\r\nReceived: test\r\n" + fullHeader +
		"To: b@example.test\r\n" +
		"Subject: s\r\n" +
		"\r\n" +
		"Bcc: this line is body text\r\n"
	if string(m.delivered) != wantDelivered {
		t.Errorf("delivered copy:\n%q\nwant\n%q", m.delivered, wantDelivered)
	}
	if string(m.sent) != "Received: test\r\n"+raw {
		t.Errorf("Sent copy:\n%q\nwant the original with Received only", m.sent)
	}
}

func TestPrepareMessageKeepsBodyByteExact(t *testing.T) {
	body := "line one\r\n\r\n.leading dot\r\nFrom: not a header\r\n\ttab\r\n\x00\xff binary\r\n"
	m := prepareForTest(fullHeader + "\r\n" + body)
	if !strings.HasSuffix(string(m.delivered), "\r\n\r\n"+body) || !strings.HasSuffix(string(m.sent), "\r\n\r\n"+body) {
		t.Errorf("body changed:\n%q", m.delivered)
	}
}

// A bare CR would reach IMAP clients and the relay as it came; "\r.\r"
// looks like the end of DATA to a receiver that takes CR as a line end.
func TestPrepareMessageNormalisesBareCR(t *testing.T) {
	m := prepareForTest(fullHeader + "\r\nbefore\r.\rafter\rend\r\n")
	for name, c := range map[string][]byte{"sent": m.sent, "delivered": m.delivered, "relayed": m.relayed} {
		if !strings.HasSuffix(string(c), "\r\n\r\nbefore\r\n.\r\nafter\r\nend\r\n") {
			t.Errorf("%s copy keeps a bare CR:\n%q", name, c)
		}
	}
}

// The copies share the body bytes: the recipients' and the relay's copies
// are slices of one buffer, and without Bcc the sender's is the relay's.
func TestPrepareMessageSharesTheBody(t *testing.T) {
	m := prepareForTest(fullHeader + "\r\nbody\r\n")
	if &m.relayed[len(m.relayed)-1] != &m.delivered[len(m.delivered)-1] || &m.sent[0] != &m.relayed[0] {
		t.Error("the copies of a message without Bcc do not share one buffer")
	}
	m = prepareForTest(fullHeader + "Bcc: c@example.test\r\n\r\nbody\r\n")
	if &m.relayed[len(m.relayed)-1] != &m.delivered[len(m.delivered)-1] {
		t.Error("the recipients' and the relay's copies do not share one buffer")
	}
}

func TestPrepareMessageNormalisesBareLF(t *testing.T) {
	m := prepareForTest("From: a@example.test\nDate: x\nMessage-ID: <y>\n\nbody\nmore\r\nend\n")
	want := "Received: test\r\nFrom: a@example.test\r\nDate: x\r\nMessage-ID: <y>\r\n\r\nbody\r\nmore\r\nend\r\n"
	if string(m.sent) != want {
		t.Errorf("got\n%q\nwant\n%q", m.sent, want)
	}
}

func TestPrepareMessageAddsMessageIDAndDateWhenMissing(t *testing.T) {
	m := prepareForTest("From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n")
	h := headerOf(m.sent)
	if !strings.Contains(h, "Subject: s\r\nMessage-ID: <") || !strings.Contains(h, "@"+testHostname+">\r\n") {
		t.Errorf("no Message-ID at the end of the header:\n%s", h)
	}
	if !strings.Contains(h, "Date: Tue, 04 Mar 2025 05:06:07 +0000\r\n") {
		t.Errorf("no Date in the header:\n%s", h)
	}
	if !strings.HasSuffix(string(m.sent), "\r\n\r\nbody\r\n") {
		t.Errorf("body moved: %q", m.sent)
	}

	kept := prepareForTest(fullHeader + "\r\nbody\r\n")
	if string(kept.sent) != "Received: test\r\n"+fullHeader+"\r\nbody\r\n" {
		t.Errorf("fields added although present:\n%q", kept.sent)
	}
}

func TestPrepareMessageWithoutSeparatorGetsOne(t *testing.T) {
	for _, tc := range []struct{ name, raw, want string }{
		{"body line right after the fields", fullHeader + "no colon here\r\n",
			"Received: test\r\n" + fullHeader + "\r\nno colon here\r\n"},
		{"no header at all", "just text\r\n",
			"Received: test\r\nMessage-ID: <ID>\r\nDate: Tue, 04 Mar 2025 05:06:07 +0000\r\n\r\njust text\r\n"},
		{"header only", fullHeader, "Received: test\r\n" + fullHeader},
		{"header without final CRLF", "Date: x\r\nMessage-ID: <y>", "Received: test\r\nDate: x\r\nMessage-ID: <y>\r\n"},
		{"empty message", "",
			"Received: test\r\nMessage-ID: <ID>\r\nDate: Tue, 04 Mar 2025 05:06:07 +0000\r\n"},
		{"first line folded", " folded\r\n",
			"Received: test\r\nMessage-ID: <ID>\r\nDate: Tue, 04 Mar 2025 05:06:07 +0000\r\n\r\n folded\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(prepareForTest(tc.raw).sent)
			got = regexpMessageID.ReplaceAllString(got, "<ID>")
			if got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestScanHeaderAcceptsBlanksBeforeColon(t *testing.T) {
	h := scanHeader([]byte("Subject : obsolete but legal\r\nBcc\t: x\r\n\r\nbody"))
	if len(h.fields) != 2 || h.fields[1].name != "Bcc" || !h.blank {
		t.Fatalf("fields %+v blank %v", h.fields, h.blank)
	}
}

func TestReceivedField(t *testing.T) {
	got := receivedField(receivedInfo{
		helo:     "evil (comment)\tname;",
		remote:   netip.MustParseAddr("2001:db8::1"),
		hostname: testHostname,
		protocol: withProtocol(true, false),
		id:       "0123456789abcdef",
		date:     testNow,
	})
	want := "Received: from evil__comment__name_ ([IPv6:2001:db8::1])\r\n" +
		"\tby mail.example.test with ESMTPS id 0123456789abcdef;\r\n" +
		"\tTue, 04 Mar 2025 05:06:07 +0000\r\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestNormalizeAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"Bob@Example.TEST", "Bob@example.test", true},
		{"bob@example.test.", "bob@example.test", true},
		{"user@[192.0.2.1]", "user@[192.0.2.1]", true},
		{"bob@bad_domain.test", "", false},
		{"bob@-dash.test", "", false},
		{"bob@exa..mple", "", false},
		{"b ob@example.test", "", false},
		{"bøb@example.test", "", false},
		{strings.Repeat("a", 65) + "@example.test", "", false},
		{"@example.test", "", false},
	} {
		got, ok := normalizeAddress(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("normalizeAddress(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
