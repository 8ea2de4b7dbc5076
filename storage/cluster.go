package storage

import "context"

// Leadership is implemented by a backend that several nodes share
// (PostgreSQL): each job of the cluster's housekeeping (the unread-lifetime
// sweep, queue retention, pruning old expunge tombstones) runs on one node
// at a time, the one for which Leading(ctx, job) reports true. Each job has
// its own leader, so a node that never runs a job (its lifetime is off)
// does not keep the others from it. Leading is asked before each round; a
// node that answers false skips the round and asks again at the next.
// Leadership can move between two rounds (its holder died or lost its
// connection), so for a moment two nodes may both run a round: every round
// is written to be harmless twice (a message or entry is removed once).
type Leadership interface {
	Leading(ctx context.Context, job string) bool
}

// The housekeeping jobs.
const (
	JobExpiry     = "expiry"
	JobRetention  = "retention"
	JobTombstones = "tombstones"
)

// Leading reports whether this node should run the next round of job on
// s: s's answer when it implements Leadership, true otherwise (a store only
// one process opens, such as bbolt's).
func Leading(ctx context.Context, s any, job string) bool {
	if l, ok := s.(Leadership); ok {
		return l.Leading(ctx, job)
	}
	return true
}

// Leading passes the question to the backend of a Store made by New.
func (s *store) Leading(ctx context.Context, job string) bool { return Leading(ctx, s.Backend, job) }

// Syncer is implemented by a backend that several nodes share: SyncMailbox
// announces, before it returns, every change other nodes have committed to
// the mailbox so far (the store's listeners get their events as usual), so
// that what a session is about to be shown (SELECT's FLAGS with a keyword
// another node has just set) is not behind what it could read.
type Syncer interface {
	SyncMailbox(ctx context.Context, mailboxID uint64) error
}

// SyncMailbox passes the request to s when it is a Syncer; otherwise there
// are no other nodes and nothing to do.
func SyncMailbox(ctx context.Context, s any, mailboxID uint64) error {
	if x, ok := s.(Syncer); ok {
		return x.SyncMailbox(ctx, mailboxID)
	}
	return nil
}

// SyncMailbox passes the request to the backend of a Store made by New.
func (s *store) SyncMailbox(ctx context.Context, mailboxID uint64) error {
	return SyncMailbox(ctx, s.Backend, mailboxID)
}
