package imapd

import (
	"bufio"
	"bytes"
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"

	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
)

// Thread implements protocol.SessionThread: THREAD ORDEREDSUBJECT and
// THREAD REFERENCES (RFC 5256 2.2 and 4).
//
// The messages are chosen by the SEARCH evaluator. ORDEREDSUBJECT reads
// the stored envelopes only; REFERENCES also reads each message's stored
// header (not its body) for the References field, which the envelope
// lacks.
func (s *session) Thread(kind protocol.NumKind, alg imap.ThreadAlgorithm, criteria *imap.SearchCriteria) (_ []protocol.ThreadNode, err error) {
	cmd := "THREAD"
	if kind == protocol.NumKindUID {
		cmd = "UID THREAD"
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
	opts := storage.LoadOptions{Envelope: true, Header: alg == imap.ThreadReferences}
	msgs, err := s.loadMeta(cmd, v, refs, opts)
	if err != nil {
		return nil, err
	}
	tms := make([]threadMsg, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		base, reply := baseSubject(m.env.Subject)
		tms[i] = threadMsg{
			num:       m.num(kind),
			date:      m.sentDate(),
			subject:   asciiUpper(base),
			reply:     reply,
			messageID: m.env.MessageID,
		}
		if alg == imap.ThreadReferences {
			tms[i].references = messageReferences(m.header, m.env.InReplyTo)
		}
	}
	if alg == imap.ThreadReferences {
		return threadReferences(tms), nil
	}
	return threadOrderedSubject(tms), nil
}

// threadMsg is what the threading algorithms know of one message; a
// slice of them is in mailbox order.
type threadMsg struct {
	num        uint32
	date       time.Time // the sent date, as SORT DATE
	subject    string    // base subject, case-folded
	reply      bool      // the subject had a reply or forward marker
	messageID  string
	references []string // References, or the first In-Reply-To
}

// messageReferences are the message IDs of the References field of a raw
// header, or else the first of In-Reply-To (RFC 5256 2.2 step 1).
func messageReferences(header []byte, inReplyTo []string) []string {
	if len(header) > 0 {
		// A broken header still yields the fields read before the fault.
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(header)))
		if ids := msgIDs(h.Get("References")); len(ids) > 0 {
			return ids
		}
	}
	for _, id := range inReplyTo {
		if id != "" {
			return []string{id}
		}
	}
	return nil
}

// msgIDs extracts every "<...>" message ID of v, without the brackets;
// what is between them is skipped, so one broken ID costs only itself.
func msgIDs(v string) []string {
	var out []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return out
		}
		v = v[i+1:]
		j := strings.IndexAny(v, "<>")
		if j < 0 {
			return out
		}
		if v[j] == '<' {
			v = v[j:]
			continue
		}
		if id := strings.TrimSpace(v[:j]); id != "" && !strings.ContainsAny(id, " \t\r\n") {
			out = append(out, id)
		}
		v = v[j+1:]
	}
}

// threadOrderedSubject is ORDEREDSUBJECT (RFC 5256 2.2): messages grouped
// by base subject; in each group, in sent date order, the first is the
// parent of all the others; groups ordered by their first message.
func threadOrderedSubject(msgs []threadMsg) []protocol.ThreadNode {
	order := make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := strings.Compare(msgs[a].subject, msgs[b].subject); c != 0 {
			return c
		}
		return msgs[a].date.Compare(msgs[b].date)
	})
	type group struct {
		first int
		node  protocol.ThreadNode
	}
	var groups []group
	for k, i := range order {
		if k > 0 && msgs[order[k-1]].subject == msgs[i].subject {
			g := &groups[len(groups)-1]
			g.node.Children = append(g.node.Children, protocol.ThreadNode{Num: msgs[i].num})
			continue
		}
		groups = append(groups, group{first: i, node: protocol.ThreadNode{Num: msgs[i].num}})
	}
	slices.SortStableFunc(groups, func(a, b group) int {
		if c := msgs[a.first].date.Compare(msgs[b.first].date); c != 0 {
			return c
		}
		return cmp.Compare(a.first, b.first)
	})
	out := make([]protocol.ThreadNode, len(groups))
	for i, g := range groups {
		out[i] = g.node
	}
	return out
}

// container is a node of the REFERENCES tree: a message or a dummy.
type container struct {
	msg      int // index into msgs, or -1 for a dummy
	parent   *container
	children []*container
}

func (c *container) isDummy() bool { return c.msg < 0 }

// descendsFrom reports whether c is a or below a.
func (c *container) descendsFrom(a *container) bool {
	if len(a.children) == 0 {
		return c == a // the usual case, and a deep chain stays linear
	}
	for n := c; n != nil; n = n.parent {
		if n == a {
			return true
		}
	}
	return false
}

func (c *container) unlink() {
	p := c.parent
	if p == nil {
		return
	}
	for i, ch := range p.children {
		if ch == c {
			p.children = slices.Delete(p.children, i, i+1)
			break
		}
	}
	c.parent = nil
}

func (c *container) adopt(child *container) {
	child.parent = c
	c.children = append(c.children, child)
}

// threadReferences is REFERENCES (RFC 5256 2.2), steps 1 to 6.
func threadReferences(msgs []threadMsg) []protocol.ThreadNode {
	byID := make(map[string]*container, len(msgs))
	nodes := make([]*container, len(msgs))
	for i := range msgs {
		c := &container{msg: i}
		nodes[i] = c
		// A message without a Message-ID, or a later duplicate, gets a
		// unique one: it is simply not entered in byID.
		if id := msgs[i].messageID; id != "" {
			if _, ok := byID[id]; !ok {
				byID[id] = c
			}
		}
	}
	lookup := func(id string) *container {
		if c, ok := byID[id]; ok {
			return c
		}
		d := &container{msg: -1}
		byID[id] = d
		return d
	}
	// (1) Link.
	for i := range msgs {
		cur := nodes[i]
		refs := msgs[i].references
		// (A) Chain the references, keeping links that exist.
		var prev *container
		for _, id := range refs {
			c := lookup(id)
			if prev != nil && c.parent == nil && c != prev && !prev.descendsFrom(c) {
				prev.adopt(c)
			}
			prev = c
		}
		// (B) The last reference is the parent of this message. Its
		// old parent goes in any case: without references, or when the
		// new link would make a loop, it has none.
		cur.unlink()
		if prev != nil && prev != cur && !prev.descendsFrom(cur) {
			prev.adopt(cur)
		}
	}
	// (2) The messages without a parent are the children of the root.
	root := &container{msg: -1}
	seen := make(map[*container]bool, len(byID)+len(nodes))
	add := func(c *container) {
		if c.parent == nil && !seen[c] {
			seen[c] = true
			root.children = append(root.children, c)
		}
	}
	for _, c := range nodes {
		add(c)
	}
	// Dummies without a parent (their order does not matter: step 4
	// sorts the top level on a total order).
	for _, c := range byID {
		if c.isDummy() {
			add(c)
		}
	}
	for _, c := range root.children {
		c.parent = root
	}
	// (3) Prune dummies.
	prune(root, msgs)
	date := func(c *container) time.Time {
		if c.isDummy() {
			if len(c.children) == 0 {
				return time.Time{}
			}
			c = c.children[0]
		}
		return msgs[c.msg].date
	}
	index := func(c *container) int {
		if c.isDummy() && len(c.children) > 0 {
			c = c.children[0]
		}
		return c.msg
	}
	bySent := func(a, b *container) int {
		if c := date(a).Compare(date(b)); c != 0 {
			return c
		}
		return cmp.Compare(index(a), index(b))
	}
	// (4) Sort the top level by sent date (a dummy by its first child,
	// after sorting its children).
	for _, c := range root.children {
		if c.isDummy() {
			slices.SortStableFunc(c.children, bySent)
		}
	}
	slices.SortStableFunc(root.children, bySent)
	// (5) Gather the top-level threads of one base subject.
	subjectOf := func(c *container) string {
		if c.isDummy() {
			if len(c.children) == 0 {
				return ""
			}
			c = c.children[0]
		}
		return msgs[c.msg].subject
	}
	isReply := func(c *container) bool { return !c.isDummy() && msgs[c.msg].reply }
	table := make(map[string]*container)
	for _, c := range root.children {
		subj := subjectOf(c)
		if subj == "" {
			continue
		}
		old, ok := table[subj]
		if !ok || (!old.isDummy() && (c.isDummy() || (isReply(old) && !isReply(c)))) {
			table[subj] = c
		}
	}
	var dummies []*container
	for _, c := range slices.Clone(root.children) {
		subj := subjectOf(c)
		if subj == "" {
			continue
		}
		t := table[subj]
		if t == c {
			continue
		}
		switch {
		case t.isDummy() && c.isDummy():
			for _, ch := range c.children {
				t.adopt(ch)
			}
			c.children = nil
			c.parent = nil // deleted
		case t.isDummy(), isReply(c) && !isReply(t):
			t.adopt(c)
		default:
			d := &container{msg: -1, parent: root}
			d.adopt(t)
			d.adopt(c)
			table[subj] = d
			dummies = append(dummies, d)
		}
	}
	var top []*container
	for _, c := range root.children {
		if c.parent == root {
			top = append(top, c)
		}
	}
	top = append(top, dummies...)
	root.children = top
	// (6) Sort every set of siblings by sent date, the deepest first.
	sortTree(root, bySent)
	out := make([]protocol.ThreadNode, 0, len(root.children))
	for _, c := range root.children {
		out = append(out, toNode(c, msgs))
	}
	return out
}

// prune is step 3 of REFERENCES: a dummy without children goes; a dummy
// with children gives them to its parent, unless that is the root and
// they are more than one.
func prune(c *container, msgs []threadMsg) {
	var kept []*container
	for _, ch := range c.children {
		prune(ch, msgs)
		if !ch.isDummy() {
			kept = append(kept, ch)
			continue
		}
		switch {
		case len(ch.children) == 0:
		case c.parent == nil && c.msg < 0 && len(ch.children) > 1:
			kept = append(kept, ch) // c is the root
		default:
			for _, g := range ch.children {
				g.parent = c
				kept = append(kept, g)
			}
		}
	}
	c.children = kept
}

func sortTree(c *container, bySent func(a, b *container) int) {
	for _, ch := range c.children {
		sortTree(ch, bySent)
	}
	slices.SortStableFunc(c.children, bySent)
}

func toNode(c *container, msgs []threadMsg) protocol.ThreadNode {
	var n protocol.ThreadNode
	if !c.isDummy() {
		n.Num = msgs[c.msg].num
	}
	for _, ch := range c.children {
		n.Children = append(n.Children, toNode(ch, msgs))
	}
	return n
}
