package storage

// Queue leases: which node is attempting an entry, and until when.
//
// The promise: at most one attempt of an entry is in progress at a time,
// across every process and store handle that shares the database. A claim
// (ClaimQueueEntry) takes the entry only when nobody holds an unexpired
// lease on it, and records the claimer (QueueClaim.Owner) and LeaseUntil
// in the same transaction that picks it, so two claimers racing for one
// entry are ordered by the database: the second sees the first's lease and
// gets nothing (QueueClaimed.LeasedBy). While a lease holds, the entry is
// not due: its place in the due index is LeaseUntil, so other workers
// neither list nor claim it, and a worker that died mid-attempt (a crash,
// kill -9, a node gone) leaves an entry that falls due again the moment
// its lease runs out. An attempt that lasts renews its lease
// (RenewQueueLease); recording the attempt (UpdateQueueEntry) ends it.
//
// Renewal and recording are fenced by Rev: every claim and renewal writes
// a new Rev, so a worker whose lease ran out and was taken over finds its
// Rev stale and can neither renew (ErrLeaseLost) nor record its attempt.
// The worker is expected to give up its attempt before its lease runs out
// when it cannot renew (package queue does), so the one window for a
// message relayed twice stays the one documented in package queue: a crash
// between the relay's 250 and the commit that records it.
//
// A node restarting finds the leases its previous run left behind;
// ReleaseQueueLeases ends them at once, so a restart does not wait out
// the lease. That is safe because a node name belongs to one running
// process: bbolt allows one process per database file, and nodes sharing
// a PostgreSQL database must each have their own [message_server] node.
// Lease times are the claimers' clocks: nodes' clocks must agree to well
// within a lease (NTP does).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrLeaseLost: the lease being renewed is no longer the caller's (it ran
// out and another claim took the entry, or the entry was recorded,
// resent or deleted meanwhile).
var ErrLeaseLost = errors.New("queue lease lost")

// LeaseRenewal extends the lease of an attempt in progress.
type LeaseRenewal struct {
	ID uint64
	// Owner and Rev are the lease holder and the entry's Rev as its claim
	// (or its last renewal) returned them.
	Owner string
	Rev   uint64
	// Until is the new end of the lease, after Now.
	Now, Until time.Time
}

// leasedAt reports whether someone holds an unexpired lease at now.
func (e *QueueEntry) leasedAt(now time.Time) bool {
	return e.LeaseOwner != "" && e.LeaseUntil.After(now)
}

// pickableAt is when an outbox entry can next be claimed: its next
// attempt, or the end of its lease if that is later.
func (e *QueueEntry) pickableAt() time.Time {
	if e.LeaseOwner != "" && e.LeaseUntil.After(e.NextAttempt) {
		return e.LeaseUntil
	}
	return e.NextAttempt
}

func (c *QueueClaim) checkLease() error {
	if c.Owner == "" {
		return fmt.Errorf("claim without an owner: %w", ErrInvalid)
	}
	if !c.LeaseUntil.After(c.Now) {
		return fmt.Errorf("lease until %s does not end after now (%s): %w", c.LeaseUntil, c.Now, ErrInvalid)
	}
	return nil
}

// RenewQueueLease implements QueueStore: it moves the lease of r.ID to
// r.Until and returns the entry with its new Rev. ErrLeaseLost when the
// lease is not r.Owner's at r.Rev any more.
func (s *boltStore) RenewQueueLease(ctx context.Context, r LeaseRenewal) (*QueueEntry, error) {
	if r.Owner == "" || !r.Until.After(r.Now) {
		return nil, fmt.Errorf("storage: renew lease of queue entry %d: owner %q until %s: %w", r.ID, r.Owner, r.Until, ErrInvalid)
	}
	res, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (*QueueEntry, error) {
		q, err := openQueue(tx)
		if err != nil {
			return nil, err
		}
		old, err := q.load(r.ID)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("queue entry %d: deleted: %w", r.ID, ErrLeaseLost)
		}
		if err != nil {
			return nil, err
		}
		if old.Status != QueueOutbox || old.LeaseOwner != r.Owner || old.Rev != r.Rev {
			return nil, fmt.Errorf("queue entry %d is leased to %q at rev %d: %w", r.ID, old.LeaseOwner, old.Rev, ErrLeaseLost)
		}
		e := old.Clone()
		e.LeaseUntil = r.Until
		if err := q.saveEntry(old, e, ev); err != nil {
			return nil, err
		}
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: renew lease: %w", err)
	}
	return res, nil
}

// ReleaseQueueLeases implements QueueStore: it ends every lease owner
// holds that runs out after now and no later than horizon (the longest
// lease owner takes), making those entries due at once, and returns how
// many it ended. A node calls it when it starts, before it claims
// anything: what it finds was left by its previous run.
func (s *boltStore) ReleaseQueueLeases(ctx context.Context, owner string, now, horizon time.Time) (int, error) {
	if owner == "" {
		return 0, fmt.Errorf("storage: release queue leases: no owner: %w", ErrInvalid)
	}
	n, err := write(s, ctx, 0, func(tx *bolt.Tx, ev *eventList) (int, error) {
		q, err := openQueue(tx)
		if err != nil {
			return 0, err
		}
		// Leased entries sit in the due index at their lease's end, so
		// only the keys between now and horizon need reading.
		var ids []uint64
		c := q.due.Cursor()
		from := make([]byte, 8)
		binary.BigEndian.PutUint64(from, uint64(max(now.UnixNano(), 0)))
		limit := uint64(max(horizon.UnixNano(), 0))
		for k, _ := c.Seek(from); k != nil; k, _ = c.Next() {
			if len(k) != 16 {
				return 0, fmt.Errorf("queue index key %x: %w", k, errCorrupt)
			}
			if binary.BigEndian.Uint64(k) > limit {
				break
			}
			ids = append(ids, binary.BigEndian.Uint64(k[8:]))
		}
		released := 0
		for _, id := range ids {
			old, err := q.load(id)
			if err != nil {
				return 0, err
			}
			if old.LeaseOwner != owner || !old.leasedAt(now) {
				continue
			}
			e := old.Clone()
			e.LeaseOwner, e.LeaseUntil = "", time.Time{}
			if err := q.saveEntry(old, e, ev); err != nil {
				return 0, err
			}
			ev.add(Event{Kind: EventQueued, QueueID: id})
			released++
		}
		return released, nil
	})
	if err != nil {
		return 0, fmt.Errorf("storage: release queue leases of %q: %w", owner, err)
	}
	return n, nil
}
