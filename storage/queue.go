package storage

// The outbound queue's persistent half. The queue package owns the policy
// (when to retry, what counts as final, which notice to send); this file
// owns the records and keeps them consistent: every change of an entry goes
// through saveEntry, which maintains the due index, the counts by status and
// the read-tracking state of the recipients in the same transaction.
//
// Layout, inside the top-level "queue" bucket:
//
//	"entries"/<id>           QueueEntry (JSON, without the body); the bucket
//	                         sequence issues IDs
//	"bodies"/<id>            the message as relayed (Bcc removed)
//	"due"/<time><id>         entries waiting (outbox: next attempt, or the
//	                         end of its lease if later; held: held_until),
//	                         so finding what is due reads only what is due;
//	                         time is Unix nanoseconds
//	"counts"/<status>        number of entries with that status
//	"daily"/<day>"|system"   messages counted toward the day's limits
//	"daily"/<day>"|user|"<address>
//	"alerted"/<day>"|system" a daily-limit alert went out that day
//	"alerted"/<day>"|user|"<address>
//	"state"/"relay"          the relay's health as last recorded ("" = up)
//	"index"/…                entries by owner, status and source, for paged
//	                         listing (layout in queuepage.go)
//
// Days are "2006-01-02" in the limits' time zone, chosen by the caller.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	bolt "go.etcd.io/bbolt"
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

var (
	bucketQueue     = []byte("queue")
	bucketQEntries  = []byte("entries")
	bucketQBodies   = []byte("bodies")
	bucketQDue      = []byte("due")
	bucketQCounts   = []byte("counts")
	bucketQDaily    = []byte("daily")
	bucketQAlerted  = []byte("alerted")
	bucketQState    = []byte("state")
	keyRelayState   = []byte("relay")
	queueSubBuckets = [][]byte{bucketQEntries, bucketQBodies, bucketQDue, bucketQCounts, bucketQDaily, bucketQAlerted, bucketQState}
)

// queueTx is the queue's buckets inside a write transaction.
type queueTx struct {
	tx                                                  *bolt.Tx
	entries, bodies, due, counts, daily, alerted, state *bolt.Bucket
}

// openQueue returns the queue's buckets, creating them on first use.
func openQueue(tx *bolt.Tx) (*queueTx, error) {
	root, err := tx.CreateBucketIfNotExists(bucketQueue)
	if err != nil {
		return nil, err
	}
	bs := make([]*bolt.Bucket, len(queueSubBuckets))
	for i, name := range queueSubBuckets {
		if bs[i], err = root.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return &queueTx{tx: tx, entries: bs[0], bodies: bs[1], due: bs[2], counts: bs[3], daily: bs[4], alerted: bs[5], state: bs[6]}, nil
}

// queueBucket returns a sub-bucket for reading, nil before the queue's
// first write.
func queueBucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	root := tx.Bucket(bucketQueue)
	if root == nil {
		return nil
	}
	return root.Bucket(name)
}

func dueKey(e *QueueEntry) []byte {
	var t time.Time
	switch e.Status {
	case QueueOutbox:
		t = e.PickableAt()
	case QueueHeld:
		t = e.HeldUntil
	default:
		return nil
	}
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(max(t.UnixNano(), 0)))
	binary.BigEndian.PutUint64(k[8:], e.ID)
	return k
}

func decodeEntry(id uint64, v []byte) (*QueueEntry, error) {
	var e QueueEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("queue entry %d: %w: %v", id, errCorrupt, err)
	}
	// JSON users get [] rather than null for empty address lists.
	for _, l := range []*[]string{&e.To, &e.Cc, &e.Bcc} {
		if *l == nil {
			*l = []string{}
		}
	}
	return &e, nil
}

func (q *queueTx) load(id uint64) (*QueueEntry, error) {
	v := q.entries.Get(be64(id))
	if v == nil {
		return nil, fmt.Errorf("queue entry %d: %w", id, ErrNotFound)
	}
	return decodeEntry(id, v)
}

func (q *queueTx) count(status string, delta int64) error {
	n := int64(0)
	if v := q.counts.Get([]byte(status)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	return q.counts.Put([]byte(status), be64(uint64(max(n+delta, 0))))
}

// saveEntry writes e (old is the stored state, nil for a new entry) and
// keeps the due index, the counts by status and read tracking in step.
func (q *queueTx) saveEntry(old, e *QueueEntry, ev *eventList) error {
	e.Rev++
	body := e.Body
	e.Body = ""
	v, err := json.Marshal(e)
	e.Body = body
	if err != nil {
		return fmt.Errorf("queue entry %d: %w", e.ID, err)
	}
	if err := q.entries.Put(be64(e.ID), v); err != nil {
		return err
	}
	var oldKey []byte
	oldStatus := ""
	if old != nil {
		oldKey, oldStatus = dueKey(old), old.Status
	}
	if newKey := dueKey(e); !bytes.Equal(oldKey, newKey) {
		if oldKey != nil {
			if err := q.due.Delete(oldKey); err != nil {
				return err
			}
		}
		if newKey != nil {
			if err := q.due.Put(newKey, nil); err != nil {
				return err
			}
		}
	}
	if oldStatus != e.Status {
		if oldStatus != "" {
			if err := q.count(oldStatus, -1); err != nil {
				return err
			}
		}
		if err := q.count(e.Status, 1); err != nil {
			return err
		}
	}
	if err := q.reindex(old, e); err != nil {
		return err
	}
	return q.track(old, e, ev)
}

// track reports recipients whose state changed to read tracking.
func (q *queueTx) track(old, e *QueueEntry, ev *eventList) error {
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
		if err := SetExternalState(records(q.tx), e.TrackingID, r.Address, state, ev); err != nil {
			return fmt.Errorf("queue entry %d: read tracking: %w", e.ID, err)
		}
	}
	return nil
}

func (q *queueTx) remove(e *QueueEntry, ev *eventList) error {
	if k := dueKey(e); k != nil {
		if err := q.due.Delete(k); err != nil {
			return err
		}
	}
	if err := q.count(e.Status, -1); err != nil {
		return err
	}
	if err := q.reindex(e, nil); err != nil {
		return err
	}
	if e.TrackingID != 0 {
		for _, r := range e.Recipients {
			if r.State == RcptPending {
				if err := SetExternalState(records(q.tx), e.TrackingID, r.Address, TrackFailed, ev); err != nil {
					return fmt.Errorf("queue entry %d: read tracking: %w", e.ID, err)
				}
			}
		}
	}
	if err := q.dropBody(e.ID); err != nil {
		return err
	}
	return q.entries.Delete(be64(e.ID))
}

func dailyKey(day, user string) []byte {
	if user == "" {
		return []byte(day + "|system")
	}
	return []byte(day + "|user|" + strings.ToLower(user))
}

func getCount(b *bolt.Bucket, k []byte) int {
	if b == nil {
		return 0
	}
	if v := b.Get(k); len(v) == 8 {
		return int(binary.BigEndian.Uint64(v))
	}
	return 0
}

func addCount(b *bolt.Bucket, k []byte, delta int) error {
	n := getCount(b, k) + delta
	if n <= 0 {
		return b.Delete(k)
	}
	return b.Put(k, be64(uint64(n)))
}

// pruneDays drops the day-keyed records of days before keep ("|" sorts
// after every digit, so a day's keys sort after the day itself).
func pruneDays(b *bolt.Bucket, keep string) error {
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && string(k) < keep; k, _ = c.Next() {
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// preparedNotice is a Notice parsed before its transaction.
type preparedNotice struct {
	rcpts []string
	msg   *prepared
}

func prepareNotices(ns []*Notice, now time.Time) ([]preparedNotice, int, error) {
	var out []preparedNotice
	size := 0
	for _, n := range ns {
		if n == nil || len(n.Recipients) == 0 {
			continue
		}
		p, err := prepare(n.Message, now)
		if err != nil {
			return nil, 0, fmt.Errorf("notice: %w", err)
		}
		var rcpts []string
		for _, r := range n.Recipients {
			r = strings.ToLower(r)
			if !slices.Contains(rcpts, r) {
				rcpts = append(rcpts, r)
			}
		}
		out = append(out, preparedNotice{rcpts: rcpts, msg: p})
		size += len(p.raw) * len(rcpts)
	}
	return out, size, nil
}

// deliverNotices appends notices to their recipients' INBOXes.
func deliverNotices(tx *bolt.Tx, ns []preparedNotice, ev *eventList) error {
	for _, n := range ns {
		for _, r := range n.rcpts {
			u, err := openUser(tx, r)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			x, err := u.boxByName(Inbox)
			if err != nil {
				return err
			}
			if _, err := x.appendPrepared(n.msg, ev); err != nil {
				return err
			}
			if err := x.save(); err != nil {
				return err
			}
		}
	}
	return nil
}

// relayAddressOK refuses what could break out of an SMTP command line:
// CR, LF and other controls, spaces and angle brackets.
func relayAddressOK(a string, allowEmpty bool) bool {
	if a == "" {
		return allowEmpty
	}
	if len(a) > 254 || !strings.Contains(a, "@") {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// headerSummary is what the queue shows of a message's header.
type headerSummary struct {
	to, cc, bcc []string // lower-cased addresses
	subject     string
	mimeType    string
}

// summarizeHeader reads only the header section. A header that does not
// parse still gives whatever fields could be read.
func summarizeHeader(raw []byte) headerSummary {
	var s headerSummary
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	mh := mail.Header{Header: message.Header{Header: h}}
	list := func(field string) []string {
		addrs, _ := mh.AddressList(field)
		var out []string
		for _, a := range addrs {
			out = append(out, strings.ToLower(a.Address))
		}
		return out
	}
	s.to, s.cc, s.bcc = list("To"), list("Cc"), list("Bcc")
	s.subject, _ = mh.Subject()
	s.mimeType = "text/plain" // RFC 2045 5.2
	if ct := h.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil {
			s.mimeType = strings.ToLower(mt)
		}
	}
	return s
}

// enqueue writes the queue entry for a delivery's external recipients,
// inside the delivery's transaction, and returns its ID. trackingID links
// the entry to the sender's read-tracking record (0: none), so the relay's
// outcome is reported there with setExternalState.
//
// The header is summarised here rather than before the transaction because
// Deliver prepares the copies without it; only the header section is read
// (a few hundred bytes to a few KiB), which keeps the writer's time per
// request small.
func enqueue(tx *bolt.Tx, d *Delivery, body *prepared, trackingID uint64, now time.Time, ev *eventList) (uint64, error) {
	if !relayAddressOK(d.From, true) {
		return 0, fmt.Errorf("envelope sender %q cannot be relayed: %w", d.From, ErrInvalid)
	}
	source := d.Source
	if source == "" {
		source = SourceUser
		if d.Sender == "" {
			source = SourceSystem
		}
	}
	if !slices.Contains(QueueSources, source) {
		return 0, fmt.Errorf("source %q: %w", source, ErrInvalid)
	}
	var rcpts []QueueRecipient
	seen := make(map[string]bool, len(d.External))
	for _, r := range d.External {
		if !relayAddressOK(r, false) {
			return 0, fmt.Errorf("recipient %q cannot be relayed: %w", r, ErrInvalid)
		}
		if lr := strings.ToLower(r); !seen[lr] {
			seen[lr] = true
			rcpts = append(rcpts, QueueRecipient{Address: r, State: RcptPending})
		}
	}
	if len(rcpts) == 0 {
		return 0, fmt.Errorf("no external recipients: %w", ErrInvalid)
	}
	// The Sent copy still has Bcc; the relay copy does not.
	hdr := body.raw
	if d.SentCopy != nil {
		hdr = d.SentCopy.Raw
	}
	sum := summarizeHeader(hdr)
	e := &QueueEntry{
		Status:      QueueOutbox,
		Source:      source,
		User:        strings.ToLower(d.Sender),
		From:        d.From,
		To:          []string{},
		Cc:          []string{},
		Bcc:         []string{},
		Subject:     d.Subject,
		MimeType:    sum.mimeType,
		MessageID:   d.MessageID,
		Date:        now,
		Size:        int64(len(body.raw)),
		NextAttempt: now,
		Recipients:  rcpts,
		TrackingID:  trackingID,
	}
	if e.Subject == "" {
		e.Subject = sum.subject
	}
	for _, r := range rcpts {
		lr := strings.ToLower(r.Address)
		switch {
		case slices.Contains(sum.to, lr):
			e.To = append(e.To, r.Address)
		case slices.Contains(sum.cc, lr):
			e.Cc = append(e.Cc, r.Address)
		default:
			e.Bcc = append(e.Bcc, r.Address)
		}
	}
	q, err := openQueue(tx)
	if err != nil {
		return 0, err
	}
	if e.ID, err = q.entries.NextSequence(); err != nil {
		return 0, err
	}
	if err := q.putBody(e.ID, body); err != nil {
		return 0, err
	}
	if err := q.saveEntry(nil, e, ev); err != nil {
		return 0, err
	}
	ev.Add(Event{Kind: EventQueued, QueueID: e.ID})
	return e.ID, nil
}

// QueueEntries implements QueueStore.
func (s *boltStore) QueueEntries(ctx context.Context, f QueueFilter) ([]QueueEntry, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("storage: queue entries: %w", err)
	}
	out := []QueueEntry{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := queueBucket(tx, bucketQEntries)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			e, err := decodeEntry(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			if f.Match(e) {
				out = append(out, *e)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("storage: queue entries: %w", err)
	}
	return out, nil
}

func loadEntry(tx *bolt.Tx, id uint64, withBody bool) (*QueueEntry, error) {
	b := queueBucket(tx, bucketQEntries)
	var v []byte
	if b != nil {
		v = b.Get(be64(id))
	}
	if v == nil {
		return nil, fmt.Errorf("queue entry %d: %w", id, ErrNotFound)
	}
	e, err := decodeEntry(id, v)
	if err != nil {
		return nil, err
	}
	if withBody {
		m, err := queueStored(tx, id)
		if err != nil {
			return nil, err
		}
		e.Body = string(m.bytes())
	}
	return e, nil
}

// QueueEntry implements QueueStore.
func (s *boltStore) QueueEntry(ctx context.Context, id uint64) (*QueueEntry, error) {
	var e *QueueEntry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		e, err = loadEntry(tx, id, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return e, nil
}

// QueueCounts implements QueueStore.
func (s *boltStore) QueueCounts(ctx context.Context) (QueueCounts, error) {
	var c QueueCounts
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := queueBucket(tx, bucketQCounts)
		c = QueueCounts{
			Outbox: getCount(b, []byte(QueueOutbox)),
			Held:   getCount(b, []byte(QueueHeld)),
			Sent:   getCount(b, []byte(QueueSent)),
			Failed: getCount(b, []byte(QueueFailed)),
		}
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("storage: queue counts: %w", err)
	}
	return c, nil
}

// DueQueueEntries implements QueueStore.
func (s *boltStore) DueQueueEntries(ctx context.Context, now time.Time, max int) ([]QueueEntry, time.Time, error) {
	var out []QueueEntry
	var next time.Time
	limit := uint64(now.UnixNano())
	err := s.view(ctx, func(tx *bolt.Tx) error {
		due := queueBucket(tx, bucketQDue)
		if due == nil {
			return nil
		}
		c := due.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 16 {
				return fmt.Errorf("queue index key %x: %w", k, errCorrupt)
			}
			at := binary.BigEndian.Uint64(k)
			if at > limit {
				next = time.Unix(0, int64(at))
				return nil
			}
			if len(out) >= max {
				// More are due; the caller comes back when it has room.
				return nil
			}
			e, err := loadEntry(tx, binary.BigEndian.Uint64(k[8:]), false)
			if err != nil {
				return err
			}
			out = append(out, *e)
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("storage: due queue entries: %w", err)
	}
	return out, next, nil
}

// DeleteQueueEntry implements QueueStore.
func (s *boltStore) DeleteQueueEntry(ctx context.Context, id uint64) error {
	_, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (struct{}, error) {
		q, err := openQueue(tx)
		if err != nil {
			return struct{}{}, err
		}
		e, err := q.load(id)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, q.remove(e, ev)
	})
	if err != nil {
		return fmt.Errorf("storage: delete: %w", err)
	}
	return nil
}
