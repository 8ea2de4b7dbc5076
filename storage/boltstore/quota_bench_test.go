package boltstore

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkUsage200Mailboxes measures the quota's usage sum (one mailbox
// record read per mailbox, no message read) for a user with 200 mailboxes
// of 50 messages each: the cost of every quota check at APPEND, COPY and
// RCPT.
func BenchmarkUsage200Mailboxes(b *testing.B) {
	s, _ := openTestStore(b)
	ctx := context.Background()
	const user = "alice@example.com"
	mustCreateUser(b, s, user)
	raw := []byte(simpleMessage("usage"))
	for i := range 200 {
		name := fmt.Sprintf("Box%03d", i)
		if err := s.CreateMailbox(ctx, user, name); err != nil {
			b.Fatal(err)
		}
		fill(b, s, user, name, 50, raw)
	}
	want := int64(200 * 50 * len(raw))
	b.ResetTimer()
	for b.Loop() {
		used, err := s.Usage(ctx, user)
		if err != nil || used != want {
			b.Fatalf("usage %d %v, want %d", used, err, want)
		}
	}
}
