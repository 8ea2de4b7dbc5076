package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/pgtest"
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
