package storage

// The read-tracking records of one page of a Sent listing, found through
// the "tracked" index (tracking.go) of the messages on the page: the cost
// follows the page, not the number of records the user has.

import (
	"context"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// SentPageStore reads tracking records by the sender's copies.
type SentPageStore interface {
	// SentStatusFor returns the read-tracking records whose sender's copy
	// is one of uids in user's mailbox mailboxID, keyed by that UID; a
	// message no record follows is absent. It reads one index entry and
	// at most one record per UID. ErrNotFound if no such user.
	SentStatusFor(ctx context.Context, user string, mailboxID uint64, uids []imap.UID) (map[imap.UID]SentMessage, error)
}

// sentStatusFor implements SentPageStore over any Records.
func sentStatusFor(ctx context.Context, r Records, user string, mailboxID uint64, uids []imap.UID) (map[imap.UID]SentMessage, error) {
	out := make(map[imap.UID]SentMessage, len(uids))
	user = strings.ToLower(user)
	err := r.ViewRecords(ctx, func(tx RecordTx) error {
		if len(uids) == 0 {
			// Only whether the user exists: ErrNotFound if not.
			_, _, err := tx.TrackedID(user, 0, 0)
			return err
		}
		for _, uid := range uids {
			id, ok, err := tx.TrackedID(user, mailboxID, uid)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			// The index also holds the user's unread copies of others'
			// messages: only the user's own sent copy counts here.
			if rec, ok := tx.TrackingRecord(id); ok && rec.isSentCopy(user, mailboxID, uid) {
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
