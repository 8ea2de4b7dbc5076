package storage

// The rules' half of a Store (records.go): New puts a backend's records
// and the mail rules together.

import (
	"context"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Backend is what a storage backend implements: its records (Records:
// transactions over typed records, for the rules) and the Store methods
// that are still the backend's own. Those are record work: they create,
// copy, move, flag and remove messages and mailboxes, calling the rules'
// hooks (hooks.go) inside their transactions where a rule applies. Each
// has the promise of the Store method of the same name.
type Backend interface {
	Records

	DeleteUser(ctx context.Context, address string) error
	Users(ctx context.Context) ([]User, error)

	Mailboxes(ctx context.Context, user string) ([]Mailbox, error)
	Mailbox(ctx context.Context, user, name string) (*Mailbox, error)
	MailboxStatus(ctx context.Context, user, name string) (*MailboxStatus, error)
	CreateMailbox(ctx context.Context, user, name string) error
	DeleteMailbox(ctx context.Context, user, name string) error
	RenameMailbox(ctx context.Context, user, oldName, newName string) error
	SetSubscribed(ctx context.Context, user, name string, subscribed bool) error
	Subscriptions(ctx context.Context, user string) ([]string, error)

	Append(ctx context.Context, user, mailbox string, msg *NewMessage) (*Appended, error)
	AppendMany(ctx context.Context, user, mailbox string, msgs []*NewMessage) ([]*Appended, error)
	Usage(ctx context.Context, user string) (int64, error)
	Quota() int64
	Deliver(ctx context.Context, d *Delivery) (*DeliveryResult, error)
	UIDs(ctx context.Context, user string, mailboxID uint64) ([]imap.UID, error)
	UIDsBefore(ctx context.Context, user string, mailboxID uint64, before imap.UID, limit int) ([]imap.UID, error)
	Messages(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, opts LoadOptions) ([]*Message, error)
	StoreFlags(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag) ([]FlagUpdate, error)
	StoreFlagsUnchangedSince(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, op imap.StoreFlagsOp, flags []imap.Flag, unchangedSince uint64) (updated []FlagUpdate, modified []imap.UID, err error)
	Changes(ctx context.Context, user string, mailboxID uint64, since uint64) (*ChangeSet, error)
	ReadBody(ctx context.Context, user string, mailboxID uint64, uid imap.UID, fn func(body *io.SectionReader) error) error
	Expunge(ctx context.Context, user string, mailboxID uint64, uids []imap.UID) ([]imap.UID, error)
	Copy(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*CopyResult, error)
	Move(ctx context.Context, user string, mailboxID uint64, uids []imap.UID, dest string) (*CopyResult, error)

	QueueEntries(ctx context.Context, f QueueFilter) ([]QueueEntry, error)
	QueueEntry(ctx context.Context, id uint64) (*QueueEntry, error)
	QueueBody(ctx context.Context, id uint64, w io.Writer) (int64, error)
	QueueCounts(ctx context.Context) (QueueCounts, error)
	DueQueueEntries(ctx context.Context, now time.Time, max int) ([]QueueEntry, time.Time, error)
	QueuePageStore
	WebStore

	Listen(fn func(Event))
	Backup(ctx context.Context, w io.Writer) (int64, error)
	Stats(ctx context.Context) (*Stats, error)
	Check(ctx context.Context, repair bool) (*CheckReport, error)
	Close() error
}

// RulesOptions tune the rules.
type RulesOptions struct {
	// PasswordCost is the bcrypt cost for new password hashes; 0 means
	// bcrypt.DefaultCost. Tests lower it to bcrypt.MinCost.
	PasswordCost int
}

// New returns the Store of a backend: its own methods, and the rules
// (Rules) over its records. ErrInvalid for a bad PasswordCost.
func New(b Backend, opts RulesOptions) (Store, error) {
	r, err := NewRules(b, opts)
	if err != nil {
		return nil, err
	}
	return &store{Backend: b, Rules: r}, nil
}

// NewRules returns the rules over r.
func NewRules(r Records, opts RulesOptions) (Rules, error) {
	pw, err := newPasswords(opts.PasswordCost)
	if err != nil {
		return Rules{}, err
	}
	return Rules{Records: r, passwords: pw}, nil
}

type store struct {
	Backend
	Rules
}

// Rules are the Store methods that are mail rules, written once over any
// Records: users and passwords, read tracking, the unread lifetime, the queue's claims with the
// daily limits, holds and alerts, leases, the relay state, retention and
// deletion of entries. Each runs in
// one transaction of Records (UpdateRecords), so it is all-or-nothing on
// every backend.
type Rules struct {
	Records   Records
	passwords *passwords // nil without NewRules: no user methods then
}

// SentStatus implements TrackingStore.
func (r Rules) SentStatus(ctx context.Context, user string) ([]SentMessage, error) {
	return sentStatus(ctx, r.Records, user)
}

// ExpireUnread implements TrackingStore.
func (r Rules) ExpireUnread(ctx context.Context, cutoff time.Time) (int, error) {
	return expireUnread(ctx, r.Records, cutoff)
}

// SentStatusFor implements SentPageStore.
func (r Rules) SentStatusFor(ctx context.Context, user string, mailboxID uint64, uids []imap.UID) (map[imap.UID]SentMessage, error) {
	return sentStatusFor(ctx, r.Records, user, mailboxID, uids)
}

// ClaimQueueEntry implements QueueStore.
func (r Rules) ClaimQueueEntry(ctx context.Context, c QueueClaim) (*QueueClaimed, error) {
	return claimQueueEntry(ctx, r.Records, c)
}

// UpdateQueueEntry implements QueueStore.
func (r Rules) UpdateQueueEntry(ctx context.Context, u QueueUpdate) (*QueueEntry, error) {
	return updateQueueEntry(ctx, r.Records, u)
}

// ResendQueueEntry implements QueueStore.
func (r Rules) ResendQueueEntry(ctx context.Context, id uint64, now time.Time) (*QueueEntry, error) {
	return resendQueueEntry(ctx, r.Records, id, now)
}

// QueueDayCount implements QueueStore.
func (r Rules) QueueDayCount(ctx context.Context, day, user string) (int, int, error) {
	return queueDayCount(ctx, r.Records, day, user)
}

// RelayState implements QueueStore.
func (r Rules) RelayState(ctx context.Context) (string, error) {
	return relayState(ctx, r.Records)
}

// SetRelayState implements QueueStore.
func (r Rules) SetRelayState(ctx context.Context, state string, alert *Notice) (bool, error) {
	return setRelayState(ctx, r.Records, state, alert)
}

// RenewQueueLease implements QueueStore.
func (r Rules) RenewQueueLease(ctx context.Context, lr LeaseRenewal) (*QueueEntry, error) {
	return renewQueueLease(ctx, r.Records, lr)
}

// ReleaseQueueLeases implements QueueStore.
func (r Rules) ReleaseQueueLeases(ctx context.Context, owner string, now, horizon time.Time) (int, error) {
	return releaseQueueLeases(ctx, r.Records, owner, now, horizon)
}

// RemoveSettledQueueEntries implements QueueStore.
func (r Rules) RemoveSettledQueueEntries(ctx context.Context, cutoff time.Time, after uint64) (*QueueRemoved, error) {
	return removeSettledQueueEntries(ctx, r.Records, cutoff, after)
}

// DeleteQueueEntry implements QueueStore.
func (r Rules) DeleteQueueEntry(ctx context.Context, id uint64) error {
	return deleteQueueEntry(ctx, r.Records, id)
}
