package pgstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/pochta/pochta/storage"
)

// Two nodes changing the flags of the same messages at once: each node's
// listeners see the mailbox's changes with ascending modseqs, across
// messages too (a session shown a newer MODSEQ is never then told an older
// one: imapd's tracker takes every change up to the last modseq published
// as queued).
func TestFlagEventsAscendPerMessageAcrossNodes(t *testing.T) {
	a, b := twoNodes(t, "alice@example.com", "bob@example.com")
	ctx := context.Background()
	box := inbox(t, a, "bob@example.com")
	var uids []imap.UID
	for i := range 4 {
		res := deliverTo(t, a, fmt.Sprintf("m%d", i), "bob@example.com")
		uids = append(uids, res.Copies["bob@example.com"].UID)
	}
	type seen struct {
		mu   sync.Mutex
		last map[imap.UID]uint64
		top  uint64
		bad  []string
	}
	watchers := map[string]*seen{}
	for name, s := range map[string]storage.Store{"A": a, "B": b} {
		w := &seen{last: map[imap.UID]uint64{}}
		watchers[name] = w
		s.Listen(func(ev storage.Event) {
			if ev.MailboxID != box || ev.Kind != storage.EventFlags && ev.Kind != storage.EventAppend {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if ev.ModSeq < w.last[ev.UID] {
				w.bad = append(w.bad, fmt.Sprintf("UID %d: modseq %d after %d", ev.UID, ev.ModSeq, w.last[ev.UID]))
			} else if ev.ModSeq < w.top {
				w.bad = append(w.bad, fmt.Sprintf("UID %d: modseq %d after the mailbox's %d", ev.UID, ev.ModSeq, w.top))
			}
			w.last[ev.UID] = max(w.last[ev.UID], ev.ModSeq)
			w.top = max(w.top, ev.ModSeq)
		})
	}
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for n, s := range []storage.Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				op := imap.StoreFlagsAdd
				if i%2 == 1 {
					op = imap.StoreFlagsDel
				}
				if _, err := s.StoreFlags(ctx, "bob@example.com", box, []imap.UID{uids[(i+n)%len(uids)]}, op, []imap.Flag{imap.Flag(fmt.Sprintf("$K%d", n))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for name, w := range watchers {
		w.mu.Lock()
		if len(w.bad) > 0 {
			t.Errorf("node %s: %d events went back, first %v", name, len(w.bad), w.bad[:min(5, len(w.bad))])
		}
		w.mu.Unlock()
	}
}
