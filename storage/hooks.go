package storage

// The hooks: the rules a backend's own Store methods (Backend) call inside
// their transactions, at the points where a rule applies. Each runs in the
// caller's RecordTx, so what the rule writes commits, or rolls back, with
// the caller's change. live are the mailboxes the caller holds and saves
// itself (a rule that changes one of them changes the caller's copy).

import (
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TracksDelivery reports whether a delivery gets a read-tracking record
// (a user's submission with recipients): its Sent copy is then stored
// without \Seen.
func TracksDelivery(d *Delivery) bool { return tracksDelivery(d) }

// TrackDelivery writes the read-tracking record of a delivery whose
// copies are stored (res), and sets res.TrackingID.
func TrackDelivery(tx RecordTx, d *Delivery, res *DeliveryResult, now time.Time, ev *Events) error {
	return trackDelivery(tx, d, res, now, ev)
}

// QueueRecipientsChanged reports to read tracking the recipients of queue
// entry e whose state differs from old's (a backend calls it when it saves
// an entry): sent is TrackRelayed, failed TrackFailed, anything else
// (a resend) TrackQueued. Nothing for a new entry or one without tracking.
func QueueRecipientsChanged(tx RecordTx, old, e *QueueEntry, ev *Events) error {
	if e.TrackingID == 0 || old == nil {
		return nil
	}
	for i, r := range e.Recipients {
		if i < len(old.Recipients) && old.Recipients[i].State == r.State {
			continue
		}
		state := TrackQueued
		switch r.State {
		case RcptSent:
			state = TrackRelayed
		case RcptFailed:
			state = TrackFailed
		}
		if err := SetExternalState(tx, e.TrackingID, r.Address, state, ev); err != nil {
			return fmt.Errorf("queue entry %d: read tracking: %w", e.ID, err)
		}
	}
	return nil
}

// SetExternalState records the relay's outcome for one external
// recipient of tracking record trackingID (TrackRelayed, TrackFailed, or
// TrackQueued again after a resend).
func SetExternalState(tx RecordTx, trackingID uint64, recipient, state string, ev *Events) error {
	return setExternalState(tx, trackingID, recipient, state, ev)
}

// MessageStored is called for each message stored in x: the unread and
// Sent de-duplication indexes learn it.
func MessageStored(tx RecordTx, x MailboxTx, m StoredMessage, now time.Time) error {
	return indexNew(tx, x, m, now)
}

// MessageRemoving is called before a message leaves x for good: an unread
// tracked copy counts as deleted, and the indexes forget it.
func MessageRemoving(tx RecordTx, x MailboxTx, m StoredMessage, ev *Events) error {
	return unindex(tx, x, m, ev)
}

// SeenChanged is called when a client sets or clears \Seen on a message.
func SeenChanged(tx RecordTx, x MailboxTx, uid imap.UID, date time.Time, seen bool, ev *Events) error {
	return seenChanged(tx, x, uid, date, seen, ev)
}

// SeenSet is called when the store itself sets \Seen (MailboxTx.SetSeen):
// the message leaves the unread index.
func SeenSet(tx RecordTx, x MailboxTx, uid imap.UID, date time.Time) error {
	return indexUnread(tx, x, uid, date, false)
}

// Untrack is called before uid leaves x by a removal that is not a plain
// expunge: state is what an unread recipient's copy becomes (TrackDeleted,
// TrackExpired).
func Untrack(tx RecordTx, x MailboxTx, uid imap.UID, state string, live []MailboxTx, ev *Events) error {
	return untrack(tx, x, uid, state, live, ev)
}

// MessageMoving is called by a move of uid from x to (dst, newUID) of the
// same user, before the original is removed.
func MessageMoving(tx RecordTx, x MailboxTx, uid imap.UID, dst MailboxTx, newUID imap.UID, ev *Events) error {
	return trackMove(tx, x, uid, dst, newUID, ev)
}

// MailboxDeleting is called before a mailbox is deleted with its messages.
func MailboxDeleting(tx RecordTx, x MailboxTx, ev *Events) error {
	return untrackMailbox(tx, x, ev)
}

// UserDeleting is called before a user is deleted.
func UserDeleting(tx RecordTx, user string, ev *Events) error {
	return untrackUser(tx, user, ev)
}

// SentDuplicate returns the copy already in x when an APPEND of a message
// with Message-ID mid is the client's copy of one the server stored in
// Sent itself (tracking_index.go); nil otherwise.
func SentDuplicate(tx RecordTx, x MailboxTx, mid string, now time.Time) (*Appended, error) {
	return sentDuplicate(tx, x, mid, now)
}

// UnreadDate is an internal date as the unread index orders it
// (UnreadEntry.Date).
func UnreadDate(t time.Time) uint64 { return dateKey(t) }
