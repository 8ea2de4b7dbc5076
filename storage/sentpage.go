package storage

// The read-tracking records of one page of a Sent listing, found through
// the "tracked" index (tracking.go) of the messages on the page: the cost
// follows the page, not the number of records the user has.

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/emersion/go-imap/v2"
	bolt "go.etcd.io/bbolt"
)

// SentPageStore reads tracking records by the sender's copies.
type SentPageStore interface {
	// SentStatusFor returns the read-tracking records whose sender's copy
	// is one of uids in user's mailbox mailboxID, keyed by that UID; a
	// message no record follows is absent. It reads one index entry and
	// at most one record per UID. ErrNotFound if no such user.
	SentStatusFor(ctx context.Context, user string, mailboxID uint64, uids []imap.UID) (map[imap.UID]SentMessage, error)
}

// SentStatusFor implements SentPageStore.
func (s *boltStore) SentStatusFor(ctx context.Context, user string, mailboxID uint64, uids []imap.UID) (map[imap.UID]SentMessage, error) {
	out := make(map[imap.UID]SentMessage, len(uids))
	err := s.view(ctx, func(tx *bolt.Tx) error {
		u, err := openUser(tx, user)
		if err != nil {
			return err
		}
		tb := u.b.Bucket(bucketTracked)
		if tb == nil {
			return nil
		}
		for _, uid := range uids {
			v := tb.Get(trackKey(mailboxID, uid))
			if len(v) != 8 {
				continue
			}
			id := binary.BigEndian.Uint64(v)
			// The index also holds the user's unread copies of others'
			// messages: only the user's own sent copy counts here.
			if rec, ok := loadTrack(tx, id); ok && rec.isSentCopy(u.addr, mailboxID, uid) {
				out[uid] = rec.public(id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: sent status of %d messages: %w", len(uids), err)
	}
	return out, nil
}
