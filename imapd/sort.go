package imapd

import (
	"cmp"
	"fmt"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
)

// Sort implements protocol.SessionSort (RFC 5256 SORT, RFC 5957 DISPLAY).
//
// The messages are chosen by the SEARCH evaluator, then ordered from what
// storage keeps beside each message (the envelope, the internal date, the
// size): no header or body is read. Every key is computed once per
// message before the sort; messages equal on every key keep their
// mailbox order (RFC 5256 3).
func (s *session) Sort(kind protocol.NumKind, keys []protocol.SortCriterion, criteria *imap.SearchCriteria) (_ []uint32, err error) {
	cmd := "SORT"
	if kind == protocol.NumKindUID {
		cmd = "UID SORT"
	}
	defer s.guard(cmd, &err)
	v, err := s.selected()
	if err != nil {
		return nil, err
	}
	refs, _, err := s.searchRefs(cmd, v, criteria)
	if err != nil {
		return nil, err
	}
	if v.sortKeys == nil {
		v.sortKeys = make(map[imap.UID]*sortEntry)
	}
	entries := make([]*sortEntry, len(refs))
	var missing []msgRef
	for i, r := range refs {
		if entries[i] = v.sortKeys[r.uid]; entries[i] == nil {
			missing = append(missing, r)
		}
	}
	if len(missing) == 0 {
		if out, ok := v.sortOrders.reuse(keys, refs, entries, kind); ok {
			return out, nil
		}
	}
	msgs, err := s.loadMeta(cmd, v, missing, storage.LoadOptions{Envelope: true})
	if err != nil {
		return nil, err
	}
	for i := range msgs {
		v.sortKeys[msgs[i].ref.uid] = newSortEntry(&msgs[i])
	}
	items := make([]sortItem, 0, len(refs))
	for i, r := range refs {
		e := entries[i]
		if e == nil {
			e = v.sortKeys[r.uid]
		}
		if e != nil { // nil: expunged meanwhile
			items = append(items, sortItem{ref: r, keys: e})
		}
	}
	sortItems(items, keys)
	v.sortOrders.keep(keys, items)
	out := make([]uint32, len(items))
	for i, it := range items {
		if kind == protocol.NumKindUID {
			out[i] = uint32(it.ref.uid)
		} else {
			out[i] = it.ref.seq
		}
	}
	return out, nil
}

// metaMsg is one matching message with the stored data SORT and THREAD
// read.
type metaMsg struct {
	ref          msgRef
	env          *envelope.Envelope // never nil
	internalDate time.Time
	size         int64
	header       []byte // only when loaded
}

func (m *metaMsg) num(kind protocol.NumKind) uint32 {
	if kind == protocol.NumKindUID {
		return uint32(m.ref.uid)
	}
	return m.ref.seq
}

// sentDate is the DATE sort key: the Date header, or the internal date
// when it is missing or unparsable (RFC 5256 2.2).
func (m *metaMsg) sentDate() time.Time {
	if !m.env.Date.IsZero() {
		return m.env.Date
	}
	return m.internalDate
}

// loadMeta loads refs (in mailbox order) in chunks; a message expunged
// since the search is left out.
func (s *session) loadMeta(cmd string, v *mailboxView, refs []msgRef, opts storage.LoadOptions) ([]metaMsg, error) {
	out := make([]metaMsg, 0, len(refs))
	uids := make([]imap.UID, 0, min(len(refs), loadChunk))
	for len(refs) > 0 {
		chunk := refs[:min(len(refs), loadChunk)]
		refs = refs[len(chunk):]
		uids = uids[:0]
		for _, r := range chunk {
			uids = append(uids, r.uid)
		}
		msgs, err := s.srv.store.Messages(s.ctx, s.user, v.box.key.id, uids, opts)
		if err != nil {
			return nil, s.storageError(cmd, err)
		}
		j := 0
		for _, r := range chunk {
			for j < len(msgs) && msgs[j].UID < r.uid {
				j++
			}
			if j == len(msgs) || msgs[j].UID != r.uid {
				continue
			}
			m := msgs[j]
			env := m.Envelope
			if env == nil {
				env = &envelope.Envelope{}
			}
			out = append(out, metaMsg{ref: r, env: env, internalDate: m.InternalDate, size: m.Size, header: m.Header})
		}
	}
	return out, nil
}

// sortEntry is one message's sort keys, computed once from its stored
// envelope, date and size. Strings are case-mapped (asciiUpper).
type sortEntry struct {
	arrival, sent, size                     int64
	subject, from, to, cc, dispFrom, dispTo string
	// place is the entry's place in each of the view's kept orders
	// (sortOrders), valid while its gen is that order's generation.
	place [keptOrders]struct {
		gen  uint64
		rank int32
	}
}

// keptOrders is how many sort orders a view keeps: two, for a client
// that switches between two sorts (date and subject, say).
const keptOrders = 2

// sortOrders are a view's kept orders, one per slot; a new order takes
// the slot used longest ago.
type sortOrders struct {
	slot [keptOrders]sortOrder
	tick uint64
}

func (so *sortOrders) find(keys []protocol.SortCriterion) *sortOrder {
	k := fmt.Sprint(keys)
	for i := range so.slot {
		if o := &so.slot[i]; o.gen != 0 && o.keys == k {
			so.tick++
			o.used = so.tick
			return o
		}
	}
	return nil
}

// keep records items, just sorted by keys, in the slot of these keys or
// the one used longest ago.
func (so *sortOrders) keep(keys []protocol.SortCriterion, items []sortItem) {
	o := so.find(keys)
	if o == nil {
		o = &so.slot[0]
		for i := range so.slot {
			if so.slot[i].used < o.used {
				o = &so.slot[i]
			}
		}
		so.tick++
		o.used = so.tick
	}
	for i := range so.slot {
		if o == &so.slot[i] {
			o.keep(i, fmt.Sprint(keys), items)
		}
	}
}

// reuse answers from the order kept for keys, if there is one (see
// sortOrder.reuse).
func (so *sortOrders) reuse(keys []protocol.SortCriterion, refs []msgRef, entries []*sortEntry, kind protocol.NumKind) ([]uint32, bool) {
	o := so.find(keys)
	if o == nil {
		return nil, false
	}
	return o.reuse(refs, entries, kind)
}

// sortOrder is the order of one of a session's SORTs, kept so that a later
// SORT with the same keys over the same messages or a subset of them
// (clients repeat a SORT after every change, and a total order restricted
// to a subset is that subset's order) is a walk over it instead of a
// sort. Keys never change for a UID, and UIDs are not reused while a
// mailbox is selected, so the order stays right as messages come and go;
// a SORT that meets a message outside it sorts again.
type sortOrder struct {
	slot  int
	gen   uint64
	used  uint64
	keys  string // the sort criteria it was made with
	order []*sortEntry
}

// keep records items, just sorted by keys, as this slot's order.
func (o *sortOrder) keep(slot int, keys string, items []sortItem) {
	o.slot = slot
	o.gen++
	o.keys = keys
	o.order = o.order[:0]
	for i, it := range items {
		p := &it.keys.place[slot]
		p.gen, p.rank = o.gen, int32(i)
		o.order = append(o.order, it.keys)
	}
}

// reuse answers a SORT of refs (whose entries are given) from the order
// when every entry is in it; ok is false otherwise.
func (o *sortOrder) reuse(refs []msgRef, entries []*sortEntry, kind protocol.NumKind) (out []uint32, ok bool) {
	if len(refs) > len(o.order) {
		return nil, false
	}
	// at[rank] is 1 + the index in refs of the message at that place of
	// the order (0: not asked for); the numbers come from refs, because
	// sequence numbers move with expunges.
	at := make([]int32, len(o.order))
	for i, e := range entries {
		p := e.place[o.slot]
		if p.gen != o.gen {
			return nil, false
		}
		at[p.rank] = int32(i + 1)
	}
	out = make([]uint32, 0, len(refs))
	for _, i := range at {
		if i == 0 {
			continue
		}
		if r := refs[i-1]; kind == protocol.NumKindUID {
			out = append(out, uint32(r.uid))
		} else {
			out = append(out, r.seq)
		}
	}
	return out, true
}

func newSortEntry(m *metaMsg) *sortEntry {
	base, _ := baseSubject(m.env.Subject)
	return &sortEntry{
		arrival:  m.internalDate.UnixNano(),
		sent:     m.sentDate().UnixNano(),
		size:     m.size,
		subject:  asciiUpper(base),
		from:     asciiUpper(firstMailbox(m.env.From)),
		to:       asciiUpper(firstMailbox(m.env.To)),
		cc:       asciiUpper(firstMailbox(m.env.Cc)),
		dispFrom: asciiUpper(displayName(m.env.From)),
		dispTo:   asciiUpper(displayName(m.env.To)),
	}
}

// sortItem is one message to sort, in mailbox order before sortItems.
// num and pre hold the first key inline, so that most comparisons read
// no sortEntry: num is a numeric key itself, pre the first 16 bytes of a
// string key, big-endian (equal prefixes fall back to the whole string;
// 16, not 8, because subjects often share their first words).
type sortItem struct {
	ref  msgRef
	keys *sortEntry
	num  int64
	pre  [2]uint64
}

// compare orders two entries by one key.
func (e *sortEntry) compare(o *sortEntry, key protocol.SortKey) int {
	if n, ok := e.number(key); ok {
		m, _ := o.number(key)
		return cmp.Compare(n, m)
	}
	return strings.Compare(e.text(key), o.text(key))
}

// number is a numeric key's value; ok is false for a string key.
func (e *sortEntry) number(key protocol.SortKey) (n int64, ok bool) {
	switch key {
	case protocol.SortArrival:
		return e.arrival, true
	case protocol.SortDate:
		return e.sent, true
	case protocol.SortSize:
		return e.size, true
	}
	return 0, false
}

// text is a string key's value.
func (e *sortEntry) text(key protocol.SortKey) string {
	switch key {
	case protocol.SortSubject:
		return e.subject
	case protocol.SortFrom:
		return e.from
	case protocol.SortTo:
		return e.to
	case protocol.SortCc:
		return e.cc
	case protocol.SortDisplayFrom:
		return e.dispFrom
	case protocol.SortDisplayTo:
		return e.dispTo
	}
	return ""
}

// prefix is the first 16 bytes of s as two big-endian words,
// zero-padded: prefixes that differ order as their strings do.
func prefix(s string) [2]uint64 {
	var p [2]uint64
	for i := 0; i < 16; i++ {
		p[i/8] <<= 8
		if i < len(s) {
			p[i/8] |= uint64(s[i])
		}
	}
	return p
}

// sortItems orders items (given in mailbox order) by keys; ties keep the
// mailbox order (RFC 5256 3), by UID, which ascends with it, so the sort
// need not be a stable one.
func sortItems(items []sortItem, keys []protocol.SortCriterion) {
	if len(keys) == 0 {
		return
	}
	first := keys[0]
	_, numeric := (&sortEntry{}).number(first.Key)
	for i := range items {
		if numeric {
			items[i].num, _ = items[i].keys.number(first.Key)
		} else {
			items[i].pre = prefix(items[i].keys.text(first.Key))
		}
	}
	slices.SortFunc(items, func(a, b sortItem) int {
		var c int
		switch {
		case numeric:
			c = cmp.Compare(a.num, b.num)
		case a.pre[0] != b.pre[0]:
			c = cmp.Compare(a.pre[0], b.pre[0])
		case a.pre[1] != b.pre[1]:
			c = cmp.Compare(a.pre[1], b.pre[1])
		default:
			c = strings.Compare(a.keys.text(first.Key), b.keys.text(first.Key))
		}
		if first.Reverse {
			c = -c
		}
		if c != 0 {
			return c
		}
		for _, k := range keys[1:] {
			c := a.keys.compare(b.keys, k.Key)
			if k.Reverse {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmp.Compare(a.ref.uid, b.ref.uid)
	})
}

// firstMailbox is the FROM, TO and CC sort key: the addr-mailbox (local
// part) of the first address of the envelope, or "" (RFC 5256 3). When
// that is a group, it is the group's start marker, whose addr-mailbox is
// the group's name (RFC 3501 7.4.2), as Dovecot sorts it.
func firstMailbox(list []envelope.Address) string {
	if len(list) == 0 {
		return ""
	}
	return list[0].Mailbox
}

// displayName is the DISPLAYFROM and DISPLAYTO sort key (RFC 5957 2): the
// decoded display name of the first address, or its addr-spec when it has
// none; a group's name when the list starts with a group (as Dovecot).
func displayName(list []envelope.Address) string {
	if len(list) == 0 {
		return ""
	}
	a := list[0]
	if a.IsGroupStart() {
		return strings.TrimSpace(decodeWords(a.Mailbox))
	}
	if name := strings.TrimSpace(decodeWords(a.Name)); name != "" {
		return name
	}
	if a.Host == "" {
		return a.Mailbox
	}
	return a.Mailbox + "@" + a.Host
}

// asciiUpper applies the i;ascii-casemap collation (RFC 4790 9.2): a-z
// become A-Z, every other byte stays, so byte order is the collation's.
func asciiUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'a' && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// decodeWords decodes RFC 2047 encoded-words that storage left in s (an
// unknown charset leaves s as it is).
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d := mime.WordDecoder{}
	if out, err := d.DecodeHeader(s); err == nil {
		return out
	}
	return s
}

// baseSubject is the base subject extraction of RFC 5256 2.1. reply
// reports whether it removed a reply or forward marker ("Re:", "Fwd:",
// "(fwd)" or "[fwd: ...]"), which THREAD uses.
func baseSubject(subject string) (base string, reply bool) {
	// (1) Decode encoded-words; tabs and line breaks become spaces, runs
	// of spaces one space.
	s := collapseSpace(decodeWords(subject))
	for {
		// (2) Remove trailing subj-trailer = "(fwd)" / WSP, repeatedly.
		for {
			if strings.HasSuffix(s, " ") {
				s = s[:len(s)-1]
				continue
			}
			if len(s) >= 5 && strings.EqualFold(s[len(s)-5:], "(fwd)") {
				s = s[:len(s)-5]
				reply = true
				continue
			}
			break
		}
		// (3), (4), (5): remove leaders and blobs until none remain.
		for {
			changed := false
			for {
				if strings.HasPrefix(s, " ") {
					s = s[1:]
					changed = true
					continue
				}
				if n := refwdLeader(s); n > 0 {
					s = s[n:]
					reply = true
					changed = true
					continue
				}
				break
			}
			if n := blobLen(s); n > 0 && n < len(s) {
				s = s[n:]
				changed = true
			}
			if !changed {
				break
			}
		}
		// (6) "[fwd: ... ]" around the whole subject: unwrap, start over.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s = s[5 : len(s)-1]
			reply = true
			continue
		}
		return s, reply
	}
}

// collapseSpace turns tabs, CR and LF into spaces and runs of spaces into
// one.
func collapseSpace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteByte(c)
	}
	return b.String()
}

// blobLen is the length of the subj-blob that s starts with ("[" *BLOBCHAR
// "]" *WSP), or 0. BLOBCHAR is any character but "[" and "]"; like
// Dovecot, non-ASCII characters count, so "[Список]" is a blob.
func blobLen(s string) int {
	if s == "" || s[0] != '[' {
		return 0
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '[', 0:
			return 0
		case ']':
			i++
			for i < len(s) && s[i] == ' ' {
				i++
			}
			return i
		}
	}
	return 0
}

// refwdLeader is the length of the subj-leader *subj-blob subj-refwd that s
// starts with, or 0; subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":".
func refwdLeader(s string) int {
	i := 0
	for {
		n := blobLen(s[i:])
		if n == 0 {
			break
		}
		i += n
	}
	rest := s[i:]
	var word int
	switch {
	case len(rest) >= 2 && strings.EqualFold(rest[:2], "re"):
		word = 2
	case len(rest) >= 3 && strings.EqualFold(rest[:3], "fwd"):
		word = 3
	case len(rest) >= 2 && strings.EqualFold(rest[:2], "fw"):
		word = 2
	default:
		return 0
	}
	j := i + word
	for j < len(s) && s[j] == ' ' {
		j++
	}
	j += blobLen(s[j:])
	if j < len(s) && s[j] == ':' {
		return j + 1
	}
	return 0
}
