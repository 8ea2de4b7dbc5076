package boltstore

// The writer: every write transaction of the store runs here, on one
// goroutine. These rules are what the rest of pochta relies on; keep them.
//
//  1. Callers never open a write transaction. They build a request (a func
//     of the transaction plus a reply channel), submit it and wait. All
//     parsing, hashing and other slow work happens in the caller before
//     submitting; a request func only does bolt work.
//  2. Group commit: the writer takes one request, then drains whatever else
//     is already queued (up to Options.MaxBatch requests or
//     Options.MaxBatchBytes of message data) and runs them all in ONE bolt
//     transaction, so one fsync acknowledges many callers. A request that
//     would take the batch past MaxBatchBytes waits for the next one, so a
//     transaction carries at most MaxBatchBytes, or one request that is
//     larger on its own: bbolt holds a page buffer of every value written
//     until commit, and that is what the budget bounds. Commit keeps
//     bolt's fsync (NoSync is false): a nil error means the data is on disk.
//  3. A request func must be a pure function of the transaction: no side
//     effects outside it, results assigned (not accumulated) and events
//     collected into its own list, because it may run twice. If any func of
//     a batch fails, the whole transaction is rolled back and every request
//     of the batch is run again in a transaction of its own, so one failure
//     fails nobody else.
//  4. After a successful commit, and before any caller of that commit is
//     answered, the commit's events are passed to the listeners in the order
//     the requests ran, on this goroutine. Hence events reach listeners in
//     commit order, and a caller that gets its answer knows its events have
//     already been delivered. imapd's sequence numbers depend on this:
//     within a mailbox, EventAppend UIDs are seen ascending, and an expunge
//     is seen after the appends that preceded it.
//  5. A caller's ctx is honoured until its request is taken into a
//     transaction (while queued, or if it has expired when the writer picks
//     it up); after that the result is final and is always delivered.
//  6. Close stops accepting requests, lets the writer finish everything
//     queued, then closes bolt.

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/pochta/pochta/storage"
	bolt "go.etcd.io/bbolt"
)

// request is one write submitted to the writer.
type request struct {
	ctx  context.Context
	size int // message bytes, for the batch budget
	run  func(tx *bolt.Tx, ev *eventList) error
	ev   eventList
	err  error
	done chan struct{}
}

// eventList is the name the bbolt code knows Events by.
type eventList = storage.Events

// write submits fn to the writer and waits for its result. fn must follow
// rule 3 above.
func write[T any](s *boltStore, ctx context.Context, size int, fn func(tx *bolt.Tx, ev *eventList) (T, error)) (T, error) {
	var result T
	r := &request{
		ctx:  ctx,
		size: size,
		ev:   storage.NewEvents(storage.OriginOf(ctx)),
		done: make(chan struct{}),
	}
	r.run = func(tx *bolt.Tx, ev *eventList) error {
		var err error
		result, err = fn(tx, ev)
		return err
	}
	if err := s.submit(ctx, r); err != nil {
		var zero T
		return zero, err
	}
	<-r.done
	if r.err != nil {
		var zero T
		return zero, r.err
	}
	return result, nil
}

func (s *boltStore) submit(ctx context.Context, r *request) error {
	s.closing.RLock()
	defer s.closing.RUnlock()
	if s.closed {
		return storage.ErrClosed
	}
	select {
	case s.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *request) finish(err error) {
	r.err = err
	close(r.done)
}

// exec runs the request's func in tx, turning a panic into an error so that
// one bad request cannot take the writer (and every mailbox) down.
func (s *boltStore) exec(r *request, tx *bolt.Tx) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // a page pointer past the map
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("storage: write request panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("storage: write failed: %v", p)
		}
	}()
	r.ev.Reset()
	return r.run(tx, &r.ev)
}

func (s *boltStore) runWriter() {
	defer close(s.writerDone)
	batch := make([]*request, 0, s.maxBatch)
	var next *request // taken from the queue, over the last batch's budget
	for {
		first := next
		if next = nil; first == nil {
			r, ok := <-s.reqs
			if !ok {
				return
			}
			first = r
		}
		batch = append(batch[:0], first)
		size := first.size
	drain:
		for len(batch) < s.maxBatch && size < s.maxBytes {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				if size+r.size > s.maxBytes {
					next = r
					break drain
				}
				batch = append(batch, r)
				size += r.size
			default:
				break drain
			}
		}
		s.runBatch(batch)
		clear(batch)
	}
}

func (s *boltStore) runBatch(batch []*request) {
	live := make([]*request, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.finish(err)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	if s.commit(live) {
		return
	}
	for _, r := range live {
		s.commit([]*request{r})
	}
}

// commit runs reqs in one transaction and answers them. It returns false,
// answering nobody, when a request of a multi-request batch failed and the
// transaction was rolled back (the caller then runs them one by one).
func (s *boltStore) commit(reqs []*request) bool {
	tx, err := s.db.Begin(true)
	if err != nil {
		for _, r := range reqs {
			r.finish(fmt.Errorf("storage: begin transaction: %w", err))
		}
		return true
	}
	s.txCount.Add(1)
	for _, r := range reqs {
		if err := s.exec(r, tx); err != nil {
			_ = tx.Rollback()
			if len(reqs) > 1 {
				return false
			}
			r.finish(err)
			return true
		}
	}
	if err := guard(s.path, tx.Commit); err != nil {
		_ = guard(s.path, tx.Rollback) // after a panic in Commit; otherwise ErrTxClosed
		for _, r := range reqs {
			r.finish(fmt.Errorf("storage: commit: %w", err))
		}
		return true
	}
	s.listenMu.Lock()
	listeners := s.listeners
	s.listenMu.Unlock()
	for _, r := range reqs {
		for _, ev := range r.ev.List() {
			for _, fn := range listeners {
				s.notify(fn, ev)
			}
		}
	}
	for _, r := range reqs {
		r.finish(nil)
	}
	return true
}

// notify calls one listener; a panicking listener is logged, not fatal.
func (s *boltStore) notify(fn func(storage.Event), ev storage.Event) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("storage: event listener panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	fn(ev)
}
