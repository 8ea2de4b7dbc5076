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
	"errors"
	"fmt"
	"time"
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

// PickableAt is when an outbox entry can next be claimed: its next
// attempt, or the end of its lease if that is later.
func (e *QueueEntry) PickableAt() time.Time {
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
