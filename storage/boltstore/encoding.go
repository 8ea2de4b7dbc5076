package boltstore

// Record encodings. Everything read on a hot path (message metadata,
// envelopes, body structures, mailbox records) is a small hand-written
// binary format rather than JSON: FETCH ENVELOPE of 10,000 messages decodes
// 10,000 records, and a varint format decodes an order of magnitude faster
// with one allocation per record (the record is turned into one string and
// every decoded string is a substring of it).
//
// Each record starts with a version byte so the format can change without a
// migration of old records. Nil and empty slices and maps are told apart
// (a count is stored as n+1, 0 meaning nil) so a decode gives back exactly
// what was encoded.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/message"
	"github.com/pochta/pochta/storage"
)

const recordVersion = 1

// feedRecordVersion is the version of the message metadata and mailbox
// records that carry modseqs (schema version 2, feed.go).
const feedRecordVersion = 2

// errCorrupt is returned when a stored record cannot be decoded.
var errCorrupt = errors.New("corrupt record")

// maxBodyDepth bounds the nesting of body structures: the encoder refuses
// and the decoder rejects anything deeper, with the one limit intake
// checks (message.MaxNesting), so every record written can be read back
// and a corrupt record cannot recurse without end.
const maxBodyDepth = message.MaxNesting

// maxBodyParts bounds the number of parts of one body structure in the
// same way, with the one limit intake checks (message.MaxParts).
const maxBodyParts = message.MaxParts

type encoder struct {
	b     []byte
	parts int // body structure parts written, against maxBodyParts
}

func (e *encoder) byte(v byte) { e.b = append(e.b, v) }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *encoder) varint(v int64) { e.b = binary.AppendVarint(e.b, v) }

func (e *encoder) bool(v bool) {
	if v {
		e.byte(1)
	} else {
		e.byte(0)
	}
}

func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) strs(l []string) {
	if l == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(l)) + 1)
	for _, s := range l {
		e.str(s)
	}
}

// strMap writes keys in sorted order so equal maps encode equally.
func (e *encoder) strMap(m map[string]string) {
	if m == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(m)) + 1)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.str(k)
		e.str(m[k])
	}
}

// time keeps the instant and the zone offset: IMAP shows both (the
// envelope's date and INTERNALDATE are sent with their original offset).
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.byte(0)
		return
	}
	e.byte(1)
	_, off := t.Zone()
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
	e.varint(int64(off))
}

type decoder struct {
	s     string // the whole record; decoded strings are substrings of it
	i     int
	err   error
	parts int // body structure parts read, against maxBodyParts
}

func newDecoder(b []byte) *decoder { return &decoder{s: string(b)} }

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.i = len(d.s)
}

func (d *decoder) byte() byte {
	if d.i >= len(d.s) {
		d.fail()
		return 0
	}
	v := d.s[d.i]
	d.i++
	return v
}

func (d *decoder) uvarint() uint64 {
	var v uint64
	var shift uint
	for n := 0; ; n++ {
		if d.i >= len(d.s) || n == binary.MaxVarintLen64 {
			d.fail()
			return 0
		}
		c := d.s[d.i]
		d.i++
		if c < 0x80 {
			return v | uint64(c)<<shift
		}
		v |= uint64(c&0x7f) << shift
		shift += 7
	}
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *decoder) bool() bool { return d.byte() != 0 }

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.s)-d.i) {
		d.fail()
		return ""
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return s
}

// count reads an n+1 count; ok is false for nil. Every element takes at
// least one byte, so a count larger than what is left is corruption (and
// would otherwise make us allocate a huge slice).
func (d *decoder) count() (n int, ok bool) {
	c := d.uvarint()
	if c == 0 {
		return 0, false
	}
	if c-1 > uint64(len(d.s)-d.i) {
		d.fail()
		return 0, false
	}
	return int(c - 1), true
}

func (d *decoder) strs() []string {
	n, ok := d.count()
	if !ok {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.str()
	}
	return l
}

func (d *decoder) strMap() map[string]string {
	n, ok := d.count()
	if !ok {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

// zones caches one *time.Location per offset: time.FixedZone allocates, and
// a mailbox's messages share a handful of offsets.
var zones sync.Map // int -> *time.Location

func zoneFor(off int) *time.Location {
	if off == 0 {
		return time.UTC
	}
	if loc, ok := zones.Load(off); ok {
		return loc.(*time.Location)
	}
	loc, _ := zones.LoadOrStore(off, time.FixedZone("", off))
	return loc.(*time.Location)
}

func (d *decoder) time() time.Time {
	if d.byte() == 0 {
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	off := d.varint()
	// time.Parse accepts zone offsets up to ±24:59 (RFC 5322 allows any
	// two-digit hours): a Date header "+2459" must round-trip, or the
	// message's record would read as corrupt and break FETCH for the
	// whole mailbox.
	const maxOffset = 24*3600 + 59*60
	if nsec >= 1e9 || off < -maxOffset || off > maxOffset {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).In(zoneFor(int(off)))
}

// Envelope and body structure.

func (e *encoder) addresses(l []envelope.Address) {
	if l == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(l)) + 1)
	for _, a := range l {
		e.str(a.Name)
		e.str(a.Mailbox)
		e.str(a.Host)
	}
}

func (d *decoder) addresses() []envelope.Address {
	n, ok := d.count()
	if !ok {
		return nil
	}
	l := make([]envelope.Address, n)
	for i := range l {
		l[i] = envelope.Address{Name: d.str(), Mailbox: d.str(), Host: d.str()}
	}
	return l
}

// An envelope's source routes (envelope.Address.ADL) follow it, in the
// envelope section of the "parsed" record only, and only when an address
// has one: byte 1, then per address list (ENVELOPE order) the count of
// routed addresses and each one's index and route. A record without them
// (every record from before, and nearly every message) has no routes.
const routesMarker = 1

func (e *encoder) routes(env *envelope.Envelope) {
	if env == nil {
		return
	}
	lists := env.Lists()
	any := false
	for _, l := range lists {
		for _, a := range l {
			any = any || a.ADL != ""
		}
	}
	if !any {
		return
	}
	e.byte(routesMarker)
	for _, l := range lists {
		n := 0
		for _, a := range l {
			if a.ADL != "" {
				n++
			}
		}
		e.uvarint(uint64(n))
		for i, a := range l {
			if a.ADL != "" {
				e.uvarint(uint64(i))
				e.str(a.ADL)
			}
		}
	}
}

func (d *decoder) routes(env *envelope.Envelope) {
	if env == nil || d.i >= len(d.s) {
		return
	}
	if d.byte() != routesMarker {
		d.fail()
		return
	}
	for _, l := range env.Lists() {
		n := d.uvarint()
		for range n {
			i, adl := d.uvarint(), d.str()
			if d.err != nil {
				return
			}
			if i >= uint64(len(l)) {
				d.fail()
				return
			}
			l[i].ADL = adl
		}
	}
}

func (e *encoder) envelope(env *envelope.Envelope) {
	if env == nil {
		e.byte(0)
		return
	}
	e.byte(1)
	e.time(env.Date)
	e.str(env.Subject)
	e.addresses(env.From)
	e.addresses(env.Sender)
	e.addresses(env.ReplyTo)
	e.addresses(env.To)
	e.addresses(env.Cc)
	e.addresses(env.Bcc)
	e.strs(env.InReplyTo)
	e.str(env.MessageID)
}

func (d *decoder) envelope() *envelope.Envelope {
	if d.byte() == 0 {
		return nil
	}
	return &envelope.Envelope{
		Date:      d.time(),
		Subject:   d.str(),
		From:      d.addresses(),
		Sender:    d.addresses(),
		ReplyTo:   d.addresses(),
		To:        d.addresses(),
		Cc:        d.addresses(),
		Bcc:       d.addresses(),
		InReplyTo: d.strs(),
		MessageID: d.str(),
	}
}

const (
	bsNil    = 0
	bsSingle = 1
	bsMulti  = 2
)

func (e *encoder) disposition(disp *imap.BodyStructureDisposition) {
	if disp == nil {
		e.byte(0)
		return
	}
	e.byte(1)
	e.str(disp.Value)
	e.strMap(disp.Params)
}

func (d *decoder) disposition() *imap.BodyStructureDisposition {
	if d.byte() == 0 {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: d.str(), Params: d.strMap()}
}

// bodyStructure writes bs, which sits inside depth containers.
func (e *encoder) bodyStructure(bs imap.BodyStructure, depth int) error {
	if depth > maxBodyDepth {
		return fmt.Errorf("%w: %w", message.ErrTooDeep, storage.ErrInvalid)
	}
	if !isNilBodyStructure(bs) {
		if e.parts++; e.parts > maxBodyParts {
			return fmt.Errorf("%w: %w", message.ErrTooManyParts, storage.ErrInvalid)
		}
	}
	switch bs := bs.(type) {
	case nil:
		e.byte(bsNil)
	case *imap.BodyStructureSinglePart:
		if bs == nil {
			e.byte(bsNil)
			return nil
		}
		e.byte(bsSingle)
		e.str(bs.Type)
		e.str(bs.Subtype)
		e.strMap(bs.Params)
		e.str(bs.ID)
		e.str(bs.Description)
		e.str(bs.Encoding)
		e.uvarint(uint64(bs.Size))
		if m := bs.MessageRFC822; m != nil {
			e.byte(1)
			e.envelope(envelope.FromIMAP(m.Envelope))
			if err := e.bodyStructure(m.BodyStructure, depth+1); err != nil {
				return err
			}
			e.varint(m.NumLines)
		} else {
			e.byte(0)
		}
		if t := bs.Text; t != nil {
			e.byte(1)
			e.varint(t.NumLines)
		} else {
			e.byte(0)
		}
		if x := bs.Extended; x != nil {
			e.byte(1)
			e.disposition(x.Disposition)
			e.strs(x.Language)
			e.str(x.Location)
		} else {
			e.byte(0)
		}
	case *imap.BodyStructureMultiPart:
		if bs == nil {
			e.byte(bsNil)
			return nil
		}
		e.byte(bsMulti)
		if bs.Children == nil {
			e.uvarint(0)
		} else {
			e.uvarint(uint64(len(bs.Children)) + 1)
		}
		for _, c := range bs.Children {
			if err := e.bodyStructure(c, depth+1); err != nil {
				return err
			}
		}
		e.str(bs.Subtype)
		if x := bs.Extended; x != nil {
			e.byte(1)
			e.strMap(x.Params)
			e.disposition(x.Disposition)
			e.strs(x.Language)
			e.str(x.Location)
		} else {
			e.byte(0)
		}
	default:
		return fmt.Errorf("body structure of type %T: %w", bs, storage.ErrInvalid)
	}
	return nil
}

// isNilBodyStructure reports whether bs is written as bsNil.
func isNilBodyStructure(bs imap.BodyStructure) bool {
	switch bs := bs.(type) {
	case nil:
		return true
	case *imap.BodyStructureSinglePart:
		return bs == nil
	case *imap.BodyStructureMultiPart:
		return bs == nil
	}
	return false
}

func (d *decoder) bodyStructure(depth int) imap.BodyStructure {
	if depth > maxBodyDepth {
		d.fail()
		return nil
	}
	kind := d.byte()
	if kind != bsNil {
		if d.parts++; d.parts > maxBodyParts {
			d.fail()
			return nil
		}
	}
	switch kind {
	case bsNil:
		return nil
	case bsSingle:
		bs := &imap.BodyStructureSinglePart{
			Type:        d.str(),
			Subtype:     d.str(),
			Params:      d.strMap(),
			ID:          d.str(),
			Description: d.str(),
			Encoding:    d.str(),
			Size:        uint32(d.uvarint()),
		}
		if d.bool() {
			bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
				Envelope:      d.envelope().IMAP(),
				BodyStructure: d.bodyStructure(depth + 1),
				NumLines:      d.varint(),
			}
		}
		if d.bool() {
			bs.Text = &imap.BodyStructureText{NumLines: d.varint()}
		}
		if d.bool() {
			bs.Extended = &imap.BodyStructureSinglePartExt{
				Disposition: d.disposition(),
				Language:    d.strs(),
				Location:    d.str(),
			}
		}
		return bs
	case bsMulti:
		bs := &imap.BodyStructureMultiPart{}
		if n, ok := d.count(); ok {
			bs.Children = make([]imap.BodyStructure, n)
			for i := range bs.Children {
				bs.Children[i] = d.bodyStructure(depth + 1)
			}
		}
		bs.Subtype = d.str()
		if d.bool() {
			bs.Extended = &imap.BodyStructureMultiPartExt{
				Params:      d.strMap(),
				Disposition: d.disposition(),
				Language:    d.strs(),
				Location:    d.str(),
			}
		}
		return bs
	default:
		d.fail()
		return nil
	}
}

// encodeParsed builds the "parsed" record of a message: the envelope in its
// own length-prefixed section, then the body structure, so a FETCH ENVELOPE
// decodes the envelope without touching the body structure.
func encodeParsed(env *envelope.Envelope, bs imap.BodyStructure) ([]byte, error) {
	var envEnc encoder
	envEnc.envelope(env)
	envEnc.routes(env)
	e := encoder{b: make([]byte, 0, len(envEnc.b)+256)}
	e.byte(recordVersion)
	e.uvarint(uint64(len(envEnc.b)))
	e.b = append(e.b, envEnc.b...)
	if err := e.bodyStructure(bs, 0); err != nil {
		return nil, err
	}
	return e.b, nil
}

// decodeParsed decodes what is asked for of a "parsed" record.
func decodeParsed(b []byte, wantEnv, wantBS bool) (*envelope.Envelope, imap.BodyStructure, error) {
	if len(b) == 0 || b[0] != recordVersion {
		return nil, nil, errCorrupt
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, errCorrupt
	}
	envPart, bsPart := b[k:k+int(n)], b[k+int(n):]
	var (
		env *envelope.Envelope
		bs  imap.BodyStructure
	)
	if wantEnv {
		d := newDecoder(envPart)
		env = d.envelope()
		d.routes(env)
		if d.err != nil {
			return nil, nil, d.err
		}
	}
	if wantBS {
		d := newDecoder(bsPart)
		bs = d.bodyStructure(0)
		if d.err != nil {
			return nil, nil, d.err
		}
	}
	return env, bs, nil
}

// Flags. System flags are a bit set; keywords are kept as given (first
// spelling wins, compared case-insensitively) and sorted.

const (
	flagSeen uint8 = 1 << iota
	flagAnswered
	flagFlagged
	flagDeleted
	flagDraft
)

var systemFlags = []struct {
	bit  uint8
	flag imap.Flag
}{
	{flagSeen, imap.FlagSeen},
	{flagAnswered, imap.FlagAnswered},
	{flagFlagged, imap.FlagFlagged},
	{flagDeleted, imap.FlagDeleted},
	{flagDraft, imap.FlagDraft},
}

// flagSet is a message's flags in canonical form.
type flagSet struct {
	sys      uint8
	keywords []string // sorted by lower-case form, no duplicates
}

// list returns the flags in IMAP form: system flags first, in a fixed
// order, then keywords.
func (f flagSet) list() []imap.Flag {
	l := make([]imap.Flag, 0, 5+len(f.keywords))
	for _, s := range systemFlags {
		if f.sys&s.bit != 0 {
			l = append(l, s.flag)
		}
	}
	for _, k := range f.keywords {
		l = append(l, imap.Flag(k))
	}
	return l
}

func (f flagSet) equal(g flagSet) bool {
	return f.sys == g.sys && slices.Equal(f.keywords, g.keywords)
}

// Message metadata record: what SELECT, UID SEARCH and FETCH FLAGS need,
// without the envelope or body. The flags byte is at a fixed offset so an
// expunge scan can test \Deleted without decoding.
//
// Version 2 added modseq, the message's last change, as the last field; a
// version 1 record (schema version 1, before its migration) decodes with
// modseq 0.
type metaRecord struct {
	flags        flagSet
	size         int64
	internalDate time.Time
	modseq       uint64
}

const metaFlagsOffset = 1

func (m *metaRecord) encode() []byte {
	e := encoder{b: make([]byte, 0, 40)}
	e.byte(feedRecordVersion)
	e.byte(m.flags.sys)
	e.uvarint(uint64(m.size))
	e.time(m.internalDate)
	e.strs(m.flags.keywords)
	e.uvarint(m.modseq)
	return e.b
}

// withModSeq returns a metadata record with its modseq replaced. A record
// encoded with modseq 0 (a new message from prepare) ends in that one zero
// byte, and only then: the last byte of a non-zero uvarint is never 0. So
// the common case is one append; others are decoded and encoded again.
func withModSeq(rec []byte, modseq uint64) ([]byte, error) {
	if len(rec) > 1 && rec[0] == feedRecordVersion && rec[len(rec)-1] == 0 {
		return binary.AppendUvarint(rec[:len(rec)-1:len(rec)-1], modseq), nil
	}
	m, err := decodeMeta(rec)
	if err != nil {
		return nil, err
	}
	m.modseq = modseq
	return m.encode(), nil
}

func decodeMeta(b []byte) (metaRecord, error) {
	d := newDecoder(b)
	version := d.byte()
	if version != recordVersion && version != feedRecordVersion {
		return metaRecord{}, errCorrupt
	}
	var m metaRecord
	m.flags.sys = d.byte()
	m.size = int64(d.uvarint())
	m.internalDate = d.time()
	m.flags.keywords = d.strs()
	if version == feedRecordVersion {
		m.modseq = d.uvarint()
	}
	if d.err != nil {
		return metaRecord{}, d.err
	}
	return m, nil
}

// Mailbox record: the mailbox's identity and its counters, rewritten by
// every change to the mailbox so MailboxStatus reads one small value.
// Version 2 added ModSeq (HIGHESTMODSEQ) and VanishedFloor as the last
// fields; a version 1 record decodes with both 0.
type mailboxRecord struct {
	Name        string
	SpecialUse  imap.MailboxAttr
	UIDValidity uint32
	UIDNext     uint32
	Subscribed  bool
	Messages    uint32
	Unseen      uint32
	Size        int64
	ModSeq      uint64
	// VanishedFloor: tombstones up to this modseq are gone (swept, or
	// before the feed existed); Changes since an older modseq cannot list
	// every expunge.
	VanishedFloor uint64
}

func (r *mailboxRecord) encode() []byte {
	e := encoder{b: make([]byte, 0, 48+len(r.Name))}
	e.byte(feedRecordVersion)
	e.str(r.Name)
	e.str(string(r.SpecialUse))
	e.uvarint(uint64(r.UIDValidity))
	e.uvarint(uint64(r.UIDNext))
	e.bool(r.Subscribed)
	e.uvarint(uint64(r.Messages))
	e.uvarint(uint64(r.Unseen))
	e.varint(r.Size)
	e.uvarint(r.ModSeq)
	e.uvarint(r.VanishedFloor)
	return e.b
}

func decodeMailbox(b []byte) (mailboxRecord, error) {
	d := newDecoder(b)
	version := d.byte()
	if version != recordVersion && version != feedRecordVersion {
		return mailboxRecord{}, errCorrupt
	}
	r := mailboxRecord{
		Name:        d.str(),
		SpecialUse:  imap.MailboxAttr(d.str()),
		UIDValidity: uint32(d.uvarint()),
		UIDNext:     uint32(d.uvarint()),
		Subscribed:  d.bool(),
		Messages:    uint32(d.uvarint()),
		Unseen:      uint32(d.uvarint()),
		Size:        d.varint(),
	}
	if version == feedRecordVersion {
		r.ModSeq = d.uvarint()
		r.VanishedFloor = d.uvarint()
	}
	if d.err != nil {
		return mailboxRecord{}, d.err
	}
	return r, nil
}
