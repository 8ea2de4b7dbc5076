package boltstore

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pochta/pochta/storage"
)

// A transaction carries at most MaxBatchBytes of messages, or one message
// larger than that on its own: bbolt buffers every value written until its
// commit, so a batch of big messages would cost all of them at once.
func TestABatchStaysWithinItsByteBudget(t *testing.T) {
	opts := testOptions()
	opts.MaxBatchBytes = 1 << 20
	s, err := openTestBolt(filepath.Join(t.TempDir(), "pochta.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	const user = "alice@example.com"
	mustCreateUser(t, s, user)

	cases := []struct {
		name  string
		sizes []int
		txs   uint64
	}{
		// 600 KiB each: two would be 1.2 MiB, so each goes alone.
		{"each over half the budget", []int{600 << 10, 600 << 10, 600 << 10, 600 << 10}, 4},
		// A small one first does not let a big one join it.
		{"small then big", []int{4 << 10, 3 << 20}, 2},
		// Small ones still share.
		{"small ones", []int{100 << 10, 100 << 10, 100 << 10, 100 << 10}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			release := blockWriter(t, s)
			before := s.txCount.Load()
			var wg sync.WaitGroup
			errs := make(chan error, len(c.sizes))
			for i, n := range c.sizes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := s.Append(context.Background(), user, storage.Inbox, &storage.NewMessage{Raw: sizedMessage(n)})
					errs <- err
				}()
				waitQueued(t, s, i+1)
			}
			release()
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if used := s.txCount.Load() - before; used != c.txs {
				t.Errorf("%d appends of %v bytes used %d transactions, want %d", len(c.sizes), c.sizes, used, c.txs)
			}
		})
	}
}
