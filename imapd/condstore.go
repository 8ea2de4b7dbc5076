package imapd

import (
	"math"
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/protocol"
	"github.com/pochta/pochta/storage"
)

// CONDSTORE and QRESYNC (RFC 7162) over storage's change feed. A resync
// (SELECT ... (QRESYNC ...), UID FETCH ... (CHANGEDSINCE n VANISHED))
// reads Store.Changes, whose cost is the number of changes: the messages
// themselves are not read, so a 50,000-message mailbox after 100 flag
// changes costs 100 feed entries. Only when storage no longer knows every
// expunge since the client's modseq (ChangeSet.VanishedIncomplete) are the
// client's known UIDs compared with the current UID list instead, as RFC
// 7162 3.2.5.2 allows.

var _ protocol.SessionQResync = (*session)(nil)

var _ protocol.SessionCondStore = (*session)(nil)

// HighestModSeq implements protocol.SessionCondStore. A change set asked
// from the highest possible modseq is empty: reading it costs no feed entry.
func (s *session) HighestModSeq() (_ uint64, err error) {
	defer s.protect("HIGHESTMODSEQ", &err)
	v, err := s.selected()
	if err != nil {
		return 0, err
	}
	cs, err := s.srv.store.Changes(s.ctx, s.user, v.box.key.id, math.MaxInt64)
	if err != nil {
		return 0, s.storageError("HIGHESTMODSEQ", err)
	}
	return cs.HighestModSeq, nil
}

// Resync implements protocol.SessionQResync.
func (s *session) Resync(w *protocol.FetchWriter, p *protocol.QResyncParams) (err error) {
	defer s.protect("QRESYNC", &err)
	v, err := s.selected()
	if err != nil {
		return err
	}
	if p.UIDValidity != v.uidValidity {
		// RFC 7162 3.2.5: a changed UIDVALIDITY means a full resync;
		// the server reports nothing.
		return nil
	}
	cs, err := s.srv.store.Changes(s.ctx, s.user, v.box.key.id, p.ModSeq)
	if err != nil {
		return s.storageError("SELECT", err)
	}
	var known []numRange
	if p.KnownUIDs != nil {
		// "*" in the known UIDs is the highest UID there has been.
		v.box.mu.Lock()
		maxUID := v.box.maxUID
		v.box.mu.Unlock()
		known = staticRanges(uidRanges(p.KnownUIDs), uint32(maxUID))
		if known == nil {
			known = []numRange{}
		}
	}
	if err := w.WriteVanished(v.vanishedSince(cs, known), true); err != nil {
		return err
	}
	return s.writeChanges(v, w, cs.Changed, known, &imap.FetchOptions{UID: true, Flags: true, ModSeq: true})
}

// vanishedSince is what the client must hear of as VANISHED (EARLIER):
// the UIDs in known (nil: all) expunged since the change set's modseq.
// With an incomplete change set, every UID of known that is not in the
// mailbox now (up to the highest UID seen), which may name UIDs the
// client never had; RFC 7162 3.2.5.2 allows that.
func (v *mailboxView) vanishedSince(cs *storage.ChangeSet, known []numRange) imap.UIDSet {
	box := v.box
	box.mu.Lock()
	defer box.mu.Unlock()
	if !cs.VanishedIncomplete {
		var out imap.UIDSet
		for _, uid := range cs.Vanished {
			if known == nil || inRanges(known, uint32(uid)) {
				out.AddNum(uid)
			}
		}
		return out
	}
	if box.maxUID == 0 {
		return nil
	}
	if known == nil {
		known = []numRange{{1, uint32(box.maxUID)}}
	} else {
		known = staticRanges(known, uint32(box.maxUID))
	}
	return missingUIDs(known, box.uids)
}

// missingUIDs returns the UIDs of ranges (static) not in uids (ascending),
// as ranges: its cost is the length of uids plus the ranges, never the
// width of a range.
func missingUIDs(ranges []numRange, uids []imap.UID) imap.UIDSet {
	var out imap.UIDSet
	for _, r := range ranges {
		i, _ := slices.BinarySearch(uids, imap.UID(r.start))
		next := r.start
		for ; i < len(uids) && uint32(uids[i]) <= r.stop; i++ {
			if u := uint32(uids[i]); u > next {
				out.AddRange(imap.UID(next), imap.UID(u-1))
			}
			next = uint32(uids[i]) + 1
		}
		if next <= r.stop && next != 0 {
			out.AddRange(imap.UID(next), imap.UID(r.stop))
		}
	}
	return out
}

// writeChanges writes one FETCH per changed message the client knows of
// (and in known, if not nil), from the change set alone: UID, FLAGS and
// MODSEQ need no read of the messages.
func (s *session) writeChanges(v *mailboxView, w *protocol.FetchWriter, changed []storage.FlagUpdate, known []numRange, o *imap.FetchOptions) error {
	type change struct {
		seq uint32
		msg *storage.Message
	}
	var out []change
	msgs := make([]*storage.Message, 0, len(changed))
	func() {
		box := v.box
		box.mu.Lock()
		defer box.mu.Unlock()
		for _, u := range changed {
			if known != nil && !inRanges(known, uint32(u.UID)) {
				continue
			}
			i, ok := slices.BinarySearch(box.uids, u.UID)
			if !ok {
				continue
			}
			seq := v.tracker.EncodeSeqNum(uint32(i + 1))
			if seq == 0 {
				continue // its EXISTS is still to come
			}
			m := &storage.Message{UID: u.UID, Flags: u.Flags, ModSeq: u.ModSeq}
			out = append(out, change{seq: seq, msg: m})
			msgs = append(msgs, m)
		}
	}()
	v.box.learnKeywords(msgs)
	v.addRecentFlags(msgs)
	for _, c := range out {
		if err := writeMessage(w, v.tracker, c.seq, c.msg, o, false, nil); err != nil {
			return err
		}
	}
	return nil
}

// fetchChanged serves FETCH ... (CHANGEDSINCE n [VANISHED]): the named
// messages changed after n, found in the change feed rather than by
// reading every message, and for VANISHED the named UIDs expunged since.
func (s *session) fetchChanged(v *mailboxView, w *protocol.FetchWriter, numSet imap.NumSet, refs []msgRef, options *imap.FetchOptions, markSeen bool) error {
	cs, err := s.srv.store.Changes(s.ctx, s.user, v.box.key.id, options.ChangedSince)
	if err != nil {
		return s.storageError("FETCH", err)
	}
	if w.Vanished() {
		if set, ok := numSet.(imap.UIDSet); ok {
			v.box.mu.Lock()
			maxUID := v.box.maxUID
			v.box.mu.Unlock()
			var ranges []numRange
			if imap.IsSearchRes(set) {
				ranges = uidListRanges(v.searchRes)
			} else {
				ranges = staticRanges(uidRanges(set), uint32(maxUID))
			}
			if err := w.WriteVanished(v.vanishedSince(cs, ranges), true); err != nil {
				return err
			}
		}
	}
	changed := make(map[imap.UID]bool, len(cs.Changed))
	for _, u := range cs.Changed {
		changed[u.UID] = true
	}
	keep := refs[:0:0]
	for _, r := range refs {
		if changed[r.uid] {
			keep = append(keep, r)
		}
	}
	return s.fetchRefs(v, w, keep, options, markSeen)
}

// storeResponses writes what a STORE answers a CONDSTORE client (RFC 7162
// 3.1.3): FLAGS (unless .SILENT) and MODSEQ of the messages it changed or
// that already had the flags, none of those that failed UNCHANGEDSINCE.
// With .SILENT only those whose modseq moved get a FETCH, with MODSEQ.
func (s *session) storeResponses(v *mailboxView, w *protocol.FetchWriter, refs []msgRef, updated []storage.FlagUpdate, modified []imap.UID, silent, uidCmd bool) error {
	failed := make(map[imap.UID]bool, len(modified))
	for _, uid := range modified {
		failed[uid] = true
	}
	if silent {
		byUID := make(map[imap.UID]storage.FlagUpdate, len(updated))
		for _, u := range updated {
			byUID[u.UID] = u
		}
		o := &imap.FetchOptions{UID: uidCmd, ModSeq: true}
		for _, r := range refs {
			u, ok := byUID[r.uid]
			if !ok {
				continue
			}
			m := &storage.Message{UID: u.UID, Flags: u.Flags, ModSeq: u.ModSeq}
			if err := writeMessage(w, v.tracker, r.seq, m, o, false, nil); err != nil {
				return err
			}
		}
		return nil
	}
	keep := refs[:0:0]
	for _, r := range refs {
		if !failed[r.uid] {
			keep = append(keep, r)
		}
	}
	return s.fetchRefs(v, w, keep, &imap.FetchOptions{Flags: true, UID: uidCmd, ModSeq: true}, false)
}

// modifiedSet names the messages that failed UNCHANGEDSINCE as the
// client named them: UIDs for UID STORE, sequence numbers for STORE.
func modifiedSet(refs []msgRef, modified []imap.UID, uidCmd bool) imap.NumSet {
	if len(modified) == 0 {
		return nil
	}
	if uidCmd {
		return imap.UIDSetNum(modified...)
	}
	failed := make(map[imap.UID]bool, len(modified))
	for _, uid := range modified {
		failed[uid] = true
	}
	var seqs imap.SeqSet
	for _, r := range refs {
		if failed[r.uid] {
			seqs.AddNum(r.seq)
		}
	}
	return seqs
}
