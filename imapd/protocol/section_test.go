package protocol

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// A message shaped like RFC 3501 6.4.5's section example: a multipart with
// a text part, a base64 part holding NUL bytes, and an attached message
// that is itself multipart.
const sectionMessage = "From: a@example.org\r\n" +
	"Subject: parts\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--outer\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"part one\r\n" +
	"--outer\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"AAEC\r\n/w==\r\n" +
	"--outer\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"Subject: inner\r\n" +
	"Content-Type: multipart/alternative; boundary=inner\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"inner plain\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html\r\n" +
	"\r\n" +
	"<p>inner html</p>\r\n" +
	"--inner--\r\n" +
	"--outer--\r\n"

func TestExtractBodySection(t *testing.T) {
	tests := []struct {
		name string
		s    imap.FetchItemBodySection
		want string
	}{
		{"whole", imap.FetchItemBodySection{}, sectionMessage},
		{"header fields", imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject"}},
			"Subject: parts\r\n\r\n"},
		{"header fields not", imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Content-Type", "Subject"}},
			"From: a@example.org\r\n\r\n"},
		{"1", imap.FetchItemBodySection{Part: []int{1}}, "part one"},
		{"1.MIME", imap.FetchItemBodySection{Part: []int{1}, Specifier: imap.PartSpecifierMIME}, "Content-Type: text/plain\r\n\r\n"},
		{"3.HEADER", imap.FetchItemBodySection{Part: []int{3}, Specifier: imap.PartSpecifierHeader},
			"Subject: inner\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"},
		{"3.1", imap.FetchItemBodySection{Part: []int{3, 1}}, "inner plain"},
		{"3.2", imap.FetchItemBodySection{Part: []int{3, 2}}, "<p>inner html</p>"},
		{"3.2 partial", imap.FetchItemBodySection{Part: []int{3, 2}, Partial: &imap.SectionPartial{Offset: 3, Size: 5}}, "inner"},
		{"partial past the end", imap.FetchItemBodySection{Partial: &imap.SectionPartial{Offset: 1 << 20, Size: 5}}, ""},
	}
	for _, tt := range tests {
		if got := string(ExtractBodySection([]byte(sectionMessage), &tt.s)); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	for _, missing := range [][]int{{4}, {1, 1}, {3, 3}, {0}} {
		if got := ExtractBodySection([]byte(sectionMessage), &imap.FetchItemBodySection{Part: missing}); got != nil {
			t.Errorf("part %v: got %q, want nil (no such part)", missing, got)
		}
	}
	single := "Subject: s\r\n\r\nbody\r\n"
	if got := string(ExtractBodySection([]byte(single), &imap.FetchItemBodySection{Part: []int{1}})); got != "body\r\n" {
		t.Errorf("part 1 of a single-part message = %q, want its body", got)
	}
}

// Issue 12: BINARY decodes a body holding NUL bytes, and partial fetches
// keep their offset.
func TestExtractBinarySection(t *testing.T) {
	got := ExtractBinarySection([]byte(sectionMessage), &imap.FetchItemBinarySection{Part: []int{2}})
	if string(got) != "\x00\x01\x02\xff" {
		t.Errorf("BINARY[2] = %q, want the decoded bytes", got)
	}
	if n := ExtractBinarySectionSize([]byte(sectionMessage), &imap.FetchItemBinarySectionSize{Part: []int{2}}); n != 4 {
		t.Errorf("BINARY.SIZE[2] = %d, want 4", n)
	}
	got = ExtractBinarySection([]byte(sectionMessage), &imap.FetchItemBinarySection{Part: []int{2}, Partial: &imap.SectionPartial{Offset: 1, Size: 2}})
	if string(got) != "\x01\x02" {
		t.Errorf("BINARY[2]<1.2> = %q", got)
	}
}

func TestBinaryFetchNamesItsOffset(t *testing.T) {
	tc := startServer(t, Options{})
	tc.login()
	tc.send("s SELECT INBOX\r\n")
	tc.until("s")
	tc.send("f FETCH 1 BINARY.PEEK[1]<3.5>\r\n")
	tc.expect("* 1 FETCH (BINARY[1]<3> ~{5}")
	tc.until("f")
}

func TestMatchList(t *testing.T) {
	tests := []struct {
		name, ref, pattern string
		want               bool
	}{
		{"INBOX", "", "*", true},
		{"a/b/c", "", "*", true},
		{"a/b/c", "", "%", false},
		{"a/b/c", "", "a/%/c", true},
		{"a/b/c", "", "a/%", false},
		{"a/b/c", "a", "%/c", true},
		{"a/b/c", "a/", "b/*", true},
		{"a/b/c", "x", "/a/*", true},
		{"Archive", "", "Arch%", true},
		{"Archive", "", "arch%", false},
		{"", "", "", true},
	}
	for _, tt := range tests {
		if got := MatchList(tt.name, '/', tt.ref, tt.pattern); got != tt.want {
			t.Errorf("MatchList(%q, %q, %q) = %v, want %v", tt.name, tt.ref, tt.pattern, got, tt.want)
		}
	}
	// Linear in the product of the lengths: a backtracking matcher takes
	// exponential time on this.
	name := strings.Repeat("a", 5000)
	if MatchList(name, '/', "", strings.Repeat("*a", 200)+"b") {
		t.Error("pathological pattern matched")
	}
}

// Sequence numbers across sessions: an expunge by one session renumbers
// another only once it has been told.
func TestTrackerRenumbersOnlyWhenTold(t *testing.T) {
	box := NewMailboxTracker(5)
	a, b := box.NewSession(), box.NewSession()
	box.QueueExpunge(2)     // server: 4 messages now
	box.QueueNumMessages(5) // one arrives: 5 again
	box.QueueMessageFlags(4, 40, []imap.Flag{imap.FlagSeen}, a)

	// b has been told nothing: its numbers are the old ones.
	if got := b.DecodeSeqNum(2); got != 0 {
		t.Errorf("b's message 2 (expunged, not told) decodes to %d, want 0", got)
	}
	if got := b.DecodeSeqNum(5); got != 4 {
		t.Errorf("b's message 5 decodes to %d, want server 4", got)
	}
	if got := b.EncodeSeqNum(5); got != 0 {
		t.Errorf("the new message encodes to %d for b, want 0 (not told)", got)
	}
	if got := b.EncodeSeqNum(1); got != 1 {
		t.Errorf("server 1 encodes to %d for b", got)
	}
	if got := b.EncodeSeqNum(2); got != 3 {
		t.Errorf("server 2 encodes to %d for b, want 3", got)
	}

	rec := &recordingUpdates{}
	if err := b.poll(rec, false, nil); err != nil {
		t.Fatal(err)
	}
	if len(rec.lines) != 0 {
		t.Errorf("poll without expunges wrote %q, want nothing (the expunge comes first)", rec.lines)
	}
	if err := b.poll(rec, true, nil); err != nil {
		t.Fatal(err)
	}
	lines := rec.lines
	want := []string{"EXPUNGE 2", "EXISTS 5", "FETCH 4 UID 40 [\\Seen]"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("b was told %q, want %q", lines, want)
	}
	if got := b.DecodeSeqNum(5); got != 5 {
		t.Errorf("after polling, b's 5 decodes to %d", got)
	}
	// a made the flag change itself and is not told of it.
	rec = &recordingUpdates{}
	a.poll(rec, true, nil)
	if strings.Join(rec.lines, "|") != "EXPUNGE 2|EXISTS 5" {
		t.Errorf("a was told %q", rec.lines)
	}
}

// An EXISTS followed by expunges of messages the client knew is written
// as the expunges then the smaller EXISTS (MOVE into the selected mailbox,
// RFC 6851); anything else keeps its order.
func TestTrackerWritesExpungesBeforeExists(t *testing.T) {
	for _, tt := range []struct {
		name  string
		known uint32
		queue func(*MailboxTracker)
		want  string
	}{
		{"move into itself", 1, func(b *MailboxTracker) {
			b.QueueNumMessages(2)
			b.QueueExpunge(1)
		}, "EXPUNGE 1|EXISTS 1"},
		{"move two of three into itself", 3, func(b *MailboxTracker) {
			b.QueueNumMessages(5)
			b.QueueExpunge(1)
			b.QueueExpunge(2) // the old third message
		}, "EXPUNGE 1|EXPUNGE 2|EXISTS 3"},
		{"the new message expunged", 1, func(b *MailboxTracker) {
			b.QueueNumMessages(2)
			b.QueueExpunge(2)
		}, "EXISTS 2|EXPUNGE 2"},
		{"only the old ones move ahead", 2, func(b *MailboxTracker) {
			b.QueueNumMessages(3)
			b.QueueExpunge(1)
			b.QueueExpunge(2) // the new one, now second
		}, "EXPUNGE 1|EXISTS 2|EXPUNGE 2"},
		{"flags in between", 1, func(b *MailboxTracker) {
			b.QueueNumMessages(2)
			b.QueueMessageFlags(2, 20, []imap.Flag{imap.FlagSeen}, nil)
			b.QueueExpunge(1)
		}, "EXISTS 2|FETCH 2 UID 20 [\\Seen]|EXPUNGE 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			box := NewMailboxTracker(tt.known)
			st := box.NewSession()
			tt.queue(box)
			rec := &recordingUpdates{}
			if err := st.poll(rec, true, nil); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(rec.lines, "|"); got != tt.want {
				t.Errorf("told %q, want %q", got, tt.want)
			}
		})
	}
}

type recordingUpdates struct{ lines []string }

func (r *recordingUpdates) WriteExpunge(seq uint32) error {
	r.lines = append(r.lines, fmt.Sprintf("EXPUNGE %d", seq))
	return nil
}

func (r *recordingUpdates) WriteNumMessages(n uint32) error {
	r.lines = append(r.lines, fmt.Sprintf("EXISTS %d", n))
	return nil
}

func (r *recordingUpdates) WriteMailboxFlags(flags []imap.Flag) error {
	r.lines = append(r.lines, fmt.Sprintf("FLAGS %v", flags))
	return nil
}

func (r *recordingUpdates) WriteMessageFlags(seq uint32, uid imap.UID, flags []imap.Flag) error {
	r.lines = append(r.lines, fmt.Sprintf("FETCH %d UID %d %v", seq, uid, flags))
	return nil
}

// imaptest's fetch-body-mime message: a boundary parameter folded across
// two lines. Unfolding removes only the CRLF (RFC 5322 2.2.3), so the
// boundary is "foo bar" with one space; parts of an attached message are
// numbered inside it.
func TestExtractSectionFoldedBoundary(t *testing.T) {
	msg := "From: user@domain.org\r\n" +
		"Content-Type: multipart/mixed; boundary=\"foo\r\n bar\"\r\n" +
		"\r\n" +
		"Root MIME prologue\r\n\r\n" +
		"--foo bar\r\n" +
		"Content-Type: text/x-myown; charset=us-ascii\r\n\r\n" +
		"hello\r\n\r\n" +
		"--foo bar\r\n" +
		"Content-Type: message/rfc822\r\n\r\n" +
		"From: sub@domain.org\r\n" +
		"Subject: submsg\r\n" +
		"Content-Type: multipart/alternative; boundary=\"sub1\"\r\n\r\n" +
		"Sub MIME prologue\r\n" +
		"--sub1\r\n" +
		"Content-Type: text/html\r\n\r\n" +
		"<p>Hello world</p>\r\n\r\n" +
		"--sub1\r\n" +
		"Content-Type: text/plain\r\n\r\n" +
		"Hello another world\r\n\r\n" +
		"--sub1--\r\n" +
		"Sub MIME epilogue\r\n\r\n" +
		"--foo bar--\r\n" +
		"Root MIME epilogue\r\n"
	tests := []struct {
		name string
		s    imap.FetchItemBodySection
		want string
	}{
		{"1", imap.FetchItemBodySection{Part: []int{1}}, "hello\r\n"},
		{"2.MIME", imap.FetchItemBodySection{Part: []int{2}, Specifier: imap.PartSpecifierMIME}, "Content-Type: message/rfc822\r\n\r\n"},
		{"2.1", imap.FetchItemBodySection{Part: []int{2, 1}}, "<p>Hello world</p>\r\n"},
		{"2.2", imap.FetchItemBodySection{Part: []int{2, 2}}, "Hello another world\r\n"},
		{"2.2.MIME", imap.FetchItemBodySection{Part: []int{2, 2}, Specifier: imap.PartSpecifierMIME}, "Content-Type: text/plain\r\n\r\n"},
	}
	for _, tt := range tests {
		if got := string(ExtractBodySection([]byte(msg), &tt.s)); got != tt.want {
			t.Errorf("BODY[%s] = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// imaptest's fetch-body-message-rfc822-mime: a part of a multipart/digest
// without Content-Type is message/rfc822 (RFC 2046 5.1.5), so it has a
// HEADER and a TEXT.
func TestExtractSectionDigestPart(t *testing.T) {
	msg := "Content-Type: message/rfc822\r\n\r\n" +
		"Subject: submsg\r\n" +
		"Content-Type: multipart/digest; boundary=\"foo\"\r\n\r\n" +
		"prologue\r\n\r\n" +
		"--foo \r\n\r\n" +
		"From: m1@example.com\r\nSubject: m1\r\n\r\nm1 body\r\n\r\n" +
		"--foo \r\n" +
		"X-Mime: m2 header\r\n\r\n" +
		"From: m2@example.com\r\nSubject: m2\r\n\r\nm2 body\r\n\r\n" +
		"--foo--\r\n"
	tests := []struct {
		name string
		s    imap.FetchItemBodySection
		want string
	}{
		{"1.2.MIME", imap.FetchItemBodySection{Part: []int{1, 2}, Specifier: imap.PartSpecifierMIME}, "X-Mime: m2 header\r\n\r\n"},
		{"1.2.HEADER", imap.FetchItemBodySection{Part: []int{1, 2}, Specifier: imap.PartSpecifierHeader}, "From: m2@example.com\r\nSubject: m2\r\n\r\n"},
		{"1.2.TEXT", imap.FetchItemBodySection{Part: []int{1, 2}, Specifier: imap.PartSpecifierText}, "m2 body\r\n"},
		{"1.1.TEXT", imap.FetchItemBodySection{Part: []int{1, 1}, Specifier: imap.PartSpecifierText}, "m1 body\r\n"},
	}
	for _, tt := range tests {
		if got := string(ExtractBodySection([]byte(msg), &tt.s)); got != tt.want {
			t.Errorf("BODY[%s] = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// Told: a queued flags update from the modseq a session has just shown the
// message at, or an older one, is dropped, also behind an expunge; a newer
// one and another message's are written.
func TestTrackerDropsFlagsUpdatesOlderThanTold(t *testing.T) {
	box := NewMailboxTracker(3)
	a := box.NewSession()
	box.QueueMessageFlagsModSeq(1, 10, []imap.Flag{"old"}, 5, nil)
	box.QueueExpunge(3)
	box.QueueMessageFlagsModSeq(1, 10, []imap.Flag{"older"}, 4, nil)
	box.QueueMessageFlagsModSeq(2, 20, []imap.Flag{"other"}, 6, nil)
	box.QueueMessageFlagsModSeq(1, 10, []imap.Flag{"newer"}, 9, nil)
	box.Published(9)
	a.Told(10, 7)

	rec := &recordingUpdates{}
	if err := a.poll(rec, true, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"EXPUNGE 3", "FETCH 2 UID 20 [other]", "FETCH 1 UID 10 [newer]"}
	if strings.Join(rec.lines, "|") != strings.Join(want, "|") {
		t.Errorf("wrote %q, want %q", rec.lines, want)
	}
	if a.pendingFlags != 0 || a.told != nil {
		t.Errorf("after the poll: %d flags updates counted, told %v; want 0, nil", a.pendingFlags, a.told)
	}
	// Nothing queued and nothing in flight: Told keeps nothing.
	a.Told(10, 9)
	if a.told != nil {
		t.Errorf("Told with nothing queued kept %v", a.told)
	}

	// The session read modseq 12 before the events of 11 and 12 were
	// published (one batch): 11 comes late and is dropped too; once 12
	// is published the record goes.
	a.Told(10, 12)
	rec.lines = nil
	box.QueueMessageFlagsModSeq(1, 10, []imap.Flag{"late"}, 11, nil)
	box.Published(11)
	if err := a.poll(rec, true, nil); err != nil {
		t.Fatal(err)
	}
	box.QueueMessageFlagsModSeq(1, 10, []imap.Flag{"same"}, 12, nil)
	box.Published(12)
	box.QueueMessageFlagsModSeq(1, 10, []imap.Flag{"after"}, 13, nil)
	box.Published(13)
	if err := a.poll(rec, true, nil); err != nil {
		t.Fatal(err)
	}
	if want := []string{"FETCH 1 UID 10 [after]"}; strings.Join(rec.lines, "|") != strings.Join(want, "|") {
		t.Errorf("in flight: wrote %q, want %q", rec.lines, want)
	}
	if a.told != nil {
		t.Errorf("after 12 was published: told %v, want nil", a.told)
	}
}

// A mailbox FLAGS update queued behind an expunge goes out in a poll that
// may not write expunges (during FETCH), the latest one only: a FETCH
// showing the new keyword must follow its FLAGS (RFC 3501 7.2.6).
func TestTrackerWritesMailboxFlagsPastAnExpunge(t *testing.T) {
	box := NewMailboxTracker(3)
	a := box.NewSession()
	a.known = 3
	box.QueueExpunge(2)
	box.QueueMailboxFlags([]imap.Flag{"$One"})
	box.QueueMailboxFlags([]imap.Flag{"$One", "$Two"})
	rec := &recordingUpdates{}
	if err := a.poll(rec, false, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.lines, "|"); got != "FLAGS [$One $Two]" {
		t.Errorf("poll without expunges wrote %q, want only the latest FLAGS", got)
	}
	rec = &recordingUpdates{}
	if err := a.poll(rec, true, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.lines, "|"); got != "EXPUNGE 2" {
		t.Errorf("the next poll wrote %q, want the expunge alone", got)
	}
}
