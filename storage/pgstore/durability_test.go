package pgstore

import (
	"context"
	"strings"
	"testing"

	"github.com/pochta/pochta/internal/pgtest"
)

// The test cluster runs with fsync and synchronous_commit off, which breaks
// the 250-means-stored promise: the warning names both; a session that
// turns synchronous_commit back on leaves only fsync.
func TestDurabilityWarning(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	w, err := DurabilityWarning(ctx, pool(t, dsn))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w, "synchronous_commit is off") || !strings.Contains(w, "fsync is off") {
		t.Fatalf("warning %q does not name both settings", w)
	}
	w, err = DurabilityWarning(ctx, pool(t, dsn+"&options=-c%20synchronous_commit%3Don"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(w, "synchronous_commit") || !strings.Contains(w, "fsync is off") {
		t.Fatalf("with synchronous_commit on, warning %q, want only fsync", w)
	}
}
