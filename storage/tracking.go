package storage

// Read tracking: who has not read what a user sent (the seed's "Not
// delivered" column, and its bold Sent folder).
//
// Layout (also in bolt.go):
//
//	"tracking"/<id>                      trackRecord (JSON: read rarely, easy to
//	                                     extend); the bucket's sequence issues IDs
//	"users"/<addr>/"sentlog"/<id>        the records addr has sent, in order
//	"users"/<addr>/"tracked"/<box><uid>  -> <id>: a message of addr that a record
//	                                     follows: the sender's own copy (for the
//	                                     record's whole life) or a recipient's
//	                                     copy (while it is unread)
//
// Each recipient moves through: unread -> read | deleted | expired (local;
// deleted: expunged unread from any mailbox, or moved unread into Trash),
// queued -> relayed | failed (external; a resent entry may report again).
// Every change happens inside the write transaction that causes it (STORE
// or FETCH BODY[] setting \Seen, EXPUNGE, MOVE, the lifetime sweep, the
// queue's outcome), so a record never disagrees with the mailboxes. When
// the last pending recipient settles, that same transaction sets \Seen on
// the sender's copy and publishes EventFlags for it, so IDLE sessions on
// the sender's Sent folder see the message turn read.
//
// A record lives as long as the sender's copy does (wherever it is moved),
// or while a recipient is still pending; so `pochta sent status` grows with
// the Sent folder, not forever.
//
// Tracking never fails a user's write over a record it cannot make sense
// of: an index entry whose record is gone or unreadable is dropped, and a
// Sent copy that no longer exists is skipped. Only database errors fail.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketTracking = []byte("tracking")
	bucketSentLog  = []byte("sentlog")
	bucketTracked  = []byte("tracked")
)

// present is the value of index entries whose key says everything (bolt
// does not reliably tell an empty value from a missing one).
var present = []byte{1}

// trackRecord is what "tracking"/<id> holds.
type trackRecord struct {
	Sender    string    `json:"sender"`
	MessageID string    `json:"message_id"`
	Subject   string    `json:"subject"`
	Date      time.Time `json:"date"`
	// SentBox and SentUID locate the sender's copy; 0 once it is gone.
	SentBox    uint64      `json:"sent_box,omitempty"`
	SentUID    uint32      `json:"sent_uid,omitempty"`
	Recipients []trackRcpt `json:"recipients"`
}

// trackRcpt is one recipient; Box and UID locate a local copy while it is
// unread (0 afterwards, and always for external recipients).
type trackRcpt struct {
	Address  string    `json:"address"`
	External bool      `json:"external,omitempty"`
	State    string    `json:"state"`
	Changed  time.Time `json:"changed"`
	Box      uint64    `json:"box,omitempty"`
	UID      uint32    `json:"uid,omitempty"`
}

func (r *trackRecord) pending() int {
	n := 0
	for _, rc := range r.Recipients {
		if rc.State == TrackUnread || rc.State == TrackQueued {
			n++
		}
	}
	return n
}

// isSentCopy reports whether (user, box, uid) is the sender's copy.
func (r *trackRecord) isSentCopy(user string, box uint64, uid imap.UID) bool {
	return r.SentBox != 0 && r.Sender == user && r.SentBox == box && r.SentUID == uint32(uid)
}

// localCopy returns the local recipient whose copy is (user, box, uid).
func (r *trackRecord) localCopy(user string, box uint64, uid imap.UID) *trackRcpt {
	for i := range r.Recipients {
		rc := &r.Recipients[i]
		if !rc.External && rc.Box != 0 && rc.Address == user && rc.Box == box && rc.UID == uint32(uid) {
			return rc
		}
	}
	return nil
}

func (r *trackRecord) public(id uint64) SentMessage {
	m := SentMessage{ID: id, MessageID: r.MessageID, Subject: r.Subject, Date: r.Date,
		Recipients: make([]SentRecipient, 0, len(r.Recipients))}
	for _, rc := range r.Recipients {
		m.Recipients = append(m.Recipients, SentRecipient{Address: rc.Address, External: rc.External, State: rc.State, Changed: rc.Changed})
	}
	return m
}

// trackKey is the "tracked" key of a message: mailbox ID, then UID.
func trackKey(box uint64, uid imap.UID) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, box)
	binary.BigEndian.PutUint32(k[8:], uint32(uid))
	return k
}

// loadTrack reads a record; ok is false when it is missing or unreadable.
func loadTrack(tx *bolt.Tx, id uint64) (*trackRecord, bool) {
	b := tx.Bucket(bucketTracking)
	if b == nil {
		return nil, false
	}
	v := b.Get(be64(id))
	if v == nil {
		return nil, false
	}
	var rec trackRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, false
	}
	return &rec, true
}

func putTrack(tx *bolt.Tx, id uint64, rec *trackRecord) error {
	b, err := tx.CreateBucketIfNotExists(bucketTracking)
	if err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("tracking record %d: %w", id, err)
	}
	return b.Put(be64(id), v)
}

// deleteTrack removes a record with its log entry and every index entry
// that still points at it.
func deleteTrack(tx *bolt.Tx, id uint64, rec *trackRecord) error {
	if b := tx.Bucket(bucketTracking); b != nil {
		if err := b.Delete(be64(id)); err != nil {
			return err
		}
	}
	unindex := func(user string, box uint64, uid uint32) error {
		u, err := openUser(tx, user)
		if err != nil {
			return nil // the user is gone, and their index with them
		}
		if box != 0 {
			if tb := u.b.Bucket(bucketTracked); tb != nil {
				if err := tb.Delete(trackKey(box, imap.UID(uid))); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := unindex(rec.Sender, rec.SentBox, rec.SentUID); err != nil {
		return err
	}
	if u, err := openUser(tx, rec.Sender); err == nil {
		if lb := u.b.Bucket(bucketSentLog); lb != nil {
			if err := lb.Delete(be64(id)); err != nil {
				return err
			}
		}
	}
	for _, rc := range rec.Recipients {
		if !rc.External && rc.Box != 0 {
			if err := unindex(rc.Address, rc.Box, rc.UID); err != nil {
				return err
			}
		}
	}
	return nil
}

// trackedBucket returns the user's "tracked" bucket, created on first use.
func (u *userTx) trackedBucket() (*bolt.Bucket, error) {
	return u.b.CreateBucketIfNotExists(bucketTracked)
}

// tracksDelivery reports whether a delivery gets a tracking record: a
// user's submission with at least one recipient.
func tracksDelivery(d *Delivery) bool {
	return d.Sender != "" && len(d.Recipients)+len(d.External) > 0
}

// withoutSeen drops \Seen from a prepared message: the Sent copy of a
// tracked delivery stays unread until everyone has read it.
func (p *prepared) withoutSeen() {
	if p.flags.sys&flagSeen == 0 {
		return
	}
	p.flags.sys &^= flagSeen
	if m, err := decodeMeta(p.meta); err == nil {
		m.flags = p.flags
		p.meta = m.encode()
	}
}

// trackDelivery writes the read-tracking record of a submitted message
// inside the delivery's transaction and sets res.TrackingID.
func trackDelivery(tx *bolt.Tx, d *Delivery, res *DeliveryResult, now time.Time, ev *eventList) error {
	if !tracksDelivery(d) || res.Sent == nil {
		return nil
	}
	now = now.UTC()
	rec := &trackRecord{
		Sender:    strings.ToLower(d.Sender),
		MessageID: d.MessageID,
		Subject:   d.Subject,
		Date:      now,
		SentBox:   res.Sent.MailboxID,
		SentUID:   uint32(res.Sent.UID),
	}
	seen := make(map[string]bool, len(d.Recipients)+len(d.External))
	for _, r := range d.Recipients {
		a := strings.ToLower(r)
		c := res.Copies[a]
		if seen[a] || c == nil {
			continue
		}
		seen[a] = true
		rec.Recipients = append(rec.Recipients, trackRcpt{Address: a, State: TrackUnread, Changed: now, Box: c.MailboxID, UID: uint32(c.UID)})
	}
	for _, r := range d.External {
		if a := strings.ToLower(r); !seen[a] {
			seen[a] = true
			rec.Recipients = append(rec.Recipients, trackRcpt{Address: r, External: true, State: TrackQueued, Changed: now})
		}
	}
	if len(rec.Recipients) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketTracking)
	if err != nil {
		return err
	}
	id, err := b.NextSequence()
	if err != nil {
		return err
	}
	if err := putTrack(tx, id, rec); err != nil {
		return err
	}
	index := func(user string, box uint64, uid uint32) error {
		u, err := openUser(tx, user)
		if err != nil {
			return err
		}
		tb, err := u.trackedBucket()
		if err != nil {
			return err
		}
		return tb.Put(trackKey(box, imap.UID(uid)), be64(id))
	}
	if err := index(rec.Sender, rec.SentBox, rec.SentUID); err != nil {
		return err
	}
	su, err := openUser(tx, rec.Sender)
	if err != nil {
		return err
	}
	lb, err := su.b.CreateBucketIfNotExists(bucketSentLog)
	if err != nil {
		return err
	}
	if err := lb.Put(be64(id), present); err != nil {
		return err
	}
	for _, rc := range rec.Recipients {
		if !rc.External {
			if err := index(rc.Address, rc.Box, rc.UID); err != nil {
				return err
			}
		}
	}
	res.TrackingID = id
	return nil
}

// setExternalState records the relay's outcome for one external recipient
// of a tracked message (state "relayed" or "failed"; "queued" again when an
// entry is resent), inside the queue's transaction. It is a no-op for
// trackingID 0, for a record that no longer exists and for an address that
// is not one of its external recipients. Callers must have saved any
// mailbox they changed earlier in the transaction: settling the record may
// set \Seen on the sender's copy.
func setExternalState(tx *bolt.Tx, trackingID uint64, recipient, state string, ev *eventList) error {
	switch state {
	case TrackRelayed, TrackFailed, TrackQueued:
	default:
		return fmt.Errorf("tracking state %q for an external recipient: %w", state, ErrInvalid)
	}
	if trackingID == 0 {
		return nil
	}
	rec, ok := loadTrack(tx, trackingID)
	if !ok {
		return nil
	}
	before := rec.pending()
	found := false
	for i := range rec.Recipients {
		rc := &rec.Recipients[i]
		if rc.External && strings.EqualFold(rc.Address, recipient) {
			if rc.State != state {
				rc.State, rc.Changed = state, time.Now().UTC()
			}
			found = true
		}
	}
	if !found {
		return nil
	}
	return settle(tx, trackingID, rec, before, nil, ev)
}

// settle stores a record after a recipient changed: when that left nobody
// pending, the sender's copy gets \Seen; a record with nobody pending and
// no sender's copy any more is deleted.
func settle(tx *bolt.Tx, id uint64, rec *trackRecord, before int, live []*boxTx, ev *eventList) error {
	after := rec.pending()
	if after < before && rec.Sender != "" {
		// The sender's event, not the writer's: no origin.
		ev.list = append(ev.list, Event{Kind: EventTracking, User: rec.Sender, MailboxID: rec.SentBox, UID: imap.UID(rec.SentUID), TrackingID: id})
	}
	if before > 0 && after == 0 {
		if err := markSentSeen(tx, rec, live, ev); err != nil {
			return err
		}
	}
	if after == 0 && rec.SentBox == 0 {
		return deleteTrack(tx, id, rec)
	}
	return putTrack(tx, id, rec)
}

// markSentSeen sets \Seen on the sender's copy. live are the mailboxes the
// calling write holds in memory and saves itself; the copy's mailbox is
// taken from there when it is one of them, or its counters would be
// overwritten by the caller's save.
func markSentSeen(tx *bolt.Tx, rec *trackRecord, live []*boxTx, ev *eventList) error {
	if rec.SentBox == 0 {
		return nil
	}
	var x *boxTx
	for _, l := range live {
		if l != nil && l.u.addr == rec.Sender && l.id == rec.SentBox {
			x = l
		}
	}
	own := x == nil
	if own {
		u, err := openUser(tx, rec.Sender)
		if err != nil {
			return nil
		}
		if x, err = u.box(rec.SentBox); err != nil {
			return nil
		}
	}
	changed, err := x.setSeen(imap.UID(rec.SentUID), ev)
	if err != nil || !changed || !own {
		return err
	}
	return x.save()
}

// setSeen adds \Seen to one message on the server's own account (no
// client asked), keeping the counters and the unread index right. Its
// event carries no origin: every session, including the one whose command
// caused it, must be told.
func (x *boxTx) setSeen(uid imap.UID, ev *eventList) (bool, error) {
	mb, err := x.buckets()
	if err != nil {
		return false, err
	}
	key := be32(uint32(uid))
	v := mb.meta.Get(key)
	if v == nil {
		return false, nil
	}
	m, err := decodeMeta(v)
	if err != nil || m.flags.sys&flagSeen != 0 {
		return false, nil
	}
	old := m.modseq
	m.flags.sys |= flagSeen
	m.modseq = x.bump()
	if err := mb.meta.Put(key, m.encode()); err != nil {
		return false, err
	}
	if err := x.recordChange(uid, old, m.modseq); err != nil {
		return false, err
	}
	x.rec.Unseen--
	if err := x.indexUnread(uid, m.internalDate, false); err != nil {
		return false, err
	}
	ev.list = append(ev.list, Event{Kind: EventFlags, User: x.u.addr, MailboxID: x.id, UID: uid, Flags: m.flags.list(), ModSeq: m.modseq})
	return true, nil
}

// trackedID returns the record following (x, uid), if any.
func (x *boxTx) trackedID(uid imap.UID) (uint64, bool) {
	tb := x.u.b.Bucket(bucketTracked)
	if tb == nil {
		return 0, false
	}
	v := tb.Get(trackKey(x.id, uid))
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

func (x *boxTx) dropTracked(uid imap.UID) error {
	if tb := x.u.b.Bucket(bucketTracked); tb != nil {
		return tb.Delete(trackKey(x.id, uid))
	}
	return nil
}

// trackSeen is called when uid in x gains \Seen: a recipient's copy
// becomes read. \Seen on the sender's own copy changes nothing.
func (x *boxTx) trackSeen(uid imap.UID, ev *eventList) error {
	id, ok := x.trackedID(uid)
	if !ok {
		return nil
	}
	rec, ok := loadTrack(x.u.tx, id)
	if !ok {
		return x.dropTracked(uid)
	}
	rc := rec.localCopy(x.u.addr, x.id, uid)
	if rc == nil {
		if rec.isSentCopy(x.u.addr, x.id, uid) {
			return nil
		}
		return x.dropTracked(uid)
	}
	if err := x.dropTracked(uid); err != nil {
		return err
	}
	before := rec.pending()
	if rc.State == TrackUnread {
		rc.State, rc.Changed = TrackRead, time.Now().UTC()
	}
	rc.Box, rc.UID = 0, 0
	return settle(x.u.tx, id, rec, before, []*boxTx{x}, ev)
}

// untrack is called before uid leaves x for good: an unread recipient's
// copy becomes state (TrackDeleted, or TrackExpired from the sweep); the
// sender's copy is forgotten. live are the mailboxes the caller saves.
func (x *boxTx) untrack(uid imap.UID, state string, live []*boxTx, ev *eventList) error {
	id, ok := x.trackedID(uid)
	if !ok {
		return nil
	}
	if err := x.dropTracked(uid); err != nil {
		return err
	}
	rec, ok := loadTrack(x.u.tx, id)
	if !ok {
		return nil
	}
	before := rec.pending()
	switch rc := rec.localCopy(x.u.addr, x.id, uid); {
	case rc != nil:
		if rc.State == TrackUnread {
			rc.State, rc.Changed = state, time.Now().UTC()
		}
		rc.Box, rc.UID = 0, 0
	case rec.isSentCopy(x.u.addr, x.id, uid):
		rec.SentBox, rec.SentUID = 0, 0
	default:
		return nil
	}
	return settle(x.u.tx, id, rec, before, append(live[:len(live):len(live)], x), ev)
}

// trackMove follows a tracked message from (x, uid) to (dst, newUID) of the
// same user. MOVE calls it before removing the original, so the removal
// does not count as a deletion.
//
// One rule for Trash, however the client deletes: an unread recipient's
// copy that reaches the \Trash mailbox is TrackDeleted. A client without
// MOVE copies and expunges, and the expunge already counts (untrack); so a
// MOVE into Trash counts the same. A MOVE anywhere else keeps the copy
// unread and followed (an expunge anywhere counts as deleted, as before).
func (x *boxTx) trackMove(uid imap.UID, dst *boxTx, newUID imap.UID, ev *eventList) error {
	id, ok := x.trackedID(uid)
	if !ok {
		return nil
	}
	if err := x.dropTracked(uid); err != nil {
		return err
	}
	rec, ok := loadTrack(x.u.tx, id)
	if !ok {
		return nil
	}
	switch rc := rec.localCopy(x.u.addr, x.id, uid); {
	case rc != nil && dst.rec.SpecialUse == imap.MailboxAttrTrash:
		before := rec.pending()
		if rc.State == TrackUnread {
			rc.State, rc.Changed = TrackDeleted, time.Now().UTC()
		}
		rc.Box, rc.UID = 0, 0
		return settle(x.u.tx, id, rec, before, []*boxTx{x, dst}, ev)
	case rc != nil:
		rc.Box, rc.UID = dst.id, uint32(newUID)
	case rec.isSentCopy(x.u.addr, x.id, uid):
		rec.SentBox, rec.SentUID = dst.id, uint32(newUID)
	default:
		return nil
	}
	tb, err := dst.u.trackedBucket()
	if err != nil {
		return err
	}
	if err := tb.Put(trackKey(dst.id, newUID), be64(id)); err != nil {
		return err
	}
	return putTrack(x.u.tx, id, rec)
}

// untrackMailbox is called before a mailbox is deleted with its messages:
// each tracked message in it counts as expunged.
func (x *boxTx) untrackMailbox(ev *eventList) error {
	tb := x.u.b.Bucket(bucketTracked)
	if tb == nil {
		return nil
	}
	var uids []imap.UID
	prefix := be64(x.id)
	c := tb.Cursor()
	for k, _ := c.Seek(prefix); len(k) == 12 && string(k[:8]) == string(prefix); k, _ = c.Next() {
		uids = append(uids, imap.UID(binary.BigEndian.Uint32(k[8:])))
	}
	for _, uid := range uids {
		if err := x.untrack(uid, TrackDeleted, nil, ev); err != nil {
			return err
		}
	}
	return nil
}

// untrackUser is called before a user is deleted: their unread copies of
// others' messages count as deleted, and the records of what they sent go.
func (u *userTx) untrackUser(ev *eventList) error {
	if tb := u.b.Bucket(bucketTracked); tb != nil {
		type loc struct {
			box uint64
			uid imap.UID
		}
		var locs []loc
		c := tb.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) == 12 {
				locs = append(locs, loc{binary.BigEndian.Uint64(k), imap.UID(binary.BigEndian.Uint32(k[8:]))})
			}
		}
		for _, l := range locs {
			x, err := u.box(l.box)
			if errors.Is(err, ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if err := x.untrack(l.uid, TrackDeleted, nil, ev); err != nil {
				return err
			}
		}
	}
	if lb := u.b.Bucket(bucketSentLog); lb != nil {
		var ids []uint64
		c := lb.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) == 8 {
				ids = append(ids, binary.BigEndian.Uint64(k))
			}
		}
		for _, id := range ids {
			if rec, ok := loadTrack(u.tx, id); ok {
				if err := deleteTrack(u.tx, id, rec); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// SentStatus returns the user's read-tracking records, oldest first.
func (s *boltStore) SentStatus(ctx context.Context, user string) ([]SentMessage, error) {
	list := []SentMessage{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		u, err := openUser(tx, user)
		if err != nil {
			return err
		}
		lb := u.b.Bucket(bucketSentLog)
		if lb == nil {
			return nil
		}
		c := lb.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 8 {
				continue
			}
			id := binary.BigEndian.Uint64(k)
			if rec, ok := loadTrack(tx, id); ok {
				list = append(list, rec.public(id))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: sent status: %w", err)
	}
	return list, nil
}
