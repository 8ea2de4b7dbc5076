package boltstore

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/storage"
)

func TestParsedRecordRoundTripsNestedMultipart(t *testing.T) {
	env, bs := parseMessage([]byte(nestedMessage), true)

	// Guard the fixture: the test is only worth something if the parsed
	// structure has what it claims to exercise.
	outer, ok := bs.(*imap.BodyStructureMultiPart)
	if !ok || outer.Subtype != "mixed" || len(outer.Children) != 3 {
		t.Fatalf("fixture: want multipart/mixed with 3 parts, got %#v", bs)
	}
	if alt, ok := outer.Children[0].(*imap.BodyStructureMultiPart); !ok || alt.Subtype != "alternative" || len(alt.Children) != 2 {
		t.Fatalf("fixture: part 1 is not multipart/alternative with 2 parts: %#v", outer.Children[0])
	}
	att := outer.Children[1].(*imap.BodyStructureSinglePart)
	if att.Extended == nil || att.Extended.Disposition == nil || att.Extended.Disposition.Params["filename"] != "report.pdf" ||
		att.Params["name"] != "report.pdf" || att.ID == "" || att.Description == "" || att.Extended.Language == nil || att.Extended.Location == "" {
		t.Fatalf("fixture: attachment lacks extended fields: %#v %#v", att, att.Extended)
	}
	if fwd := outer.Children[2].(*imap.BodyStructureSinglePart); fwd.MessageRFC822 == nil || fwd.MessageRFC822.Envelope.Subject != "Forwarded" {
		t.Fatalf("fixture: part 3 is not a parsed message/rfc822: %#v", fwd)
	}
	if outer.Extended == nil || outer.Extended.Params["boundary"] != "outer" || len(outer.Extended.Language) != 2 {
		t.Fatalf("fixture: multipart extension data missing: %#v", outer.Extended)
	}
	if len(env.From) != 1 || len(env.Sender) != 1 || len(env.ReplyTo) != 1 || len(env.To) != 2 ||
		len(env.Cc) != 1 || len(env.Bcc) != 1 || len(env.InReplyTo) != 1 || env.MessageID == "" || env.Subject != "Quarterly réport" {
		t.Fatalf("fixture: envelope incomplete: %#v", env)
	}

	rec, err := encodeParsed(env, bs)
	if err != nil {
		t.Fatal(err)
	}
	gotEnv, gotBS, err := decodeParsed(rec, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameEnvelope(env, gotEnv); err != nil {
		t.Error(err)
	}
	if err := sameBodyStructure(bs, gotBS); err != nil {
		t.Error(err)
	}
	// Re-encoding the decoded values gives the same bytes: nothing was
	// lost or reordered (maps are written in key order).
	again, err := encodeParsed(gotEnv, gotBS)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec, again) {
		t.Error("re-encoding the decoded record gives different bytes")
	}
}

func TestParsedRecordDecodesOnlyWhatIsAsked(t *testing.T) {
	env, bs := parseMessage([]byte(nestedMessage), true)
	rec, err := encodeParsed(env, bs)
	if err != nil {
		t.Fatal(err)
	}
	gotEnv, gotBS, err := decodeParsed(rec, true, false)
	if err != nil || gotEnv == nil || gotBS != nil {
		t.Fatalf("envelope only: env %v, bs %v, err %v", gotEnv, gotBS, err)
	}
	gotEnv, gotBS, err = decodeParsed(rec, false, true)
	if err != nil || gotEnv != nil || gotBS == nil {
		t.Fatalf("body structure only: env %v, bs %v, err %v", gotEnv, gotBS, err)
	}
}

func TestEncodingKeepsNilAndEmptyApart(t *testing.T) {
	env := &envelope.Envelope{To: []envelope.Address{}, InReplyTo: nil}
	bs := &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain", Params: map[string]string{},
		Extended: &imap.BodyStructureSinglePartExt{Language: []string{}}}
	rec, err := encodeParsed(env, bs)
	if err != nil {
		t.Fatal(err)
	}
	gotEnv, gotBS, err := decodeParsed(rec, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(env, gotEnv) {
		t.Errorf("envelope: got %#v, want %#v", gotEnv, env)
	}
	if !reflect.DeepEqual(bs, gotBS) {
		t.Errorf("body structure: got %#v, want %#v", gotBS, bs)
	}
}

func TestDecodingCorruptRecordsFailsWithoutPanic(t *testing.T) {
	env, bs := parseMessage([]byte(nestedMessage), true)
	rec, err := encodeParsed(env, bs)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(rec); n++ {
		if _, _, err := decodeParsed(rec[:n], true, true); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(rec))
		}
	}
	meta := (&metaRecord{flags: flagSet{sys: flagSeen, keywords: []string{"$Important"}}, size: 42, internalDate: time.Now()}).encode()
	for n := 0; n < len(meta); n++ {
		if _, err := decodeMeta(meta[:n]); !errors.Is(err, errCorrupt) {
			t.Fatalf("meta truncated to %d bytes: got %v", n, err)
		}
	}
	// A count claiming more elements than bytes left must not allocate.
	huge := []byte{recordVersion, 8, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, _, err := decodeParsed(huge, true, false); err == nil {
		t.Fatal("absurd count: no error")
	}
}

func TestMetaRecordKeepsFlagsSizeAndZonedDate(t *testing.T) {
	date := time.Date(2026, 3, 4, 5, 6, 7, 890, time.FixedZone("", -7*3600))
	in := metaRecord{flags: flagSet{sys: flagSeen | flagDraft, keywords: []string{"$Forwarded", "Work"}}, size: 1 << 33, internalDate: date}
	out, err := decodeMeta(in.encode())
	if err != nil {
		t.Fatal(err)
	}
	if !out.internalDate.Equal(date) {
		t.Errorf("date %v, want %v", out.internalDate, date)
	}
	if _, off := out.internalDate.Zone(); off != -7*3600 {
		t.Errorf("offset %d, want %d", off, -7*3600)
	}
	if out.size != in.size || !out.flags.equal(in.flags) {
		t.Errorf("got %+v, want %+v", out, in)
	}
}

func TestParseFlagsCanonicalises(t *testing.T) {
	f, err := parseFlags([]imap.Flag{`\SEEN`, `\recent`, "$important", `\Flagged`, "Work", "$Important", `\deleted`})
	if err != nil {
		t.Fatal(err)
	}
	want := []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagDeleted, "$important", "Work"}
	if got := f.list(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []imap.Flag{`\Bogus`, "with space", "", "paren(", `quote"`} {
		if _, err := parseFlags([]imap.Flag{bad}); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("flag %q: got %v, want ErrInvalid", bad, err)
		}
	}
}

func FuzzDecodeParsed(f *testing.F) {
	env, bs := parseMessage([]byte(nestedMessage), true)
	rec, err := encodeParsed(env, bs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	f.Add([]byte{recordVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeParsed(b, true, true)
		decodeMeta(b)
		decodeMailbox(b)
	})
}

// TestWithModSeqReplacesTheModSeq: the fast path (a record with modseq 0)
// and the slow one (any other) give the record a full encode would.
func TestWithModSeqReplacesTheModSeq(t *testing.T) {
	for _, old := range []uint64{0, 1, 127, 128, 1 << 40} {
		for _, modseq := range []uint64{1, 128, 1 << 33} {
			m := metaRecord{flags: flagSet{sys: flagSeen, keywords: []string{"$A"}}, size: 9, internalDate: time.Unix(5, 0), modseq: old}
			got, err := withModSeq(m.encode(), modseq)
			if err != nil {
				t.Fatal(err)
			}
			m.modseq = modseq
			if want := m.encode(); !bytes.Equal(got, want) {
				t.Errorf("modseq %d -> %d: %x, want %x", old, modseq, got, want)
			}
		}
	}
}

// Source routes (RFC 3501 7.4.2 adl) round-trip, and a record without
// them, as every record from before them, still decodes: the routes are an
// optional tail of the envelope section.
func TestEnvelopeRoutesRoundTripAndOldRecordsRead(t *testing.T) {
	bs := &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain"}
	routed := &envelope.Envelope{
		From: []envelope.Address{{Mailbox: "user", Host: "domain", ADL: "@route"}},
		To:   []envelope.Address{{Mailbox: "g"}, {Mailbox: "a", Host: "x"}, {Mailbox: "b", Host: "y", ADL: "@r1,@r2"}, {}},
	}
	rec, err := encodeParsed(routed, bs)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := decodeParsed(rec, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, routed) {
		t.Errorf("routes: got %#v, want %#v", got, routed)
	}

	// The old encoding, written by hand: no tail after the Message-ID.
	plain := &envelope.Envelope{From: []envelope.Address{{Mailbox: "user", Host: "domain"}}}
	var envEnc encoder
	envEnc.envelope(plain)
	old := encoder{}
	old.byte(recordVersion)
	old.uvarint(uint64(len(envEnc.b)))
	old.b = append(old.b, envEnc.b...)
	if err := old.bodyStructure(bs, 0); err != nil {
		t.Fatal(err)
	}
	newRec, err := encodeParsed(plain, bs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(old.b, newRec) {
		t.Errorf("an envelope without routes is no longer stored as before")
	}
	got, _, err = decodeParsed(old.b, true, false)
	if err != nil || !reflect.DeepEqual(got, plain) {
		t.Errorf("old record: got %#v, %v; want %#v", got, err, plain)
	}

	// A damaged tail is an error, not a panic or a route on the wrong address.
	envEnc.b = append(envEnc.b, routesMarker, 1, 5)
	envEnc.str("@r")
	bad := encoder{}
	bad.byte(recordVersion)
	bad.uvarint(uint64(len(envEnc.b)))
	bad.b = append(bad.b, envEnc.b...)
	if _, _, err := decodeParsed(bad.b, true, false); err == nil {
		t.Error("a route for the 6th address of a 1-address list decoded")
	}
}
