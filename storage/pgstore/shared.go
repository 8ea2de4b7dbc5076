package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Limits named by CountDay, as storage.LimitSystem and storage.LimitUser.
const (
	HeldBySystem = "system"
	HeldByUser   = "user"
)

// CountDay counts one message toward day's limits inside tx (the claim's
// transaction): toward the system-wide count always and, when user is not
// "", toward that user's count, but only if neither is already at its limit
// (0 = no limit); the system limit is checked first. It returns "" when the
// message was counted, or the limit that held it (nothing is counted then).
// The counts are rows every node updates under their row locks, so the
// limits hold for the whole organisation's mail however many nodes claim at
// once.
func CountDay(ctx context.Context, tx pgx.Tx, day, user string, systemLimit, userLimit int) (held string, err error) {
	if day == "" || systemLimit < 0 || userLimit < 0 {
		return "", errors.New("pgstore: counting a day: a day and limits not below 0 are required")
	}
	bump := func(who string, limit int) (bool, error) {
		var n int64
		err := tx.QueryRow(ctx, `INSERT INTO daily_counters AS c (day, username, count) VALUES ($1, $2, 1)
			ON CONFLICT (day, username) DO UPDATE SET count = c.count + 1
			WHERE $3 = 0 OR c.count < $3
			RETURNING c.count`, day, who, limit).Scan(&n)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		return err == nil, err
	}
	// Always the system row first, then the user's: one lock order for
	// every node, so two claims never deadlock.
	ok, err := bump("", systemLimit)
	if err != nil {
		return "", fmt.Errorf("pgstore: counting %s toward the system limit: %w", day, err)
	}
	if !ok {
		return HeldBySystem, nil
	}
	if user == "" {
		return "", nil
	}
	ok, err = bump(user, userLimit)
	if err != nil {
		return "", fmt.Errorf("pgstore: counting %s for %s: %w", day, user, err)
	}
	// A user at their limit must not keep the system count.
	if !ok {
		if _, err := tx.Exec(ctx, "UPDATE daily_counters SET count = count - 1 WHERE day = $1 AND username = '' AND count > 0", day); err != nil {
			return "", fmt.Errorf("pgstore: giving back %s's system count: %w", day, err)
		}
		return HeldByUser, nil
	}
	return "", nil
}

// DayCount returns day's system-wide count and user's ("" for none).
func DayCount(ctx context.Context, q Querier, day, user string) (system, perUser int64, err error) {
	err = q.QueryRow(ctx, `SELECT
		coalesce((SELECT count FROM daily_counters WHERE day = $1 AND username = ''), 0),
		coalesce((SELECT count FROM daily_counters WHERE day = $1 AND username = $2 AND $2 <> ''), 0)`, day, user).Scan(&system, &perUser)
	if err != nil {
		return 0, 0, fmt.Errorf("pgstore: day count %s: %w", day, err)
	}
	return system, perUser, nil
}

// MarkAlerted records that day's limit alert (user "" for the system
// limit) is being sent, inside the transaction that writes the alert. It
// reports whether this call is the first: across all nodes exactly one
// committed transaction gets true, so the alert goes out once.
func MarkAlerted(ctx context.Context, tx pgx.Tx, day, user string) (first bool, err error) {
	tag, err := tx.Exec(ctx, "INSERT INTO daily_alerts (day, username) VALUES ($1, $2) ON CONFLICT DO NOTHING", day, user)
	if err != nil {
		return false, fmt.Errorf("pgstore: marking the %s alert: %w", day, err)
	}
	return tag.RowsAffected() == 1, nil
}

// SetRelayState records the relay's health ("" = up) inside tx and reports
// whether it changed. Nodes seeing the same change at once are serialised
// on the one row: exactly one of them gets true (and writes the alert in
// the same transaction); the others find the state already recorded.
func SetRelayState(ctx context.Context, tx pgx.Tx, state string) (changed bool, err error) {
	tag, err := tx.Exec(ctx, "UPDATE relay_state SET state = $1, updated_at = now() WHERE state <> $1", state)
	if err != nil {
		return false, fmt.Errorf("pgstore: relay state: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// RelayState returns the relay's health as last recorded ("" = up).
func RelayState(ctx context.Context, q Querier) (string, error) {
	var s string
	if err := q.QueryRow(ctx, "SELECT state FROM relay_state").Scan(&s); err != nil {
		return "", fmt.Errorf("pgstore: relay state: %w", err)
	}
	return s, nil
}

// Querier reads a row: a *pgxpool.Pool, *pgx.Conn or pgx.Tx.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
