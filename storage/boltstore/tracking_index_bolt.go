package boltstore

// The bbolt records of Sent de-duplication and the hooks of the bolt code
// into tracking_index.go:
//
//	"users"/<addr>/"sentids"/<Message-ID>  -> <box><uid><stored at, Unix ns>

import (
	"encoding/binary"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/pochta/pochta/storage"
)

var bucketSentIDs = []byte("sentids")

// SentID implements RecordTx.
func (t boltTx) SentID(user, messageID string) (storage.SentIDEntry, bool, error) {
	u, err := t.user(user)
	if err != nil {
		return storage.SentIDEntry{}, false, err
	}
	b := u.b.Bucket(bucketSentIDs)
	if b == nil {
		return storage.SentIDEntry{}, false, nil
	}
	v := b.Get([]byte(messageID))
	if len(v) != 20 {
		return storage.SentIDEntry{}, false, nil
	}
	return storage.SentIDEntry{
		Mailbox: binary.BigEndian.Uint64(v),
		UID:     imap.UID(binary.BigEndian.Uint32(v[8:])),
		Stored:  time.Unix(0, int64(binary.BigEndian.Uint64(v[12:]))),
	}, true, nil
}

// PutSentID implements RecordTx.
func (t boltTx) PutSentID(user, messageID string, e storage.SentIDEntry) error {
	u, err := t.user(user)
	if err != nil {
		return err
	}
	b, err := u.b.CreateBucketIfNotExists(bucketSentIDs)
	if err != nil {
		return err
	}
	v := make([]byte, 20)
	binary.BigEndian.PutUint64(v, e.Mailbox)
	binary.BigEndian.PutUint32(v[8:], uint32(e.UID))
	binary.BigEndian.PutUint64(v[12:], uint64(e.Stored.UnixNano()))
	return b.Put([]byte(messageID), v)
}

// DeleteSentID implements RecordTx.
func (t boltTx) DeleteSentID(user, messageID string) error {
	u, err := t.user(user)
	if err != nil {
		return nil
	}
	if b := u.b.Bucket(bucketSentIDs); b != nil {
		return b.Delete([]byte(messageID))
	}
	return nil
}

// UIDValidity implements MailboxTx.
func (x *boxTx) UIDValidity() uint32 { return x.rec.UIDValidity }

// indexNew is the hook put calls for each message stored in x.
func (x *boxTx) indexNew(uid imap.UID, metaRec, parsed []byte, flags flagSet) error {
	m := storage.StoredMessage{UID: uid, Seen: flags.sys&flagSeen != 0}
	if x.rec.Name == storage.Inbox && !m.Seen {
		meta, err := decodeMeta(metaRec)
		if err != nil {
			return err
		}
		m.InternalDate = meta.internalDate
	}
	if x.rec.SpecialUse == imap.MailboxAttrSent {
		m.MessageID = parsedMessageID(parsed)
	}
	return storage.MessageStored(x.records(), x, m, time.Now())
}

// unindex is the hook remove calls before a message leaves x.
func (x *boxTx) unindex(mb msgBuckets, uid imap.UID, m metaRecord, ev *eventList) error {
	sm := storage.StoredMessage{UID: uid, InternalDate: m.internalDate, Seen: m.flags.sys&flagSeen != 0}
	if x.rec.SpecialUse == imap.MailboxAttrSent {
		sm.MessageID = parsedMessageID(mb.parsed.Get(be32(uint32(uid))))
	}
	return storage.MessageRemoving(x.records(), x, sm, ev)
}

// seenChanged is the hook StoreFlags calls when a client sets or clears
// \Seen.
func (x *boxTx) seenChanged(uid imap.UID, m metaRecord, seen bool, ev *eventList) error {
	return storage.SeenChanged(x.records(), x, uid, m.internalDate, seen, ev)
}

// sentDuplicate is Append's hook into the Sent de-duplication.
func (x *boxTx) sentDuplicate(mid string, now time.Time) (*storage.Appended, error) {
	return storage.SentDuplicate(x.records(), x, mid, now)
}

// parsedMessageID returns the Message-ID (without angle brackets) from a
// "parsed" record, or "" when there is none (the rules decide whether it
// is usable).
func parsedMessageID(parsed []byte) string {
	env, _, err := decodeParsed(parsed, true, false)
	if err != nil || env == nil {
		return ""
	}
	return env.MessageID
}

// messageID returns the Message-ID of a prepared message, for Append.
func (p *prepared) messageID() string {
	return parsedMessageID(p.parsed)
}
