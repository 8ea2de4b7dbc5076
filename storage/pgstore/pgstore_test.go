package pgstore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pochta/pochta/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func pool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Two nodes opening the same fresh database together both succeed and each
// migration is recorded once.
func TestMigrateConcurrentOpen(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	applied := make([]int, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := pgxpool.New(ctx, dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer p.Close()
			applied[i], errs[i] = Migrate(ctx, p)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if applied[0]+applied[1] != SchemaVersion() {
		t.Fatalf("migrations applied %v times in total, want %d", applied, SchemaVersion())
	}
	p := pool(t, dsn)
	var n, maxv int
	if err := p.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_version").Scan(&n, &maxv); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || maxv != SchemaVersion() {
		t.Fatalf("schema_version has %d rows, max %d; want %d", n, maxv, SchemaVersion())
	}
	// Reopening applies nothing.
	if got, err := Migrate(ctx, p); err != nil || got != 0 {
		t.Fatalf("second Migrate applied %d, err %v", got, err)
	}
	// A database newer than the binary is refused.
	if _, err := p.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, 'future')", SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, p); err == nil {
		t.Fatal("Migrate accepted a database newer than the binary")
	}
}

func setupMailbox(t *testing.T, p *pgxpool.Pool) (mbox, body int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := p.Exec(ctx, "INSERT INTO users (address, password_hash) VALUES ('alice@example.org', 'x')"); err != nil {
		t.Fatal(err)
	}
	if err := p.QueryRow(ctx, "INSERT INTO mailboxes (username, name, uidvalidity) VALUES ('alice@example.org', 'INBOX', 1) RETURNING id").Scan(&mbox); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("hello"))
	if err := p.QueryRow(ctx, "INSERT INTO bodies (sha256, size, content) VALUES ($1, 5, 'hello') RETURNING id", sum[:]).Scan(&body); err != nil {
		t.Fatal(err)
	}
	return mbox, body
}

// Two nodes delivering into one mailbox at once get unique, ascending UIDs
// and monotonic modseqs, and the body's reference count matches.
func TestAppendTwoNodes(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	nodes := []*pgxpool.Pool{pool(t, dsn), pool(t, dsn)}
	mbox, body := setupMailbox(t, nodes[0])
	const per = 50
	var wg sync.WaitGroup
	results := make([][]Appended, 2)
	errs := make([]error, 2)
	for i, p := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				a, err := AppendMessage(ctx, p, mbox, NewMessage{Own: []byte("Subject: x\r\n\r\n"), SharedBodyID: body, InternalDate: time.Now(), Size: 21})
				if err != nil {
					errs[i] = err
					return
				}
				results[i] = append(results[i], a)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for _, r := range results {
		for j := 1; j < len(r); j++ {
			if r[j].UID <= r[j-1].UID || r[j].ModSeq <= r[j-1].ModSeq {
				t.Fatalf("one node saw UID/modseq go backwards: %v then %v", r[j-1], r[j])
			}
		}
		for _, a := range r {
			if seen[a.UID] {
				t.Fatalf("UID %d handed out twice", a.UID)
			}
			seen[a.UID] = true
		}
	}
	rows, err := nodes[1].Query(ctx, "SELECT uid, modseq FROM messages WHERE mailbox_id = $1 ORDER BY uid", mbox)
	if err != nil {
		t.Fatal(err)
	}
	var prev Appended
	n := 0
	for rows.Next() {
		var a Appended
		if err := rows.Scan(&a.UID, &a.ModSeq); err != nil {
			t.Fatal(err)
		}
		if a.UID != uint64(n+1) || a.ModSeq <= prev.ModSeq {
			t.Fatalf("stored message %d has UID %d modseq %d after modseq %d", n, a.UID, a.ModSeq, prev.ModSeq)
		}
		prev, n = a, n+1
	}
	if rows.Err() != nil || n != 2*per {
		t.Fatalf("stored %d messages (err %v), want %d", n, rows.Err(), 2*per)
	}
	var uidnext, modseq, msgs, unseen, size, refs int64
	if err := nodes[0].QueryRow(ctx, `SELECT uidnext, highestmodseq, messages, unseen, size,
		(SELECT refcount FROM bodies WHERE id = $2) FROM mailboxes WHERE id = $1`, mbox, body).Scan(&uidnext, &modseq, &msgs, &unseen, &size, &refs); err != nil {
		t.Fatal(err)
	}
	if uidnext != 2*per+1 || modseq != int64(prev.ModSeq) || msgs != 2*per || unseen != 2*per || size != 2*per*21 || refs != 2*per {
		t.Fatalf("mailbox uidnext %d highestmodseq %d messages %d unseen %d size %d, body refcount %d; want %d, %d, %d, %d, %d, %d",
			uidnext, modseq, msgs, unseen, size, refs, 2*per+1, prev.ModSeq, 2*per, 2*per, 2*per*21, 2*per)
	}
	if _, err := AppendMessage(ctx, nodes[0], mbox+1000, NewMessage{Own: []byte("x"), InternalDate: time.Now(), Size: 1}); err == nil {
		t.Fatal("append to a missing mailbox succeeded")
	}
}

// Two nodes claiming at once never share an entry; an expired lease is taken
// over, a live one is not.
func TestClaimQueueTwoNodes(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	nodes := []*pgxpool.Pool{pool(t, dsn), pool(t, dsn)}
	const total = 60
	if _, err := nodes[0].Exec(ctx, "INSERT INTO queue (source, sender) SELECT 'user', 'a@example.org' FROM generate_series(1, $1)", total); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([][]int64, 2)
	errs := make([]error, 2)
	for i, p := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ids, err := ClaimQueue(ctx, p, fmt.Sprintf("node%d", i), time.Hour, 7)
				if err != nil {
					errs[i] = err
					return
				}
				if len(ids) == 0 {
					return
				}
				got[i] = append(got[i], ids...)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	all := append(append([]int64{}, got[0]...), got[1]...)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) != total {
		t.Fatalf("claimed %d entries, want %d", len(all), total)
	}
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			t.Fatalf("entry %d claimed by both nodes", all[i])
		}
	}
	// Every entry holds a live lease: nothing more to claim.
	if ids, err := ClaimQueue(ctx, nodes[1], "node1", time.Hour, 100); err != nil || len(ids) != 0 {
		t.Fatalf("claimed %v (err %v) while all leases live", ids, err)
	}
	// Node 0 dies: its leases expire and node 1 takes them over.
	if _, err := nodes[0].Exec(ctx, "UPDATE queue SET lease_until = now() - interval '1 second' WHERE lease_owner = 'node0'"); err != nil {
		t.Fatal(err)
	}
	ids, err := ClaimQueue(ctx, nodes[1], "node1", time.Hour, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(got[0]) {
		t.Fatalf("took over %d expired entries, want %d", len(ids), len(got[0]))
	}
	var owners int
	if err := nodes[0].QueryRow(ctx, "SELECT count(DISTINCT lease_owner) FROM queue").Scan(&owners); err != nil || owners != 1 {
		t.Fatalf("%d distinct owners after takeover (err %v), want 1", owners, err)
	}
}

// What is due: an outbox entry past its next attempt, a held entry past
// held_until; never a sent or failed one, nor one not yet due, nor one
// under a live lease (whatever its status).
func TestClaimQueueDue(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	p := pool(t, dsn)
	var want []int64
	for _, e := range []struct {
		status, next, held string
		due                bool
	}{
		{"outbox", "now() - interval '1 minute'", "NULL", true},
		{"outbox", "now() + interval '1 hour'", "NULL", false},
		{"held", "now() - interval '1 day'", "now() - interval '1 second'", true},
		{"held", "now() - interval '1 day'", "now() + interval '1 hour'", false},
		{"sent", "now() - interval '1 day'", "NULL", false},
		{"failed", "now() - interval '1 day'", "NULL", false},
	} {
		var id int64
		if err := p.QueryRow(ctx, "INSERT INTO queue (source, status, next_attempt, held_until) VALUES ('system', $1, "+e.next+", "+e.held+") RETURNING id", e.status).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if e.due {
			want = append(want, id)
		}
	}
	got, err := ClaimQueue(ctx, p, "a", time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("claimed %v, want %v", got, want)
	}
	if again, err := ClaimQueue(ctx, p, "b", time.Minute, 10); err != nil || len(again) != 0 {
		t.Fatalf("second claimant got %v (err %v) while the leases are live", again, err)
	}
	if _, err := ClaimQueue(ctx, p, "", time.Minute, 10); err == nil {
		t.Fatal("claim without an owner accepted")
	}
}
