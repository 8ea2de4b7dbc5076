package storage

// Read tracking: who has not read what a user sent (the seed's "Not
// delivered" column, and its bold Sent folder).
//
// These are rules (records.go): they read and write only through RecordTx
// and MailboxTx. The records are a TrackingRecord per submitted message, the
// sender's log of them, and the "tracked" index from a message to the
// record that follows it: the sender's own copy (for the record's whole
// life) or a recipient's copy (while it is unread).
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
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TrackingRecord is the read-tracking record of one submitted message, as
// a backend stores it (bbolt: JSON, storage/boltstore/records_bolt.go).
type TrackingRecord struct {
	Sender    string    `json:"sender"`
	MessageID string    `json:"message_id"`
	Subject   string    `json:"subject"`
	Date      time.Time `json:"date"`
	// SentBox and SentUID locate the sender's copy; 0 once it is gone.
	SentBox    uint64              `json:"sent_box,omitempty"`
	SentUID    uint32              `json:"sent_uid,omitempty"`
	Recipients []TrackingRecipient `json:"recipients"`
}

// TrackingRecipient is one recipient of a TrackingRecord; Box and UID
// locate a local copy while it is unread (0 afterwards, and always for
// external recipients).
type TrackingRecipient struct {
	Address  string    `json:"address"`
	External bool      `json:"external,omitempty"`
	State    string    `json:"state"`
	Changed  time.Time `json:"changed"`
	Box      uint64    `json:"box,omitempty"`
	UID      uint32    `json:"uid,omitempty"`
}

func (r *TrackingRecord) pending() int {
	n := 0
	for _, rc := range r.Recipients {
		if rc.State == TrackUnread || rc.State == TrackQueued {
			n++
		}
	}
	return n
}

// isSentCopy reports whether (user, box, uid) is the sender's copy.
func (r *TrackingRecord) isSentCopy(user string, box uint64, uid imap.UID) bool {
	return r.SentBox != 0 && r.Sender == user && r.SentBox == box && r.SentUID == uint32(uid)
}

// localCopy returns the local recipient whose copy is (user, box, uid).
func (r *TrackingRecord) localCopy(user string, box uint64, uid imap.UID) *TrackingRecipient {
	for i := range r.Recipients {
		rc := &r.Recipients[i]
		if !rc.External && rc.Box != 0 && rc.Address == user && rc.Box == box && rc.UID == uint32(uid) {
			return rc
		}
	}
	return nil
}

func (r *TrackingRecord) public(id uint64) SentMessage {
	m := SentMessage{ID: id, MessageID: r.MessageID, Subject: r.Subject, Date: r.Date,
		Recipients: make([]SentRecipient, 0, len(r.Recipients))}
	for _, rc := range r.Recipients {
		m.Recipients = append(m.Recipients, SentRecipient{Address: rc.Address, External: rc.External, State: rc.State, Changed: rc.Changed})
	}
	return m
}

// deleteTrack removes a record with its log entry and every index entry
// that still points at it.
func deleteTrack(tx RecordTx, id uint64, rec *TrackingRecord) error {
	if err := tx.DeleteTrackingRecord(id); err != nil {
		return err
	}
	if rec.SentBox != 0 {
		if err := tx.DeleteTracked(rec.Sender, rec.SentBox, imap.UID(rec.SentUID)); err != nil {
			return err
		}
	}
	if err := tx.DeleteSentLog(rec.Sender, id); err != nil {
		return err
	}
	for _, rc := range rec.Recipients {
		if !rc.External && rc.Box != 0 {
			if err := tx.DeleteTracked(rc.Address, rc.Box, imap.UID(rc.UID)); err != nil {
				return err
			}
		}
	}
	return nil
}

// tracksDelivery reports whether a delivery gets a tracking record: a
// user's submission with at least one recipient.
func tracksDelivery(d *Delivery) bool {
	return d.Sender != "" && len(d.Recipients)+len(d.External) > 0
}

// trackDelivery writes the read-tracking record of a submitted message
// inside the delivery's transaction and sets res.TrackingID.
func trackDelivery(tx RecordTx, d *Delivery, res *DeliveryResult, now time.Time, ev *Events) error {
	if !tracksDelivery(d) || res.Sent == nil {
		return nil
	}
	now = now.UTC()
	rec := &TrackingRecord{
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
		rec.Recipients = append(rec.Recipients, TrackingRecipient{Address: a, State: TrackUnread, Changed: now, Box: c.MailboxID, UID: uint32(c.UID)})
	}
	for _, r := range d.External {
		if a := strings.ToLower(r); !seen[a] {
			seen[a] = true
			rec.Recipients = append(rec.Recipients, TrackingRecipient{Address: r, External: true, State: TrackQueued, Changed: now})
		}
	}
	if len(rec.Recipients) == 0 {
		return nil
	}
	id, err := tx.NewTrackingID()
	if err != nil {
		return err
	}
	if err := tx.PutTrackingRecord(id, rec); err != nil {
		return err
	}
	if err := tx.SetTracked(rec.Sender, rec.SentBox, imap.UID(rec.SentUID), id); err != nil {
		return err
	}
	if err := tx.AddSentLog(rec.Sender, id); err != nil {
		return err
	}
	for _, rc := range rec.Recipients {
		if !rc.External {
			if err := tx.SetTracked(rc.Address, rc.Box, imap.UID(rc.UID), id); err != nil {
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
func setExternalState(tx RecordTx, trackingID uint64, recipient, state string, ev *Events) error {
	switch state {
	case TrackRelayed, TrackFailed, TrackQueued:
	default:
		return fmt.Errorf("tracking state %q for an external recipient: %w", state, ErrInvalid)
	}
	if trackingID == 0 {
		return nil
	}
	rec, ok := tx.TrackingRecord(trackingID)
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
func settle(tx RecordTx, id uint64, rec *TrackingRecord, before int, live []MailboxTx, ev *Events) error {
	after := rec.pending()
	if after < before && rec.Sender != "" {
		// The sender's event, not the writer's: no origin.
		ev.AddUntagged(Event{Kind: EventTracking, User: rec.Sender, MailboxID: rec.SentBox, UID: imap.UID(rec.SentUID), TrackingID: id})
	}
	if before > 0 && after == 0 {
		if err := markSentSeen(tx, rec, live, ev); err != nil {
			return err
		}
	}
	if after == 0 && rec.SentBox == 0 {
		return deleteTrack(tx, id, rec)
	}
	return tx.PutTrackingRecord(id, rec)
}

// markSentSeen sets \Seen on the sender's copy. live are the mailboxes the
// calling write holds in memory and saves itself; the copy's mailbox is
// taken from there when it is one of them, or its counters would be
// overwritten by the caller's save.
func markSentSeen(tx RecordTx, rec *TrackingRecord, live []MailboxTx, ev *Events) error {
	if rec.SentBox == 0 {
		return nil
	}
	var x MailboxTx
	for _, l := range live {
		if l.User() == rec.Sender && l.ID() == rec.SentBox {
			x = l
		}
	}
	own := x == nil
	if own {
		var err error
		if x, err = tx.Mailbox(rec.Sender, rec.SentBox); err != nil {
			return nil
		}
	}
	changed, err := x.SetSeen(imap.UID(rec.SentUID), ev)
	if err != nil || !changed || !own {
		return err
	}
	return x.Save()
}

// trackedID returns the record following (x, uid), if any.
func trackedID(tx RecordTx, x MailboxTx, uid imap.UID) (uint64, bool, error) {
	return tx.TrackedID(x.User(), x.ID(), uid)
}

// trackSeen is called when uid in x gains \Seen: a recipient's copy
// becomes read. \Seen on the sender's own copy changes nothing.
func trackSeen(tx RecordTx, x MailboxTx, uid imap.UID, ev *Events) error {
	id, ok, err := trackedID(tx, x, uid)
	if err != nil || !ok {
		return err
	}
	rec, ok := tx.TrackingRecord(id)
	if !ok {
		return tx.DeleteTracked(x.User(), x.ID(), uid)
	}
	rc := rec.localCopy(x.User(), x.ID(), uid)
	if rc == nil {
		if rec.isSentCopy(x.User(), x.ID(), uid) {
			return nil
		}
		return tx.DeleteTracked(x.User(), x.ID(), uid)
	}
	if err := tx.DeleteTracked(x.User(), x.ID(), uid); err != nil {
		return err
	}
	before := rec.pending()
	if rc.State == TrackUnread {
		rc.State, rc.Changed = TrackRead, time.Now().UTC()
	}
	rc.Box, rc.UID = 0, 0
	return settle(tx, id, rec, before, []MailboxTx{x}, ev)
}

// untrack is called before uid leaves x for good: an unread recipient's
// copy becomes state (TrackDeleted, or TrackExpired from the sweep); the
// sender's copy is forgotten. live are the mailboxes the caller saves.
func untrack(tx RecordTx, x MailboxTx, uid imap.UID, state string, live []MailboxTx, ev *Events) error {
	id, ok, err := trackedID(tx, x, uid)
	if err != nil || !ok {
		return err
	}
	if err := tx.DeleteTracked(x.User(), x.ID(), uid); err != nil {
		return err
	}
	rec, ok := tx.TrackingRecord(id)
	if !ok {
		return nil
	}
	before := rec.pending()
	switch rc := rec.localCopy(x.User(), x.ID(), uid); {
	case rc != nil:
		if rc.State == TrackUnread {
			rc.State, rc.Changed = state, time.Now().UTC()
		}
		rc.Box, rc.UID = 0, 0
	case rec.isSentCopy(x.User(), x.ID(), uid):
		rec.SentBox, rec.SentUID = 0, 0
	default:
		return nil
	}
	return settle(tx, id, rec, before, append(live[:len(live):len(live)], x), ev)
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
func trackMove(tx RecordTx, x MailboxTx, uid imap.UID, dst MailboxTx, newUID imap.UID, ev *Events) error {
	id, ok, err := trackedID(tx, x, uid)
	if err != nil || !ok {
		return err
	}
	if err := tx.DeleteTracked(x.User(), x.ID(), uid); err != nil {
		return err
	}
	rec, ok := tx.TrackingRecord(id)
	if !ok {
		return nil
	}
	switch rc := rec.localCopy(x.User(), x.ID(), uid); {
	case rc != nil && dst.SpecialUse() == imap.MailboxAttrTrash:
		before := rec.pending()
		if rc.State == TrackUnread {
			rc.State, rc.Changed = TrackDeleted, time.Now().UTC()
		}
		rc.Box, rc.UID = 0, 0
		return settle(tx, id, rec, before, []MailboxTx{x, dst}, ev)
	case rc != nil:
		rc.Box, rc.UID = dst.ID(), uint32(newUID)
	case rec.isSentCopy(x.User(), x.ID(), uid):
		rec.SentBox, rec.SentUID = dst.ID(), uint32(newUID)
	default:
		return nil
	}
	if err := tx.SetTracked(dst.User(), dst.ID(), newUID, id); err != nil {
		return err
	}
	return tx.PutTrackingRecord(id, rec)
}

// untrackMailbox is called before a mailbox is deleted with its messages:
// each tracked message in it counts as expunged.
func untrackMailbox(tx RecordTx, x MailboxTx, ev *Events) error {
	uids, err := tx.TrackedUIDs(x.User(), x.ID())
	if err != nil {
		return err
	}
	for _, uid := range uids {
		if err := untrack(tx, x, uid, TrackDeleted, nil, ev); err != nil {
			return err
		}
	}
	return nil
}

// untrackUser is called before a user is deleted: their unread copies of
// others' messages count as deleted, and the records of what they sent go.
func untrackUser(tx RecordTx, user string, ev *Events) error {
	refs, err := tx.TrackedMessages(user)
	if err != nil {
		return err
	}
	for _, l := range refs {
		x, err := tx.Mailbox(user, l.Mailbox)
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if err := untrack(tx, x, l.UID, TrackDeleted, nil, ev); err != nil {
			return err
		}
	}
	ids, err := tx.SentLog(user)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if rec, ok := tx.TrackingRecord(id); ok {
			if err := deleteTrack(tx, id, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// sentStatus returns the user's read-tracking records, oldest first.
func sentStatus(ctx context.Context, r Records, user string) ([]SentMessage, error) {
	list := []SentMessage{}
	err := r.ViewRecords(ctx, func(tx RecordTx) error {
		ids, err := tx.SentLog(user)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if rec, ok := tx.TrackingRecord(id); ok {
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
