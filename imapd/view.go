package imapd

import (
	"cmp"
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
)

// loadChunk is how many messages one storage.Messages call loads, bounding
// a session's memory whatever the size of the mailbox.
const loadChunk = 256

// mailboxView is one session's view of its selected mailbox: the shared
// state plus the session's own tracker, which translates between the
// client's sequence numbers and the server's.
type mailboxView struct {
	box      *sharedMailbox
	tracker  *protocol.SessionTracker
	wake     <-chan struct{} // see attachment.wake
	readOnly bool
	// uidValidity of the mailbox as selected (QRESYNC checks it).
	uidValidity uint32
	att         *attachment // for \Recent (recent.go)
	// reportedRecent is the RECENT count the client was last told.
	reportedRecent uint32
	recentSeen     recentState
	// searchRes is the last SEARCH result saved with RETURN (SAVE), as
	// ascending UIDs (RFC 5182).
	searchRes []imap.UID
	// sortKeys are SORT's keys by UID (sort.go), kept for the next SORT:
	// what they come from never changes for a UID.
	sortKeys map[imap.UID]*sortEntry
	// sortOrders are the last SORTs' orders, for the next ones (sort.go).
	sortOrders sortOrders
}

// msgRef is one message as this client sees it.
type msgRef struct {
	seq uint32 // the client's sequence number
	uid imap.UID
}

// numRange is a static range of sequence numbers or UIDs.
type numRange struct{ start, stop uint32 }

func (r numRange) contains(n uint32) bool { return r.start <= n && n <= r.stop }

func inRanges(ranges []numRange, n uint32) bool {
	for _, r := range ranges {
		if r.contains(n) {
			return true
		}
	}
	return false
}

// staticRanges resolves "*" (0) to max and orders each range (RFC 3501 9:
// "2:4" and "4:2" are the same). Ranges are clamped to max so that nothing
// the client has not been told about can be named.
func staticRanges(in []numRange, max uint32) []numRange {
	if max == 0 {
		return nil
	}
	out := make([]numRange, 0, len(in))
	for _, r := range in {
		start, stop := r.start, r.stop
		if start == 0 {
			start = max
		}
		if stop == 0 {
			stop = max
		}
		if start > stop {
			start, stop = stop, start
		}
		if stop > max {
			stop = max
		}
		if start > stop {
			continue
		}
		out = append(out, numRange{start, stop})
	}
	return out
}

func seqRanges(set imap.SeqSet) []numRange {
	out := make([]numRange, len(set))
	for i, r := range set {
		out[i] = numRange{r.Start, r.Stop}
	}
	return out
}

func uidRanges(set imap.UIDSet) []numRange {
	out := make([]numRange, len(set))
	for i, r := range set {
		out[i] = numRange{uint32(r.Start), uint32(r.Stop)}
	}
	return out
}

func uidListRanges(uids []imap.UID) []numRange {
	out := make([]numRange, len(uids))
	for i, uid := range uids {
		out[i] = numRange{uint32(uid), uint32(uid)}
	}
	return out
}

// lastVisibleLocked returns the highest sequence number and UID of a
// message this client knows about; this is what "*" means. Messages whose
// EXISTS is still queued for the client are not visible yet. If the
// client's last messages were expunged and it has not been told, "*" names
// the last one still present rather than a gone one (SessionTracker cannot
// say how many are pending). Caller holds box.mu.
func (v *mailboxView) lastVisibleLocked() (uint32, imap.UID) {
	uids := v.box.uids
	for i := len(uids); i >= 1; i-- {
		if seq := v.tracker.EncodeSeqNum(uint32(i)); seq != 0 {
			return seq, uids[i-1]
		}
	}
	return 0, 0
}

// resolve turns a client's sequence set or UID set (with "*" and "$") into
// the messages it names, in ascending order, without duplicates. Messages
// expunged by others but not yet reported to this client are left out;
// their sequence numbers still count in the client's view, so the other
// numbers stay right.
func (v *mailboxView) resolve(numSet imap.NumSet) []msgRef {
	box := v.box
	box.mu.Lock()
	defer box.mu.Unlock()
	lastSeq, lastUID := v.lastVisibleLocked()
	var refs []msgRef
	switch set := numSet.(type) {
	case imap.SeqSet:
		for _, r := range staticRanges(seqRanges(set), lastSeq) {
			for seq := r.start; seq <= r.stop && seq != 0; seq++ {
				n := v.tracker.DecodeSeqNum(seq)
				if n == 0 || int(n) > len(box.uids) {
					continue
				}
				refs = append(refs, msgRef{seq: seq, uid: box.uids[n-1]})
			}
		}
	case imap.UIDSet:
		var ranges []numRange
		if imap.IsSearchRes(set) {
			ranges = uidListRanges(v.searchRes)
		} else {
			ranges = staticRanges(uidRanges(set), uint32(lastUID))
		}
		for _, r := range ranges {
			i, _ := slices.BinarySearch(box.uids, imap.UID(r.start))
			for ; i < len(box.uids) && box.uids[i] <= imap.UID(r.stop); i++ {
				if seq := v.tracker.EncodeSeqNum(uint32(i + 1)); seq != 0 {
					refs = append(refs, msgRef{seq: seq, uid: box.uids[i]})
				}
			}
		}
	}
	slices.SortFunc(refs, func(a, b msgRef) int { return cmp.Compare(a.uid, b.uid) })
	return slices.CompactFunc(refs, func(a, b msgRef) bool { return a.uid == b.uid })
}

// visible returns every message the client knows about, with the last
// sequence number and UID (for "*" in SEARCH).
func (v *mailboxView) visible() (refs []msgRef, lastSeq uint32, lastUID imap.UID) {
	box := v.box
	box.mu.Lock()
	defer box.mu.Unlock()
	refs = make([]msgRef, 0, len(box.uids))
	for i, uid := range box.uids {
		if seq := v.tracker.EncodeSeqNum(uint32(i + 1)); seq != 0 {
			refs = append(refs, msgRef{seq: seq, uid: uid})
		}
	}
	lastSeq, lastUID = v.lastVisibleLocked()
	return refs, lastSeq, lastUID
}

func refUIDs(refs []msgRef) []imap.UID {
	uids := make([]imap.UID, len(refs))
	for i, r := range refs {
		uids[i] = r.uid
	}
	return uids
}

var errReadOnly = imapNo(imap.ResponseCodeCannot, "The mailbox is read-only (EXAMINE)")

// Store implements protocol.Session.
func (s *session) Store(w *protocol.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) (err error) {
	_, uidCmd := numSet.(imap.UIDSet)
	cmd := "STORE"
	if uidCmd {
		cmd = "UID STORE"
	}
	defer s.guard(cmd, &err)
	v, err := s.selected()
	if err != nil {
		return err
	}
	if v.readOnly {
		return errReadOnly
	}
	refs := v.resolve(numSet)
	if len(refs) == 0 {
		return nil
	}
	uids := refUIDs(refs)
	newFlags := storableFlags(flags.Flags)
	unchangedSince, conditional := w.UnchangedSince()
	var updated []storage.FlagUpdate
	var modified []imap.UID
	if len(newFlags) > 0 || flags.Op == imap.StoreFlagsSet || conditional {
		if conditional {
			updated, modified, err = s.srv.store.StoreFlagsUnchangedSince(s.ctx, s.user, v.box.key.id, uids, flags.Op, newFlags, unchangedSince)
		} else {
			updated, err = s.srv.store.StoreFlags(s.ctx, s.user, v.box.key.id, uids, flags.Op, newFlags)
		}
		if err != nil {
			return s.storageError(cmd, err)
		}
		if flags.Op != imap.StoreFlagsDel {
			// This client hears of a new keyword before the tagged OK.
			v.box.learnStoredKeywords(newFlags)
		}
	}
	w.SetModified(modifiedSet(refs, modified, uidCmd))
	if s.conn.CondStoreEnabled() {
		return s.storeResponses(v, w, refs, updated, modified, flags.Silent, uidCmd)
	}
	if flags.Silent {
		return nil
	}
	// RFC 3501 6.4.6: an untagged FETCH with the flags of every message in
	// the set, changed or not; with UID for UID STORE (RFC 9051 6.4.9).
	fetch := &imap.FetchOptions{Flags: true, UID: uidCmd}
	return s.fetchRefs(v, w, refs, fetch, false)
}

// Expunge implements protocol.Session (EXPUNGE, UID EXPUNGE, and CLOSE).
//
// The "* n EXPUNGE" responses are not written here: storage's expunge
// events are queued to every session's tracker, this one's included
// (MailboxTracker.QueueExpunge has no source to skip), and protocol polls
// the tracker right after the command, which writes them in order before
// the tagged OK. Writing them through w as well would repeat them. This
// method waits until the events have been queued.
func (s *session) Expunge(w *protocol.ExpungeWriter, uidSet *imap.UIDSet) (err error) {
	cmd := "EXPUNGE"
	if uidSet != nil {
		cmd = "UID EXPUNGE"
	}
	defer s.guard(cmd, &err)
	v, err := s.selected()
	if err != nil {
		return err
	}
	if v.readOnly {
		// CLOSE after EXAMINE comes here too and must succeed without
		// removing anything (RFC 3501 6.4.2), so EXPUNGE is a no-op.
		return nil
	}
	var uids []imap.UID
	if uidSet != nil {
		refs := v.resolve(*uidSet)
		if len(refs) == 0 {
			return nil
		}
		uids = refUIDs(refs)
	}
	removed, err := s.srv.store.Expunge(s.ctx, s.user, v.box.key.id, uids)
	if err != nil {
		return s.storageError(cmd, err)
	}
	v.box.applyOwn(storage.EventExpunge, removed)
	return nil
}

// Copy implements protocol.Session.
func (s *session) Copy(numSet imap.NumSet, dest string) (_ *imap.CopyData, err error) {
	cmd := "COPY"
	if _, ok := numSet.(imap.UIDSet); ok {
		cmd = "UID COPY"
	}
	defer s.guard(cmd, &err)
	v, err := s.selected()
	if err != nil {
		return nil, err
	}
	destBox, err := s.srv.store.Mailbox(s.ctx, s.user, dest)
	if err != nil {
		return nil, s.destError(cmd, err)
	}
	refs := v.resolve(numSet)
	if len(refs) == 0 {
		return nil, nil
	}
	res, err := s.srv.store.Copy(s.ctx, s.user, v.box.key.id, refUIDs(refs), destBox.Name)
	if err != nil {
		return nil, s.destError(cmd, err)
	}
	if len(res.DestUIDs) == 0 {
		return nil, nil
	}
	if destBox.ID == v.box.key.id {
		v.box.applyOwn(storage.EventAppend, slices.Sorted(slices.Values(res.DestUIDs)))
	}
	return copyData(res), nil
}

// Move implements protocol.Session (RFC 6851). As with Expunge, the
// EXPUNGE responses reach the client through the tracker, after the
// COPYUID written here.
func (s *session) Move(w *protocol.MoveWriter, numSet imap.NumSet, dest string) (err error) {
	cmd := "MOVE"
	if _, ok := numSet.(imap.UIDSet); ok {
		cmd = "UID MOVE"
	}
	defer s.guard(cmd, &err)
	v, err := s.selected()
	if err != nil {
		return err
	}
	if v.readOnly {
		return errReadOnly
	}
	destBox, err := s.srv.store.Mailbox(s.ctx, s.user, dest)
	if err != nil {
		return s.destError(cmd, err)
	}
	// MOVE into the selected mailbox itself gives the messages new UIDs
	// (RFC 6851 allows it; clients use it to renumber): storage copies and
	// expunges in one transaction either way.
	same := destBox.ID == v.box.key.id
	refs := v.resolve(numSet)
	if len(refs) == 0 {
		return nil
	}
	res, err := s.srv.store.Move(s.ctx, s.user, v.box.key.id, refUIDs(refs), destBox.Name)
	if err != nil {
		return s.destError(cmd, err)
	}
	if len(res.SourceUIDs) == 0 {
		return nil
	}
	if err := w.WriteCopyData(copyData(res)); err != nil {
		return err
	}
	if same {
		// The copies first: an expunge is seen after the appends that
		// preceded it (storage's order).
		v.box.applyOwn(storage.EventAppend, slices.Sorted(slices.Values(res.DestUIDs)))
	}
	v.box.applyOwn(storage.EventExpunge, res.SourceUIDs)
	return nil
}

// copyData builds COPYUID (RFC 4315): both sets list UIDs in the same
// order, and storage assigns the copies ascending UIDs in source order, so
// the normalised sets still correspond.
func copyData(res *storage.CopyResult) *imap.CopyData {
	return &imap.CopyData{
		UIDValidity: res.UIDValidity,
		SourceUIDs:  imap.UIDSetNum(res.SourceUIDs...),
		DestUIDs:    imap.UIDSetNum(res.DestUIDs...),
	}
}
