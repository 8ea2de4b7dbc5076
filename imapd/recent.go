package imapd

import (
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
)

// \Recent (RFC 3501 2.3.2): a message is recent in exactly one session,
// the first to select its mailbox after it arrived; that session shows it
// with \Recent in FLAGS, counts it in RECENT and finds it with SEARCH
// RECENT and NEW. IMAP4rev2 dropped the flag, but IMAP4rev1 clients and
// imaptest use it.
//
// What is recent is kept in memory, not in storage: for each mailbox the
// highest UID already given to a session (sharedMailbox.recentFloor, kept
// in registry.recent while no session has the mailbox selected). After a
// restart nothing has been given yet, so the first SELECT of a mailbox
// sees all of its messages as recent, as after a mailbox is created.
//
// Lock order as for the rest of the registry: registry.mu, then
// sharedMailbox.mu.

var flagRecent = imap.Flag(`\Recent`)

// savedRecentFloor returns what release kept of a mailbox's floor.
func (r *registry) savedRecentFloor(key boxKey) imap.UID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recent[key]
}

// keepRecentFloor saves the floor of a box being freed. Caller holds r.mu.
func (r *registry) keepRecentFloor(box *sharedMailbox) {
	box.mu.Lock()
	defer box.mu.Unlock()
	if box.loaded {
		r.recent[box.key] = box.recentFloor
	}
}

// claimRecent gives a session that just selected the box every message
// no session had yet; EXAMINE sees them too but leaves them recent for
// the next SELECT.
func (box *sharedMailbox) claimRecent(a *attachment, readOnly bool) uint32 {
	box.mu.Lock()
	defer box.mu.Unlock()
	a.readWrite = !readOnly
	i, _ := slices.BinarySearch(box.uids, box.recentFloor+1)
	a.recent = slices.Clone(box.uids[i:])
	if !readOnly {
		box.recentFloor = box.maxUID
	}
	return uint32(len(a.recent))
}

// newRecentLocked gives a message that just arrived to the read-write
// session that selected the box first. Caller holds box.mu.
func (box *sharedMailbox) newRecentLocked(uid imap.UID) {
	if uid <= box.recentFloor {
		return
	}
	var first *attachment
	for _, a := range box.sessions {
		if a.readWrite && (first == nil || a.order < first.order) {
			first = a
		}
	}
	if first == nil {
		return // recent for the next SELECT
	}
	first.recent = append(first.recent, uid)
	box.recentFloor = uid
}

// addRecentFlags adds \Recent to the flags of the loaded messages that are
// recent in this session, for FETCH FLAGS and SEARCH.
func (v *mailboxView) addRecentFlags(msgs []*storage.Message) {
	if v.att == nil {
		return
	}
	v.box.mu.Lock()
	defer v.box.mu.Unlock()
	if len(v.att.recent) == 0 {
		return
	}
	for _, m := range msgs {
		if _, ok := slices.BinarySearch(v.att.recent, m.UID); ok && !hasFlag(m.Flags, flagRecent) {
			m.Flags = append(slices.Clip(m.Flags), flagRecent)
		}
	}
}

// countRecent is STATUS RECENT: the messages no session has had yet.
func (s *session) countRecent(mailboxID uint64) (uint32, error) {
	key := boxKey{user: s.user, id: mailboxID}
	floor := s.srv.reg.savedRecentFloor(key)
	if box := s.srv.reg.loadedBox(key); box != nil {
		box.mu.Lock()
		floor = box.recentFloor
		box.mu.Unlock()
	}
	uids, err := s.srv.store.UIDs(s.ctx, s.user, mailboxID)
	if err != nil {
		return 0, err
	}
	i, _ := slices.BinarySearch(uids, floor+1)
	return uint32(len(uids) - i), nil
}

// loadedBox returns the shared state of a selected mailbox, or nil.
func (r *registry) loadedBox(key boxKey) *sharedMailbox {
	r.mu.Lock()
	box := r.boxes[key]
	r.mu.Unlock()
	if box == nil {
		return nil
	}
	box.mu.Lock()
	defer box.mu.Unlock()
	if !box.loaded {
		return nil
	}
	return box
}

// writeRecentChange tells an IMAP4rev1 client "* n RECENT" when the
// number of recent messages it can see has changed since it was last told
// (RFC 3501 7.3.2: RECENT goes with the EXISTS of new messages). Only
// messages the client has been told exist are counted.
func (v *mailboxView) writeRecentChange(w *protocol.UpdateWriter) error {
	if v.att == nil {
		return nil
	}
	v.box.mu.Lock()
	_, lastUID := v.lastVisibleLocked()
	// Nothing arrived, was expunged or became visible: the count stands
	// (checked first, as this runs after every command).
	state := recentState{recent: len(v.att.recent), uids: len(v.box.uids), lastUID: lastUID}
	if state == v.recentSeen {
		v.box.mu.Unlock()
		return nil
	}
	v.recentSeen = state
	var n uint32
	for _, uid := range v.att.recent {
		if uid > lastUID {
			break
		}
		if _, ok := slices.BinarySearch(v.box.uids, uid); ok {
			n++
		}
	}
	v.box.mu.Unlock()
	if n == v.reportedRecent {
		return nil
	}
	grew := n > v.reportedRecent
	v.reportedRecent = n
	if !grew {
		return nil // an expunge lowers it; the client counts that itself
	}
	return w.WriteNumRecent(n)
}

// recentState is what writeRecentChange last counted from.
type recentState struct {
	recent, uids int
	lastUID      imap.UID
}
