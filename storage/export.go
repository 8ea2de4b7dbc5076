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
// password hash, and the names the user subscribes to (including names of
// mailboxes that no longer exist).
type ExportedUser struct {
	Record        UserRecord
	Subscriptions []string
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
}

// ExportedMessage is one stored message: where it is, its fixed fields and
// flags, and its raw bytes.
type ExportedMessage struct {
	User         string
	Mailbox      uint64
	UID          imap.UID
	Flags        []imap.Flag
	InternalDate time.Time
	ModSeq       uint64
	Body         []byte
}

// Exporter is implemented by a backend that can be the source of a move.
// Export walks one consistent view of the whole database: each user
// (ordered by address), then that user's mailboxes (ordered by ID), each
// followed by its messages (ascending UID). A callback's error stops the
// walk and is returned.
type Exporter interface {
	Export(ctx context.Context, v ExportVisitor) error
}

// ExportVisitor receives what Export walks.
type ExportVisitor struct {
	User    func(u *ExportedUser) error
	Mailbox func(m *ExportedMailbox) error
	Message func(m *ExportedMessage) error
}

// Counts are what a move compares between its source and its destination:
// users, and per mailbox ("user/name") its messages.
type Counts struct {
	Users     int
	Mailboxes map[string]int
}

// CountExport walks e and counts what it holds.
func CountExport(ctx context.Context, e Exporter) (*Counts, error) {
	c := &Counts{Mailboxes: map[string]int{}}
	names := map[uint64]string{}
	var user string
	err := e.Export(ctx, ExportVisitor{
		User: func(u *ExportedUser) error {
			c.Users++
			user = u.Record.Address
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
	sort.Strings(out)
	return out
}

// Importer is implemented by a backend that can be the destination of a
// move (PostgreSQL implements it). It writes what an Exporter
// walked as it is, in batches, each batch one transaction; Empty reports
// whether the destination holds no users, since a move refuses to merge.
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
