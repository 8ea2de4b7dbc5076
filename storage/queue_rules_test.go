package storage

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"
)

// memRecords is a backend of the queue's records in memory: the rules run
// over it exactly as over bbolt, which is what a second backend relies on.
// A transaction works on a copy that replaces the state only when fn
// succeeds (all-or-nothing).
type memRecords struct {
	mu    sync.Mutex
	state memState
}

type memState struct {
	entries map[uint64]QueueEntry
	days    map[string]int
	alerted map[string]bool
	inbox   map[string]int // notices delivered, by recipient
}

func (s memState) clone() memState {
	return memState{maps.Clone(s.entries), maps.Clone(s.days), maps.Clone(s.alerted), maps.Clone(s.inbox)}
}

// memTx implements the queue's part of RecordTx; any other method panics
// (the embedded nil interface), so the test also shows which records the
// queue's rules need.
type memTx struct {
	RecordTx
	st *memState
}

type memNotice struct{ size int }

func (m memNotice) Size() int { return m.size }

func (r *memRecords) ViewRecords(ctx context.Context, fn func(RecordTx) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.state.clone()
	return fn(memTx{st: &st})
}

func (r *memRecords) UpdateRecords(ctx context.Context, size int, fn func(RecordTx, *Events) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.state.clone()
	ev := NewEvents(OriginOf(ctx))
	if err := fn(memTx{st: &st}, &ev); err != nil {
		return err
	}
	r.state = st
	return nil
}

func (r *memRecords) PrepareNotices(ns []*Notice, now time.Time) ([]PreparedNotice, int, error) {
	var out []PreparedNotice
	for _, n := range ns {
		if n != nil && len(n.Recipients) > 0 {
			out = append(out, PreparedNotice{Recipients: n.Recipients, Message: memNotice{len(n.Message.Raw)}})
		}
	}
	return out, 0, nil
}

func (t memTx) QueueEntry(id uint64) (*QueueEntry, error) {
	e, ok := t.st.entries[id]
	if !ok {
		return nil, ErrNotFound
	}
	return e.Clone(), nil
}

func (t memTx) SaveQueueEntry(old, e *QueueEntry, ev *Events) error {
	e.Rev++
	t.st.entries[e.ID] = *e.Clone()
	return nil
}

func (t memTx) QueueHeader(id uint64) (string, error) { return "Subject: x\r\n\r\n", nil }

func dayKey(day, user string) string { return day + "|" + strings.ToLower(user) }

func (t memTx) DayCount(day, user string) (int, error) { return t.st.days[dayKey(day, user)], nil }

func (t memTx) AddDayCount(day, user string, delta int) error {
	t.st.days[dayKey(day, user)] = max(t.st.days[dayKey(day, user)]+delta, 0)
	return nil
}

func (t memTx) PruneDayCounts(keep string) error {
	maps.DeleteFunc(t.st.days, func(k string, _ int) bool { return k < keep })
	return nil
}

func (t memTx) Alerted(day, user string) (bool, error) { return t.st.alerted[dayKey(day, user)], nil }

func (t memTx) SetAlerted(day, user string) error {
	t.st.alerted[dayKey(day, user)] = true
	return nil
}

func (t memTx) PruneAlerted(keep string) error {
	maps.DeleteFunc(t.st.alerted, func(k string, _ bool) bool { return k < keep })
	return nil
}

func (t memTx) DeliverNotices(ns []PreparedNotice, ev *Events) error {
	for _, n := range ns {
		for _, r := range n.Recipients {
			t.st.inbox[r]++
		}
	}
	return nil
}

// TestClaimRulesOverAnotherBackend: the daily limit, the hold and its
// once-a-day alert work over records that are not bbolt's.
func TestClaimRulesOverAnotherBackend(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	r := &memRecords{state: memState{entries: map[uint64]QueueEntry{}, days: map[string]int{}, alerted: map[string]bool{}, inbox: map[string]int{}}}
	for id := uint64(1); id <= 3; id++ {
		r.state.entries[id] = QueueEntry{ID: id, Status: QueueOutbox, Source: SourceUser, User: "alice@example.com", NextAttempt: now,
			Recipients: []QueueRecipient{{Address: "x@example.org", State: RcptPending}}}
	}
	rules := Rules{Records: r}
	claim := func(id uint64, at time.Time, day string) *QueueClaimed {
		t.Helper()
		res, err := rules.ClaimQueueEntry(ctx, QueueClaim{ID: id, Now: at, Day: day, HoldUntil: at.Add(24 * time.Hour), UserLimit: 1,
			UserAlert: &Notice{Recipients: []string{"alice@example.com"}, Message: &NewMessage{Raw: []byte("Subject: limit\r\n\r\nover\r\n")}},
			Owner:     "node-a", LeaseUntil: at.Add(time.Minute)})
		if err != nil {
			t.Fatalf("claim %d: %v", id, err)
		}
		return res
	}
	if res := claim(1, now, "2026-12-02"); res.Entry == nil || !res.Counted {
		t.Fatalf("first claim of the day: %+v, want the entry, counted", res)
	}
	if res := claim(2, now, "2026-12-02"); res.Entry != nil || res.Held != LimitUser || !res.Alerted {
		t.Fatalf("second claim over the limit of 1: %+v, want held by the user limit, alerted", res)
	}
	if res := claim(3, now, "2026-12-02"); res.Held != LimitUser || res.Alerted {
		t.Fatalf("third claim: %+v, want held without a second alert the same day", res)
	}
	if n := r.state.inbox["alice@example.com"]; n != 1 {
		t.Fatalf("alice got %d alerts, want 1", n)
	}
	if e := r.state.entries[2]; e.Status != QueueHeld || !e.HeldUntil.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("entry 2 is %s until %v, want held until the next day", e.Status, e.HeldUntil)
	}
	next := now.Add(24 * time.Hour)
	if res := claim(2, next, "2026-12-03"); res.Entry == nil || !res.Counted {
		t.Fatalf("the held entry on the next day: %+v, want it counted and claimed", res)
	}
	if _, err := rules.ClaimQueueEntry(ctx, QueueClaim{ID: 9, Now: now, Day: "2026-12-02", Owner: "node-a", LeaseUntil: now.Add(time.Minute)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim of an unknown entry: %v, want ErrNotFound", err)
	}
}
