package imapd

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/pochta/pochta/storage"
)

// Search implements imapserver.Session for every criterion go-imap parses.
// Messages are loaded in chunks, with bodies only when a criterion needs
// the text (HEADER, FROM..., BODY, TEXT).
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (_ *imap.SearchData, err error) {
	cmd := "SEARCH"
	if kind == imapserver.NumKindUID {
		cmd = "UID SEARCH"
	}
	defer s.guard(cmd, &err)
	v, err := s.selected()
	if err != nil {
		return nil, err
	}
	if options.ReturnSave {
		// RFC 5182 2.1: a failed SEARCH leaves "$" empty.
		v.searchRes = nil
	}
	refs, lastSeq, lastUID := v.visible()
	c := v.compileCriteria(criteria, lastSeq, lastUID)
	var matches []msgRef
	if need := c.needs(); need.load {
		load := storage.LoadOptions{Envelope: need.envelope, Body: need.body}
		for len(refs) > 0 {
			chunk := refs[:min(len(refs), loadChunk)]
			refs = refs[len(chunk):]
			msgs, err := s.srv.store.Messages(s.ctx, s.user, v.box.key.id, refUIDs(chunk), load)
			if err != nil {
				return nil, s.storageError(cmd, err)
			}
			byUID := make(map[imap.UID]*storage.Message, len(msgs))
			for _, m := range msgs {
				byUID[m.UID] = m
			}
			for _, ref := range chunk {
				if m := byUID[ref.uid]; m != nil && c.match(&candidate{ref: ref, msg: m}) {
					matches = append(matches, ref)
				}
			}
		}
	} else {
		for _, ref := range refs {
			if c.match(&candidate{ref: ref}) {
				matches = append(matches, ref)
			}
		}
	}
	data := searchData(kind, matches)
	if options.ReturnSave {
		v.searchRes = savedResult(matches, options)
	}
	return data, nil
}

func searchData(kind imapserver.NumKind, matches []msgRef) *imap.SearchData {
	data := &imap.SearchData{Count: uint32(len(matches))}
	num := func(r msgRef) uint32 {
		if kind == imapserver.NumKindUID {
			return uint32(r.uid)
		}
		return r.seq
	}
	if len(matches) > 0 {
		// matches ascend in both sequence number and UID.
		data.Min = num(matches[0])
		data.Max = num(matches[len(matches)-1])
	}
	if kind == imapserver.NumKindUID {
		var set imap.UIDSet
		for _, r := range matches {
			set.AddNum(r.uid)
		}
		data.All = set
	} else {
		var set imap.SeqSet
		for _, r := range matches {
			set.AddNum(r.seq)
		}
		data.All = set
	}
	return data
}

// savedResult is what RETURN (SAVE) keeps for "$" (RFC 5182 2.1): with MIN
// or MAX and neither ALL nor COUNT, only those messages.
func savedResult(matches []msgRef, options *imap.SearchOptions) []imap.UID {
	if len(matches) == 0 {
		return nil
	}
	if (options.ReturnMin || options.ReturnMax) && !options.ReturnAll && !options.ReturnCount {
		var out []imap.UID
		if options.ReturnMin {
			out = append(out, matches[0].uid)
		}
		if options.ReturnMax && (len(out) == 0 || out[0] != matches[len(matches)-1].uid) {
			out = append(out, matches[len(matches)-1].uid)
		}
		return out
	}
	return refUIDs(matches)
}

// criteria is imap.SearchCriteria with "*" and "$" resolved for this view.
type criteria struct {
	seq, uid                             [][]numRange
	since, before, sentSince, sentBefore time.Time
	header                               []imap.SearchCriteriaHeaderField
	body, text                           []string // lower-cased
	flag, notFlag                        []imap.Flag
	larger, smaller                      int64
	not                                  []*criteria
	or                                   [][2]*criteria
}

func (v *mailboxView) compileCriteria(in *imap.SearchCriteria, lastSeq uint32, lastUID imap.UID) *criteria {
	c := &criteria{
		since:      in.Since,
		before:     in.Before,
		sentSince:  in.SentSince,
		sentBefore: in.SentBefore,
		flag:       in.Flag,
		notFlag:    in.NotFlag,
		larger:     in.Larger,
		smaller:    in.Smaller,
	}
	for _, set := range in.SeqNum {
		c.seq = append(c.seq, staticRanges(seqRanges(set), lastSeq))
	}
	for _, set := range in.UID {
		if imap.IsSearchRes(set) {
			c.uid = append(c.uid, uidListRanges(v.searchRes))
		} else {
			c.uid = append(c.uid, staticRanges(uidRanges(set), uint32(lastUID)))
		}
	}
	for _, h := range in.Header {
		c.header = append(c.header, imap.SearchCriteriaHeaderField{Key: h.Key, Value: strings.ToLower(h.Value)})
	}
	for _, b := range in.Body {
		c.body = append(c.body, strings.ToLower(b))
	}
	for _, t := range in.Text {
		c.text = append(c.text, strings.ToLower(t))
	}
	for i := range in.Not {
		c.not = append(c.not, v.compileCriteria(&in.Not[i], lastSeq, lastUID))
	}
	for i := range in.Or {
		c.or = append(c.or, [2]*criteria{
			v.compileCriteria(&in.Or[i][0], lastSeq, lastUID),
			v.compileCriteria(&in.Or[i][1], lastSeq, lastUID),
		})
	}
	return c
}

type searchNeeds struct{ load, envelope, body bool }

func (c *criteria) needs() searchNeeds {
	var n searchNeeds
	n.envelope = !c.sentSince.IsZero() || !c.sentBefore.IsZero()
	n.body = len(c.header) > 0 || len(c.body) > 0 || len(c.text) > 0
	n.load = n.envelope || n.body || len(c.flag) > 0 || len(c.notFlag) > 0 ||
		!c.since.IsZero() || !c.before.IsZero() || c.larger > 0 || c.smaller > 0
	merge := func(o searchNeeds) {
		n.load = n.load || o.load
		n.envelope = n.envelope || o.envelope
		n.body = n.body || o.body
	}
	for _, sub := range c.not {
		merge(sub.needs())
	}
	for _, pair := range c.or {
		merge(pair[0].needs())
		merge(pair[1].needs())
	}
	return n
}

// candidate is one message under test; the parsed text is computed once
// and shared by all criteria.
type candidate struct {
	ref msgRef
	msg *storage.Message // nil when no criterion needs it

	headerParsed bool
	header       textproto.Header
	headerText   string // decoded, lower-cased "Key: value" lines
	bodyParsed   bool
	bodyText     []byte // decoded text parts, lower-cased
}

func (c *criteria) match(m *candidate) bool {
	for _, ranges := range c.seq {
		if !inRanges(ranges, m.ref.seq) {
			return false
		}
	}
	for _, ranges := range c.uid {
		if !inRanges(ranges, uint32(m.ref.uid)) {
			return false
		}
	}
	if msg := m.msg; msg != nil {
		for _, f := range c.flag {
			if !hasFlag(msg.Flags, f) {
				return false
			}
		}
		for _, f := range c.notFlag {
			if hasFlag(msg.Flags, f) {
				return false
			}
		}
		if !matchDate(msg.InternalDate, c.since, c.before) {
			return false
		}
		if c.larger > 0 && msg.Size <= c.larger {
			return false
		}
		if c.smaller > 0 && msg.Size >= c.smaller {
			return false
		}
		if !c.sentSince.IsZero() || !c.sentBefore.IsZero() {
			if msg.Envelope == nil || msg.Envelope.Date.IsZero() || !matchDate(msg.Envelope.Date, c.sentSince, c.sentBefore) {
				return false
			}
		}
		for _, h := range c.header {
			if !m.matchHeader(h.Key, h.Value) {
				return false
			}
		}
		for _, b := range c.body {
			if !bytes.Contains(m.body(), []byte(b)) {
				return false
			}
		}
		for _, t := range c.text {
			if !strings.Contains(m.headers(), t) && !bytes.Contains(m.body(), []byte(t)) {
				return false
			}
		}
	}
	for _, sub := range c.not {
		if sub.match(m) {
			return false
		}
	}
	for _, pair := range c.or {
		if !pair[0].match(m) && !pair[1].match(m) {
			return false
		}
	}
	return true
}

// matchDate compares dates only, ignoring time and zone (RFC 3501 6.4.4).
func matchDate(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(dateOnly(since)) {
		return false
	}
	if !before.IsZero() && !d.Before(dateOnly(before)) {
		return false
	}
	return true
}

func dateOnly(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

var wordDecoder = &mime.WordDecoder{
	// Unknown charsets are matched in their raw form rather than failing.
	CharsetReader: func(charset string, input io.Reader) (io.Reader, error) { return input, nil },
}

func decodeHeaderValue(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

func (m *candidate) parseHeader() {
	if m.headerParsed {
		return
	}
	m.headerParsed = true
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(m.msg.Body)))
	if err != nil {
		return
	}
	m.header = h
	var sb strings.Builder
	for f := h.Fields(); f.Next(); {
		sb.WriteString(f.Key())
		sb.WriteString(": ")
		sb.WriteString(decodeHeaderValue(f.Value()))
		sb.WriteByte('\n')
	}
	m.headerText = strings.ToLower(sb.String())
}

// matchHeader is HEADER key value and FROM/TO/CC/BCC/SUBJECT: a
// case-insensitive substring of the decoded field; an empty value matches
// any message that has the field (RFC 3501 6.4.4).
func (m *candidate) matchHeader(key, lowerValue string) bool {
	m.parseHeader()
	for f := m.header.FieldsByKey(key); f.Next(); {
		if lowerValue == "" || strings.Contains(strings.ToLower(decodeHeaderValue(f.Value())), lowerValue) {
			return true
		}
	}
	return false
}

func (m *candidate) headers() string {
	m.parseHeader()
	return m.headerText
}

// body returns the lower-cased text of the message's text parts with
// transfer encodings undone, so BODY and TEXT find words in quoted-printable
// and base64 parts too.
func (m *candidate) body() []byte {
	if m.bodyParsed {
		return m.bodyText
	}
	m.bodyParsed = true
	var buf bytes.Buffer
	if e, err := gomessage.Read(bytes.NewReader(m.msg.Body)); e != nil {
		collectText(&buf, e, 0)
	} else if err != nil {
		// Not parseable as MIME: search the raw text after the header.
		if i := bytes.Index(m.msg.Body, []byte("\r\n\r\n")); i >= 0 {
			buf.Write(m.msg.Body[i+4:])
		} else {
			buf.Write(m.msg.Body)
		}
	}
	m.bodyText = bytes.ToLower(buf.Bytes())
	return m.bodyText
}

// maxMIMEDepth bounds recursion into nested messages and multiparts.
const maxMIMEDepth = 20

func collectText(buf *bytes.Buffer, e *gomessage.Entity, depth int) {
	if depth > maxMIMEDepth {
		return
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if part == nil {
				return
			}
			if err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
				return
			}
			collectText(buf, part, depth+1)
		}
	}
	t, _, _ := e.Header.ContentType()
	switch {
	case t == "message/rfc822" || t == "message/global":
		inner, _ := gomessage.Read(e.Body)
		if inner == nil {
			return
		}
		for f := inner.Header.Fields(); f.Next(); {
			buf.WriteString(f.Key())
			buf.WriteString(": ")
			buf.WriteString(decodeHeaderValue(f.Value()))
			buf.WriteByte('\n')
		}
		collectText(buf, inner, depth+1)
	case t == "" || strings.HasPrefix(t, "text/"):
		io.Copy(buf, e.Body)
		buf.WriteByte('\n')
	}
}
