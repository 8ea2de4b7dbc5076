package boltstore

// The bbolt implementation of Records and RecordTx (records.go): typed
// operations over the buckets of bolt.go's layout. The tracking records:
//
//	"tracking"/<id>                      TrackingRecord (JSON: read rarely,
//	                                     easy to extend); the bucket's
//	                                     sequence issues IDs
//	"users"/<addr>/"sentlog"/<id>        the records addr has sent, in order
//	"users"/<addr>/"tracked"/<box><uid>  -> <id>: a message of addr that a
//	                                     record follows

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
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

// boltTx is a RecordTx over one bolt transaction.
type boltTx struct {
	tx *bolt.Tx
	// u is the user of the write that called a rule, when known: the
	// rules mostly touch that user's records, and this saves opening
	// their buckets again for each.
	u *userTx
}

// user opens a user's buckets (openUser), reusing t.u.
func (t boltTx) user(address string) (*userTx, error) {
	if t.u != nil && t.u.addr == address {
		return t.u, nil
	}
	return openUser(t.tx, address)
}

// records is the RecordTx the rules get from a write holding x.
func (x *boxTx) records() boltTx { return boltTx{tx: x.u.tx, u: x.u} }

var _ storage.RecordTx = boltTx{}

// records returns the RecordTx view of a bolt transaction.
func records(tx *bolt.Tx) storage.RecordTx { return boltTx{tx: tx} }

// ViewRecords implements Records.
func (s *boltStore) ViewRecords(ctx context.Context, fn func(tx storage.RecordTx) error) error {
	return s.view(ctx, func(tx *bolt.Tx) error { return fn(boltTx{tx: tx}) })
}

// UpdateRecords implements Records through the writer (group commit).
func (s *boltStore) UpdateRecords(ctx context.Context, size int, fn func(tx storage.RecordTx, ev *storage.Events) error) error {
	_, err := write(s, ctx, size, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		return struct{}{}, fn(boltTx{tx: tx}, ev)
	})
	return err
}

// Mailbox implements RecordTx.
func (t boltTx) Mailbox(user string, id uint64) (storage.MailboxTx, error) {
	u, err := t.user(user)
	if err != nil {
		return nil, err
	}
	x, err := u.box(id)
	if err != nil {
		return nil, err
	}
	return x, nil
}

// trackKey is the "tracked" key of a message: mailbox ID, then UID.
func trackKey(box uint64, uid imap.UID) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, box)
	binary.BigEndian.PutUint32(k[8:], uint32(uid))
	return k
}

// TrackingRecord implements RecordTx.
func (t boltTx) TrackingRecord(id uint64) (*storage.TrackingRecord, bool) {
	b := t.tx.Bucket(bucketTracking)
	if b == nil {
		return nil, false
	}
	v := b.Get(be64(id))
	if v == nil {
		return nil, false
	}
	var rec storage.TrackingRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, false
	}
	return &rec, true
}

// NewTrackingID implements RecordTx.
func (t boltTx) NewTrackingID() (uint64, error) {
	b, err := t.tx.CreateBucketIfNotExists(bucketTracking)
	if err != nil {
		return 0, err
	}
	return b.NextSequence()
}

// PutTrackingRecord implements RecordTx.
func (t boltTx) PutTrackingRecord(id uint64, rec *storage.TrackingRecord) error {
	b, err := t.tx.CreateBucketIfNotExists(bucketTracking)
	if err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("tracking record %d: %w", id, err)
	}
	return b.Put(be64(id), v)
}

// DeleteTrackingRecord implements RecordTx.
func (t boltTx) DeleteTrackingRecord(id uint64) error {
	if b := t.tx.Bucket(bucketTracking); b != nil {
		return b.Delete(be64(id))
	}
	return nil
}

// TrackedID implements RecordTx.
func (t boltTx) TrackedID(user string, box uint64, uid imap.UID) (uint64, bool, error) {
	u, err := t.user(user)
	if err != nil {
		return 0, false, err
	}
	id, ok := u.trackedID(box, uid)
	return id, ok, nil
}

func (u *userTx) trackedID(box uint64, uid imap.UID) (uint64, bool) {
	tb := u.b.Bucket(bucketTracked)
	if tb == nil {
		return 0, false
	}
	v := tb.Get(trackKey(box, uid))
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// SetTracked implements RecordTx.
func (t boltTx) SetTracked(user string, box uint64, uid imap.UID, id uint64) error {
	u, err := t.user(user)
	if err != nil {
		return err
	}
	tb, err := u.b.CreateBucketIfNotExists(bucketTracked)
	if err != nil {
		return err
	}
	return tb.Put(trackKey(box, uid), be64(id))
}

// DeleteTracked implements RecordTx.
func (t boltTx) DeleteTracked(user string, box uint64, uid imap.UID) error {
	u, err := t.user(user)
	if err != nil {
		return nil // the user is gone, and their index with them
	}
	if tb := u.b.Bucket(bucketTracked); tb != nil {
		return tb.Delete(trackKey(box, uid))
	}
	return nil
}

// TrackedUIDs implements RecordTx.
func (t boltTx) TrackedUIDs(user string, box uint64) ([]imap.UID, error) {
	u, err := t.user(user)
	if err != nil {
		return nil, err
	}
	tb := u.b.Bucket(bucketTracked)
	if tb == nil {
		return nil, nil
	}
	var uids []imap.UID
	prefix := be64(box)
	c := tb.Cursor()
	for k, _ := c.Seek(prefix); len(k) == 12 && string(k[:8]) == string(prefix); k, _ = c.Next() {
		uids = append(uids, imap.UID(binary.BigEndian.Uint32(k[8:])))
	}
	return uids, nil
}

// TrackedMessages implements RecordTx.
func (t boltTx) TrackedMessages(user string) ([]storage.MessageRef, error) {
	u, err := t.user(user)
	if err != nil {
		return nil, err
	}
	tb := u.b.Bucket(bucketTracked)
	if tb == nil {
		return nil, nil
	}
	var refs []storage.MessageRef
	c := tb.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) == 12 {
			refs = append(refs, storage.MessageRef{Mailbox: binary.BigEndian.Uint64(k), UID: imap.UID(binary.BigEndian.Uint32(k[8:]))})
		}
	}
	return refs, nil
}

// SentLog implements RecordTx.
func (t boltTx) SentLog(user string) ([]uint64, error) {
	u, err := t.user(user)
	if err != nil {
		return nil, err
	}
	lb := u.b.Bucket(bucketSentLog)
	if lb == nil {
		return nil, nil
	}
	var ids []uint64
	c := lb.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) == 8 {
			ids = append(ids, binary.BigEndian.Uint64(k))
		}
	}
	return ids, nil
}

// AddSentLog implements RecordTx.
func (t boltTx) AddSentLog(user string, id uint64) error {
	u, err := t.user(user)
	if err != nil {
		return err
	}
	lb, err := u.b.CreateBucketIfNotExists(bucketSentLog)
	if err != nil {
		return err
	}
	return lb.Put(be64(id), present)
}

// DeleteSentLog implements RecordTx.
func (t boltTx) DeleteSentLog(user string, id uint64) error {
	u, err := t.user(user)
	if err != nil {
		return nil // the user is gone, and their log with them
	}
	if lb := u.b.Bucket(bucketSentLog); lb != nil {
		return lb.Delete(be64(id))
	}
	return nil
}

// The MailboxTx methods of a bolt mailbox.

// User implements MailboxTx.
func (x *boxTx) User() string { return x.u.addr }

// ID implements MailboxTx.
func (x *boxTx) ID() uint64 { return x.id }

// SpecialUse implements MailboxTx.
func (x *boxTx) SpecialUse() imap.MailboxAttr { return x.rec.SpecialUse }

// SetSeen implements MailboxTx.
func (x *boxTx) SetSeen(uid imap.UID, ev *storage.Events) (bool, error) { return x.setSeen(uid, ev) }

// Save implements MailboxTx.
func (x *boxTx) Save() error { return x.save() }

// mailboxTxs converts the mailboxes a bolt write holds for the rules.
func mailboxTxs(live []*boxTx) []storage.MailboxTx {
	out := make([]storage.MailboxTx, 0, len(live))
	for _, x := range live {
		if x != nil {
			out = append(out, x)
		}
	}
	return out
}

// The hooks the bolt code calls where a rule applies (storage/hooks.go).

func (x *boxTx) untrack(uid imap.UID, state string, live []*boxTx, ev *eventList) error {
	return storage.Untrack(x.records(), x, uid, state, mailboxTxs(live), ev)
}

func (x *boxTx) trackMove(uid imap.UID, dst *boxTx, newUID imap.UID, ev *eventList) error {
	return storage.MessageMoving(x.records(), x, uid, dst, newUID, ev)
}

func (x *boxTx) untrackMailbox(ev *eventList) error {
	return storage.MailboxDeleting(x.records(), x, ev)
}

func (u *userTx) untrackUser(ev *eventList) error {
	return storage.UserDeleting(boltTx{tx: u.tx, u: u}, u.addr, ev)
}

// withoutSeen drops \Seen from a prepared message: the Sent copy of a
// tracked delivery stays unread until everyone has read it (storage/tracking.go).
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
	if err := storage.SeenSet(x.records(), x, uid, m.internalDate); err != nil {
		return false, err
	}
	ev.AddUntagged(storage.Event{Kind: storage.EventFlags, User: x.u.addr, MailboxID: x.id, UID: uid, Flags: m.flags.list(), ModSeq: m.modseq})
	return true, nil
}
