package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/pgtest"
	"github.com/pochta/pochta/storage"
)

type led struct {
	l   *Leader
	err error
}

// One of two nodes leads; a node waiting to lead takes over as soon as the
// leader gives up, or its session is killed (the node died); the old
// leader then sees it is no longer alive.
func TestLeaderTakeover(t *testing.T) {
	dsn := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := pool(t, dsn), pool(t, dsn)
	la, err := TryLead(ctx, a)
	if err != nil || la == nil {
		t.Fatalf("first node did not lead: %v", err)
	}
	defer la.Close()
	if lb, err := TryLead(ctx, b); err != nil || lb != nil {
		t.Fatalf("second node led while the first leads (err %v)", err)
	}
	if !la.Alive(ctx) {
		t.Fatal("leader reports itself dead")
	}

	// b waits; a steps down; b leads.
	waiting := make(chan led, 1)
	go func() {
		l, err := Lead(ctx, b)
		waiting <- led{l, err}
	}()
	la.Close()
	got := <-waiting
	if got.err != nil {
		t.Fatalf("second node did not take over after the first closed: %v", got.err)
	}
	lb := got.l
	defer lb.Close()
	if la.Alive(ctx) {
		t.Fatal("closed leader reports itself alive")
	}
	if l, err := TryLead(ctx, a); err != nil || l != nil {
		t.Fatalf("first node led again while the second leads (err %v)", err)
	}

	// a waits; b's session is killed as if its node died; a leads, and b
	// learns it lost leadership.
	go func() {
		l, err := Lead(ctx, a)
		waiting <- led{l, err}
	}()
	var killed bool
	if err := a.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(lb.pid)).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the leader's backend: %v %v", killed, err)
	}
	got = <-waiting
	if got.err != nil {
		t.Fatalf("first node did not take over from a dead leader: %v", got.err)
	}
	defer got.l.Close()
	if lb.Alive(ctx) {
		t.Fatal("leader whose session was terminated reports itself alive")
	}
	if !got.l.Alive(ctx) {
		t.Fatal("new leader reports itself dead")
	}
}

// A node waiting to lead stops waiting when its context ends, and leaves no
// lock behind.
func TestLeadCancelled(t *testing.T) {
	dsn := pgtest.New(t)
	p := pool(t, dsn)
	holder, err := TryLead(context.Background(), p)
	if err != nil || holder == nil {
		t.Fatalf("no leader: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		l, err := Lead(ctx, p)
		if l != nil {
			l.Close()
		}
		done <- err
	}()
	// Cancel only once the waiter is really waiting on the lock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiters int
		if err := p.QueryRow(context.Background(), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").Scan(&waiters); err != nil {
			t.Fatal(err)
		}
		if waiters == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Lead is not waiting on the lock after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Lead returned a leader after its context was cancelled while another led")
	}
	holder.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := Lead(ctx, p)
	if err != nil {
		t.Fatalf("leading after the cancelled waiter: %v", err)
	}
	l.Close()
}

// Leading, the store's answer to "do I run this housekeeping job?": of
// the nodes on one database exactly one says yes per job; when it closes,
// or its lock's session is killed as if its node died, another node says
// yes at one of its next tries and the old one no. Each job has its own
// leader, and a handle opened without Options.Housekeeping never leads.
func TestLeadingMovesToAnotherNode(t *testing.T) {
	dsn := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(housekeeping bool) *pgStore {
		s, err := openBackend(ctx, dsn, Options{Housekeeping: housekeeping})
		if err != nil {
			t.Fatal(err)
		}
		s.lead.retry = 0
		t.Cleanup(func() { s.Close() })
		return s
	}
	// eventually polls until ok, for 10 s: a lock given up (a closed or
	// killed session) is released by the server a moment later.
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			time.Sleep(20 * time.Millisecond) // polling a server-side release; no event to wait for
		}
	}
	const job = storage.JobExpiry
	cli := open(false)
	if cli.Leading(ctx, job) {
		t.Fatal("a handle without Housekeeping leads")
	}
	a, b, c := open(true), open(true), open(true)
	if !a.Leading(ctx, job) {
		t.Fatal("the first node to ask does not lead")
	}
	if b.Leading(ctx, job) || c.Leading(ctx, job) {
		t.Fatal("a second node leads while the first does")
	}
	if !a.Leading(ctx, job) {
		t.Fatal("the leader stopped leading by asking again")
	}
	if !b.Leading(ctx, storage.JobRetention) || a.Leading(ctx, storage.JobRetention) {
		t.Fatal("another job's leader is not its own")
	}

	a.Close()
	eventually("no other node leads after the leader closed", func() bool { return b.Leading(ctx, job) || c.Leading(ctx, job) })
	leader, other := b, c
	if c.Leading(ctx, job) {
		leader, other = c, b
	}
	if other.Leading(ctx, job) || a.Leading(ctx, job) {
		t.Fatal("two nodes lead, or a closed one does")
	}

	var killed bool
	if err := cli.pool.QueryRow(ctx, "SELECT pg_terminate_backend($1, 5000)", int32(leader.lead.jobs[job].leader.pid)).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the leader's lock session: %v %v", killed, err)
	}
	eventually("no node took over from a leader whose session was killed", func() bool { return other.Leading(ctx, job) })
	if leader.Leading(ctx, job) {
		t.Fatal("the node whose lock session was killed still says it leads")
	}
}

// A node that does not lead tries for the lock at most every retry, so
// frequent rounds do not open a connection each.
func TestLeadingTriesAtMostEveryRetry(t *testing.T) {
	dsn := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := openBackend(ctx, dsn, Options{Housekeeping: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := openBackend(ctx, dsn, Options{Housekeeping: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const job = storage.JobTombstones
	if !a.Leading(ctx, job) || b.Leading(ctx, job) {
		t.Fatal("want a leading and b not")
	}
	a.Close()
	if b.Leading(ctx, job) {
		t.Fatal("b tried again before its retry pause had passed")
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		b.lead.mu.Lock()
		b.lead.jobs[job].lastTry = time.Now().Add(-leaderRetry)
		b.lead.mu.Unlock()
		if b.Leading(ctx, job) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b did not take over once its retry pause had passed")
		}
		time.Sleep(20 * time.Millisecond) // the server releases a closed session's lock a moment later
	}
}
