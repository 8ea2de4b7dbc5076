package boltstore

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/internal/mimetest"
	"github.com/pochta/pochta/message"
	"github.com/pochta/pochta/storage"
)

// FuzzParsedRecordRoundTrip parses arbitrary bytes as a message the way
// Append and Deliver do, and checks that the stored "parsed" record gives
// back exactly the envelope and body structure that went in (FETCH
// answers from the record, never from the message again), and that
// re-encoding what was decoded gives the same bytes.
func FuzzParsedRecordRoundTrip(f *testing.F) {
	f.Add([]byte(nestedMessage))
	f.Add([]byte("From: a@example.test\r\nDate: Mon, 3 Mar 2025 10:00:00 +2459\r\nSubject: far zone\r\n\r\nbody\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n--x--\r\n"))
	f.Add([]byte("To: undisclosed-recipients:;, \"q\\\"uote\" <a@b>, =?utf-8?q?x?= <c@d>\r\nIn-Reply-To: <a@b> <c@d>\r\n\r\n"))
	f.Add([]byte(""))
	f.Add(mimetest.Nested(message.MaxNesting))
	f.Add(mimetest.Nested(message.MaxNesting + 1))
	f.Add(mimetest.Nested(1000))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if message.CheckStructure(raw) != nil {
			// Refused at intake: never parsed, never stored.
			return
		}
		env, bs := parseMessage(raw, true)
		if env == nil || bs == nil {
			t.Fatalf("parseMessage gave envelope %v, body structure %v", env, bs)
		}
		rec, err := encodeParsed(env, bs)
		if err != nil {
			t.Fatalf("encoding what parseMessage gave: %v", err)
		}
		gotEnv, gotBS, err := decodeParsed(rec, true, true)
		if err != nil {
			t.Fatalf("a record just encoded does not decode: %v\nenvelope %#v", err, env)
		}
		if err := sameEnvelope(env, gotEnv); err != nil {
			t.Fatal(err)
		}
		if err := sameBodyStructure(bs, gotBS); err != nil {
			t.Fatal(err)
		}
		again, err := encodeParsed(gotEnv, gotBS)
		if err != nil || !bytes.Equal(rec, again) {
			t.Fatalf("re-encoding the decoded record differs (err %v)", err)
		}
	})
}

// Bounds of the dates FuzzEnvelopeRecordRoundTrip builds.
const (
	yearZero        = -62167219200 // 0000-01-01T00:00:00Z
	yearTenThousand = 253402300800 // 10000-01-01T00:00:00Z
	// maxParsedOffset is the largest zone offset time.Parse gives for a
	// numeric zone ("+2459": hours up to 24, minutes up to 59), so the
	// largest a Date field or an APPEND date can bring in.
	maxParsedOffset = 24*3600 + 59*60
)

// fuzzDate turns arbitrary numbers into a date as mail and IMAP can carry
// one: years 0 to 9999, a zone offset up to the +2459 that time.Parse
// accepts in "-0700". The zero instant stands for "no date" in the record
// (its zone is not kept), so it becomes the zero time.
func fuzzDate(sec int64, nsec, off int32) time.Time {
	if nsec < 0 || nsec >= 1e9 {
		nsec = 0
	}
	span := int64(yearTenThousand - yearZero)
	if sec = (sec - yearZero) % span; sec < 0 {
		sec += span
	}
	d := time.Unix(sec+yearZero, int64(nsec)).In(time.FixedZone("", int(off%(maxParsedOffset+1))))
	if d.IsZero() {
		return time.Time{}
	}
	return d
}

// FuzzEnvelopeRecordRoundTrip builds envelopes and body structures from
// arbitrary values (including dates and zone offsets no parser would
// produce) and checks they survive the record encoding exactly.
func FuzzEnvelopeRecordRoundTrip(f *testing.F) {
	f.Add(int64(1741000000), int32(0), int32(3600), "Subject", "Name", "box", "host", "<id@x>", "text", "plain", "k=v", uint32(42), int64(3))
	f.Add(int64(-62135596800), int32(999999999), int32(-86400), "", "", "", "", "", "", "", "", uint32(0), int64(-1))
	f.Add(int64(253402300799), int32(1), int32(-89940), "\x00\xff", "é", "a\"b", "[1.2.3.4]", "<", "message", "rfc822", "=", uint32(1<<32-1), int64(1<<62))
	f.Fuzz(func(t *testing.T, sec int64, nsec, off int32, subject, name, mailbox, host, msgID, typ, subtype, param string, size uint32, lines int64) {
		date := fuzzDate(sec, nsec, off)
		addr := []envelope.Address{{Name: name, Mailbox: mailbox, Host: host}}
		routed := []envelope.Address{{Name: name}, {Mailbox: mailbox, Host: host, ADL: param}}
		env := &envelope.Envelope{Date: date, Subject: subject, From: addr, To: []envelope.Address{}, Cc: addr,
			Bcc: routed, InReplyTo: strings.Fields(msgID), MessageID: msgID}
		k, v, _ := strings.Cut(param, "=")
		leaf := &imap.BodyStructureSinglePart{Type: typ, Subtype: subtype, Params: map[string]string{k: v},
			ID: msgID, Description: subject, Encoding: name, Size: size, Text: &imap.BodyStructureText{NumLines: lines},
			Extended: &imap.BodyStructureSinglePartExt{
				Disposition: &imap.BodyStructureDisposition{Value: name, Params: map[string]string{v: k}},
				Language:    strings.Fields(subject), Location: host,
			}}
		wrapped := &imap.BodyStructureSinglePart{Type: "message", Subtype: "rfc822", Size: size,
			MessageRFC822: &imap.BodyStructureMessageRFC822{Envelope: env.IMAP(), BodyStructure: leaf, NumLines: lines}}
		bs := &imap.BodyStructureMultiPart{Children: []imap.BodyStructure{leaf, wrapped}, Subtype: subtype,
			Extended: &imap.BodyStructureMultiPartExt{Params: map[string]string{}, Location: mailbox}}

		rec, err := encodeParsed(env, bs)
		if err != nil {
			t.Fatal(err)
		}
		gotEnv, gotBS, err := decodeParsed(rec, true, true)
		if err != nil {
			t.Fatalf("a record just encoded does not decode: %v (date %v)", err, date)
		}
		if err := sameEnvelope(env, gotEnv); err != nil {
			t.Fatal(err)
		}
		if err := sameBodyStructure(bs, gotBS); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzMetaAndMailboxRecordRoundTrip checks the per-message metadata and
// the mailbox record with arbitrary field values.
func FuzzMetaAndMailboxRecordRoundTrip(f *testing.F) {
	f.Add(uint8(flagSeen|flagDraft), int64(4096), int64(1741000000), int32(-25200), "$Important Work", "INBOX", uint32(1), uint32(2), true, int64(-1))
	f.Add(uint8(0xff), int64(-1), int64(0), int32(0), "", "", uint32(0), uint32(0), false, int64(1<<62))
	f.Fuzz(func(t *testing.T, sys uint8, size, sec int64, off int32, keywords, name string, validity, next uint32, subscribed bool, boxSize int64) {
		var flags []imap.Flag
		for _, k := range strings.Fields(keywords) {
			flags = append(flags, imap.Flag(k))
		}
		fs, err := parseFlags(flags)
		if err != nil {
			return // keywords IMAP does not allow never reach the record
		}
		fs.sys = sys
		// An APPEND date-time ("03-Mar-2025 10:00:00 +2459") reaches the
		// record through the same time.Parse as a Date field.
		in := metaRecord{flags: fs, size: size, internalDate: fuzzDate(sec, 0, off)}
		out, err := decodeMeta(in.encode())
		if err != nil {
			t.Fatalf("meta record just encoded does not decode: %v (%+v)", err, in)
		}
		if !out.flags.equal(in.flags) || out.size != in.size || !out.internalDate.Equal(in.internalDate) {
			t.Fatalf("meta record: got %+v, want %+v", out, in)
		}
		_, o := out.internalDate.Zone()
		if _, want := in.internalDate.Zone(); o != want {
			t.Fatalf("internal date offset %d, want %d", o, want)
		}

		box := mailboxRecord{Name: name, SpecialUse: imap.MailboxAttr(keywords), UIDValidity: validity, UIDNext: next,
			Subscribed: subscribed, Messages: validity ^ next, Unseen: next, Size: boxSize}
		gotBox, err := decodeMailbox(box.encode())
		if err != nil || !reflect.DeepEqual(gotBox, box) {
			t.Fatalf("mailbox record: got %+v (err %v), want %+v", gotBox, err, box)
		}
	})
}

// Found by FuzzParsedRecordRoundTrip: a Date field with a zone offset past
// 24 hours ("+2459" parses: time.Parse takes hours up to 24) is encoded,
// but decodeParsed refuses the record as corrupt, so every FETCH ENVELOPE
// or BODYSTRUCTURE that includes the message fails, and with it a FETCH
// 1:* of the whole mailbox. Anyone who can send the user mail can do that.
func TestMessageDatedWithOffsetBeyondADayStaysReadable(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	mustCreateUser(t, s, "bob@example.com")
	mustAppend(t, s, "bob@example.com", storage.Inbox, simpleMessage("before"))
	mustAppend(t, s, "bob@example.com", storage.Inbox, strings.Replace(simpleMessage("far zone"), "+0200", "+2459", 1))
	box := mustMailbox(t, s, "bob@example.com", storage.Inbox)
	uids := mustUIDs(t, s, "bob@example.com", box.ID)
	msgs, err := s.Messages(ctx, "bob@example.com", box.ID, uids, storage.LoadOptions{Envelope: true, BodyStructure: true})
	if err != nil {
		t.Fatalf("loading the envelopes of a mailbox holding a message dated +2459: %v", err)
	}
	if len(msgs) != 2 || msgs[1].Envelope == nil || msgs[1].Envelope.Subject != "far zone" {
		t.Fatalf("got %d messages, the second's envelope %+v", len(msgs), msgs[len(msgs)-1].Envelope)
	}
	if want := time.Date(2006, 1, 2, 15, 4, 5, 0, time.FixedZone("", 24*3600+59*60)); !msgs[1].Envelope.Date.Equal(want) {
		t.Errorf("envelope date %v, want the instant %v", msgs[1].Envelope.Date, want)
	}
}
