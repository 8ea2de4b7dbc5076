package pgstore

// The outbound queue's records. An entry is one row of the queue table:
// the whole storage.QueueEntry as JSON (exact times, the same form as the
// bbolt backend's), the columns queries select on kept in step by
// saveEntry, and the message as relayed (its header in own, the body
// shared with the delivery's copies when it is the same).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
	"github.com/pochta/pochta/storage/boltstore"
)

// dueNS is when e is next due, in Unix nanoseconds; nil for a settled
// entry.
func dueNS(e *storage.QueueEntry) *int64 {
	var t time.Time
	switch e.Status {
	case storage.QueueOutbox:
		t = e.PickableAt()
	case storage.QueueHeld:
		t = e.HeldUntil
	default:
		return nil
	}
	n := max(t.UnixNano(), 0)
	return &n
}

func decodeEntry(id uint64, b []byte) (*storage.QueueEntry, error) {
	var e storage.QueueEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("queue entry %d: %w", id, err)
	}
	for _, l := range []*[]string{&e.To, &e.Cc, &e.Bcc} {
		if *l == nil {
			*l = []string{}
		}
	}
	return &e, nil
}

func loadEntry(ctx context.Context, tx pgx.Tx, id uint64, lock bool) (*storage.QueueEntry, error) {
	sql := "SELECT entry FROM queue WHERE id = $1 AND entry IS NOT NULL"
	if lock {
		sql += " FOR UPDATE"
	}
	var b []byte
	err := tx.QueryRow(ctx, sql, int64(id)).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("queue entry %d: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return decodeEntry(id, b)
}

// QueueEntry implements storage.RecordTx: the entry, locked for the rest
// of the transaction.
func (t pgTx) QueueEntry(id uint64) (*storage.QueueEntry, error) {
	return loadEntry(t.ctx, t.tx, id, !t.ro)
}

// SaveQueueEntry implements storage.RecordTx.
func (t pgTx) SaveQueueEntry(old, e *storage.QueueEntry, ev *storage.Events) error {
	return saveEntry(t, old, e, ev)
}

// saveEntry writes e (old is the stored state, nil for a new entry whose
// row exists) with Rev incremented, and reports recipients whose state
// changed to read tracking.
func saveEntry(t pgTx, old, e *storage.QueueEntry, ev *storage.Events) error {
	e.Rev++
	body := e.Body
	e.Body = ""
	b, err := json.Marshal(e)
	e.Body = body
	if err != nil {
		return fmt.Errorf("queue entry %d: %w", e.ID, err)
	}
	var leaseUntil, heldUntil *time.Time
	if !e.LeaseUntil.IsZero() {
		leaseUntil = &e.LeaseUntil
	}
	if !e.HeldUntil.IsZero() {
		heldUntil = &e.HeldUntil
	}
	next := e.NextAttempt
	if next.IsZero() {
		next = e.Date
	}
	tag, err := t.tx.Exec(t.ctx, `UPDATE queue SET entry = $2::jsonb, due_ns = $3, rev = $4, status = $5, source = $6,
		username = $7, sender = $8, message_id = $9, subject = $10, size = $11, lease_owner = $12, lease_until = $13,
		next_attempt = $14, held_until = $15, attempts = $16, tracking_id = $17, counted_day = $18
		WHERE id = $1`, int64(e.ID), string(b), dueNS(e), int64(e.Rev), e.Status, e.Source,
		e.User, e.From, e.MessageID, e.Subject, e.Size, e.LeaseOwner, leaseUntil,
		next, heldUntil, e.Attempts, int64(e.TrackingID), e.CountedDay)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("queue entry %d: %w", e.ID, storage.ErrNotFound)
	}
	return storage.QueueRecipientsChanged(t, old, e, ev)
}

// QueueHeader implements storage.RecordTx.
func (t pgTx) QueueHeader(id uint64) (string, error) {
	var own []byte
	err := t.tx.QueryRow(t.ctx, "SELECT own FROM queue WHERE id = $1", int64(id)).Scan(&own)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("queue entry %d: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	return string(own[:headerLen(own)]), nil
}

// QueueDueBetween implements storage.RecordTx.
func (t pgTx) QueueDueBetween(from, to time.Time) ([]uint64, error) {
	rows, err := t.tx.Query(t.ctx, `SELECT id FROM queue WHERE due_ns BETWEEN $1 AND $2 AND entry IS NOT NULL
		ORDER BY due_ns, id`, max(from.UnixNano(), 0), max(to.UnixNano(), 0))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[uint64])
}

// enqueue writes the queue entry of a delivery's external recipients in
// the delivery's transaction and returns its ID. What the entry says is
// the rules' (storage.NewQueueEntry).
func enqueue(t pgTx, d *storage.Delivery, body *boltstore.PreparedMessage, sharedBody int64, trackingID uint64, now time.Time, ev *storage.Events) (uint64, error) {
	// The Sent copy still has Bcc; the relay copy does not.
	hdr := body.Raw
	if d.SentCopy != nil {
		hdr = d.SentCopy.Raw
	}
	e, err := storage.NewQueueEntry(d, hdr, int64(len(body.Raw)), trackingID, now)
	if err != nil {
		return 0, err
	}
	own := body.Raw
	var shared *int64
	if sharedBody != 0 {
		own = body.Raw[:headerLen(body.Raw)]
		shared = &sharedBody
	}
	if err := t.tx.QueryRow(t.ctx, `INSERT INTO queue (source, own, shared_body_id) VALUES ($1, $2, $3) RETURNING id`,
		e.Source, nonNil(own), shared).Scan(&e.ID); err != nil {
		return 0, err
	}
	if err := saveEntry(t, nil, e, ev); err != nil {
		return 0, err
	}
	ev.Add(storage.Event{Kind: storage.EventQueued, QueueID: e.ID})
	if _, err := t.tx.Exec(t.ctx, "SELECT pg_notify($1, 'queue')", ChannelMailbox); err != nil {
		return 0, err
	}
	return e.ID, nil
}

func (s *pgStore) entries(ctx context.Context, sql string, args ...any) ([]storage.QueueEntry, error) {
	var out []storage.QueueEntry
	err := s.view(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id uint64
			var b []byte
			if err := rows.Scan(&id, &b); err != nil {
				return err
			}
			e, err := decodeEntry(id, b)
			if err != nil {
				return err
			}
			out = append(out, *e)
		}
		return rows.Err()
	})
	return out, err
}

// QueueEntries implements storage.Backend.
func (s *pgStore) QueueEntries(ctx context.Context, f storage.QueueFilter) ([]storage.QueueEntry, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("storage: queue entries: %w", err)
	}
	all, err := s.entries(ctx, "SELECT id, entry FROM queue WHERE entry IS NOT NULL ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("storage: queue entries: %w", err)
	}
	out := []storage.QueueEntry{}
	for i := range all {
		if f.Match(&all[i]) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// QueueEntry implements storage.Backend: the entry with its body.
func (s *pgStore) QueueEntry(ctx context.Context, id uint64) (*storage.QueueEntry, error) {
	var e *storage.QueueEntry
	err := s.view(ctx, func(tx pgx.Tx) error {
		var err error
		if e, err = loadEntry(ctx, tx, id, false); err != nil {
			return err
		}
		var body []byte
		if err := tx.QueryRow(ctx, `SELECT q.own || coalesce(b.content, ''::bytea) FROM queue q
			LEFT JOIN bodies b ON b.id = q.shared_body_id WHERE q.id = $1`, int64(id)).Scan(&body); err != nil {
			return err
		}
		e.Body = string(body)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return e, nil
}

// QueueBody implements storage.Backend: one query per chunk of at most
// readChunk bytes, none held while w blocks.
func (s *pgStore) QueueBody(ctx context.Context, id uint64, w io.Writer) (int64, error) {
	var written int64
	for {
		if s.closed.Load() {
			return written, storage.ErrClosed
		}
		var chunk []byte
		err := s.pool.QueryRow(ctx, `SELECT substring(q.own || coalesce(b.content, ''::bytea) FROM $2 FOR $3)
			FROM queue q LEFT JOIN bodies b ON b.id = q.shared_body_id
			WHERE q.id = $1 AND q.entry IS NOT NULL`, int64(id), written+1, readChunk).Scan(&chunk)
		if errors.Is(err, pgx.ErrNoRows) {
			return written, fmt.Errorf("storage: queue body: queue entry %d: %w", id, storage.ErrNotFound)
		}
		if err != nil {
			return written, fmt.Errorf("storage: queue body: %w", s.dbErr(err))
		}
		if len(chunk) > 0 {
			if _, err := w.Write(chunk); err != nil {
				return written, fmt.Errorf("storage: queue body %d: %w", id, err)
			}
			written += int64(len(chunk))
		}
		if len(chunk) < readChunk {
			return written, nil
		}
	}
}

// QueueCounts implements storage.Backend.
func (s *pgStore) QueueCounts(ctx context.Context) (storage.QueueCounts, error) {
	var c storage.QueueCounts
	err := s.view(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'outbox'), count(*) FILTER (WHERE status = 'held'),
			count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed')
			FROM queue WHERE entry IS NOT NULL`).Scan(&c.Outbox, &c.Held, &c.Sent, &c.Failed)
	})
	if err != nil {
		return c, fmt.Errorf("storage: queue counts: %w", err)
	}
	return c, nil
}

// DueQueueEntries implements storage.Backend.
func (s *pgStore) DueQueueEntries(ctx context.Context, now time.Time, max int) ([]storage.QueueEntry, time.Time, error) {
	limit := now.UnixNano()
	var out []storage.QueueEntry
	var next time.Time
	err := s.view(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, entry FROM queue WHERE due_ns <= $1 AND entry IS NOT NULL
			ORDER BY due_ns, id LIMIT $2`, limit, max)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id uint64
			var b []byte
			if err := rows.Scan(&id, &b); err != nil {
				rows.Close()
				return err
			}
			e, err := decodeEntry(id, b)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, *e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) >= max {
			return nil
		}
		var at *int64
		if err := tx.QueryRow(ctx, "SELECT min(due_ns) FROM queue WHERE due_ns > $1 AND entry IS NOT NULL", limit).Scan(&at); err != nil {
			return err
		}
		if at != nil {
			next = time.Unix(0, *at)
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("storage: due queue entries: %w", err)
	}
	return out, next, nil
}

// QueueEntriesPage implements storage.QueuePageStore: by ID (the order of
// queuing), newest first unless p.Oldest.
func (s *pgStore) QueueEntriesPage(ctx context.Context, f storage.QueueFilter, p storage.QueuePage) ([]storage.QueueEntry, uint64, error) {
	if err := f.Validate(); err != nil {
		return nil, 0, fmt.Errorf("storage: queue page: %w", err)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	where, order := "id < $1", "DESC"
	after := int64(p.After)
	if p.Oldest {
		where, order = "id > $1", "ASC"
	} else if p.After == 0 {
		after = 1<<63 - 1
	}
	var conds []string
	args := []any{after}
	if f.Status != "" {
		args = append(args, f.Status)
		conds = append(conds, fmt.Sprintf("status = $%d", len(args)))
	}
	if f.Source != "" {
		args = append(args, f.Source)
		conds = append(conds, fmt.Sprintf("source = $%d", len(args)))
	}
	if f.User != "" {
		args = append(args, strings.ToLower(f.User))
		conds = append(conds, fmt.Sprintf("(lower(username) = $%[1]d OR (username = '' AND lower(sender) = $%[1]d))", len(args)))
	}
	for _, c := range conds {
		where += " AND " + c
	}
	all, err := s.entries(ctx, "SELECT id, entry FROM queue WHERE entry IS NOT NULL AND "+where+" ORDER BY id "+order, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("storage: queue page: %w", err)
	}
	out := []storage.QueueEntry{}
	for i := range all {
		if !f.Match(&all[i]) {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID, nil
		}
		out = append(out, all[i])
	}
	return out, 0, nil
}
