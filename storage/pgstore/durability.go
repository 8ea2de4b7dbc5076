package pgstore

import (
	"context"
	"fmt"
	"strings"
)

// DurabilityWarning says, in one sentence, why the server q is connected to
// would lose acknowledged mail in a crash, or returns "" when it would not.
// pochta answers 250 only after the PostgreSQL commit returns; that commit
// is durable unless synchronous_commit is off for the session (a crash then
// loses the last moments of commits) or fsync is off on the server (a
// crash may lose or corrupt anything). "local", "remote_write", "on" and
// "remote_apply" all keep the promise on the primary; which of them also
// waits for a standby is the operator's choice.
func DurabilityWarning(ctx context.Context, q Querier) (string, error) {
	var syncCommit, fsync string
	if err := q.QueryRow(ctx, "SELECT current_setting('synchronous_commit'), current_setting('fsync')").Scan(&syncCommit, &fsync); err != nil {
		return "", fmt.Errorf("pgstore: reading durability settings: %w", err)
	}
	var off []string
	if syncCommit == "off" {
		off = append(off, "synchronous_commit is off")
	}
	if fsync == "off" {
		off = append(off, "fsync is off")
	}
	if len(off) == 0 {
		return "", nil
	}
	return fmt.Sprintf("PostgreSQL %s: mail acknowledged with 250 can be lost in a crash of the database server", strings.Join(off, " and ")), nil
}
