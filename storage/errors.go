package storage

// Errors of opening and using a backend, common to every backend (the
// Store's own errors are in storage.go).

import "errors"

// ErrLocked is returned (wrapped) by Open when another process holds the
// database. The CLI uses it to decide to talk to the running daemon instead.
var ErrLocked = errors.New("database is in use by another process")

// ErrNoDatabase is returned (wrapped) by Open with Options.MustExist when
// there is no database at the path.
var ErrNoDatabase = errors.New("no database")

// ErrDamaged is returned (wrapped) when the file is not a bbolt database
// (empty, or something else) or bbolt finds it damaged. The error text
// names the file and says what to do: run `pochta check`, or restore a
// backup.
var ErrDamaged = errors.New("the database is damaged")

// DamagedError is the error for a database file that is not a bbolt
// database or that bbolt cannot read; errors.Is(err, ErrDamaged) holds for
// it. Sentence is what a person reads: the file and what to do about it,
// without the layers' prefixes; Cause is what bbolt or the runtime said,
// for the log.
type DamagedError struct {
	Path     string
	Sentence string
	Cause    string
}

func (e *DamagedError) Error() string {
	if e.Cause == "" {
		return e.Sentence
	}
	return e.Sentence + " (" + e.Cause + ")"
}

// Is makes errors.Is(err, ErrDamaged) hold.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// ErrOverQuota: the write would take the user's usage past Options.Quota.
var ErrOverQuota = errors.New("over quota")
