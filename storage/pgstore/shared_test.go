package pgstore

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pochta/pochta/internal/pgtest"
)

// hammer runs fn from 4 goroutines on each of the nodes, n times each.
func hammer(t *testing.T, nodes []*pgxpool.Pool, n int, fn func(p *pgxpool.Pool) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes)*4)
	for _, p := range nodes {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					if err := fn(p); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Two nodes claiming at once count toward one organisation-wide limit:
// exactly the limit's worth of messages go through, whichever node sends
// them, and a message held by the user limit gives its system count back.
func TestDailyLimitsAcrossNodes(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	nodes := []*pgxpool.Pool{pool(t, dsn), pool(t, dsn)}
	const userLimit, systemLimit = 30, 45
	var counted, heldUser, heldSystem atomic.Int64
	count := func(user string) func(p *pgxpool.Pool) error {
		return func(p *pgxpool.Pool) error {
			return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
				held, err := CountDay(ctx, tx, "2026-12-02", user, systemLimit, userLimit)
				switch held {
				case "":
					counted.Add(1)
				case HeldByUser:
					heldUser.Add(1)
				case HeldBySystem:
					heldSystem.Add(1)
				}
				return err
			})
		}
	}
	// 2 nodes x 4 workers x 6 = 48 messages from alice: 30 pass.
	hammer(t, nodes, 6, count("alice@example.org"))
	if counted.Load() != userLimit || heldUser.Load() != 48-userLimit || heldSystem.Load() != 0 {
		t.Fatalf("alice: %d counted, %d held by her limit, %d by the system's; want %d, %d, 0",
			counted.Load(), heldUser.Load(), heldSystem.Load(), userLimit, 48-userLimit)
	}
	sys, alice, err := DayCount(ctx, nodes[0], "2026-12-02", "alice@example.org")
	if err != nil || sys != userLimit || alice != userLimit {
		t.Fatalf("day count system %d alice %d (err %v), want %d and %d: held messages must not count", sys, alice, err, userLimit, userLimit)
	}
	// 48 system messages: only 15 more fit under the system limit.
	counted.Store(0)
	hammer(t, nodes, 6, count(""))
	if counted.Load() != systemLimit-userLimit || heldSystem.Load() != 48-(systemLimit-userLimit) {
		t.Fatalf("system mail: %d counted, %d held; want %d and %d", counted.Load(), heldSystem.Load(), systemLimit-userLimit, 48-(systemLimit-userLimit))
	}
	if sys, _, err := DayCount(ctx, nodes[1], "2026-12-02", ""); err != nil || sys != systemLimit {
		t.Fatalf("system count %d (err %v), want %d", sys, err, systemLimit)
	}
	// Another day starts from zero.
	err = pgx.BeginFunc(ctx, nodes[0], func(tx pgx.Tx) error {
		held, err := CountDay(ctx, tx, "2026-12-03", "alice@example.org", systemLimit, userLimit)
		if held != "" {
			t.Errorf("first message of a new day held by the %s limit", held)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Two nodes that both hit a limit, or both see the relay go down, send the
// alert once between them.
func TestAlertsOnceAcrossNodes(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	nodes := []*pgxpool.Pool{pool(t, dsn), pool(t, dsn)}
	var firsts atomic.Int64
	hammer(t, nodes, 5, func(p *pgxpool.Pool) error {
		return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			first, err := MarkAlerted(ctx, tx, "2026-12-02", "alice@example.org")
			if first {
				firsts.Add(1)
			}
			return err
		})
	})
	if firsts.Load() != 1 {
		t.Fatalf("limit alert marked first %d times across nodes, want 1", firsts.Load())
	}
	for _, state := range []string{"down: connection refused", "", "down: timeout"} {
		var changes atomic.Int64
		hammer(t, nodes, 5, func(p *pgxpool.Pool) error {
			return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
				changed, err := SetRelayState(ctx, tx, state)
				if changed {
					changes.Add(1)
				}
				return err
			})
		})
		if changes.Load() != 1 {
			t.Fatalf("relay state %q recorded as a change %d times across nodes, want 1", state, changes.Load())
		}
		if got, err := RelayState(ctx, nodes[1]); err != nil || got != state {
			t.Fatalf("relay state %q (err %v), want %q", got, err, state)
		}
	}
}
