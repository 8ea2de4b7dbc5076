package storage

import "context"

// Leadership is implemented by a backend that several nodes share
// (PostgreSQL): the cluster's housekeeping (the unread-lifetime sweep, queue
// retention, pruning old expunge tombstones) runs on one node at a time,
// the one for which Leading reports true. Leading is asked before each
// round; a node that answers false skips the round and asks again at the
// next. Leadership can move between two rounds (its holder died or lost its
// connection), so for a moment two nodes may both run a round: every round
// is written to be harmless twice (a message or entry is removed once).
type Leadership interface {
	Leading(ctx context.Context) bool
}

// Leading reports whether this node should run the next round of the
// cluster's housekeeping on s: s's answer when it implements Leadership,
// true otherwise (a store only one process opens, such as bbolt's).
func Leading(ctx context.Context, s any) bool {
	if l, ok := s.(Leadership); ok {
		return l.Leading(ctx)
	}
	return true
}

// Leading passes the question to the backend of a Store made by New.
func (s *store) Leading(ctx context.Context) bool { return Leading(ctx, s.Backend) }
