package storage

// The hooks a backend calls for every message stored or removed and for
// every change of \Seen, keeping the indexes of read tracking, the unread
// lifetime and Sent de-duplication exact; and the Sent de-duplication
// itself. These are rules (records.go): they use RecordTx and MailboxTx
// only.
//
// The server stores the sender's copy in Sent itself; many clients then
// APPEND their own copy too (Thunderbird and Outlook do unless told not
// to). Such an APPEND, within dedupWindow of the first copy, gets the
// existing copy back and stores nothing, so Sent holds one copy and the
// tracked one (unread until read by all) is the one the client sees. The
// index (RecordTx.SentID) maps a Message-ID to the latest message with that
// Message-ID put in the user's \Sent mailbox; it is per user: another
// user's Message-ID is never matched.

import (
	"time"

	"github.com/emersion/go-imap/v2"
)

const (
	// dedupWindow is how long after the first copy an APPEND of the same
	// message to Sent is taken for the client's duplicate.
	dedupWindow = 24 * time.Hour
	// maxIndexedMessageID: longer Message-IDs (never seen from real
	// clients) are simply not de-duplicated.
	maxIndexedMessageID = 998
)

// StoredMessage is what the hooks know of a message being stored or
// removed.
type StoredMessage struct {
	UID          imap.UID
	MessageID    string // without angle brackets; "" when it has none
	InternalDate time.Time
	Seen         bool
}

// indexNew is called for each message stored in x.
func indexNew(tx RecordTx, x MailboxTx, m StoredMessage, now time.Time) error {
	if x.Name() == Inbox && !m.Seen {
		if err := indexUnread(tx, x, m.UID, m.InternalDate, true); err != nil {
			return err
		}
	}
	if x.SpecialUse() == imap.MailboxAttrSent && usableMessageID(m.MessageID) {
		return tx.PutSentID(x.User(), m.MessageID, SentIDEntry{Mailbox: x.ID(), UID: m.UID, Stored: now})
	}
	return nil
}

// unindex is called before a message leaves x: an unread tracked copy
// counts as deleted, and the other indexes forget it.
func unindex(tx RecordTx, x MailboxTx, m StoredMessage, ev *Events) error {
	if err := untrack(tx, x, m.UID, TrackDeleted, nil, ev); err != nil {
		return err
	}
	if !m.Seen {
		if err := indexUnread(tx, x, m.UID, m.InternalDate, false); err != nil {
			return err
		}
	}
	if x.SpecialUse() == imap.MailboxAttrSent && usableMessageID(m.MessageID) {
		e, ok, err := tx.SentID(x.User(), m.MessageID)
		if err != nil || !ok {
			return err
		}
		if e.Mailbox == x.ID() && e.UID == m.UID {
			return tx.DeleteSentID(x.User(), m.MessageID)
		}
	}
	return nil
}

// seenChanged is called when a client sets or clears \Seen.
func seenChanged(tx RecordTx, x MailboxTx, uid imap.UID, date time.Time, seen bool, ev *Events) error {
	if err := indexUnread(tx, x, uid, date, !seen); err != nil {
		return err
	}
	if seen {
		return trackSeen(tx, x, uid, ev)
	}
	return nil
}

func usableMessageID(mid string) bool {
	return mid != "" && len(mid) <= maxIndexedMessageID
}

// sentDuplicate returns the existing copy when a message with Message-ID
// mid was put in x, a \Sent mailbox, less than dedupWindow before now.
func sentDuplicate(tx RecordTx, x MailboxTx, mid string, now time.Time) (*Appended, error) {
	if !usableMessageID(mid) || x.SpecialUse() != imap.MailboxAttrSent {
		return nil, nil
	}
	e, ok, err := tx.SentID(x.User(), mid)
	if err != nil || !ok || e.Mailbox != x.ID() {
		return nil, err
	}
	if now.Sub(e.Stored) > dedupWindow || e.Stored.After(now.Add(time.Minute)) {
		return nil, nil
	}
	if _, found, err := x.MessageInfo(e.UID); err != nil || !found {
		return nil, err
	}
	return &Appended{MailboxID: x.ID(), UIDValidity: x.UIDValidity(), UID: e.UID}, nil
}
