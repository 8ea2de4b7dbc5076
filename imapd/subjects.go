package imapd

import (
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
)

// maxCachedSubjects bounds a mailbox's subject cache: at most this many
// messages' values are kept (two generations of half as many each), about
// 100 bytes each for a usual subject, so about 10 MB for a full cache of
// one selected mailbox.
const maxCachedSubjects = 100_000

// subjectCache keeps, per UID of one mailbox, the decoded, lower-cased
// values of its Subject fields, as SEARCH SUBJECT (HEADER Subject) matches
// them (msgText.matchHeader); nil for a message without one or whose
// header cannot be parsed. A message's header never changes for its UID,
// so entries never go stale; an expunged one is only never asked for
// again. It is shared by the sessions that have the mailbox selected and
// lives as long as the sharedMailbox. Eviction is by generation: when the
// current map is full it becomes the previous one, and an entry found in
// the previous one moves back, which approximates least recently used.
type subjectCache struct {
	mu        sync.Mutex
	cur, prev map[imap.UID][]string
}

// get returns the cached values of uid.
func (c *subjectCache) getLocked(uid imap.UID) ([]string, bool) {
	if v, ok := c.cur[uid]; ok {
		return v, true
	}
	v, ok := c.prev[uid]
	if ok {
		c.putLocked(uid, v)
	}
	return v, ok
}

func (c *subjectCache) putLocked(uid imap.UID, v []string) {
	if c.cur == nil {
		c.cur = make(map[imap.UID][]string)
	}
	if len(c.cur) >= maxCachedSubjects/2 {
		c.prev, c.cur = c.cur, make(map[imap.UID][]string)
	}
	c.cur[uid] = v
}

// isSubject reports whether a HEADER criterion's key is Subject.
func isSubject(key string) bool { return strings.EqualFold(key, "subject") }

// usesSubject reports whether c or a nested criteria tests the Subject.
func (c *criteria) usesSubject() bool {
	for _, h := range c.header {
		if isSubject(h.key) {
			return true
		}
	}
	for _, sub := range c.not {
		if sub.usesSubject() {
			return true
		}
	}
	for _, pair := range c.or {
		if pair[0].usesSubject() || pair[1].usesSubject() {
			return true
		}
	}
	return false
}

// subjectValues are the values the cache keeps for the message t holds.
func (t *msgText) subjectValues() []string {
	t.parseHeader()
	if t.headerErr != nil {
		return nil
	}
	var out []string
	for f := t.header.FieldsByKey("Subject"); f.Next(); {
		out = append(out, strings.ToLower(decodeHeaderValue(f.Value())))
	}
	return out
}

// matchValues is matchHeader on cached values.
func matchValues(values []string, n needle) bool {
	for _, v := range values {
		if n.s == "" || strings.Contains(v, n.s) {
			return true
		}
	}
	return false
}
