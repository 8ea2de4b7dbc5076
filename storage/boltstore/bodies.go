package boltstore

// Shared bodies: a delivered message's body is written once for all its
// copies (the sender's Sent copy, every local recipient's INBOX copy and
// the queue entry), and each copy keeps only the header that is its own
// (the delivered copy has a Return-Path and no Bcc, the relay copy neither).
// A 25 MB message to three local users and one external one is thus 25 MB
// on disk and in bbolt's commit buffers, not 125 MB. Layout:
//
//	"shared"/"bodies"/<id>/"b"   the body: every byte after the empty line
//	                             that ends the header; the "shared" bucket's
//	                             sequence issues the IDs, never reused. Each
//	                             body has a bucket of its own so that its
//	                             leaf page holds it alone: bbolt does not
//	                             split a leaf of up to four keys, and would
//	                             rewrite (and buffer) every big neighbour
//	                             on the leaf with each new body
//	"shared"/"refs"/<id>         how many copies refer to it (be64)
//	mailbox "bodyref"/<uid>      sharedRef: which shared body follows the
//	                             copy's "body"/<uid>, which then holds the
//	                             copy's header only
//	"queue"/"bodyrefs"/<id>      the same for a queue entry's "bodies"/<id>
//
// Rules:
//   - A copy without a ref keeps its whole message in "body" (or the queue's
//     "bodies"): every record written before shared bodies, APPEND, and
//     bodies under sharedBodyMin. Both forms read alike (storedMessage), so
//     no migration is needed.
//   - Every write that adds or drops a ref changes the count in the same
//     transaction (addRef), and the body goes with its last ref: there is
//     never a ref to a missing body nor a body nobody refers to. COPY and
//     MOVE add a ref instead of copying the body.
//   - A shared body never changes once written, so a reader that copies it
//     in chunks, each in its own read transaction, reads one body or gets
//     ErrNotFound (QueueBody).

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketShared       = []byte("shared")
	bucketSharedBodies = []byte("bodies")
	bucketSharedRefs   = []byte("refs")
	bucketBodyRef      = []byte("bodyref")
	bucketQBodyRefs    = []byte("bodyrefs")
)

// sharedBodyMin is the smallest body that is shared: below it, the copies
// are cheap and a FETCH is better served by one record than by two.
const sharedBodyMin = 64 << 10

// sharedRef points a copy at its shared body; size is the body's length,
// checked on every read.
type sharedRef struct {
	id   uint64
	size int64
}

const sharedRefLen = 17

func (r sharedRef) encode() []byte {
	b := make([]byte, sharedRefLen)
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:], r.id)
	binary.BigEndian.PutUint64(b[9:], uint64(r.size))
	return b
}

func decodeSharedRef(v []byte) (sharedRef, error) {
	if len(v) != sharedRefLen || v[0] != recordVersion {
		return sharedRef{}, fmt.Errorf("shared body reference %x: %w", v, errCorrupt)
	}
	r := sharedRef{id: binary.BigEndian.Uint64(v[1:]), size: int64(binary.BigEndian.Uint64(v[9:]))}
	if r.id == 0 || r.size < 0 {
		return sharedRef{}, fmt.Errorf("shared body reference %x: %w", v, errCorrupt)
	}
	return r, nil
}

// storedMessage is one copy's bytes as stored, pointing into the
// database's memory (valid only inside its transaction): its own bytes
// and, when it refers to a shared body, that body, which follows them.
type storedMessage struct {
	own, shared []byte
}

func (m storedMessage) size() int64 { return int64(len(m.own) + len(m.shared)) }

// header is the copy's header with the empty line that ends it.
func (m storedMessage) header() []byte { return m.own[:headerLen(m.own)] }

// bytes returns a copy of the whole message.
func (m storedMessage) bytes() []byte {
	return append(append(make([]byte, 0, m.size()), m.own...), m.shared...)
}

// copyAt copies the message's bytes from off into p and returns how many.
func (m storedMessage) copyAt(p []byte, off int64) int {
	n := 0
	if off < int64(len(m.own)) {
		n = copy(p, m.own[off:])
	}
	if rest := off + int64(n) - int64(len(m.own)); n < len(p) && rest >= 0 && rest < int64(len(m.shared)) {
		n += copy(p[n:], m.shared[rest:])
	}
	return n
}

// loadStored reads one copy: own from body, the shared body when refs has
// a ref under key. A ref to a missing body, or one of the wrong length, is
// corrupt.
func loadStored(tx *bolt.Tx, body, refs *bolt.Bucket, key []byte) (storedMessage, error) {
	own := body.Get(key)
	if own == nil {
		return storedMessage{}, fmt.Errorf("no body: %w", errCorrupt)
	}
	m := storedMessage{own: own}
	if refs == nil {
		return m, nil
	}
	v := refs.Get(key)
	if v == nil {
		return m, nil
	}
	ref, err := decodeSharedRef(v)
	if err != nil {
		return storedMessage{}, err
	}
	m.shared = sharedBodyBytes(tx, ref.id)
	switch {
	case m.shared == nil:
		return storedMessage{}, fmt.Errorf("shared body %d is missing: %w", ref.id, errCorrupt)
	case int64(len(m.shared)) != ref.size:
		return storedMessage{}, fmt.Errorf("shared body %d has %d bytes, its reference says %d: %w", ref.id, len(m.shared), ref.size, errCorrupt)
	}
	return m, nil
}

var keySharedBody = []byte("b")

// sharedBodyBytes returns the body id, nil if there is none.
func sharedBodyBytes(tx *bolt.Tx, id uint64) []byte {
	bodies := sharedBucket(tx, bucketSharedBodies)
	if bodies == nil {
		return nil
	}
	b := bodies.Bucket(be64(id))
	if b == nil {
		return nil
	}
	return b.Get(keySharedBody)
}

// sharedBucket returns a sub-bucket of "shared" for reading; nil before the
// first shared body.
func sharedBucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	root := tx.Bucket(bucketShared)
	if root == nil {
		return nil
	}
	return root.Bucket(name)
}

// sharedBuckets returns "shared"'s root and sub-buckets, creating them.
func sharedBuckets(tx *bolt.Tx) (root, bodies, refs *bolt.Bucket, err error) {
	if root, err = tx.CreateBucketIfNotExists(bucketShared); err != nil {
		return nil, nil, nil, err
	}
	if bodies, err = root.CreateBucketIfNotExists(bucketSharedBodies); err != nil {
		return nil, nil, nil, err
	}
	if refs, err = root.CreateBucketIfNotExists(bucketSharedRefs); err != nil {
		return nil, nil, nil, err
	}
	bodies.FillPercent = appendFillPercent
	refs.FillPercent = appendFillPercent
	return root, bodies, refs, nil
}

// addRef changes a shared body's count by delta and removes the body when
// the count reaches zero. A count that would go below zero is corrupt.
func addRef(tx *bolt.Tx, id uint64, delta int64) error {
	_, bodies, refs, err := sharedBuckets(tx)
	if err != nil {
		return err
	}
	key := be64(id)
	if bodies.Bucket(key) == nil {
		return fmt.Errorf("shared body %d is missing: %w", id, errCorrupt)
	}
	n := int64(0)
	if v := refs.Get(key); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += delta
	switch {
	case n < 0:
		return fmt.Errorf("shared body %d: count below zero: %w", id, errCorrupt)
	case n == 0:
		if err := refs.Delete(key); err != nil {
			return err
		}
		return bodies.DeleteBucket(key)
	}
	return refs.Put(key, be64(uint64(n)))
}

// sharedBody is the body one Deliver writes once for its copies. store
// writes it in the delivery's transaction; the copies' puts then add their
// refs.
type sharedBody struct {
	body []byte
	id   uint64 // set by store, in the transaction being run
}

// store writes the body under a new ID (a nil sharedBody stores nothing).
// A request can run twice (writer.go rule 3): each run stores it anew and
// the rolled-back run leaves nothing.
func (sb *sharedBody) store(tx *bolt.Tx) error {
	if sb == nil {
		return nil
	}
	root, bodies, _, err := sharedBuckets(tx)
	if err != nil {
		return err
	}
	if sb.id, err = root.NextSequence(); err != nil {
		return err
	}
	b, err := bodies.CreateBucket(be64(sb.id))
	if err != nil {
		return err
	}
	return b.Put(keySharedBody, sb.body)
}

// ref is the reference a copy of this body stores.
func (sb *sharedBody) ref() sharedRef { return sharedRef{id: sb.id, size: int64(len(sb.body))} }

// shareBody splits the copies of one delivery into their own header and a
// body they share, when their bodies are the same bytes (smtpd's copies are
// slices of one buffer that differ in their header only) and big enough.
// A copy whose body differs keeps its whole message. It returns nil when
// nothing is shared.
func shareBody(copies ...*prepared) *sharedBody {
	var sb *sharedBody
	for _, p := range copies {
		if p == nil {
			continue
		}
		hl := headerLen(p.raw)
		body := p.raw[hl:]
		if len(body) < sharedBodyMin {
			continue
		}
		switch {
		case sb == nil:
			sb = &sharedBody{body: body}
		case !sameBytes(sb.body, body):
			continue
		}
		p.own, p.shared = p.raw[:hl], sb
	}
	return sb
}

// sameBytes compares a and b, without reading them when they are the
// same memory.
func sameBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return bytes.Equal(a, b)
}

// bodyForm is what put writes for one copy: own into "body" and, with a
// ref, a reference to the shared body that follows it.
type bodyForm struct {
	own []byte
	ref sharedRef // id 0: own is the whole message
}

// form is the copy's bodyForm; after shareBody and sharedBody.store.
func (p *prepared) form() bodyForm {
	if p.shared == nil {
		return bodyForm{own: p.raw}
	}
	return bodyForm{own: p.own, ref: p.shared.ref()}
}

// stored reads one message of the mailbox in either form.
func (x *boxTx) stored(mb msgBuckets, key []byte) (storedMessage, error) {
	return loadStored(x.u.tx, mb.body, x.b.Bucket(bucketBodyRef), key)
}

// form returns how one message of the mailbox is stored, for a COPY that
// adds a ref rather than copying a shared body. The values point into the
// database (bolt keeps them valid for the transaction).
func (x *boxTx) form(mb msgBuckets, key []byte) (bodyForm, error) {
	own := mb.body.Get(key)
	if own == nil {
		return bodyForm{}, fmt.Errorf("no body: %w", errCorrupt)
	}
	f := bodyForm{own: own}
	if refs := x.b.Bucket(bucketBodyRef); refs != nil {
		if v := refs.Get(key); v != nil {
			ref, err := decodeSharedRef(v)
			if err != nil {
				return bodyForm{}, err
			}
			f.ref = ref
		}
	}
	return f, nil
}

// putBody writes one message's body records under key, adding its ref.
func (x *boxTx) putBody(mb msgBuckets, key []byte, f bodyForm) error {
	if err := mb.body.Put(key, f.own); err != nil {
		return err
	}
	if f.ref.id == 0 {
		return nil
	}
	refs, err := x.b.CreateBucketIfNotExists(bucketBodyRef)
	if err != nil {
		return err
	}
	refs.FillPercent = appendFillPercent
	if err := refs.Put(key, f.ref.encode()); err != nil {
		return err
	}
	return addRef(x.u.tx, f.ref.id, 1)
}

// releaseBody drops the ref of a message being removed (its "body" record
// is deleted by the caller).
func (x *boxTx) releaseBody(key []byte) error {
	return dropRef(x.u.tx, x.b.Bucket(bucketBodyRef), key)
}

// releaseBodies drops the refs of every message of a mailbox that is about
// to be deleted as a whole.
func (x *boxTx) releaseBodies() error {
	return dropAllRefs(x.u.tx, x.b.Bucket(bucketBodyRef))
}

// releaseBodies drops the refs of every message of a user that is about
// to be deleted as a whole.
func (u *userTx) releaseBodies() error {
	c := u.boxes.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		if b := u.boxes.Bucket(k); b != nil {
			if err := dropAllRefs(u.tx, b.Bucket(bucketBodyRef)); err != nil {
				return fmt.Errorf("mailbox %x: %w", k, err)
			}
		}
	}
	return nil
}

// dropRef deletes refs[key], if any, and gives its count back. A ref that
// cannot be decoded, or to a body already gone, is deleted all the same:
// the message it belonged to is going, and check reports the rest.
func dropRef(tx *bolt.Tx, refs *bolt.Bucket, key []byte) error {
	if refs == nil {
		return nil
	}
	v := refs.Get(key)
	if v == nil {
		return nil
	}
	ref, derr := decodeSharedRef(v)
	if err := refs.Delete(key); err != nil {
		return err
	}
	if derr != nil || sharedBodyBytes(tx, ref.id) == nil {
		return nil
	}
	return addRef(tx, ref.id, -1)
}

// dropAllRefs gives back the count of every ref in refs (whose bucket the
// caller deletes).
func dropAllRefs(tx *bolt.Tx, refs *bolt.Bucket) error {
	if refs == nil {
		return nil
	}
	return refs.ForEach(func(_, v []byte) error {
		ref, err := decodeSharedRef(v)
		if err != nil {
			return nil
		}
		if sharedBodyBytes(tx, ref.id) == nil {
			return nil
		}
		return addRef(tx, ref.id, -1)
	})
}

// The queue's side: an entry's "bodies"/<id> with "bodyrefs"/<id>.

func queueBodyKey(id uint64) []byte { return be64(id) }

// putBody writes the body records of a new queue entry.
func (q *queueTx) putBody(id uint64, p *prepared) error {
	f := p.form()
	key := queueBodyKey(id)
	if err := q.bodies.Put(key, f.own); err != nil {
		return err
	}
	if f.ref.id == 0 {
		return nil
	}
	refs, err := queueRoot(q.tx).CreateBucketIfNotExists(bucketQBodyRefs)
	if err != nil {
		return err
	}
	refs.FillPercent = appendFillPercent
	if err := refs.Put(key, f.ref.encode()); err != nil {
		return err
	}
	return addRef(q.tx, f.ref.id, 1)
}

// dropBody deletes a queue entry's body records and gives its ref back.
func (q *queueTx) dropBody(id uint64) error {
	key := queueBodyKey(id)
	if err := dropRef(q.tx, queueBucket(q.tx, bucketQBodyRefs), key); err != nil {
		return err
	}
	return q.bodies.Delete(key)
}

func queueRoot(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket(bucketQueue) }

// queueStored reads a queue entry's message in either form.
func queueStored(tx *bolt.Tx, id uint64) (storedMessage, error) {
	body := queueBucket(tx, bucketQBodies)
	if body == nil {
		return storedMessage{}, fmt.Errorf("queue entry %d: %w", id, storage.ErrNotFound)
	}
	m, err := loadStored(tx, body, queueBucket(tx, bucketQBodyRefs), queueBodyKey(id))
	if err != nil {
		return storedMessage{}, fmt.Errorf("queue entry %d: %w", id, err)
	}
	return m, nil
}

// bodyChunkSize bounds what one read transaction of QueueBody copies.
const bodyChunkSize = 256 << 10

// QueueBody implements QueueStore: it writes the entry's message to w a
// chunk at a time, each chunk copied in its own read transaction, so the
// message is never in memory whole and a slow relay never holds a
// transaction open (which would make bbolt's next remap wait for it).
func (s *boltStore) QueueBody(ctx context.Context, id uint64, w io.Writer) (int64, error) {
	buf := make([]byte, bodyChunkSize)
	var written, size int64 = 0, -1
	for size < 0 || written < size {
		var n int
		err := s.view(ctx, func(tx *bolt.Tx) error {
			if queueBucket(tx, bucketQEntries) == nil || queueBucket(tx, bucketQEntries).Get(be64(id)) == nil {
				return fmt.Errorf("queue entry %d: %w", id, storage.ErrNotFound)
			}
			m, err := queueStored(tx, id)
			if err != nil {
				return err
			}
			if size >= 0 && m.size() != size {
				return fmt.Errorf("queue entry %d: body changed while read: %w", id, errCorrupt)
			}
			size = m.size()
			n = m.copyAt(buf, written)
			return nil
		})
		if err != nil {
			return written, fmt.Errorf("storage: queue body: %w", err)
		}
		if n == 0 {
			break
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return written, fmt.Errorf("storage: queue body %d: %w", id, err)
		}
		written += int64(n)
	}
	return written, nil
}

// deliveryBytes is what a delivery writes, for the writer's batch budget:
// each copy's own bytes once per mailbox it goes to, the shared body once.
func deliveryBytes(body *sharedBody, sent, relay, inbox *prepared, recipients int) int {
	own := func(p *prepared) int {
		switch {
		case p == nil:
			return 0
		case p.shared != nil:
			return len(p.own)
		}
		return len(p.raw)
	}
	n := own(sent) + own(relay) + own(inbox)*recipients
	if body != nil {
		n += len(body.body)
	}
	return n
}

// checkSharedBodies is Check's look at the shared bodies: every queue
// entry's body must be readable (a mailbox copy's is checked with its
// message), and every body's count must match the refs that exist. A
// mismatch is reported, not repaired: a count too high keeps a body that
// nothing shows, one too low would lose a body still referred to, and
// neither is fixed by moving a message away.
func checkSharedBodies(tx *bolt.Tx, rep *storage.CheckReport) {
	found := map[uint64]int64{}
	count := func(refs *bolt.Bucket) {
		if refs == nil {
			return
		}
		_ = refs.ForEach(func(_, v []byte) error {
			if ref, err := decodeSharedRef(v); err == nil {
				found[ref.id]++
			}
			return nil
		})
	}
	users := tx.Bucket(bucketUsers)
	_ = users.ForEach(func(addr, v []byte) error {
		if v != nil {
			return nil
		}
		boxes := users.Bucket(addr).Bucket(bucketBoxes)
		if boxes == nil {
			return nil
		}
		return boxes.ForEach(func(id, v []byte) error {
			if b := boxes.Bucket(id); v == nil && b != nil {
				count(b.Bucket(bucketBodyRef))
			}
			return nil
		})
	})
	if entries := queueBucket(tx, bucketQEntries); entries != nil {
		_ = entries.ForEach(func(k, _ []byte) error {
			rep.Checked++
			id := binary.BigEndian.Uint64(k)
			if _, err := queueStored(tx, id); err != nil {
				rep.Bad = append(rep.Bad, storage.BadRecord{Mailbox: "queue", Error: err.Error()})
			}
			return nil
		})
	}
	count(queueBucket(tx, bucketQBodyRefs))
	bodies, refs := sharedBucket(tx, bucketSharedBodies), sharedBucket(tx, bucketSharedRefs)
	if bodies == nil {
		return
	}
	_ = bodies.ForEach(func(k, _ []byte) error {
		rep.Checked++
		id := binary.BigEndian.Uint64(k)
		if sharedBodyBytes(tx, id) == nil {
			rep.Bad = append(rep.Bad, storage.BadRecord{Mailbox: "shared bodies", Error: fmt.Sprintf("shared body %d: no bytes: %v", id, errCorrupt)})
		}
		var n int64
		if refs != nil {
			if v := refs.Get(k); len(v) == 8 {
				n = int64(binary.BigEndian.Uint64(v))
			}
		}
		if n != found[id] {
			rep.Bad = append(rep.Bad, storage.BadRecord{Mailbox: "shared bodies",
				Error: fmt.Sprintf("shared body %d: %d references counted, %d found: %v", id, n, found[id], errCorrupt)})
		}
		return nil
	})
}
