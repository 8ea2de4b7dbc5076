package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/storage"
)

// sweepInterval is how often a store sweeps old tombstones; the first
// sweep runs sweepDelay after Open, so short-lived commands never do.
// Only the node that leads the cluster's housekeeping (Leading) sweeps; two
// sweeping at once during a hand-over is harmless: each tombstone goes once.
const (
	sweepInterval = time.Hour
	sweepDelay    = time.Minute
)

// sweepTombstones removes the tombstones of expunges before cutoff and
// raises each mailbox's vanished_floor to the highest modseq removed, so
// Changes since an older modseq says its vanished list is incomplete
// (storage.ChangeSet.VanishedIncomplete). It returns how many it removed.
func (s *pgStore) sweepTombstones(ctx context.Context, cutoff time.Time) (int, error) {
	var n int
	err := s.write(ctx, func(tx pgx.Tx, ev *storage.Events) error {
		return tx.QueryRow(ctx, `WITH gone AS (
				DELETE FROM expunged WHERE expunged_at < $1 RETURNING mailbox_id, modseq),
			floors AS (SELECT mailbox_id, max(modseq) AS floor, count(*) AS n FROM gone GROUP BY mailbox_id),
			raised AS (UPDATE mailboxes m SET vanished_floor = greatest(m.vanished_floor, f.floor)
				FROM floors f WHERE m.id = f.mailbox_id RETURNING 1)
			SELECT coalesce(sum(n), 0)::int FROM floors`, cutoff).Scan(&n)
	})
	return n, err
}

// runSweeper sweeps old tombstones until stop is closed.
func (s *pgStore) runSweeper(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	timer := time.NewTimer(sweepDelay)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if !s.Leading(ctx, storage.JobTombstones) {
			cancel()
			timer.Reset(sweepInterval)
			continue
		}
		n, err := s.sweepTombstones(ctx, time.Now().Add(-storage.TombstoneLifetime))
		cancel()
		if err != nil {
			s.log.Warn("pgstore: sweeping old expunge tombstones", "err", err)
		} else if n > 0 {
			s.log.Info("pgstore: swept old expunge tombstones", "count", n)
		}
		timer.Reset(sweepInterval)
	}
}
