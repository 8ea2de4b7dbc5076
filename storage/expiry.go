package storage

// The unread lifetime ([message_server] message_lifetime): a message still
// without \Seen in an INBOX after that long is deleted. Read messages and
// every other mailbox (Sent, Drafts, …) are never touched.
//
// These are rules (records.go) over the unread index of RecordTx: one
// entry per INBOX message without \Seen, ordered by internal date, so the
// sweep meets the oldest first. The index is what keeps the sweep cheap:
// when nothing is due it costs one index step in a read transaction,
// whatever the number of messages. The hooks of tracking_index.go and
// SetSeen keep it exact. Entries left behind by a deleted user are dropped
// by the sweep when their date comes.

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/emersion/go-imap/v2"
)

// ExpireBatch bounds the messages one sweep transaction deletes, so the
// writer is not held for long and other writes interleave.
const ExpireBatch = 256

// dateKey maps an internal date to the index's ordering: Unix nanoseconds,
// 0 before 1970.
func dateKey(t time.Time) uint64 {
	if t.Unix() < 0 {
		return 0
	}
	if t.Unix() >= math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// indexUnread adds (unread true) or removes the unread-index entry of a
// message of x; only INBOX messages are indexed.
func indexUnread(tx RecordTx, x MailboxTx, uid imap.UID, date time.Time, unread bool) error {
	if x.Name() != Inbox {
		return nil
	}
	e := UnreadEntry{Date: dateKey(date), User: x.User(), Mailbox: x.ID(), UID: uid}
	if unread {
		return tx.PutUnread(e)
	}
	return tx.DeleteUnread(e)
}

// expireUnread deletes the INBOX messages without \Seen dated before cutoff.
func expireUnread(ctx context.Context, r Records, cutoff time.Time) (int, error) {
	limit := dateKey(cutoff)
	total := 0
	for {
		due := false
		err := r.ViewRecords(ctx, func(tx RecordTx) error {
			es, err := tx.UnreadBefore(limit, 1)
			due = len(es) > 0
			return err
		})
		if err != nil {
			return total, fmt.Errorf("storage: expire unread: %w", err)
		}
		if !due {
			return total, nil
		}
		var res expireResult
		err = r.UpdateRecords(ctx, 0, func(tx RecordTx, ev *Events) error {
			var err error
			res, err = expireDue(tx, limit, ExpireBatch, ev)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("storage: expire unread: %w", err)
		}
		total += res.removed
		if res.examined < ExpireBatch {
			return total, nil
		}
	}
}

type expireResult struct {
	removed  int // messages deleted
	examined int // index entries looked at (deleted or dropped as stale)
}

// expireDue deletes up to max due messages in one transaction.
func expireDue(tx RecordTx, limit uint64, max int, ev *Events) (expireResult, error) {
	var res expireResult
	entries, err := tx.UnreadBefore(limit, max)
	if err != nil {
		return res, err
	}
	// Mailboxes are opened once per transaction and saved at the end,
	// since several messages of one mailbox share its counters.
	type boxKey struct {
		user string
		id   uint64
	}
	boxes := make(map[boxKey]MailboxTx)
	var live []MailboxTx
	for _, e := range entries {
		res.examined++
		k := boxKey{e.User, e.Mailbox}
		x, ok := boxes[k]
		if !ok {
			if x, err = tx.Mailbox(e.User, e.Mailbox); err != nil {
				x = nil // the user or mailbox is gone: the entry is stale
			} else {
				live = append(live, x)
			}
			boxes[k] = x
		}
		due := false
		if x != nil {
			m, found, err := x.MessageInfo(e.UID)
			if err != nil {
				return res, err
			}
			due = found && !m.Seen && x.Name() == Inbox && dateKey(m.InternalDate) == e.Date
		}
		if !due {
			// Stale: the message is gone, read, or dated differently.
			if err := tx.DeleteUnread(e); err != nil {
				return res, err
			}
			continue
		}
		if err := untrack(tx, x, e.UID, TrackExpired, live, ev); err != nil {
			return res, err
		}
		if _, err := x.Remove(e.UID, ev); err != nil {
			return res, err
		}
		res.removed++
	}
	for _, x := range live {
		if err := x.Save(); err != nil {
			return res, err
		}
	}
	return res, nil
}
