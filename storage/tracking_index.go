package storage

// The hooks messages.go calls for every message stored or removed, keeping
// the indexes of read tracking, the unread lifetime and Sent
// de-duplication exact; and the Sent de-duplication itself:
//
//	"users"/<addr>/"sentids"/<Message-ID>  -> <box><uid><stored at, Unix ns>:
//	                                          the latest message with that
//	                                          Message-ID put in addr's \Sent
//	                                          mailbox
//
// The server stores the sender's copy in Sent itself; many clients then
// APPEND their own copy too (Thunderbird and Outlook do unless told not
// to). Such an APPEND, within dedupWindow of the first copy, gets the
// existing copy back and stores nothing, so Sent holds one copy and the
// tracked one (unread until read by all) is the one the client sees. The
// index is per user: another user's Message-ID is never matched.

import (
	"encoding/binary"
	"time"

	"github.com/emersion/go-imap/v2"
)

var bucketSentIDs = []byte("sentids")

const (
	// dedupWindow is how long after the first copy an APPEND of the same
	// message to Sent is taken for the client's duplicate.
	dedupWindow = 24 * time.Hour
	// maxIndexedMessageID: longer Message-IDs (never seen from real
	// clients) are simply not de-duplicated.
	maxIndexedMessageID = 998
)

// indexNew is called by put for each message stored in x.
func (x *boxTx) indexNew(uid imap.UID, metaRec, parsed []byte, flags flagSet) error {
	if x.rec.Name == Inbox && flags.sys&flagSeen == 0 {
		m, err := decodeMeta(metaRec)
		if err != nil {
			return err
		}
		if err := x.indexUnread(uid, m.internalDate, true); err != nil {
			return err
		}
	}
	if x.rec.SpecialUse == imap.MailboxAttrSent {
		if mid := parsedMessageID(parsed); mid != "" {
			b, err := x.u.b.CreateBucketIfNotExists(bucketSentIDs)
			if err != nil {
				return err
			}
			v := make([]byte, 20)
			binary.BigEndian.PutUint64(v, x.id)
			binary.BigEndian.PutUint32(v[8:], uint32(uid))
			binary.BigEndian.PutUint64(v[12:], uint64(time.Now().UnixNano()))
			return b.Put([]byte(mid), v)
		}
	}
	return nil
}

// unindex is called by remove before a message leaves x: an unread
// tracked copy counts as deleted, and the other indexes forget it.
func (x *boxTx) unindex(mb msgBuckets, uid imap.UID, m metaRecord, ev *eventList) error {
	if err := x.untrack(uid, TrackDeleted, nil, ev); err != nil {
		return err
	}
	if m.flags.sys&flagSeen == 0 {
		if err := x.indexUnread(uid, m.internalDate, false); err != nil {
			return err
		}
	}
	if x.rec.SpecialUse == imap.MailboxAttrSent {
		b := x.u.b.Bucket(bucketSentIDs)
		mid := parsedMessageID(mb.parsed.Get(be32(uint32(uid))))
		if b != nil && mid != "" {
			if v := b.Get([]byte(mid)); len(v) == 20 && binary.BigEndian.Uint64(v) == x.id && binary.BigEndian.Uint32(v[8:]) == uint32(uid) {
				return b.Delete([]byte(mid))
			}
		}
	}
	return nil
}

// seenChanged is called by StoreFlags when a client sets or clears \Seen.
func (x *boxTx) seenChanged(uid imap.UID, m metaRecord, seen bool, ev *eventList) error {
	if err := x.indexUnread(uid, m.internalDate, !seen); err != nil {
		return err
	}
	if seen {
		return x.trackSeen(uid, ev)
	}
	return nil
}

// parsedMessageID returns the Message-ID (without angle brackets) from a
// "parsed" record, or "" when there is none usable.
func parsedMessageID(parsed []byte) string {
	env, _, err := decodeParsed(parsed, true, false)
	if err != nil || env == nil || len(env.MessageID) > maxIndexedMessageID {
		return ""
	}
	return env.MessageID
}

// sentDuplicate returns the existing copy when a message with Message-ID
// mid was put in x, a \Sent mailbox, less than dedupWindow before now.
func (x *boxTx) sentDuplicate(mid string, now time.Time) *Appended {
	if mid == "" || x.rec.SpecialUse != imap.MailboxAttrSent {
		return nil
	}
	b := x.u.b.Bucket(bucketSentIDs)
	if b == nil {
		return nil
	}
	v := b.Get([]byte(mid))
	if len(v) != 20 || binary.BigEndian.Uint64(v) != x.id {
		return nil
	}
	uid := binary.BigEndian.Uint32(v[8:])
	stored := time.Unix(0, int64(binary.BigEndian.Uint64(v[12:])))
	if now.Sub(stored) > dedupWindow || stored.After(now.Add(time.Minute)) {
		return nil
	}
	if meta := x.b.Bucket(bucketMsgMeta); meta == nil || meta.Get(be32(uid)) == nil {
		return nil
	}
	return &Appended{MailboxID: x.id, UIDValidity: x.rec.UIDValidity, UID: imap.UID(uid)}
}

// messageID returns the Message-ID of a prepared message, for Append.
func (p *prepared) messageID() string {
	return parsedMessageID(p.parsed)
}
