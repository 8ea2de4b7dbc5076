package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Appended is where AppendMessage put a message.
type Appended struct {
	UID, ModSeq uint64
}

// NewMessage is the row data AppendMessage stores; BodyID must name an
// existing body, whose reference count AppendMessage increments.
type NewMessage struct {
	BodyID       int64
	Flags        []string
	InternalDate time.Time
	Size         int64
}

// AppendMessage adds msg to mailbox mailboxID, allocating its UID (the
// mailbox's UIDNEXT) and a new HIGHESTMODSEQ in the same transaction.
func AppendMessage(ctx context.Context, pool *pgxpool.Pool, mailboxID int64, msg NewMessage) (Appended, error) {
	var a Appended
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE mailboxes
			SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1
			WHERE id = $1 RETURNING uidnext - 1, highestmodseq`, mailboxID).Scan(&a.UID, &a.ModSeq)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("no mailbox %d", mailboxID)
		}
		if err != nil {
			return err
		}
		flags := msg.Flags
		if flags == nil {
			flags = []string{}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO messages
			(mailbox_id, uid, modseq, flags, internal_date, size, body_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			mailboxID, a.UID, a.ModSeq, flags, msg.InternalDate, msg.Size, msg.BodyID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE bodies SET refcount = refcount + 1 WHERE id = $1", msg.BodyID)
		return err
	})
	if err != nil {
		return Appended{}, fmt.Errorf("pgstore: appending to mailbox %d: %w", mailboxID, err)
	}
	return a, nil
}

// ClaimQueue leases up to limit due queue entries to owner until now+lease
// and returns their ids. An entry is due when unsettled, next_attempt has
// passed and it has no live lease; concurrent claimants never get the same
// entry.
func ClaimQueue(ctx context.Context, pool *pgxpool.Pool, owner string, lease time.Duration, limit int) ([]int64, error) {
	if limit <= 0 || lease <= 0 {
		return nil, fmt.Errorf("pgstore: claiming queue: limit and lease must be positive")
	}
	rows, err := pool.Query(ctx, `WITH due AS (
			SELECT id FROM queue
			WHERE settled_at IS NULL AND next_attempt <= now()
			  AND (lease_until IS NULL OR lease_until <= now())
			ORDER BY next_attempt, id
			LIMIT $1
			FOR UPDATE SKIP LOCKED)
		UPDATE queue q SET owner = $2, lease_until = now() + $3::interval
		FROM due WHERE q.id = due.id
		RETURNING q.id`, limit, owner, fmt.Sprintf("%d microseconds", lease.Microseconds()))
	if err != nil {
		return nil, fmt.Errorf("pgstore: claiming queue for %s: %w", owner, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("pgstore: claiming queue for %s: %w", owner, err)
	}
	return ids, nil
}

// leaderLockKey is the session advisory lock key for housekeeping leadership.
const leaderLockKey = 0x706f6368_7461_0002

// Leader is one node's attempt at housekeeping leadership.
type Leader struct {
	conn *pgxpool.Conn
}

// TryLead tries once to become leader. It returns nil, nil when another
// session leads. The lock lives on a dedicated connection taken from pool;
// Close (or losing the connection) gives it up.
func TryLead(ctx context.Context, pool *pgxpool.Pool) (*Leader, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: leader: acquiring connection: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(leaderLockKey)).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("pgstore: leader: trying lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, nil
	}
	return &Leader{conn: conn}, nil
}

// Alive reports whether leadership still holds (the connection is up).
func (l *Leader) Alive(ctx context.Context) bool {
	return l.conn.Ping(ctx) == nil
}

// Close gives up leadership by closing the dedicated connection (the server
// releases session locks when a session ends).
func (l *Leader) Close() {
	// Hijack so the connection, and with it the lock, goes away rather than
	// returning to the pool still holding the lock.
	c := l.conn.Hijack()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Close(ctx)
}
