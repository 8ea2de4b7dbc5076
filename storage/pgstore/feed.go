package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ChannelMailbox is the NOTIFY channel of mailbox changes; the payload is
// the mailbox id ("mailboxes" for a change to the mailbox list, "queue"
// for a new queue entry); a Listener hands the distinct payloads on, so a
// node reads only the mailboxes a hint names.
const ChannelMailbox = "pochta_mailbox"

// FlagUpdate is one message's flags after a change.
type FlagUpdate struct {
	UID    uint64
	Flags  []string
	ModSeq uint64
}

// ChangeSet is what changed in a mailbox after a modseq, read from one
// snapshot.
type ChangeSet struct {
	HighestModSeq uint64
	// Changed: messages whose last change (arrival or flags) is after the
	// modseq asked about, ascending by UID.
	Changed []FlagUpdate
	// Vanished: UIDs expunged after it, ascending.
	Vanished []uint64
	// VanishedIncomplete: tombstones after that modseq were swept, so
	// Vanished is only part of the expunges.
	VanishedIncomplete bool

	// vanishedSeqs: Vanished with each tombstone's modseq.
	vanishedSeqs []vanishedAt
}

type vanishedAt struct {
	UID    uint64
	ModSeq uint64
}

// txBeginner is a pool or one of its connections.
type txBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// notifyMailbox queues a hint for every node's listener, sent at commit.
func notifyMailbox(ctx context.Context, tx pgx.Tx, mailboxID int64) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", ChannelMailbox, strconv.FormatInt(mailboxID, 10))
	return err
}

// SetFlags replaces a message's flags, giving it the mailbox's next modseq,
// which it returns; the mailbox's unseen count follows.
func SetFlags(ctx context.Context, pool *pgxpool.Pool, mailboxID int64, uid uint64, flags []string) (uint64, error) {
	if flags == nil {
		flags = []string{}
	}
	var modseq uint64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1 RETURNING highestmodseq", mailboxID).Scan(&modseq); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("no mailbox %d", mailboxID)
			}
			return err
		}
		var wasSeen, isSeen bool
		err := tx.QueryRow(ctx, `WITH old AS (SELECT seen FROM messages WHERE mailbox_id = $1 AND uid = $2 FOR UPDATE)
			UPDATE messages m SET flags = $3, modseq = $4 FROM old
			WHERE m.mailbox_id = $1 AND m.uid = $2 RETURNING old.seen, m.seen`, mailboxID, uid, flags, modseq).Scan(&wasSeen, &isSeen)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("no message %d", uid)
		}
		if err != nil {
			return err
		}
		if wasSeen != isSeen {
			delta := 1
			if isSeen {
				delta = -1
			}
			if _, err := tx.Exec(ctx, "UPDATE mailboxes SET unseen = unseen + $2 WHERE id = $1", mailboxID, delta); err != nil {
				return err
			}
		}
		return notifyMailbox(ctx, tx, mailboxID)
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: setting flags of %d in mailbox %d: %w", uid, mailboxID, err)
	}
	return modseq, nil
}

// Expunge removes messages, leaving each a tombstone with a new modseq, and
// returns the UIDs it removed (ascending; UIDs not there are ignored).
func Expunge(ctx context.Context, pool *pgxpool.Pool, mailboxID int64, uids []uint64) ([]uint64, error) {
	var gone []uint64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var modseq uint64
		if err := tx.QueryRow(ctx, "SELECT highestmodseq FROM mailboxes WHERE id = $1 FOR UPDATE", mailboxID).Scan(&modseq); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("no mailbox %d", mailboxID)
			}
			return err
		}
		rows, err := tx.Query(ctx, "DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) RETURNING uid, seen, size", mailboxID, uids)
		if err != nil {
			return err
		}
		var unseen, size int64
		gone = gone[:0]
		for rows.Next() {
			var uid uint64
			var seen bool
			var n int64
			if err := rows.Scan(&uid, &seen, &n); err != nil {
				return err
			}
			gone = append(gone, uid)
			if !seen {
				unseen++
			}
			size += n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(gone) == 0 {
			return nil
		}
		slices.Sort(gone)
		seqs := make([]uint64, len(gone))
		for i := range gone {
			seqs[i] = modseq + uint64(i) + 1
		}
		if _, err := tx.Exec(ctx, `INSERT INTO expunged (mailbox_id, uid, modseq)
			SELECT $1, u, s FROM unnest($2::bigint[], $3::bigint[]) AS t(u, s)
			ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq, expunged_at = now()`, mailboxID, gone, seqs); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE mailboxes SET highestmodseq = $2, messages = messages - $3,
			unseen = unseen - $4, size = size - $5 WHERE id = $1`, mailboxID, seqs[len(seqs)-1], len(gone), unseen, size); err != nil {
			return err
		}
		return notifyMailbox(ctx, tx, mailboxID)
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: expunging from mailbox %d: %w", mailboxID, err)
	}
	return gone, nil
}

// Changes reads what changed in a mailbox after modseq since, from one
// snapshot (REPEATABLE READ): every change up to HighestModSeq is in it,
// none after, so a reader that asks again from HighestModSeq misses
// nothing, whichever node made the changes.
func Changes(ctx context.Context, pool *pgxpool.Pool, mailboxID int64, since uint64) (*ChangeSet, error) {
	return changes(ctx, pool, mailboxID, since)
}

func changes(ctx context.Context, db txBeginner, mailboxID int64, since uint64) (*ChangeSet, error) {
	var cs *ChangeSet
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		cs, err = changesIn(ctx, tx, mailboxID, since)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: changes of mailbox %d since %d: %w", mailboxID, since, err)
	}
	return cs, nil
}

// changesIn reads the feed inside tx.
func changesIn(ctx context.Context, tx pgx.Tx, mailboxID int64, since uint64) (*ChangeSet, error) {
	cs := &ChangeSet{}
	err := func() error {
		var floor uint64
		if err := tx.QueryRow(ctx, "SELECT highestmodseq, vanished_floor FROM mailboxes WHERE id = $1", mailboxID).Scan(&cs.HighestModSeq, &floor); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("no mailbox %d", mailboxID)
			}
			return err
		}
		cs.VanishedIncomplete = since < floor
		rows, err := tx.Query(ctx, "SELECT uid, flags, modseq FROM messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid", mailboxID, since)
		if err != nil {
			return err
		}
		cs.Changed, err = pgx.CollectRows(rows, pgx.RowToStructByPos[FlagUpdate])
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, "SELECT uid, modseq FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid", mailboxID, since)
		if err != nil {
			return err
		}
		cs.vanishedSeqs, err = pgx.CollectRows(rows, pgx.RowToStructByPos[vanishedAt])
		for _, v := range cs.vanishedSeqs {
			cs.Vanished = append(cs.Vanished, v.UID)
		}
		return err
	}()
	return cs, err
}
