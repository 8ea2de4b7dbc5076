package imapd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"mime"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/imapd/protocol"

	"github.com/pochta/pochta/storage"
)

// Search implements protocol.Session for every criterion protocol parses.
//
// Criteria are decided in levels of cost (see level and plan): each chunk
// of messages is tested on sequence numbers and UIDs, then on the
// metadata (flags, dates, size, the stored envelope), then on the raw
// header (loaded alone, LoadOptions.Header), and only the messages still
// undecided are loaded whole for BODY and TEXT. Most messages are ruled
// out by a scan of the raw header without parsing it
// (msgText.blockMayContain); a header or body is parsed at most once per
// message and pass.
//
// SUBJECT, FROM, TO, CC and BCC are not answered from the stored
// envelope: it keeps the first Subject only, addresses re-formatted,
// charsets as go-message converts them, and whatever a broken header
// yielded, so it would not always answer as the header itself does.
func (s *session) Search(kind protocol.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (_ *imap.SearchData, err error) {
	cmd := "SEARCH"
	if kind == protocol.NumKindUID {
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
	matches, modseqs, err := s.searchRefs(cmd, v, criteria)
	if err != nil {
		return nil, err
	}
	data := searchData(kind, matches)
	if usesModSeq(criteria) && len(matches) > 0 {
		data.ModSeq = resultModSeq(modseqs, options)
	}
	if options.ReturnSave {
		v.searchRes = savedResult(matches, options)
	}
	return data, nil
}

// searchRefs are the visible messages that match criteria, in mailbox
// order: what SEARCH, SORT and THREAD choose from; modseqs are theirs, in
// the same order (for SEARCH MODSEQ, RFC 7162 3.1.5).
func (s *session) searchRefs(cmd string, v *mailboxView, criteria *imap.SearchCriteria) (matches []msgRef, modseqs []uint64, err error) {
	refs, lastSeq, lastUID := v.visible()
	c := v.compileCriteria(criteria, lastSeq, lastUID)
	steps := c.plan()
	var text *msgText
	if c.levels&(1<<levelHeader|1<<levelBody) != 0 {
		text = new(msgText)
	}
	cands := make([]candidate, 0, min(len(refs), loadChunk))
	var uids []imap.UID
	subjects := c.usesSubject()
	cache := &v.box.subjects
	for len(refs) > 0 {
		chunk := refs[:min(len(refs), loadChunk)]
		refs = refs[len(chunk):]
		cands = cands[:0]
		if subjects {
			cache.mu.Lock()
		}
		for _, ref := range chunk {
			cd := candidate{ref: ref, text: text}
			if subjects {
				cd.subject, cd.subjectOK = cache.getLocked(ref.uid)
			}
			cands = append(cands, cd)
		}
		if subjects {
			cache.mu.Unlock()
		}
		filled := 0
		for _, st := range steps {
			uids = uids[:0]
			for i := range cands {
				if cands[i].result == unknown {
					uids = append(uids, cands[i].ref.uid)
				}
			}
			if len(uids) == 0 {
				break
			}
			if st.load != nil {
				msgs, err := s.srv.store.Messages(s.ctx, s.user, v.box.key.id, uids, *st.load)
				if err != nil {
					return nil, nil, s.storageError(cmd, err)
				}
				v.addRecentFlags(msgs)
				attach(cands, msgs)
			}
			for i := range cands {
				m := &cands[i]
				if m.result != unknown {
					continue
				}
				if m.msg == nil && st.load != nil {
					m.result = no // expunged since visible(): not a match
					continue
				}
				m.text.reset(m.msg)
				for l := st.from; l <= st.to && m.result == unknown; l++ {
					m.result = c.eval(m, l)
				}
				if m.msg != nil {
					m.modseq = max(m.modseq, m.msg.ModSeq)
					if subjects && !m.subjectOK && st.load != nil && st.load.Header {
						m.subject, m.subjectOK = m.text.subjectValues(), true
						m.fill = true
						filled++
					}
				}
				m.msg = nil
			}
		}
		if filled > 0 {
			cache.mu.Lock()
			for i := range cands {
				if cands[i].fill {
					cache.putLocked(cands[i].ref.uid, cands[i].subject)
				}
			}
			cache.mu.Unlock()
		}
		for i := range cands {
			if cands[i].result == yes {
				matches = append(matches, cands[i].ref)
				modseqs = append(modseqs, cands[i].modseq)
			}
		}
	}
	return matches, modseqs, nil
}

// attach gives each undecided candidate its loaded message. Both are in
// ascending UID order; msgs lacks the messages expunged meanwhile.
func attach(cands []candidate, msgs []*storage.Message) {
	j := 0
	for i := range cands {
		m := &cands[i]
		if m.result != unknown {
			continue
		}
		m.msg = nil
		for j < len(msgs) && msgs[j].UID < m.ref.uid {
			j++
		}
		if j < len(msgs) && msgs[j].UID == m.ref.uid {
			m.msg = msgs[j]
			j++
		}
	}
}

func searchData(kind protocol.NumKind, matches []msgRef) *imap.SearchData {
	data := &imap.SearchData{Count: uint32(len(matches))}
	num := func(r msgRef) uint32 {
		if kind == protocol.NumKindUID {
			return uint32(r.uid)
		}
		return r.seq
	}
	if len(matches) > 0 {
		// matches ascend in both sequence number and UID.
		data.Min = num(matches[0])
		data.Max = num(matches[len(matches)-1])
	}
	if kind == protocol.NumKindUID {
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

// level is what a criterion needs before it can be decided, cheapest
// first.
type level uint8

const (
	levelRef    level = iota // sequence number and UID: nothing loaded
	levelMeta                // flags, dates, size and envelope: no body
	levelHeader              // the raw header
	levelBody                // the decoded text of the body
)

// tri is a criterion's answer for one message at some level: unknown
// until that level has what the criterion needs.
type tri uint8

const (
	unknown tri = iota
	yes
	no
)

// needle is a lower-cased search string, in both forms the matchers use.
type needle struct {
	s string
	b []byte
}

func newNeedle(s string) needle {
	l := strings.ToLower(s)
	return needle{s: l, b: []byte(l)}
}

// headerCriterion is HEADER key value, and FROM/TO/CC/BCC/SUBJECT, which
// protocol turns into HEADER.
type headerCriterion struct {
	key   string
	value needle
}

// criteria is imap.SearchCriteria with "*" and "$" resolved for this view.
type criteria struct {
	seq, uid                             [][]numRange
	since, before, sentSince, sentBefore time.Time
	header                               []headerCriterion
	body, text                           []needle
	flag, notFlag                        []imap.Flag
	larger, smaller                      int64
	modseq                               uint64 // MODSEQ (RFC 7162): at least this
	not                                  []*criteria
	or                                   [][2]*criteria

	// levels has bit 1<<l set when this criteria or a nested one has a
	// criterion of level l.
	levels uint8
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
	if in.ModSeq != nil {
		c.modseq = in.ModSeq.ModSeq
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
		c.header = append(c.header, headerCriterion{key: h.Key, value: newNeedle(h.Value)})
	}
	for _, b := range in.Body {
		c.body = append(c.body, newNeedle(b))
	}
	for _, t := range in.Text {
		c.text = append(c.text, newNeedle(t))
	}
	if c.hasMeta() {
		c.levels |= 1 << levelMeta
	}
	if len(c.header) > 0 {
		c.levels |= 1 << levelHeader
	}
	if len(c.body) > 0 || len(c.text) > 0 {
		c.levels |= 1 << levelBody
	}
	for i := range in.Not {
		sub := v.compileCriteria(&in.Not[i], lastSeq, lastUID)
		c.not = append(c.not, sub)
		c.levels |= sub.levels
	}
	for i := range in.Or {
		pair := [2]*criteria{
			v.compileCriteria(&in.Or[i][0], lastSeq, lastUID),
			v.compileCriteria(&in.Or[i][1], lastSeq, lastUID),
		}
		c.or = append(c.or, pair)
		c.levels |= pair[0].levels | pair[1].levels
	}
	return c
}

// hasMeta reports whether c itself (not nested) tests the metadata.
func (c *criteria) hasMeta() bool {
	return len(c.flag) > 0 || len(c.notFlag) > 0 || !c.since.IsZero() || !c.before.IsZero() ||
		c.larger > 0 || c.smaller > 0 || c.hasSentDate() || c.modseq > 0
}

func (c *criteria) hasSentDate() bool { return !c.sentSince.IsZero() || !c.sentBefore.IsZero() }

// needsEnvelope reports whether c or a nested criteria tests the sent date.
func (c *criteria) needsEnvelope() bool {
	if c.hasSentDate() {
		return true
	}
	for _, sub := range c.not {
		if sub.needsEnvelope() {
			return true
		}
	}
	for _, pair := range c.or {
		if pair[0].needsEnvelope() || pair[1].needsEnvelope() {
			return true
		}
	}
	return false
}

// step is one pass over a chunk's undecided messages: load (nil: nothing
// to load), then evaluate at levels from..to, stopping at the first level
// that decides.
type step struct {
	load     *storage.LoadOptions
	from, to level
}

// plan chooses the passes: each loads only what its level needs, for the
// messages the cheaper passes left undecided. The metadata gets a pass of
// its own only when some criterion tests it, and the header one only when
// some criterion tests the header, so that the header, and above all the
// body, of a message ruled out earlier is never copied out of the
// database.
func (c *criteria) plan() []step {
	steps := []step{{from: levelRef, to: levelRef}}
	env := c.needsEnvelope()
	add := func(to level, load storage.LoadOptions) {
		load.Envelope = env
		steps = append(steps, step{load: &load, from: steps[len(steps)-1].to + 1, to: to})
	}
	if c.levels&(1<<levelMeta) != 0 {
		add(levelMeta, storage.LoadOptions{})
	}
	if c.levels&(1<<levelHeader) != 0 {
		add(levelHeader, storage.LoadOptions{Header: true})
	}
	if c.levels&(1<<levelBody) != 0 {
		add(levelBody, storage.LoadOptions{Body: true})
	}
	return steps
}

// candidate is one message under test.
type candidate struct {
	ref    msgRef
	msg    *storage.Message // loaded for the current step, then dropped
	result tri
	text   *msgText // shared by all candidates; reset for each
	modseq uint64   // of the message, once loaded (SEARCH MODSEQ's result)
	// subject: the message's Subject values when subjectOK (from the
	// mailbox's subjectCache, or parsed here; fill: to be cached).
	subject         []string
	subjectOK, fill bool
}

// eval decides c for m with what level l allows, or says unknown. It
// returns no as soon as any criterion fails, so a message ruled out by a
// cheap criterion is not parsed.
func (c *criteria) eval(m *candidate, l level) tri {
	for _, ranges := range c.seq {
		if !inRanges(ranges, m.ref.seq) {
			return no
		}
	}
	for _, ranges := range c.uid {
		if !inRanges(ranges, uint32(m.ref.uid)) {
			return no
		}
	}
	r := yes
	if c.hasMeta() {
		if l < levelMeta {
			r = unknown
		} else if !c.matchMeta(m.msg) {
			return no
		}
	}
	for _, h := range c.header {
		switch {
		case m.subjectOK && isSubject(h.key):
			if !matchValues(m.subject, h.value) {
				return no
			}
		case l < levelHeader:
			r = unknown
		case !m.text.matchHeader(h.key, h.value):
			return no
		}
	}
	if len(c.body) > 0 {
		if l < levelBody {
			r = unknown
		} else {
			for _, b := range c.body {
				if !m.text.bodyContains(b) {
					return no
				}
			}
		}
	}
	for _, t := range c.text {
		// TEXT is the header or the body (RFC 3501 6.4.4).
		if l < levelHeader {
			r = unknown
			continue
		}
		if m.text.headersContain(t) {
			continue
		}
		if l < levelBody {
			r = unknown
			continue
		}
		if !m.text.bodyContains(t) {
			return no
		}
	}
	for _, sub := range c.not {
		switch sub.eval(m, l) {
		case yes:
			return no
		case unknown:
			r = unknown
		}
	}
	for _, pair := range c.or {
		a := pair[0].eval(m, l)
		if a == yes {
			continue
		}
		b := pair[1].eval(m, l)
		switch {
		case b == yes:
		case a == no && b == no:
			return no
		default:
			r = unknown
		}
	}
	return r
}

// matchMeta tests flags, dates and size.
func (c *criteria) matchMeta(msg *storage.Message) bool {
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
	if c.modseq > 0 && msg.ModSeq < c.modseq {
		return false
	}
	if c.hasSentDate() {
		if msg.Envelope == nil || msg.Envelope.Date.IsZero() || !matchDate(msg.Envelope.Date, c.sentSince, c.sentBefore) {
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

// maxHeaderBytes is go-message's default limit on a header (ReadOptions):
// gomessage.Read fails on a longer one.
const maxHeaderBytes = 1 << 20

// msgText is the text of the message under test, derived from its raw
// bytes as criteria ask for it: the raw header block, the parsed header,
// the decoded body. One serves a whole SEARCH and is reset for each
// message, so that its buffers are reused rather than allocated per
// message.
type msgText struct {
	msgState

	rd       bytes.Reader
	br       *bufio.Reader
	buf      bytes.Buffer
	blockBuf []byte
	rawBuf   []byte
	bodyBuf  []byte
}

// msgState is what msgText has derived from one message so far.
type msgState struct {
	raw []byte

	blockDone bool
	block     []byte // the raw header lower-cased (blockMayContain)
	encoded   bool   // the raw header has an encoded word (RFC 2047)
	folded    bool   // the raw header has a continuation line

	parsed    bool
	header    textproto.Header
	headerErr error
	bodyStart int // offset of the body in raw, when headerErr is nil

	headerTextDone bool
	headerText     string

	rawDone    bool
	rawLower   []byte // the whole raw message lower-cased (bodyContains)
	rawDecodes bool   // go-message may decode some of its text

	bodyDone bool
	bodyText []byte // decoded text parts, lower-cased
}

func (t *msgText) reset(msg *storage.Message) {
	if t == nil {
		return
	}
	t.msgState = msgState{}
	if msg != nil {
		t.raw = msg.Body
		if t.raw == nil {
			// Loaded for the header criteria only (levelHeader).
			t.raw = msg.Header
		}
	}
}

// scanBlock finds the raw header block, the bytes up to the first empty
// line, which is where textproto.ReadHeader stops.
func (t *msgText) scanBlock() {
	if t.blockDone {
		return
	}
	t.blockDone = true
	raw := t.raw
	end := len(raw)
	switch {
	case bytes.HasPrefix(raw, []byte("\n")), bytes.HasPrefix(raw, []byte("\r\n")):
		end = 0
	default:
		if i := bytes.Index(raw, []byte("\n\r\n")); i >= 0 {
			end = i + 1
		}
		if i := bytes.Index(raw[:end], []byte("\n\n")); i >= 0 {
			end = i + 1
		}
	}
	block := raw[:end]
	t.encoded = bytes.Contains(block, []byte("=?"))
	t.folded = bytes.Contains(block, []byte("\n ")) || bytes.Contains(block, []byte("\n\t"))
	t.block = appendLower(t.blockBuf[:0], block)
	t.blockBuf = t.block[:0]
}

// blockMayContain is false when no decoded header value can contain the
// lower-cased n, decided on the raw header without parsing it. Without an
// encoded word, a decoded value is its raw text unfolded: the lines of a
// field trimmed and joined by one space (textproto.ReadHeader), and ASCII
// characters, where lines and values start and end, are rune boundaries.
// So unless n has a space and the header is folded, a value containing n
// lower-cased means the raw header contains n lower-cased; the converse
// does not hold, and a true answer is checked on the parsed header.
func (t *msgText) blockMayContain(n needle) bool {
	t.scanBlock()
	if t.encoded || (t.folded && strings.IndexByte(n.s, ' ') >= 0) {
		return true
	}
	return bytes.Contains(t.block, n.b)
}

func (t *msgText) parseHeader() {
	if t.parsed {
		return
	}
	t.parsed = true
	t.rd.Reset(t.raw)
	if t.br == nil {
		t.br = bufio.NewReader(&t.rd)
	} else {
		t.br.Reset(&t.rd)
	}
	t.header, t.headerErr = textproto.ReadHeader(t.br)
	t.bodyStart = len(t.raw) - t.rd.Len() - t.br.Buffered()
}

// matchHeader is HEADER key value and FROM/TO/CC/BCC/SUBJECT: a
// case-insensitive substring of the decoded field; an empty value matches
// any message that has the field (RFC 3501 6.4.4). A header that cannot
// be parsed matches nothing.
//
// An address field (From, Sender, Reply-To, To, Cc, Bcc) also matches
// when value is part of one of its parsed addresses, as the ENVELOPE
// shows them: the display name (or the old "(Full Name)" comment),
// mailbox@host with comments and quoting gone, or a group's name. RFC
// 3501 6.4.4 says FROM matches "the envelope structure's FROM field";
// the header's own text is matched too, so that a search for what a
// client displays of a raw field (`"smith, carol"`) still finds it.
func (t *msgText) matchHeader(key string, value needle) bool {
	address := isAddressField(key)
	if !t.blockMayContain(value) && !(address && t.blockHasAddressSyntax()) {
		return false
	}
	t.parseHeader()
	if t.headerErr != nil {
		return false
	}
	for f := t.header.FieldsByKey(key); f.Next(); {
		if value.s == "" || strings.Contains(strings.ToLower(decodeHeaderValue(f.Value())), value.s) {
			return true
		}
		if address && addressesContain(f.Value(), value.s) {
			return true
		}
	}
	return false
}

func isAddressField(key string) bool {
	switch strings.ToLower(key) {
	case "from", "sender", "reply-to", "to", "cc", "bcc":
		return true
	}
	return false
}

// blockHasAddressSyntax reports whether the raw header has a comment, a
// quoted string or a quoted pair: then a parsed address may contain text
// that the raw header does not (blockMayContain cannot rule it out).
func (t *msgText) blockHasAddressSyntax() bool {
	t.scanBlock()
	return bytes.ContainsAny(t.block, "(\"\\")
}

// addressesContain reports whether the lower-cased s is part of an
// address of the list v as parsed for the ENVELOPE.
func addressesContain(v, s string) bool {
	for _, a := range envelope.Addresses(v) {
		if a.Host == "" && a.Mailbox == "" {
			continue // a group's end
		}
		if strings.Contains(strings.ToLower(a.Name), s) || strings.Contains(strings.ToLower(a.Mailbox), s) {
			return true
		}
		if a.Host != "" && strings.Contains(strings.ToLower(a.Mailbox+"@"+a.Host), s) {
			return true
		}
	}
	return false
}

// headersContain is the header half of TEXT: n in the decoded,
// lower-cased "Key: value" lines. A needle without a colon, space or line
// break lies inside one key or one value piece, so the raw header scan
// rules it out as for matchHeader.
func (t *msgText) headersContain(n needle) bool {
	if !strings.ContainsAny(n.s, ": \n") && !t.blockMayContain(n) {
		return false
	}
	if !t.headerTextDone {
		t.headerTextDone = true
		t.parseHeader()
		if t.headerErr == nil {
			var sb strings.Builder
			for f := t.header.Fields(); f.Next(); {
				sb.WriteString(f.Key())
				sb.WriteString(": ")
				sb.WriteString(decodeHeaderValue(f.Value()))
				sb.WriteByte('\n')
			}
			t.headerText = strings.ToLower(sb.String())
		}
	}
	return strings.Contains(t.headerText, n.s)
}

// bodyContains is BODY: n in the decoded text of the message. When
// go-message cannot decode anything in the message (see mayDecode), that
// text is made of pieces of the raw message, cut at line ends, each
// followed by a line feed; ASCII characters being rune boundaries, the
// raw message lower-cased then contains any needle without a line feed
// that the text lower-cased contains, and most messages are ruled out
// without parsing them.
func (t *msgText) bodyContains(n needle) bool {
	if strings.IndexByte(n.s, '\n') < 0 {
		if !t.rawDone {
			t.rawDone = true
			t.rawLower = appendLower(t.rawBuf[:0], t.raw)
			t.rawBuf = t.rawLower[:0]
			t.scanBlock()
			headers := t.rawLower
			if !bytes.Contains(t.block, []byte("multipart/")) {
				// One part (go-message lower-cases the media type it
				// parses, and keeps as is one it cannot parse, which
				// then names no multipart): its header is the only one.
				headers = t.block
			}
			t.rawDecodes = mayDecode(headers)
		}
		if !t.rawDecodes && !bytes.Contains(t.rawLower, n.b) {
			return false
		}
	}
	return bytes.Contains(t.body(), n.b)
}

// mayDecode reports whether go-message might turn some text of a message
// into something else, given l, the message's headers lower-cased (or
// more of the message): a transfer encoding to undo, a charset to
// convert, or a nested message whose header collectText writes decoded.
// It answers true on anything it is not sure of, such as a charset
// parameter in any other form than the plain utf-8 and us-ascii ones,
// which go-message leaves as they are.
func mayDecode(l []byte) bool {
	if bytes.Contains(l, []byte("content-transfer-encoding")) || bytes.Contains(l, []byte("message/")) {
		return true
	}
	for rest := l; ; {
		i := bytes.Index(rest, []byte("charset"))
		if i < 0 {
			return false
		}
		rest = rest[i+len("charset"):]
		ok := false
		for _, v := range []string{"=utf-8", "=us-ascii", `="utf-8"`, `="us-ascii"`} {
			if after, found := bytes.CutPrefix(rest, []byte(v)); found && (len(after) == 0 || !isTokenByte(after[0])) {
				ok = true
				break
			}
		}
		if !ok {
			return true
		}
	}
}

// isTokenByte reports whether c can continue an RFC 2045 token
// (lower-cased): whether "charset=utf-8" followed by c could name
// another charset.
func isTokenByte(c byte) bool {
	return c > ' ' && c < 0x7f && strings.IndexByte(`()<>@,;:\"/[]?=`, c) < 0
}

// body returns the lower-cased text of the message's text parts with
// transfer encodings (and, where go-message knows them, charsets) undone,
// so BODY and TEXT find words in quoted-printable and base64 parts too.
func (t *msgText) body() []byte {
	if t.bodyDone {
		return t.bodyText
	}
	t.bodyDone = true
	t.parseHeader()
	var text []byte
	switch {
	case t.headerErr != nil:
		// Not parseable as MIME (gomessage.Read fails the same way):
		// search the raw text after the header.
		text = t.raw
		if i := bytes.Index(text, []byte("\r\n\r\n")); i >= 0 {
			text = text[i+4:]
		}
	case t.bodyStart > maxHeaderBytes-2:
		// Past go-message's header limit: let it fail as it does.
		t.buf.Reset()
		if e, err := gomessage.Read(bytes.NewReader(t.raw)); e != nil {
			collectText(&t.buf, e, 0)
		} else if err != nil {
			text = t.raw
			if i := bytes.Index(text, []byte("\r\n\r\n")); i >= 0 {
				text = text[i+4:]
			}
		}
		if text == nil {
			text = t.buf.Bytes()
		}
	default:
		h := gomessage.Header{Header: t.header}
		if plain, ok := plainText(h); ok {
			// The common single text part: the stored bytes are the text,
			// and collectText would only copy them.
			if plain {
				t.bodyText = appendLower(t.bodyBuf[:0], t.raw[t.bodyStart:])
				t.bodyText = append(t.bodyText, '\n')
			} else {
				t.bodyText = t.bodyBuf[:0]
			}
			t.bodyBuf = t.bodyText[:0]
			return t.bodyText
		}
		// What gomessage.Read does after reading the header.
		t.buf.Reset()
		if e, _ := gomessage.New(h, bytes.NewReader(t.raw[t.bodyStart:])); e != nil {
			collectText(&t.buf, e, 0)
		}
		text = t.buf.Bytes()
	}
	t.bodyText = appendLower(t.bodyBuf[:0], text)
	t.bodyBuf = t.bodyText[:0]
	return t.bodyText
}

// plainText reports, for an entity whose body go-message would pass
// through unchanged (not multipart, no transfer encoding, no charset to
// convert), whether collectText would take that body as text (plain) or
// skip it. ok is false for every other entity.
func plainText(h gomessage.Header) (plain, ok bool) {
	t, params, _ := h.ContentType()
	if strings.HasPrefix(t, "multipart/") || t == "message/rfc822" || t == "message/global" {
		return false, false
	}
	switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
	case "", "7bit", "8bit", "binary":
	default:
		return false, false
	}
	if strings.HasPrefix(t, "text/") {
		if cs, has := params["charset"]; has {
			switch strings.ToLower(cs) {
			case "utf-8", "us-ascii":
			default:
				return false, false
			}
		}
	}
	return t == "" || strings.HasPrefix(t, "text/"), true
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

// appendLower appends src lower-cased to dst, byte for byte what
// bytes.ToLower returns (invalid UTF-8 becomes U+FFFD), without its
// allocation, and eight bytes at a time while the text is ASCII.
func appendLower(dst, src []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(src))[:n+len(src)]
	out := dst[n:]
	i := 0
	for ; i+8 <= len(src); i += 8 {
		w := binary.LittleEndian.Uint64(src[i:])
		if w&0x8080808080808080 != 0 {
			break
		}
		// With every byte below 0x80, adding 0x3f sets a byte's top bit
		// when it is 'A' or above, adding 0x25 when it is above 'Z',
		// without carrying into the next byte; the difference marks the
		// capitals, whose 0x20 bit is then set.
		upper := (w + 0x3f3f3f3f3f3f3f3f) &^ (w + 0x2525252525252525) & 0x8080808080808080
		binary.LittleEndian.PutUint64(out[i:], w|upper>>2)
	}
	for ; i < len(src); i++ {
		c := src[i]
		if c >= utf8.RuneSelf {
			return appendLowerRunes(dst[:n+i], src[i:])
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return dst
}

// appendLowerRunes is appendLower past the first non-ASCII byte: what
// bytes.Map(unicode.ToLower, src) does.
func appendLowerRunes(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(src[i:])
		dst = utf8.AppendRune(dst, unicode.ToLower(r))
		i += size
	}
	return dst
}

// usesModSeq reports whether a MODSEQ criterion is anywhere in cr.
func usesModSeq(cr *imap.SearchCriteria) bool {
	if cr.ModSeq != nil {
		return true
	}
	for i := range cr.Not {
		if usesModSeq(&cr.Not[i]) {
			return true
		}
	}
	for i := range cr.Or {
		if usesModSeq(&cr.Or[i][0]) || usesModSeq(&cr.Or[i][1]) {
			return true
		}
	}
	return false
}

// resultModSeq is the MODSEQ of a SEARCH result (RFC 7162 3.1.5, RFC 4731
// 3.2): the highest modseq of the messages returned, which for ESEARCH
// RETURN (MIN), (MAX) or (MIN MAX) are only those.
func resultModSeq(modseqs []uint64, options *imap.SearchOptions) uint64 {
	if options.ReturnAll || options.ReturnCount || (!options.ReturnMin && !options.ReturnMax) {
		return slices.Max(modseqs)
	}
	var m uint64
	if options.ReturnMin {
		m = modseqs[0]
	}
	if options.ReturnMax {
		m = max(m, modseqs[len(modseqs)-1])
	}
	return m
}
