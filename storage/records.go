package storage

// The two layers of the store (issue 11): records and rules.
//
// A backend owns records: it stores typed values (users, mailboxes and
// their counters, messages and flags, the change feed, queue rows and
// their counters, tracking records and the indexes that find them) and
// runs a function with a RecordTx as ONE transaction, all of it committed
// or none. It knows nothing of what the values mean.
//
// The rules are pochta's mail behaviour on top of the records, written
// once against RecordTx and MailboxTx, never importing a database package:
//   - users and passwords: the password policy, bcrypt hashes, an unknown
//     user costing as much as a wrong password, the four mailboxes every
//     user has (users.go);
//   - read tracking (tracking.go, sentpage.go), with the hooks every
//     store, removal, \Seen change, move and deletion calls (hooks.go,
//     tracking_index.go);
//   - the unread lifetime and its index (expiry.go);
//   - Sent de-duplication of a client's APPEND (tracking_index.go);
//   - the queue's claims with the daily limits, holds and once-a-day
//     alerts, the uncount of an attempt that relayed nothing, resends,
//     leases and the relay state with its alert (queue_rules.go,
//     queue_lease.go), retention and deletion of entries
//     (queue_retention.go), and what a delivery's queue entry says: its
//     recipients, grouped by header, and the header summary
//     (queue_entry.go).
//
// A rule that changes several records (a delivery and its tracking record,
// a recipient settling and the sender's copy turning \Seen, a claim and
// its day counters) runs inside the one RecordTx of the write that causes
// it, so a backend's all-or-nothing commit makes the rule all-or-nothing.
//
// Still written inside the backend (storage/boltstore), as record work
// that calls the hooks: mailbox creation, rename and deletion (protected
// names, parents, UIDNEXT kept across re-creation), flag parsing and
// STORE semantics, quota checks, how Deliver lays out its copies, the
// change feed and its tombstone sweep, check/quarantine, the user
// list and deletion, and web sessions. A new backend implements Backend: Records
// plus those methods.

import (
	"context"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Records is what a backend implements: transactions over its records.
type Records interface {
	// ViewRecords runs fn in a read transaction that sees one commit.
	ViewRecords(ctx context.Context, fn func(tx RecordTx) error) error
	// UpdateRecords runs fn in a write transaction and commits it: fn's
	// changes and the events it adds are all kept, or (fn or the commit
	// failed) none. The events reach the Listen listeners after the commit,
	// in commit order, before UpdateRecords returns. size is the message
	// bytes fn writes, for the backend's batching (group commit). fn may
	// be run more than once (after a rollback), so it must be a pure
	// function of tx: results assigned, not accumulated.
	UpdateRecords(ctx context.Context, size int, fn func(tx RecordTx, ev *Events) error) error
	// PrepareNotices parses and encodes notices before their transaction
	// (parsing is slow work that must not hold the writer); size is their
	// message bytes, for UpdateRecords. Notices without recipients are
	// left out.
	PrepareNotices(ns []*Notice, now time.Time) (list []PreparedNotice, size int, err error)
}

// RecordTx is one transaction of a backend: typed reads and writes of
// records. A method returns ErrNotFound (wrapped) for a user or mailbox
// that does not exist, and only database errors otherwise; what a record
// means is the rules' business.
type RecordTx interface {
	// UserRecord returns a user's record. ErrNotFound if no such user.
	UserRecord(address string) (*UserRecord, error)
	// CreateUserRecord creates a user (with no mailboxes). ErrExists if
	// the address is taken.
	CreateUserRecord(rec *UserRecord) error
	// PutUserRecord replaces a user's record. ErrNotFound if no such user.
	PutUserRecord(rec *UserRecord) error
	// CreateMailbox creates one mailbox of user (not its parents) with a
	// new UIDVALIDITY; a name used before continues from the UIDNEXT it
	// had. It returns the mailbox's ID.
	CreateMailbox(user, name string, attr imap.MailboxAttr, subscribed bool, now time.Time) (uint64, error)

	// Mailbox opens a user's mailbox by ID for the rest of the
	// transaction. ErrNotFound if the user or the mailbox is gone.
	Mailbox(user string, id uint64) (MailboxTx, error)

	// TrackingRecord returns a read-tracking record; ok is false when it
	// is missing or cannot be decoded (the rules drop what points at it).
	TrackingRecord(id uint64) (rec *TrackingRecord, ok bool)
	// NewTrackingID issues the ID of a new tracking record (never reused).
	NewTrackingID() (uint64, error)
	// PutTrackingRecord stores (creates or replaces) a tracking record.
	PutTrackingRecord(id uint64, rec *TrackingRecord) error
	// DeleteTrackingRecord removes a tracking record; absent is no error.
	DeleteTrackingRecord(id uint64) error

	// TrackedID returns the tracking record that follows message uid of
	// user's mailbox box (the "tracked" index). ErrNotFound if no such
	// user.
	TrackedID(user string, box uint64, uid imap.UID) (id uint64, ok bool, err error)
	// SetTracked indexes (user, box, uid) under tracking record id.
	// ErrNotFound if the user is gone.
	SetTracked(user string, box uint64, uid imap.UID, id uint64) error
	// DeleteTracked removes the index entry of (user, box, uid); an absent
	// entry or user is no error.
	DeleteTracked(user string, box uint64, uid imap.UID) error
	// TrackedUIDs returns the UIDs of box that the index has, ascending.
	TrackedUIDs(user string, box uint64) ([]imap.UID, error)
	// TrackedMessages returns every message of user that the index has.
	TrackedMessages(user string) ([]MessageRef, error)

	// SentLog returns the IDs of the tracking records user has sent,
	// oldest first. ErrNotFound if no such user.
	SentLog(user string) ([]uint64, error)
	// AddSentLog adds id to user's sent log. ErrNotFound if no such user.
	AddSentLog(user string, id uint64) error
	// DeleteSentLog removes id from user's sent log; an absent entry or
	// user is no error.
	DeleteSentLog(user string, id uint64) error

	// SentID returns the Sent de-duplication entry of a Message-ID in
	// user's index (tracking_index.go). ErrNotFound if no such user.
	SentID(user, messageID string) (e SentIDEntry, ok bool, err error)
	// PutSentID stores (replaces) the entry of a Message-ID.
	PutSentID(user, messageID string, e SentIDEntry) error
	// DeleteSentID removes the entry of a Message-ID; absent is no error.
	DeleteSentID(user, messageID string) error

	// QueueEntry returns one queue entry without its body. ErrNotFound
	// names the ID.
	QueueEntry(id uint64) (*QueueEntry, error)
	// SaveQueueEntry writes e (old is the stored state) with Rev
	// incremented; the backend keeps its indexes of the queue (due time,
	// counts by status, listing) in step and reports recipients whose
	// state changed to read tracking (setExternalState).
	SaveQueueEntry(old, e *QueueEntry, ev *Events) error
	// QueueEntriesAfter returns up to max entries (without bodies) with
	// IDs above after, ascending.
	QueueEntriesAfter(after uint64, max int) ([]*QueueEntry, error)
	// RemoveQueueEntry removes an entry and its body, with the backend's
	// indexes of it.
	RemoveQueueEntry(e *QueueEntry) error
	// QueueHeader returns the header section of an entry's stored message.
	QueueHeader(id uint64) (string, error)
	// QueueDueBetween returns the IDs of the entries due (QueueEntry's
	// next attempt or the end of its lease; held: held until) between
	// from and to, both included, earliest first.
	QueueDueBetween(from, to time.Time) ([]uint64, error)
	// DayCount is the messages counted toward day's limit of user ("":
	// the system's).
	DayCount(day, user string) (int, error)
	// AddDayCount adds delta to a day's count (a count never goes below 0).
	AddDayCount(day, user string, delta int) error
	// PruneDayCounts drops the counts of the days before keep.
	PruneDayCounts(keep string) error
	// Alerted reports whether day's limit alert of user ("": the
	// system's) has gone out; SetAlerted records that it has.
	Alerted(day, user string) (bool, error)
	SetAlerted(day, user string) error
	// PruneAlerted drops the alert marks of the days before keep.
	PruneAlerted(keep string) error
	// RelayState and SetRelayState are the relay's health as last
	// recorded ("" = up).
	RelayState() (string, error)
	SetRelayState(state string) error
	// DeliverNotices appends prepared notices (Records.PrepareNotices) to
	// their recipients' INBOXes; recipients that are not users are
	// skipped.
	DeliverNotices(ns []PreparedNotice, ev *Events) error

	// PutUnread adds an entry to the unread index (expiry.go).
	PutUnread(e UnreadEntry) error
	// DeleteUnread removes an entry of the unread index; absent is no
	// error.
	DeleteUnread(e UnreadEntry) error
	// UnreadBefore returns up to max entries of the unread index with a
	// Date below limit, oldest first.
	UnreadBefore(limit uint64, max int) ([]UnreadEntry, error)
}

// MailboxTx is one mailbox inside a RecordTx. The backend keeps its
// counters (messages, unseen, size, HIGHESTMODSEQ) in memory while the
// transaction changes it; Save writes them.
type MailboxTx interface {
	// User is the owner's address (lower case); ID the mailbox's ID.
	User() string
	ID() uint64
	// Name is the mailbox's (normalized) name.
	Name() string
	// UIDValidity is the mailbox's UIDVALIDITY.
	UIDValidity() uint32
	// SpecialUse is the mailbox's RFC 6154 attribute, or "".
	SpecialUse() imap.MailboxAttr
	// MessageInfo returns the fixed fields of one message; ok is false
	// when it is gone (or its record cannot be decoded).
	MessageInfo(uid imap.UID) (m MessageInfo, ok bool, err error)
	// Remove deletes one message (its record, its body reference, its
	// change: a tombstone takes the next modseq), keeps the counters and
	// adds EventExpunge to ev; the backend calls the rules' removal hook
	// first. It reports false when the message was already gone.
	Remove(uid imap.UID, ev *Events) (bool, error)
	// SetSeen adds \Seen to one message on the server's own account: the
	// message takes the mailbox's next modseq, the counters follow, and an
	// EventFlags without origin is added to ev. It reports false (and
	// changes nothing) when the message is gone or already \Seen.
	SetSeen(uid imap.UID, ev *Events) (bool, error)
	// Save writes the mailbox's record (its counters).
	Save() error
}

// MessageRef names one message of a user: its mailbox and UID.
type MessageRef struct {
	Mailbox uint64
	UID     imap.UID
}

// UnreadEntry is one entry of the unread index: an INBOX message without
// \Seen. Date is its internal date as UnreadDate orders it.
type UnreadEntry struct {
	Date    uint64
	User    string
	Mailbox uint64
	UID     imap.UID
}

// MessageInfo are the fixed fields of a stored message.
type MessageInfo struct {
	InternalDate time.Time
	Seen         bool
	Size         int64
	ModSeq       uint64
}

// SentIDEntry is the Sent de-duplication index's entry of one Message-ID:
// the message last stored with it in a \Sent mailbox, and when.
type SentIDEntry struct {
	Mailbox uint64
	UID     imap.UID
	Stored  time.Time
}

// PreparedNotice is a Notice made ready for RecordTx.DeliverNotices by the
// backend that prepared it: recipients lower-cased and unique, the message
// parsed and encoded.
type PreparedNotice struct {
	Recipients []string
	Message    PreparedMessage
}

// PreparedMessage is a message encoded by a backend, opaque to the rules.
type PreparedMessage interface {
	// Size is the message's length in bytes.
	Size() int
}
