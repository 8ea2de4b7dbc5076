package storagetest

import (
	"context"
	"sync/atomic"

	"github.com/pochta/pochta/storage"
)

// Follower is a Store of a cluster whose housekeeping another node leads
// until Lead is set (storage.Leadership). Each question is also offered on
// Asked (dropped when nobody receives), so a test can wait for rounds.
type Follower struct {
	storage.Store
	Lead  atomic.Bool
	Asked chan struct{}
}

// NewFollower wraps s.
func NewFollower(s storage.Store) *Follower {
	return &Follower{Store: s, Asked: make(chan struct{})}
}

// Leading implements storage.Leadership.
func (f *Follower) Leading(context.Context, string) bool {
	select {
	case f.Asked <- struct{}{}:
	default:
	}
	return f.Lead.Load()
}
