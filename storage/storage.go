// Package storage is the contract of pochta's persistent state (users,
// mailboxes, messages, flags, UIDs, the outbound queue, read tracking) and
// the mail rules on top of it. Every other package speaks the Store
// interface below; no database is imported here.
//
// The store has two layers (records.go). A backend (storage/boltstore for
// bbolt) owns the records and their encodings, and implements Backend:
// transactions over typed records (Records, RecordTx, MailboxTx) plus the
// Store methods that are record work, which call the rules' hooks
// (hooks.go) inside their transactions. This package owns the rules
// written once for every backend (Rules: users and passwords, read
// tracking, the unread lifetime, Sent de-duplication, the queue's daily
// limits, holds, alerts, leases and retention) and New, which puts a
// backend and the rules together into a Store. Every promise below holds for every backend; TestConformance
// (storage/storagetest) checks them.
//
// Promises:
//   - Durability: a call that writes returns nil only after its transaction
//     is committed and on disk. Deliver writes every copy of a message, its
//     tracking record and its queue entry in one transaction: all of them
//     are stored, or none. So does every rule: it runs in the one
//     transaction of the write that causes it.
//   - Group commit: concurrent writes may be combined into shared
//     transactions (bbolt: one fsync for many callers, by a single writer
//     goroutine); a failing write never fails the others.
//   - Ordered events: after each commit, the events of that commit are passed
//     to the listeners registered with Listen, on the writer goroutine, in
//     commit order. Listeners must not block and must not call back into the
//     Store's write methods.
//   - UIDs are strictly ascending inside a mailbox and never reused; a mailbox
//     that is deleted and created again gets a new UIDVALIDITY.
//   - Reads return copies: nothing returned aliases the database's memory.
//   - Isolation between users: every method takes the user's address and only
//     ever touches that user's mailboxes.
//   - Queue leases: a claimed queue entry is leased to one owner until its
//     lease runs out or its attempt is recorded; no other claim takes it
//     meanwhile, from this handle or another (queue_lease.go). Settled
//     entries are removed in bounded batches.
//   - Modification sequences (RFC 7162): every change to a message (arrival,
//     flags, expunge) and to a mailbox (rename, subscription) takes the next
//     value of the mailbox's HIGHESTMODSEQ, which only grows, is never
//     reused, and survives restarts and renames (a mailbox created again has
//     a new UIDVALIDITY and starts again). Each message keeps the modseq of
//     its last change.
//   - The change feed: Changes answers "what changed in this mailbox since
//     modseq N" from an index ordered by modseq, touching only the changes.
//     Expunged UIDs are kept as (UID, modseq) tombstones for
//     TombstoneLifetime; a reader asking about older changes is told that the
//     vanished list is incomplete (ChangeSet.VanishedIncomplete), never given
//     a silently short one.
//   - Events are hints: a listener that missed some (or runs in another
//     process) re-reads the feed from the ModSeq it last saw.
//
// Mailbox names use "/" as the hierarchy delimiter. "INBOX" is matched
// case-insensitively, every other name exactly.
package storage

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/imapd/envelope"
)

// Errors returned by Store methods; test them with errors.Is.
var (
	// ErrNotFound: the user, mailbox or message does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: the user or mailbox already exists.
	ErrExists = errors.New("already exists")
	// ErrProtected: the mailbox is one of INBOX, Sent, Drafts, Trash and
	// cannot be deleted or renamed.
	ErrProtected = errors.New("mailbox is protected")
	// ErrAuthFailed: unknown user or wrong password (deliberately the same).
	ErrAuthFailed = errors.New("authentication failed")
	// ErrInvalid: a name, address or value that cannot be stored.
	ErrInvalid = errors.New("invalid value")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store closed")
)

// Names of the mailboxes every user has from creation on.
const (
	Inbox  = "INBOX"
	Sent   = "Sent"
	Drafts = "Drafts"
	Trash  = "Trash"
)

// Store is pochta's persistent state. Implementations are safe for
// concurrent use.
type Store interface {
	TrackingStore
	QueueStore     // the outbound queue (queue.go)
	QueuePageStore // paged listing of the queue (queuepage.go)
	SentPageStore  // tracking records of one page of Sent (sentpage.go)
	WebStore       // web sessions and preferences (websessions.go)

	// CreateUser creates a user with the mailboxes INBOX, Sent, Drafts and
	// Trash. The address is stored lower-cased. ErrExists if present.
	CreateUser(ctx context.Context, address, password string, admin bool) error
	// SetPassword replaces a user's password. ErrNotFound if no such user.
	SetPassword(ctx context.Context, address, password string) error
	// DeleteUser removes a user with all their mailboxes and messages.
	DeleteUser(ctx context.Context, address string) error
	// User returns one user. ErrNotFound if no such user.
	User(ctx context.Context, address string) (*User, error)
	// Users returns every user, ordered by address.
	Users(ctx context.Context) ([]User, error)
	// Authenticate checks a password. ErrAuthFailed for an unknown user or a
	// wrong password.
	Authenticate(ctx context.Context, address, password string) (*User, error)
	// SetSettings stores a user's settings. ErrNotFound if no such user.
	SetSettings(ctx context.Context, address string, s Settings) error

	// Mailboxes lists a user's mailboxes ordered by name.
	Mailboxes(ctx context.Context, user string) ([]Mailbox, error)
	// Mailbox returns one mailbox by name. ErrNotFound if absent.
	Mailbox(ctx context.Context, user, name string) (*Mailbox, error)
	// MailboxStatus returns a mailbox with its counters (O(1): the counters
	// are kept up to date by every write).
	MailboxStatus(ctx context.Context, user, name string) (*MailboxStatus, error)
	// CreateMailbox creates a mailbox (and any missing parents). ErrExists
	// if it exists, ErrInvalid for a bad name.
	CreateMailbox(ctx context.Context, user, name string) error
	// DeleteMailbox deletes a mailbox and its messages (not its children).
	// ErrProtected for INBOX, Sent, Drafts, Trash.
	DeleteMailbox(ctx context.Context, user, name string) error
	// RenameMailbox renames a mailbox and its children, keeping IDs,
	// UIDVALIDITY and messages. ErrProtected for INBOX, Sent, Drafts, Trash;
	// ErrExists if newName is taken.
	RenameMailbox(ctx context.Context, user, oldName, newName string) error
	// SetSubscribed adds a mailbox to the user's subscription list
	// (ErrNotFound if it does not exist) or removes a name from it (also
	// the name of a deleted mailbox). Subscriptions are kept by name:
	// DELETE leaves the name subscribed, RENAME moves it (RFC 3501 6.3.6).
	SetSubscribed(ctx context.Context, user, name string, subscribed bool) error
	// Subscriptions returns the user's subscribed names, ordered, including
	// those whose mailbox no longer exists (RFC 5258 \NonExistent).
	Subscriptions(ctx context.Context, user string) ([]string, error)

	// Append stores one message in a mailbox.
	Append(ctx context.Context, user, mailbox string, msg *NewMessage) (*Appended, error)
	// AppendMany stores msgs in a mailbox in one transaction (MULTIAPPEND,
	// RFC 3502): all of them, under ascending UIDs in the order given, or
	// none. A message the Sent de-duplication recognises (as Append does)
	// is not stored again: its entry is the copy already there.
	AppendMany(ctx context.Context, user, mailbox string, msgs []*NewMessage) ([]*Appended, error)
	// Usage is the sum of the sizes of the user's messages, all mailboxes.
	Usage(ctx context.Context, user string) (int64, error)
	// Quota is the bytes each user may keep (Options.Quota); 0: no limit.
	Quota() int64
	// Deliver stores all copies of one submitted message in one transaction.
	Deliver(ctx context.Context, d *Delivery) (*DeliveryResult, error)
	// UIDs returns the UIDs of a mailbox, ascending.
	UIDs(ctx context.Context, user string, mailboxID uint64) ([]imap.UID, error)
	// UIDsBefore returns up to limit UIDs below before (0: from the
	// newest), descending; it reads only that page of the index.
	UIDsBefore(ctx context.Context, user string, mailboxID uint64, before imap.UID, limit int) ([]imap.UID, error)
	// Messages loads the given messages (those that still exist, in the
	// order of uids); what is loaded besides the fixed fields is chosen by
	// opts. Callers load in chunks (a few hundred) to bound memory.
	Messages(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, opts LoadOptions) ([]*Message, error)
	// StoreFlags changes flags and returns the messages whose flags changed,
	// with their new flags and modseqs.
	StoreFlags(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag) ([]FlagUpdate, error)
	// StoreFlagsUnchangedSince is StoreFlags with RFC 7162's UNCHANGEDSINCE
	// (3.1.3): a message whose modseq is above unchangedSince is left alone
	// and its UID returned in modified (ascending; the MODIFIED response
	// code). The test and the change are one transaction.
	StoreFlagsUnchangedSince(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag, unchangedSince uint64) (updated []FlagUpdate, modified []imap.UID, err error)
	// Changes returns what changed in a mailbox after modseq since: the
	// messages whose last change is later (with flags and modseq), the UIDs
	// expunged later, and the current HIGHESTMODSEQ. It reads only the
	// index entries after since, not the whole mailbox.
	Changes(ctx context.Context, user string, mailboxID uint64, since uint64) (*ChangeSet, error)
	// ReadBody calls fn with a reader over one message's stored bytes
	// (feed.go has the rules): the body is read in bounded chunks, each in
	// its own short read transaction, so a large message is never copied
	// whole and a slow reader never holds the database. ErrNotFound if the
	// message does not exist.
	ReadBody(ctx context.Context, user string, mailboxID uint64, uid imap.UID, fn func(body *io.SectionReader) error) error
	// Expunge removes the messages flagged \Deleted; when uids is non-nil,
	// only those among them. It returns the removed UIDs, ascending.
	Expunge(ctx context.Context, user string, mailboxID uint64, uids []imap.UID) ([]imap.UID, error)
	// Copy copies messages into the mailbox named dest.
	Copy(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*CopyResult, error)
	// Move moves messages into dest in one transaction (copy and expunge).
	Move(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*CopyResult, error)

	// Listen registers fn to receive every event after its commit, in commit
	// order, on the writer goroutine. fn must return quickly.
	Listen(fn func(Event))
	// Backup writes a consistent copy of the whole database to w while the
	// store keeps serving.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// Stats returns store-wide figures.
	Stats(ctx context.Context) (*Stats, error)
	// Check reads every user, mailbox and message record and reports those
	// it cannot decode; with repair it moves the bad messages into a
	// quarantine nothing serves (storage/boltstore/check.go).
	Check(ctx context.Context, repair bool) (*CheckReport, error)
	// Close waits for pending writes and closes the database.
	Close() error
}

// TrackingStore is read tracking ("not delivered") and the unread
// lifetime: the message server's own behaviour on top of plain mail
// (tracking.go, expiry.go).
type TrackingStore interface {
	// SentStatus returns the read-tracking records of the messages user has
	// sent, oldest first. A record lives as long as the sender's copy, or
	// while a recipient is still pending. ErrNotFound if no such user.
	SentStatus(ctx context.Context, user string) ([]SentMessage, error)
	// ExpireUnread deletes every INBOX message without \Seen whose internal
	// date is before cutoff, publishing EventExpunge for each; a tracked
	// copy's recipient becomes TrackExpired. It returns how many it deleted.
	// It costs one small read when nothing is due.
	ExpireUnread(ctx context.Context, cutoff time.Time) (int, error)
}

// Read-tracking states of one recipient of a sent message. Local
// recipients start TrackUnread, external ones TrackQueued; those two are
// "pending" (the seed's "Not delivered"), the others are final.
const (
	TrackUnread  = "unread"  // the copy is in the recipient's mailbox without \Seen
	TrackRead    = "read"    // the copy got \Seen
	TrackDeleted = "deleted" // the copy was expunged unread
	TrackExpired = "expired" // the copy outlived message_lifetime unread
	TrackQueued  = "queued"  // waiting in the outbound queue
	TrackRelayed = "relayed" // the relay accepted it
	TrackFailed  = "failed"  // the queue gave up
)

// SentMessage is the read-tracking record of one submitted message.
type SentMessage struct {
	ID         uint64          `json:"id"`
	MessageID  string          `json:"message_id"`
	Subject    string          `json:"subject"`
	Date       time.Time       `json:"date"`
	Recipients []SentRecipient `json:"recipients"`
}

// SentRecipient is one recipient's state in a SentMessage.
type SentRecipient struct {
	Address  string    `json:"address"`
	External bool      `json:"external"`
	State    string    `json:"state"`
	Changed  time.Time `json:"changed"`
}

// Pending reports whether the recipient has not read (local) or not been
// handed to the relay (external) yet.
func (r SentRecipient) Pending() bool {
	return r.State == TrackUnread || r.State == TrackQueued
}

// User is an account. Its address is its login.
type User struct {
	Address  string    `json:"address"`
	Admin    bool      `json:"admin"`
	Created  time.Time `json:"created"`
	Settings Settings  `json:"settings"`
}

// Settings are per-user values kept on the server.
type Settings struct {
	// PollInterval is the client's check interval; 0 means the server's
	// default ([message_server] poll_interval).
	PollInterval time.Duration `json:"poll_interval"`
}

// Mailbox is a folder of one user.
type Mailbox struct {
	ID          uint64
	Name        string
	SpecialUse  imap.MailboxAttr // imap.MailboxAttrSent etc., or ""
	UIDValidity uint32
	UIDNext     imap.UID
	Subscribed  bool
}

// MailboxStatus is a mailbox with its counters.
type MailboxStatus struct {
	Mailbox
	Messages uint32
	Unseen   uint32
	Size     int64 // sum of the messages' sizes in bytes
	// HighestModSeq is the modseq of the mailbox's latest change (RFC 7162
	// HIGHESTMODSEQ); 1 for a mailbox nothing has happened to yet.
	HighestModSeq uint64
}

// NewMessage is a message to store. Envelope and BodyStructure may be given
// by a caller that has already parsed the message; when nil they are
// computed from Raw. Either way they are stored, so FETCH never re-parses.
type NewMessage struct {
	Raw           []byte
	Flags         []imap.Flag
	InternalDate  time.Time // zero: now
	Envelope      *envelope.Envelope
	BodyStructure imap.BodyStructure
}

// Appended says where a message was stored.
type Appended struct {
	MailboxID   uint64
	UIDValidity uint32
	UID         imap.UID
}

// Delivery is one submitted message: a copy for each local recipient's INBOX
// and, when Sender is set, the sender's copy in their Sent folder.
type Delivery struct {
	// Sender is the local user who submitted the message ("" for mail from
	// the trusted inbound port): they get SentCopy in Sent. When there are
	// recipients the message is read-tracked and SentCopy is stored without
	// \Seen whatever its Flags say; the store sets \Seen once no recipient
	// is pending (see TrackingStore).
	Sender   string
	SentCopy *NewMessage
	// Recipients are local users; each gets Copy in their INBOX. Unknown
	// recipients fail the whole delivery with ErrNotFound.
	Recipients []string
	Copy       *NewMessage

	// From is the envelope sender (MAIL FROM); "" is the null sender.
	From string
	// Source is SourceUser (submitted by a user) or SourceSystem (the
	// trusted inbound port, or the server itself).
	Source string
	// External recipients are outside the local domains: together they
	// become one queue entry, written in the same transaction, that relays
	// RelayCopy (Bcc removed, no Return-Path).
	External  []string
	RelayCopy *NewMessage
	// MessageID and Subject identify the message in read tracking
	// (`pochta sent status`); MessageID is never empty for mail from smtpd.
	MessageID string
	Subject   string
}

// DeliveryResult says where each copy went.
type DeliveryResult struct {
	Sent   *Appended            // nil without Sender
	Copies map[string]*Appended // by recipient address
	// QueueID is the queue entry of the external recipients (0: none).
	QueueID uint64
	// TrackingID is the read-tracking record of the message (0: none).
	TrackingID uint64
}

// Sources of a delivery and of a queue entry.
const (
	SourceUser   = "user"
	SourceSystem = "system"
)

// LoadOptions chooses what Messages loads beyond UID, flags, date and size.
type LoadOptions struct {
	Envelope      bool
	BodyStructure bool
	Body          bool // the raw message
	// BodyMax, when positive, limits Body to the messages of at most
	// BodyMax bytes; larger ones come back with Body nil, for the caller
	// to stream with ReadBody instead of holding them whole.
	BodyMax int64
	// Header loads Message.Header, the start of the raw message up to
	// and including the empty line that ends its header (all of it when
	// no line is empty): what header SEARCH criteria read, without
	// copying the body.
	Header bool
}

// Message is one stored message.
type Message struct {
	UID           imap.UID
	Flags         []imap.Flag
	InternalDate  time.Time
	Size          int64
	Envelope      *envelope.Envelope // when loaded
	BodyStructure imap.BodyStructure // when loaded
	Body          []byte             // when loaded
	Header        []byte             // when loaded (see LoadOptions.Header)
	ModSeq        uint64             // of the message's last change
}

// FlagUpdate is one message's flags after a StoreFlags, or a changed
// message in a ChangeSet.
type FlagUpdate struct {
	UID    imap.UID
	Flags  []imap.Flag
	ModSeq uint64
}

// ChangeSet is what changed in one mailbox after a modseq (Store.Changes).
type ChangeSet struct {
	// HighestModSeq is the mailbox's current HIGHESTMODSEQ: the value to
	// ask from next time.
	HighestModSeq uint64
	// Changed are the messages whose last change (arrival or flags) is
	// after the modseq asked about, ascending by UID. It is always
	// complete.
	Changed []FlagUpdate
	// Vanished are the UIDs expunged after the modseq asked about,
	// ascending.
	Vanished []imap.UID
	// VanishedIncomplete: some expunges after the modseq asked about are
	// no longer known (their tombstones were swept after
	// TombstoneLifetime, or they predate the feed). Vanished is then only
	// part of them; a QRESYNC reader must fall back to comparing UIDs.
	VanishedIncomplete bool
}

// TombstoneLifetime is how long an expunged UID is remembered for
// Changes; a sweep (at Open, then hourly) removes older tombstones.
const TombstoneLifetime = 30 * 24 * time.Hour

// CopyResult maps source UIDs to the UIDs of the copies.
type CopyResult struct {
	UIDValidity uint32
	SourceUIDs  []imap.UID
	DestUIDs    []imap.UID
}

// Stats are store-wide figures for `pochta status`.
type Stats struct {
	Path     string
	Size     int64
	Users    int
	Messages int
}

// EventKind says what changed.
type EventKind int

// Event kinds.
const (
	// EventAppend: a message was added (UID, Flags set).
	EventAppend EventKind = iota + 1
	// EventFlags: a message's flags changed (UID, Flags set).
	EventFlags
	// EventExpunge: a message was removed (UID set).
	EventExpunge
	// EventMailboxes: the user's mailbox list changed (created, deleted,
	// renamed); MailboxID is the affected mailbox. A deleted mailbox also
	// gets this event: sessions that have it selected should end.
	EventMailboxes
	// EventQueued: a queue entry was queued or resent and is due now
	// (QueueID set; User and MailboxID are empty). The queue wakes on it.
	EventQueued
	// EventTracking: a recipient of a user's sent message settled (read,
	// relayed, failed...), so its "not delivered" list changed (User is the
	// sender, TrackingID the record; MailboxID and UID the Sent copy while
	// it exists). The web interface's `sent` event.
	EventTracking
	// EventAccount: a user's password changed, or the user was deleted
	// (Deleted set). A node drops its cached logins of User on it (and
	// ends a deleted user's sessions): on a store several nodes share,
	// the change may have been made on another node.
	EventAccount
)

// Event is one committed change, published to listeners in commit order.
// It is a hint: what it says is also in the feed (Changes), which a
// listener that missed events re-reads from the last ModSeq it saw.
type Event struct {
	Kind      EventKind
	User      string
	MailboxID uint64
	UID       imap.UID
	Flags     []imap.Flag
	// ModSeq is the mailbox's modseq after the change (0 for a deleted
	// mailbox and for EventQueued).
	ModSeq uint64
	// Origin is what the writer put in its context with WithOrigin (an
	// IMAP session uses it to skip echoing its own changes); the zero
	// Origin for writes nobody tagged.
	Origin Origin
	// QueueID is the queue entry of an EventQueued.
	QueueID uint64
	// TrackingID is the read-tracking record of an EventTracking.
	TrackingID uint64
	// Deleted: the EventAccount is the user's deletion.
	Deleted bool
}

// Origin names the writer of a change: a node (a pochta process; "" when
// there is one) and a session on it. It is a plain comparable value, so it
// can be compared, logged and sent to another process.
type Origin struct {
	Node    string
	Session uint64
}

// IsZero reports whether o is the origin of untagged writes.
func (o Origin) IsZero() bool { return o == Origin{} }

type originKey struct{}

// WithOrigin marks writes made with ctx as coming from origin; the events
// they cause carry it.
func WithOrigin(ctx context.Context, origin Origin) context.Context {
	return context.WithValue(ctx, originKey{}, origin)
}

// OriginOf returns the origin set by WithOrigin, or the zero Origin.
func OriginOf(ctx context.Context) Origin {
	o, _ := ctx.Value(originKey{}).(Origin)
	return o
}

// IsProtected reports whether a mailbox name is one of the four every user
// keeps (INBOX matched case-insensitively).
func IsProtected(name string) bool {
	switch name {
	case Sent, Drafts, Trash:
		return true
	}
	return strings.EqualFold(name, Inbox)
}
