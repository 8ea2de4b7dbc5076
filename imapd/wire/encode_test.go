package wire

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
)

func encoded(f func(e *Encoder)) string {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	e := NewEncoder(w)
	f(e)
	if err := e.Flush(); err != nil {
		return "error: " + err.Error()
	}
	return b.String()
}

// Server responses from the examples of RFC 9051 and RFC 3501.
func TestEncodeRFCExamples(t *testing.T) {
	pdt := time.FixedZone("", -7*3600)
	tests := []struct {
		rfc  string
		f    func(e *Encoder)
		want string
	}{
		{"9051 7.4.1 EXISTS", func(e *Encoder) { e.Star().Number(172).Raw(" EXISTS").CRLF() }, "* 172 EXISTS\r\n"},
		{"9051 6.3.2 UIDVALIDITY", func(e *Encoder) {
			e.Status("", imap.StatusResponseTypeOK, "UIDVALIDITY 3857529045", "UIDs valid")
		}, "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"},
		{"9051 6.3.2 tagged", func(e *Encoder) {
			e.Status("A142", imap.StatusResponseTypeOK, "READ-WRITE", "SELECT completed")
		}, "A142 OK [READ-WRITE] SELECT completed\r\n"},
		{"9051 6.3.2 FLAGS", func(e *Encoder) {
			e.Star().Raw("FLAGS ").Flags([]imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}).CRLF()
		}, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"},
		{"9051 7.5 continuation", func(e *Encoder) { e.Continuation("Ready for literal data") }, "+ Ready for literal data\r\n"},
		{"3501 7.4.2 FETCH", func(e *Encoder) {
			gray := envelope.Address{Name: "Terry Gray", Mailbox: "gray", Host: "cac.washington.edu"}
			e.Star().Number(12).Raw(" FETCH (FLAGS ").Flags([]imap.Flag{imap.FlagSeen}).
				Raw(" INTERNALDATE ").DateTime(time.Date(1996, 7, 17, 2, 44, 25, 0, pdt)).
				Raw(" RFC822.SIZE ").Number(4286).Raw(" ENVELOPE ").Envelope(&envelope.Envelope{
				Date:    time.Date(1996, 7, 17, 2, 23, 25, 0, pdt),
				Subject: "IMAP4rev1 WG mtg summary and minutes",
				From:    []envelope.Address{gray}, Sender: []envelope.Address{gray}, ReplyTo: []envelope.Address{gray},
				To: []envelope.Address{{Mailbox: "imap", Host: "cac.washington.edu"}},
				Cc: []envelope.Address{{Mailbox: "minutes", Host: "CNRI.Reston.VA.US"},
					{Name: "John Klensin", Mailbox: "KLENSIN", Host: "MIT.EDU"}},
				MessageID: "B27397-0100000@cac.washington.edu",
			}).Raw(" BODY ").BodyStructure(&imap.BodyStructureSinglePart{
				Type: "TEXT", Subtype: "PLAIN", Params: map[string]string{"CHARSET": "US-ASCII"},
				Encoding: "7BIT", Size: 3028, Text: &imap.BodyStructureText{NumLines: 92},
			}, false).Raw(")").CRLF()
		}, `* 12 FETCH (FLAGS (\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286 ENVELOPE ` +
			`("Wed, 17 Jul 1996 02:23:25 -0700" "IMAP4rev1 WG mtg summary and minutes" ` +
			`(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ` +
			`(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ` +
			`((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL ` +
			`"<B27397-0100000@cac.washington.edu>") BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))` + "\r\n"},
		{"3501 7.4.2 BODYSTRUCTURE multipart", func(e *Encoder) {
			e.BodyStructure(&imap.BodyStructureMultiPart{Subtype: "MIXED", Children: []imap.BodyStructure{
				&imap.BodyStructureSinglePart{Type: "TEXT", Subtype: "PLAIN", Params: map[string]string{"CHARSET": "US-ASCII"},
					Encoding: "7BIT", Size: 1152, Text: &imap.BodyStructureText{NumLines: 23}},
				&imap.BodyStructureSinglePart{Type: "TEXT", Subtype: "PLAIN",
					Params: map[string]string{"CHARSET": "US-ASCII", "NAME": "cc.diff"},
					ID:     "<960723163407.20117h@cac.washington.edu>", Description: "Compiler diff",
					Encoding: "BASE64", Size: 4554, Text: &imap.BodyStructureText{NumLines: 73}},
			}}, false)
		}, `(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") ` +
			`"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")`},
		{"3516 literal8", func(e *Encoder) { e.Literal(strings.NewReader("a\x00b"), 3, true) }, "~{3}\r\na\x00b"},
	}
	for _, tt := range tests {
		t.Run(tt.rfc, func(t *testing.T) {
			if got := encoded(tt.f); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// Issue 12: ENVELOPE keeps address groups (RFC 3501 7.4.2 group syntax).
func TestEnvelopeKeepsAddressGroups(t *testing.T) {
	got := encoded(func(e *Encoder) {
		e.Envelope(&envelope.Envelope{To: []envelope.Address{
			{Mailbox: "undisclosed-recipients"}, {},
			{Mailbox: "team"}, {Name: "Ann", Mailbox: "ann", Host: "example.org"}, {},
		}})
	})
	want := `(NIL NIL NIL NIL NIL ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)` +
		`(NIL NIL "team" NIL)("Ann" NIL "ann" "example.org")(NIL NIL NIL NIL)) NIL NIL NIL NIL)`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEncodeStrings(t *testing.T) {
	tests := []struct {
		in   string
		utf8 bool
		want string
	}{
		{"plain", false, `"plain"`},
		{`a "q" \b`, false, `"a \"q\" \\b"`},
		{"two\r\nlines", false, "{10}\r\ntwo\r\nlines"},
		{"Grüße", false, "{7}\r\nGrüße"},
		{"Grüße", true, `"Grüße"`},
		{"", false, `""`},
		{strings.Repeat("x", maxQuoted+1), false, "{1025}\r\n" + strings.Repeat("x", maxQuoted+1)},
	}
	for _, tt := range tests {
		got := encoded(func(e *Encoder) { e.UTF8 = tt.utf8; e.String(tt.in) })
		if got != tt.want {
			t.Errorf("String(%q, utf8 %v) = %q, want %q", tt.in, tt.utf8, got, tt.want)
		}
	}
	if got := encoded(func(e *Encoder) { e.NString("") }); got != "NIL" {
		t.Errorf("NString(\"\") = %q", got)
	}
	if got := encoded(func(e *Encoder) { e.AString("NIL").SP().AString("Sent").SP().AString("a b") }); got != `"NIL" Sent "a b"` {
		t.Errorf("AString = %q", got)
	}
	if got := encoded(func(e *Encoder) { e.Status("a", imap.StatusResponseTypeNo, "", "bad\r\nX OK injected") }); got != "a NO bad  X OK injected\r\n" {
		t.Errorf("a status text with CRLF = %q, want one line", got)
	}
}

// Whatever the Encoder writes as a string, the Decoder reads back.
func TestStringRoundTrip(t *testing.T) {
	for _, s := range []string{"", "x", `"\`, "a\r\nb", "Grüße", strings.Repeat("z", 3000), "NIL", "{5}"} {
		for _, utf := range []bool{false, true} {
			out := encoded(func(e *Encoder) { e.UTF8 = utf; e.String(s) })
			d, _ := testDecoder(out+"\r\n", Limits{})
			got, err := d.String()
			if err != nil || got != s {
				t.Errorf("round trip of %q (utf8 %v) via %q = %q, %v", s, utf, out, got, err)
			}
		}
	}
}

func TestMailboxNames(t *testing.T) {
	// RFC 3501 5.1.3's example.
	const name = "~peter/mail/台北/日本語"
	const enc = "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
	if got := EncodeMailbox(name); got != enc {
		t.Errorf("EncodeMailbox = %q, want %q", got, enc)
	}
	if got, err := DecodeMailbox(enc); err != nil || got != name {
		t.Errorf("DecodeMailbox = %q, %v", got, err)
	}
	for _, s := range []string{"A&B", "Entwürfe", "&&", "😀 mail", "tab\there"} {
		if got, err := DecodeMailbox(EncodeMailbox(s)); err != nil || got != s {
			t.Errorf("round trip of %q via %q = %q, %v", s, EncodeMailbox(s), got, err)
		}
	}
	// Issue 12: a bad name is the client's error (BAD/NO), not a server bug.
	for _, bad := range []string{"&", "&Jjo", "&AGE-", "ü", "x\x01", "&2D3-", "&U,BTFw"} {
		if got, err := DecodeMailbox(bad); err != ErrMailboxName {
			t.Errorf("DecodeMailbox(%q) = %q, %v; want ErrMailboxName", bad, got, err)
		}
	}
	if got := encoded(func(e *Encoder) { e.Mailbox("inbox").SP().Mailbox("Entwürfe").SP().Mailbox("a b") }); got != `INBOX Entw&APw-rfe "a b"` {
		t.Errorf("Mailbox = %q", got)
	}
	if got := encoded(func(e *Encoder) { e.UTF8 = true; e.Mailbox("Entwürfe") }); got != `"Entwürfe"` {
		t.Errorf("Mailbox with UTF8 = %q", got)
	}
}
