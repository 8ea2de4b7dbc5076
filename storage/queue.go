package storage

// The outbound queue's contract: its entries, the claims and updates the
// queue package makes, and QueueStore. The rules are in queue_rules.go and
// queue_lease.go; a backend keeps the records.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Statuses of a queue entry.
const (
	QueueOutbox = "outbox" // waiting or retrying
	QueueHeld   = "held"   // over a daily limit, goes out the following day
	QueueSent   = "sent"   // every recipient accepted by the relay
	QueueFailed = "failed" // nobody pending, at least one recipient failed
)

// QueueStatuses are the statuses in the order the CLI shows them.
var QueueStatuses = []string{QueueOutbox, QueueHeld, QueueSent, QueueFailed}

// QueueSources are the sources of queue entries.
var QueueSources = []string{SourceUser, SourceSystem}

// States of one recipient of a queue entry.
const (
	RcptPending = "pending" // not settled: tried again at the next attempt
	RcptSent    = "sent"    // the relay accepted it (2xx)
	RcptFailed  = "failed"  // refused for good (5xx) or out of attempts
)

// Limits named by QueueClaimed.Held.
const (
	LimitSystem = "system"
	LimitUser   = "user"
)

// QueueEntry is one message waiting for, or done with, the relay. Its JSON
// form is what `pochta queue list --json` prints (SPEC.md "Queue").
type QueueEntry struct {
	ID     uint64 `json:"id"`
	Status string `json:"status"`
	Source string `json:"source"`
	// User is the local user who submitted it ("" for system mail).
	User string `json:"user"`
	// From is the envelope sender ("" is the null sender).
	From string `json:"from"`
	// To, Cc and Bcc are the entry's recipients grouped by the header field
	// that names them; a recipient named in no field (a blind copy of
	// mail without a Bcc field) is listed under Bcc.
	To        []string  `json:"to"`
	Cc        []string  `json:"cc"`
	Bcc       []string  `json:"bcc"`
	Subject   string    `json:"subject"`
	MimeType  string    `json:"mime_type"`
	MessageID string    `json:"message_id"`
	Date      time.Time `json:"date"` // queued at
	// Attempts counts the attempts that reached the relay; an attempt on an
	// unreachable relay is not counted.
	Attempts int        `json:"attempts"`
	Sent     bool       `json:"sent"`
	SentOn   *time.Time `json:"sent_on"`
	// Error is the relay's last failure reply, verbatim ("" after an
	// attempt without failures).
	Error       string    `json:"error"`
	Size        int64     `json:"size"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	HeldUntil   time.Time `json:"held_until,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// Recipients carry their own state; only pending ones are tried.
	Recipients []QueueRecipient `json:"recipients"`
	// DelayNotified: the sender got the "Delayed:" notice.
	DelayNotified bool `json:"delay_notified"`
	// TrackingID links the entry to the sender's read-tracking record.
	TrackingID uint64 `json:"tracking_id,omitempty"`
	// CountedDay is the day whose limit counters include this entry; ""
	// while it is not counted.
	CountedDay string `json:"counted_day,omitempty"`
	// Rev changes with every write; UpdateQueueEntry refuses a stale one.
	Rev uint64 `json:"rev"`
	// LeaseOwner is the node attempting the entry now, until LeaseUntil
	// (queue_lease.go); "" when nobody is. Records written before leases
	// existed decode without one.
	LeaseOwner string    `json:"lease_owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// Body is the message as relayed; set only by QueueEntry.
	Body string `json:"body,omitempty"`
	// Header is the header of the message as relayed, set by
	// ClaimQueueEntry (for the notices); the attempt streams the whole
	// message with QueueBody.
	Header string `json:"-"`
}

// QueueRecipient is one recipient of a queue entry.
type QueueRecipient struct {
	Address string `json:"address"`
	State   string `json:"state"`
	// Reply is the relay's last reply for this recipient, verbatim.
	Reply string `json:"reply,omitempty"`
	// Status is the RFC 3463 status code of that reply (or one pochta
	// chose for a failure without a reply), such as "5.1.1".
	Status string `json:"status,omitempty"`
}

// Pending returns the addresses of the recipients still to be tried.
func (e *QueueEntry) Pending() []string {
	var out []string
	for _, r := range e.Recipients {
		if r.State == RcptPending {
			out = append(out, r.Address)
		}
	}
	return out
}

// Clone returns a deep copy.
func (e *QueueEntry) Clone() *QueueEntry {
	c := *e
	c.To, c.Cc, c.Bcc = slices.Clone(e.To), slices.Clone(e.Cc), slices.Clone(e.Bcc)
	c.Recipients = slices.Clone(e.Recipients)
	if e.SentOn != nil {
		t := *e.SentOn
		c.SentOn = &t
	}
	return &c
}

// QueueFilter selects queue entries. The zero value selects all. One
// filter serves the CLI, the control API and the store.
type QueueFilter struct {
	Status string `json:"status,omitempty"` // one of QueueStatuses, or ""
	Source string `json:"source,omitempty"` // one of QueueSources, or ""
	// User selects the entries a user submitted (or, for system mail,
	// whose envelope sender is that address).
	User string `json:"user,omitempty"`
	// MessageID selects the entries of one message (angle brackets
	// optional): the one an alert or a delivery report is about.
	MessageID string `json:"message_id,omitempty"`
}

// Validate says what is wrong with a filter, naming the allowed values.
func (f QueueFilter) Validate() error {
	if f.Status != "" && !slices.Contains(QueueStatuses, f.Status) {
		return fmt.Errorf("status %q: want one of %s: %w", f.Status, strings.Join(QueueStatuses, ", "), ErrInvalid)
	}
	if f.Source != "" && !slices.Contains(QueueSources, f.Source) {
		return fmt.Errorf("source %q: want one of %s: %w", f.Source, strings.Join(QueueSources, ", "), ErrInvalid)
	}
	return nil
}

// Match reports whether e passes the filter.
func (f QueueFilter) Match(e *QueueEntry) bool {
	if f.Status != "" && e.Status != f.Status {
		return false
	}
	if f.Source != "" && e.Source != f.Source {
		return false
	}
	if f.User != "" && !strings.EqualFold(e.User, f.User) && !(e.User == "" && strings.EqualFold(e.From, f.User)) {
		return false
	}
	if f.MessageID != "" && strings.Trim(e.MessageID, "<> ") != strings.Trim(f.MessageID, "<> ") {
		return false
	}
	return true
}

// QueueCounts are the number of entries by status.
type QueueCounts struct {
	Outbox int `json:"outbox"`
	Held   int `json:"held"`
	Sent   int `json:"sent"`
	Failed int `json:"failed"`
}

// ByStatus returns the count of one status.
func (c QueueCounts) ByStatus(status string) int {
	switch status {
	case QueueOutbox:
		return c.Outbox
	case QueueHeld:
		return c.Held
	case QueueSent:
		return c.Sent
	case QueueFailed:
		return c.Failed
	}
	return 0
}

// Notice is mail the server writes itself into local INBOXes: alerts and
// delivery status notifications. Recipients that are not users (any more)
// are skipped.
type Notice struct {
	Recipients []string
	Message    *NewMessage
}

// QueueClaim asks to start an attempt on a due entry; the daily limits are
// checked and counted in the same transaction, so parallel attempts never
// overshoot them.
type QueueClaim struct {
	ID  uint64
	Now time.Time
	// Day is today in the limits' time zone ("2006-01-02"), HoldUntil the
	// start of the following day there.
	Day       string
	HoldUntil time.Time
	// SystemLimit and UserLimit are messages per day; 0 means no limit.
	// The system limit is checked first; system mail counts toward it
	// only.
	SystemLimit, UserLimit int
	// SystemAlert (to the admins) and UserAlert (to the sender) are
	// written when the entry is held by that limit, once per Day each.
	SystemAlert, UserAlert *Notice
	// Owner (the claiming node) and LeaseUntil (after Now) are the lease
	// the claim takes (queue_lease.go). Both are required.
	Owner      string
	LeaseUntil time.Time
}

// QueueClaimed is the answer to a QueueClaim.
type QueueClaimed struct {
	// Entry, with its Header, is set when the attempt may go ahead. It is nil
	// when the entry was held, or is no longer due.
	Entry *QueueEntry
	// Counted: this claim counted the entry toward Day's limits; an
	// attempt that relays nothing gives the count back (QueueUpdate).
	Counted bool
	// Held names the limit ("system" or "user") that held the entry.
	Held string
	// Alerted: the limit's alert was written by this claim.
	Alerted bool
	// LeasedBy names the node whose unexpired lease kept this claim from
	// taking the entry (Entry is nil then).
	LeasedBy string
}

// QueueUpdate is the new state of an entry after an attempt, written with
// its notices in one transaction.
type QueueUpdate struct {
	// Entry is the new state. Entry.Rev must be the stored one (as
	// returned by the claim); what describes the message (addresses,
	// subject, size, dates of queuing) is kept from the stored entry.
	Entry *QueueEntry
	// Uncount gives back the count the claim took toward CountedDay's
	// limits (nothing was relayed).
	Uncount bool
	// Notices are delivered in the same transaction, so that a final
	// failure and its notice are stored together or not at all.
	Notices []Notice
}

// QueueStore is the outbound queue's persistent state (storage/queue.go).
// The queue package drives it; the control API lists and edits entries.
type QueueStore interface {
	// QueueEntries lists the entries f selects, by ID, without bodies.
	QueueEntries(ctx context.Context, f QueueFilter) ([]QueueEntry, error)
	// QueueEntry returns one entry with its body. ErrNotFound names the ID.
	QueueEntry(ctx context.Context, id uint64) (*QueueEntry, error)
	// QueueBody writes one entry's message as relayed to w, reading it
	// from the store a chunk at a time (never whole, never holding a
	// transaction while w blocks); it returns the bytes written.
	// ErrNotFound if the entry is gone, also when it goes midway.
	QueueBody(ctx context.Context, id uint64, w io.Writer) (int64, error)
	// QueueCounts returns the number of entries by status (O(1)).
	QueueCounts(ctx context.Context) (QueueCounts, error)
	// DueQueueEntries returns up to max waiting entries (outbox, and held
	// ones whose hold has ended) due at now, earliest first, without
	// bodies, and when the next later one falls due (zero when none is
	// waiting, or when max entries are due: the caller asks again once it
	// has room).
	DueQueueEntries(ctx context.Context, now time.Time, max int) ([]QueueEntry, time.Time, error)
	// ClaimQueueEntry checks the daily limits for a due entry and either
	// counts it, leases it to the claimer and returns it with its header,
	// or holds it (QueueClaim). An entry leased to anyone is not claimed
	// until the lease runs out (queue_lease.go).
	ClaimQueueEntry(ctx context.Context, c QueueClaim) (*QueueClaimed, error)
	// UpdateQueueEntry records an attempt (QueueUpdate) and ends its
	// lease. ErrNotFound if the entry was deleted meanwhile, ErrInvalid if
	// it changed (another claim took it over after the lease ran out).
	UpdateQueueEntry(ctx context.Context, u QueueUpdate) (*QueueEntry, error)
	// RenewQueueLease extends the lease of an attempt in progress
	// (queue_lease.go).
	RenewQueueLease(ctx context.Context, r LeaseRenewal) (*QueueEntry, error)
	// ReleaseQueueLeases ends the leases owner holds (queue_lease.go).
	ReleaseQueueLeases(ctx context.Context, owner string, now, horizon time.Time) (int, error)
	// RemoveSettledQueueEntries removes sent and failed entries settled
	// before cutoff, a bounded batch at a time (queue_retention.go).
	RemoveSettledQueueEntries(ctx context.Context, cutoff time.Time, after uint64) (*QueueRemoved, error)
	// ResendQueueEntry puts a failed or sent entry back into the outbox:
	// attempts reset, failed recipients (all, for a sent entry) pending
	// again, due at now. ErrNotFound names an unknown ID; ErrInvalid for
	// an entry that is still waiting.
	ResendQueueEntry(ctx context.Context, id uint64, now time.Time) (*QueueEntry, error)
	// DeleteQueueEntry removes an entry and its body; its pending
	// recipients become failed in read tracking. ErrNotFound names an
	// unknown ID.
	DeleteQueueEntry(ctx context.Context, id uint64) error
	// QueueDayCount returns how many messages day's counters hold for the
	// whole server and for user.
	QueueDayCount(ctx context.Context, day, user string) (system, perUser int, err error)
	// RelayState returns the relay health last recorded ("" = up).
	RelayState(ctx context.Context) (string, error)
	// SetRelayState records the relay's health; when it differs from the
	// recorded one it writes alert (if any) in the same transaction and
	// returns true. A restart therefore never repeats an alert.
	SetRelayState(ctx context.Context, state string, alert *Notice) (bool, error)
}

// QueuePage chooses one page of a listing.
type QueuePage struct {
	// After continues a listing: the Next of the previous page (0 starts
	// at the beginning).
	After uint64
	// Limit is the page size; 0 means 50, at most 1000.
	Limit int
	// Oldest lists oldest first; the default is newest first.
	Oldest bool
}

// QueuePageStore lists queue entries page by page.
type QueuePageStore interface {
	// QueueEntriesPage returns up to p.Limit entries that f selects, by
	// date, without bodies, and the cursor of the next page (0: this was
	// the last).
	QueueEntriesPage(ctx context.Context, f QueueFilter, p QueuePage) ([]QueueEntry, uint64, error)
}

// QueueRemoved is one batch of RemoveSettledQueueEntries.
type QueueRemoved struct {
	// Sent and Failed count the entries removed, by status.
	Sent, Failed int
	// Next is the ID to continue after; 0 once the whole queue was seen.
	Next uint64
}
