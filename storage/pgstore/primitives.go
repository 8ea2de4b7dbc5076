package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Appended is where AppendMessage put a message.
type Appended struct {
	UID, ModSeq uint64
}

// NewMessage is the row data AppendMessage stores. The message's bytes are
// Own followed, when SharedBodyID is not 0, by that shared body (whose
// reference count the database increments). Size is the whole length.
type NewMessage struct {
	Own          []byte
	SharedBodyID int64
	Parsed       []byte
	Flags        []string
	InternalDate time.Time
	Size         int64
}

// AppendMessage adds msg to mailbox mailboxID, allocating its UID (the
// mailbox's UIDNEXT) and a new HIGHESTMODSEQ and updating the mailbox's
// counters in the same transaction. The UPDATE takes the mailbox row's lock,
// so appends to one mailbox from any number of nodes are serialised: UIDs
// are unique and ascending, modseqs monotonic. Every node's Listener on
// ChannelMailbox gets a hint at commit.
func AppendMessage(ctx context.Context, pool *pgxpool.Pool, mailboxID int64, msg NewMessage) (Appended, error) {
	var a Appended
	flags := msg.Flags
	if flags == nil {
		flags = []string{}
	}
	unseen := int64(1)
	if slices.Contains(flags, `\Seen`) {
		unseen = 0
	}
	var shared *int64
	if msg.SharedBodyID != 0 {
		shared = &msg.SharedBodyID
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE mailboxes
			SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,
			    messages = messages + 1, unseen = unseen + $2, size = size + $3
			WHERE id = $1 RETURNING uidnext - 1, highestmodseq`, mailboxID, unseen, msg.Size).Scan(&a.UID, &a.ModSeq)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("no mailbox %d", mailboxID)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO messages
			(mailbox_id, uid, modseq, flags, internal_date, size, own, shared_body_id, parsed)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			mailboxID, a.UID, a.ModSeq, flags, msg.InternalDate, msg.Size, nonNil(msg.Own), shared, nonNil(msg.Parsed))
		if err != nil {
			return err
		}
		return notifyMailbox(ctx, tx, mailboxID)
	})
	if err != nil {
		return Appended{}, fmt.Errorf("pgstore: appending to mailbox %d: %w", mailboxID, err)
	}
	return a, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ClaimQueue leases up to limit due queue entries to owner until now+lease
// and returns their ids in ascending order, picking the longest-due first. An entry is due when its due_at
// (next attempt, or held_until for a held entry) has passed and it has no
// live lease; concurrent claimants never get the same entry (FOR UPDATE SKIP
// LOCKED: a claimant skips rows another is claiming instead of waiting), and
// an entry whose owner died is claimed again once its lease expires.
func ClaimQueue(ctx context.Context, pool *pgxpool.Pool, owner string, lease time.Duration, limit int) ([]int64, error) {
	if limit <= 0 || lease <= 0 || owner == "" {
		return nil, fmt.Errorf("pgstore: claiming queue: owner, limit and lease are required")
	}
	rows, err := pool.Query(ctx, `WITH due AS (
			SELECT id FROM queue
			WHERE due_at <= now() AND (lease_until IS NULL OR lease_until <= now())
			ORDER BY due_at, id
			LIMIT $1
			FOR UPDATE SKIP LOCKED)
		UPDATE queue q SET lease_owner = $2, lease_until = now() + $3::interval, rev = rev + 1
		FROM due WHERE q.id = due.id
		RETURNING q.id`, limit, owner, fmt.Sprintf("%d microseconds", lease.Microseconds()))
	if err != nil {
		return nil, fmt.Errorf("pgstore: claiming queue for %s: %w", owner, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("pgstore: claiming queue for %s: %w", owner, err)
	}
	slices.Sort(ids)
	return ids, nil
}
