package queue

// The lease of an attempt in progress (storage/queue_lease.go has the
// records). The promise: one attempt of an entry at a time across every
// node sharing the store, and a crashed attempt is taken over when its
// lease runs out.
//
//   - The claim takes a lease of Options.Lease for this node
//     (Options.Node) in the transaction that picks the entry; an entry
//     leased by anyone, this node included, is not claimed again until the
//     lease runs out. Within one node the in-flight set keeps two workers
//     off one entry as well.
//   - While the attempt runs (a long DATA transfer), the lease is renewed
//     every Options.LeaseRenew. When a renewal finds the lease lost (taken
//     over, or the entry deleted) the attempt is cut off at once; when
//     renewals fail for another reason (the store is unreachable) the
//     attempt is cut off before the lease would run out. Either way it
//     stops before another node can start, so the only duplicate left is
//     the documented one: a cut between the relay's 250 and our commit.
//   - Recording the attempt ends the lease. An attempt that cannot be
//     recorded keeps it until it runs out; then the entry is tried again.
//   - Start ends the leases this node's previous run left behind (a crash,
//     kill -9), so a restart retries those entries at once instead of
//     waiting the lease out. A node name must therefore belong to one
//     running process ([message_server] node).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pochta/pochta/storage"
)

// Lease defaults.
const (
	// DefaultLease is how long a claim holds an entry without a renewal:
	// how long a crashed attempt keeps its entry from other nodes.
	DefaultLease = 2 * time.Minute
)

// leaseKeeper renews one attempt's lease until finish.
type leaseKeeper struct {
	stop, done chan struct{}
	once       sync.Once
	// Written by the keeper goroutine; read after done is closed.
	rev  uint64
	lost error
}

// keepLease renews the lease e was claimed with, every LeaseRenew, until
// finish; it calls cut when the attempt must stop.
func (q *Queue) keepLease(e *storage.QueueEntry, cut context.CancelFunc) *leaseKeeper {
	o := q.opt()
	k := &leaseKeeper{stop: make(chan struct{}), done: make(chan struct{}), rev: e.Rev}
	until := e.LeaseUntil
	go func() {
		defer close(k.done)
		tick := time.NewTicker(o.LeaseRenew)
		defer tick.Stop()
		for {
			select {
			case <-k.stop:
				return
			case <-tick.C:
			}
			now := q.now()
			ctx, cancel := context.WithTimeout(context.Background(), max(o.LeaseRenew, o.Lease/4))
			saved, err := q.store.RenewQueueLease(ctx, storage.LeaseRenewal{
				ID: e.ID, Owner: o.Node, Rev: k.rev, Now: now, Until: now.Add(o.Lease)})
			cancel()
			switch {
			case err == nil:
				k.rev, until = saved.Rev, saved.LeaseUntil
				continue
			case errors.Is(err, storage.ErrLeaseLost):
				k.lost = err
			case !q.now().Add(o.LeaseRenew).Before(until):
				// The next try would come too late: stop while the lease
				// still keeps everyone else off.
				k.lost = fmt.Errorf("the lease runs out at %s and could not be renewed: %w", until, err)
			default:
				q.log.Warn("queue: renewing an attempt's lease failed; trying again", "id", e.ID, "lease_until", until, "err", err)
				continue
			}
			cut()
			return
		}
	}()
	return k
}

// finish stops the renewals and returns the entry's Rev as last written,
// and why the lease was lost (nil if it was not). Calling it again (the
// deferred call after a panic) is harmless.
func (k *leaseKeeper) finish() (uint64, error) {
	k.once.Do(func() { close(k.stop) })
	<-k.done
	return k.rev, k.lost
}

// releaseOwnLeases ends what this node's previous run still holds.
func (q *Queue) releaseOwnLeases(ctx context.Context) error {
	o := q.opt()
	now := q.now()
	n, err := q.store.ReleaseQueueLeases(ctx, o.Node, now, now.Add(o.Lease))
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if n > 0 {
		q.log.Info("queue: entries whose attempt was cut off by a restart are due again", "entries", n, "node", o.Node)
	}
	return nil
}
