package storage

// Moving a database between backends (issue 13, item 5): `pochta migrate`
// reads everything from one backend through Exporter and writes it, as it
// is, into another through Importer. The public Store API cannot do this:
// it issues its own UIDs, UIDVALIDITYs and modseqs, and a client that has
// cached a mailbox must find the same ones after the move.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/emersion/go-imap/v2"
)

// ExportedUser is one user as a backend holds it: the record with its
// password hash; the names the user subscribes to (including names of
// mailboxes that no longer exist); the web preferences; the Sent
// de-duplication index (its mailbox IDs are the source's, of this user's
// mailboxes, which the walk visits after the user); and the UIDNEXT each
// deleted mailbox's name had reached (Graves, so a mailbox created again
// under that name never reuses a UID). Web sessions are not exported:
// after a move users sign in again.
type ExportedUser struct {
	Record        UserRecord
	Subscriptions []string
	WebPrefs      WebPrefs
	SentIDs       []ExportedSentID
	Graves        map[string]uint32
}

// ExportedSentID is one entry of a user's Sent de-duplication index.
type ExportedSentID struct {
	MessageID string
	Entry     SentIDEntry
}

// ExportedTracking is one read-tracking record under its ID; the mailbox
// IDs in it (the sender's copy, each unread local copy) are the source's.
type ExportedTracking struct {
	ID     uint64
	Record TrackingRecord
}

// ExportedQueueState is the queue's state besides its entries: the relay's
// health as last recorded ("" = up), the day counters the daily limits
// count, and the days' alerts already sent.
type ExportedQueueState struct {
	RelayState string
	Days       []DayCount
	Alerts     []DayMark
}

// DayCount is one day counter: the messages counted toward day's limit of
// user ("": the system's).
type DayCount struct {
	Day, User string
	Count     int
}

// DayMark names a day and a user ("": the system): the day's limit alert
// that went out.
type DayMark struct {
	Day, User string
}

// ExportedMailbox is one mailbox with its identity and counters as they
// are: UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ are copied, not issued anew.
type ExportedMailbox struct {
	User        string
	ID          uint64
	Name        string
	SpecialUse  imap.MailboxAttr
	UIDValidity uint32
	UIDNext     uint32
	Subscribed  bool
	// HighestModSeq is the mailbox's modseq counter.
	HighestModSeq uint64
	// Vanished are the expunge tombstones kept for the change feed, and
	// VanishedFloor the modseq up to which they were swept: a client that
	// resynchronises (QRESYNC) after the move is told what went, or that
	// the list is incomplete, as before it.
	Vanished      []Tombstone
	VanishedFloor uint64
}

// Tombstone is one expunged UID of the change feed, with the modseq of
// its expunge and when it happened.
type Tombstone struct {
	UID      imap.UID
	ModSeq   uint64
	Expunged time.Time
}

// ExportedMessage is one stored message: where it is, its fixed fields and
// flags, its raw bytes, and which of them it shares with other copies.
type ExportedMessage struct {
	User         string
	Mailbox      uint64
	UID          imap.UID
	Flags        []imap.Flag
	InternalDate time.Time
	ModSeq       uint64
	Body         []byte
	Shared       SharedPart
}

// SharedPart says that Body[Offset:] is a body the source stores once for
// several copies (of one delivery: the recipients', the sender's, the
// queue's), under the source's ID; an importer stores it once too. ID 0:
// the copy's bytes are its own.
type SharedPart struct {
	ID     uint64
	Offset int
}

// ExportedQueueEntry is one queue entry with its body (Entry.Body), and
// which part of the body it shares with the delivery's other copies.
type ExportedQueueEntry struct {
	Entry  *QueueEntry
	Shared SharedPart
}

// Exporter is implemented by a backend that can be the source of a move
// (bbolt and PostgreSQL implement it). Export walks one consistent view of
// the whole database: each user (ordered by address), then that user's
// mailboxes (ordered by ID), each followed by its messages (ascending UID);
// after every user, the read-tracking records (ascending ID), the queue's
// entries with their bodies (ascending ID), and last the queue's state
// once. A callback's error stops the walk and is returned. User, Mailbox
// and Message are required; a nil Tracking, QueueEntry or QueueState skips
// what it would receive.
type Exporter interface {
	Export(ctx context.Context, v ExportVisitor) error
}

// ExportVisitor receives what Export walks.
type ExportVisitor struct {
	User       func(u *ExportedUser) error
	Mailbox    func(m *ExportedMailbox) error
	Message    func(m *ExportedMessage) error
	Tracking   func(t *ExportedTracking) error
	QueueEntry func(e *ExportedQueueEntry) error
	QueueState func(s *ExportedQueueState) error
}

// VisitTracking, VisitQueueEntry and VisitQueueState call the visitor's
// callback when it has one (Export's implementations use them).
func (v ExportVisitor) VisitTracking(t *ExportedTracking) error {
	if v.Tracking == nil {
		return nil
	}
	return v.Tracking(t)
}

func (v ExportVisitor) VisitQueueEntry(e *ExportedQueueEntry) error {
	if v.QueueEntry == nil {
		return nil
	}
	return v.QueueEntry(e)
}

func (v ExportVisitor) VisitQueueState(s *ExportedQueueState) error {
	if v.QueueState == nil {
		return nil
	}
	return v.QueueState(s)
}

// Counts are what a move compares between its source and its destination:
// users, per mailbox ("user/name") its messages, the read-tracking records
// of the users' sent messages, and the queue's entries by status.
type Counts struct {
	Users     int
	Mailboxes map[string]int
	Tracking  int
	Queue     QueueCounts
}

// CountExport walks e and counts what it holds.
func CountExport(ctx context.Context, e Exporter) (*Counts, error) {
	c := &Counts{Mailboxes: map[string]int{}}
	names := map[uint64]string{}
	users := map[string]bool{}
	var user string
	err := e.Export(ctx, ExportVisitor{
		User: func(u *ExportedUser) error {
			c.Users++
			user = u.Record.Address
			users[user] = true
			clear(names)
			return nil
		},
		Mailbox: func(m *ExportedMailbox) error {
			key := m.User + "/" + m.Name
			names[m.ID] = key
			c.Mailboxes[key] = 0
			return nil
		},
		Message: func(m *ExportedMessage) error {
			key, ok := names[m.Mailbox]
			if !ok || m.User != user {
				return fmt.Errorf("storage: export: message %d of %s/%d outside its mailbox", m.UID, m.User, m.Mailbox)
			}
			c.Mailboxes[key]++
			return nil
		},
		Tracking: func(t *ExportedTracking) error {
			// SentStatus lists a record under its sender only.
			if users[t.Record.Sender] {
				c.Tracking++
			}
			return nil
		},
		QueueEntry: func(e *ExportedQueueEntry) error {
			c.Queue.add(e.Entry.Status)
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Mismatches lists, one line each and sorted, where b differs from a (a
// is the source); none means the counts agree.
func (a *Counts) Mismatches(b *Counts) []string {
	var out []string
	if a.Users != b.Users {
		out = append(out, fmt.Sprintf("users: %d in the source, %d in the destination", a.Users, b.Users))
	}
	for k, n := range a.Mailboxes {
		if m, ok := b.Mailboxes[k]; !ok {
			out = append(out, fmt.Sprintf("mailbox %s: missing from the destination", k))
		} else if m != n {
			out = append(out, fmt.Sprintf("mailbox %s: %d messages in the source, %d in the destination", k, n, m))
		}
	}
	for k := range b.Mailboxes {
		if _, ok := a.Mailboxes[k]; !ok {
			out = append(out, fmt.Sprintf("mailbox %s: only in the destination", k))
		}
	}
	if a.Tracking != b.Tracking {
		out = append(out, fmt.Sprintf("read tracking: %d sent messages in the source, %d in the destination", a.Tracking, b.Tracking))
	}
	for _, st := range QueueStatuses {
		if n, m := a.Queue.ByStatus(st), b.Queue.ByStatus(st); n != m {
			out = append(out, fmt.Sprintf("queue: %d %s entries in the source, %d in the destination", n, st, m))
		}
	}
	sort.Strings(out)
	return out
}

// Importer is implemented by a backend that can be the destination of a
// move (PostgreSQL and bbolt implement it). It writes what an Exporter
// walked as it is, in batches, each batch one transaction; Empty reports
// whether the destination holds no users, no read-tracking records and no
// queue entries, since a move refuses to merge.
type Importer interface {
	Empty(ctx context.Context) (bool, error)
	Import(ctx context.Context, from Exporter) error
}

// Export, Empty and Import pass the move to the backend of a Store made
// by New; errors.ErrUnsupported (wrapped) when the backend has no such
// half.
func (s *store) Export(ctx context.Context, v ExportVisitor) error {
	e, ok := s.Backend.(Exporter)
	if !ok {
		return fmt.Errorf("storage: export: %w", errors.ErrUnsupported)
	}
	return e.Export(ctx, v)
}

func (s *store) Empty(ctx context.Context) (bool, error) {
	i, ok := s.Backend.(Importer)
	if !ok {
		return false, fmt.Errorf("storage: import: %w", errors.ErrUnsupported)
	}
	return i.Empty(ctx)
}

func (s *store) Import(ctx context.Context, from Exporter) error {
	i, ok := s.Backend.(Importer)
	if !ok {
		return fmt.Errorf("storage: import: %w", errors.ErrUnsupported)
	}
	return i.Import(ctx, from)
}

func (c *QueueCounts) add(status string) {
	switch status {
	case QueueOutbox:
		c.Outbox++
	case QueueHeld:
		c.Held++
	case QueueSent:
		c.Sent++
	case QueueFailed:
		c.Failed++
	}
}

// The half of an import written once for every backend: the records of
// the rules, written through RecordTx. A backend's Importer writes users,
// mailboxes, messages and queue entries its own way (they keep their
// UIDs, modseqs and IDs, which RecordTx does not let anyone choose) and
// calls these for the rest.

// ImportIDs maps the source's mailbox IDs, per user, to the destination's.
type ImportIDs struct {
	m map[string]map[uint64]uint64
}

// Set records that user's source mailbox src is dst in the destination.
func (ids *ImportIDs) Set(user string, src, dst uint64) {
	if ids.m == nil {
		ids.m = map[string]map[uint64]uint64{}
	}
	if ids.m[user] == nil {
		ids.m[user] = map[uint64]uint64{}
	}
	ids.m[user][src] = dst
}

// Get returns the destination's ID of user's source mailbox src.
func (ids *ImportIDs) Get(user string, src uint64) (uint64, bool) {
	dst, ok := ids.m[user][src]
	return dst, ok
}

// ImportTracking writes one exported read-tracking record under its own ID
// with the destination's mailbox IDs: the record, its sender's log entry
// and the tracked index of the sender's copy and of each unread local
// copy. A copy in a mailbox the walk did not visit is no longer followed;
// a sender or recipient who is not a user gets no index entry.
func ImportTracking(tx RecordTx, t *ExportedTracking, ids *ImportIDs) error {
	rec := t.Record
	rec.Recipients = append([]TrackingRecipient(nil), t.Record.Recipients...)
	if rec.SentBox != 0 {
		if box, ok := ids.Get(rec.Sender, rec.SentBox); ok {
			rec.SentBox = box
		} else {
			rec.SentBox, rec.SentUID = 0, 0
		}
	}
	for i := range rec.Recipients {
		rc := &rec.Recipients[i]
		if rc.External || rc.Box == 0 {
			continue
		}
		if box, ok := ids.Get(rc.Address, rc.Box); ok {
			rc.Box = box
		} else {
			rc.Box, rc.UID = 0, 0
		}
	}
	if err := tx.PutTrackingRecord(t.ID, &rec); err != nil {
		return fmt.Errorf("tracking record %d: %w", t.ID, err)
	}
	index := func(user string, box uint64, uid uint32) error {
		if err := tx.SetTracked(user, box, imap.UID(uid), t.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("tracking record %d: %w", t.ID, err)
		}
		return nil
	}
	if err := tx.AddSentLog(rec.Sender, t.ID); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("tracking record %d: %w", t.ID, err)
	}
	if rec.SentBox != 0 {
		if err := index(rec.Sender, rec.SentBox, rec.SentUID); err != nil {
			return err
		}
	}
	for _, rc := range rec.Recipients {
		if !rc.External && rc.Box != 0 {
			if err := index(rc.Address, rc.Box, rc.UID); err != nil {
				return err
			}
		}
	}
	return nil
}

// ImportSentIDs writes user's Sent de-duplication index with the
// destination's mailbox IDs; entries of mailboxes the walk did not visit
// are left out.
func ImportSentIDs(tx RecordTx, user string, list []ExportedSentID, ids *ImportIDs) error {
	for _, s := range list {
		e := s.Entry
		box, ok := ids.Get(user, e.Mailbox)
		if !ok {
			continue
		}
		e.Mailbox = box
		if err := tx.PutSentID(user, s.MessageID, e); err != nil {
			return fmt.Errorf("user %s: sent index: %w", user, err)
		}
	}
	return nil
}

// ImportQueueState writes the relay's health, the day counters and the
// days' alerts, so the daily limits count the mail already sent today
// and no alert goes out twice.
func ImportQueueState(tx RecordTx, s *ExportedQueueState) error {
	if err := tx.SetRelayState(s.RelayState); err != nil {
		return fmt.Errorf("relay state: %w", err)
	}
	for _, d := range s.Days {
		if err := tx.AddDayCount(d.Day, d.User, d.Count); err != nil {
			return fmt.Errorf("day counter %s %q: %w", d.Day, d.User, err)
		}
	}
	for _, a := range s.Alerts {
		if err := tx.SetAlerted(a.Day, a.User); err != nil {
			return fmt.Errorf("day alert %s %q: %w", a.Day, a.User, err)
		}
	}
	return nil
}

// ImportedQueueEntry is e as a move's destination stores it: every field
// kept but the lease, which is cleared (the node that held it is not
// running), so a waiting entry is due at its next attempt.
func ImportedQueueEntry(e *QueueEntry) *QueueEntry {
	c := e.Clone()
	c.LeaseOwner, c.LeaseUntil = "", time.Time{}
	return c
}

// UnreadEntryOf is the unread-index entry of an INBOX message without
// \Seen, for an importer that writes messages without the hooks.
func UnreadEntryOf(user string, box uint64, uid imap.UID, internalDate time.Time) UnreadEntry {
	return UnreadEntry{Date: dateKey(internalDate), User: user, Mailbox: box, UID: uid}
}

// Bounds of one transaction of an import: records and message bytes.
const (
	ImportBatchRecords = 256
	ImportBatchBytes   = 16 << 20
)

// ImportBatch collects an importer's writes (functions of T, the backend's
// transaction) and hands them to Write in batches of at most
// ImportBatchRecords writes or ImportBatchBytes bytes, each batch meant to
// be one transaction.
type ImportBatch[T any] struct {
	Write   func(fns []func(T) error, size int) error
	pending []func(T) error
	bytes   int
}

// Add queues one write of size bytes, writing the batch when it is full.
func (b *ImportBatch[T]) Add(size int, fn func(T) error) error {
	b.pending = append(b.pending, fn)
	b.bytes += size
	if len(b.pending) >= ImportBatchRecords || b.bytes >= ImportBatchBytes {
		return b.Flush()
	}
	return nil
}

// Flush writes what is queued.
func (b *ImportBatch[T]) Flush() error {
	if len(b.pending) == 0 {
		return nil
	}
	err := b.Write(b.pending, b.bytes)
	b.pending, b.bytes = nil, 0
	return err
}
