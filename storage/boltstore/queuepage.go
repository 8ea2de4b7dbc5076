package boltstore

// Paged queue listing for the web interface: a page of a large queue is
// read from an index, so its cost follows the page, not the queue.
//
// Layout, inside the top-level "queue" bucket:
//
//	"index"/"o|"<owner>"\x00"<id>   every entry, by owner: the submitting
//	                                user, or the envelope sender of
//	                                system mail (QueueFilter.User)
//	"index"/"s|"<status>"\x00"<id>  every entry, by status
//	"index"/"r|"<source>"\x00"<id>  every entry, by source
//
// IDs are issued in queuing order, so ID order is date order. saveEntry and
// remove keep the index in step in the same transaction. A database from
// before the index has none: the first write to the queue builds it, and
// until then a listing walks the entries themselves.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

var bucketQIndex = []byte("index")

func queueIndexKeys(e *storage.QueueEntry) [][]byte {
	owner := e.User
	if owner == "" {
		owner = e.From
	}
	return [][]byte{
		indexKey("o|"+strings.ToLower(owner), e.ID),
		indexKey("s|"+e.Status, e.ID),
		indexKey("r|"+e.Source, e.ID),
	}
}

func indexKey(prefix string, id uint64) []byte {
	k := make([]byte, 0, len(prefix)+9)
	k = append(k, prefix...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, id)
}

// queueIndex returns the index bucket for writing, building it from the
// entries the first time.
func (q *queueTx) queueIndex() (*bolt.Bucket, error) {
	root := q.tx.Bucket(bucketQueue)
	if b := root.Bucket(bucketQIndex); b != nil {
		return b, nil
	}
	b, err := root.CreateBucket(bucketQIndex)
	if err != nil {
		return nil, err
	}
	err = q.entries.ForEach(func(k, v []byte) error {
		e, err := decodeEntry(binary.BigEndian.Uint64(k), v)
		if err != nil {
			return err
		}
		for _, ik := range queueIndexKeys(e) {
			if err := b.Put(ik, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("building the queue index: %w", err)
	}
	return b, nil
}

// reindex moves an entry's index keys from old (nil: new entry) to e (nil:
// removed).
func (q *queueTx) reindex(old, e *storage.QueueEntry) error {
	b, err := q.queueIndex()
	if err != nil {
		return err
	}
	var oldKeys, newKeys [][]byte
	if old != nil {
		oldKeys = queueIndexKeys(old)
	}
	if e != nil {
		newKeys = queueIndexKeys(e)
	}
	for _, k := range oldKeys {
		if !containsKey(newKeys, k) {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	for _, k := range newKeys {
		if !containsKey(oldKeys, k) {
			if err := b.Put(k, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// QueueEntriesPage implements QueuePageStore.
func (s *boltStore) QueueEntriesPage(ctx context.Context, f storage.QueueFilter, p storage.QueuePage) ([]storage.QueueEntry, uint64, error) {
	if err := f.Validate(); err != nil {
		return nil, 0, fmt.Errorf("storage: queue page: %w", err)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	out := []storage.QueueEntry{}
	var next uint64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		entries := queueBucket(tx, bucketQEntries)
		if entries == nil {
			return nil
		}
		// The narrowest index the filter names; Match checks the rest.
		var c *bolt.Cursor
		var prefix []byte
		if idx := queueBucket(tx, bucketQIndex); idx != nil {
			switch {
			case f.User != "":
				prefix = []byte("o|" + strings.ToLower(f.User) + "\x00")
			case f.Status != "":
				prefix = []byte("s|" + f.Status + "\x00")
			case f.Source != "":
				prefix = []byte("r|" + f.Source + "\x00")
			}
			if prefix != nil {
				c = idx.Cursor()
			}
		}
		if c == nil {
			c, prefix = entries.Cursor(), nil
		}
		idOf := func(k []byte) (uint64, bool) {
			if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
				return 0, false
			}
			return binary.BigEndian.Uint64(k[len(prefix):]), true
		}
		var k []byte
		if p.Oldest {
			k, _ = c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), p.After))
			if id, ok := idOf(k); ok && id == p.After {
				k, _ = c.Next()
			}
		} else {
			// Newest first: the key before the first one at or after
			// the cursor (after the whole prefix when starting).
			after := p.After
			if after == 0 {
				after = ^uint64(0)
			}
			if k, _ = c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), after)); k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
		step := c.Prev
		if p.Oldest {
			step = c.Next
		}
		for ; ; k, _ = step() {
			id, ok := idOf(k)
			if !ok {
				return nil
			}
			v := entries.Get(be64(id))
			if v == nil {
				return fmt.Errorf("queue index names entry %d that does not exist: %w", id, errCorrupt)
			}
			e, err := decodeEntry(id, v)
			if err != nil {
				return err
			}
			if !f.Match(e) {
				continue
			}
			if len(out) == limit {
				next = out[len(out)-1].ID
				return nil
			}
			out = append(out, *e)
		}
	})
	if err != nil {
		return nil, 0, fmt.Errorf("storage: queue page: %w", err)
	}
	return out, next, nil
}
