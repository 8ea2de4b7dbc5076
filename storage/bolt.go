package storage

import (
	"errors"
	"log/slog"
)

// Options tune a bbolt-backed store.
type Options struct {
	// Logger receives the store's log lines; nil means slog.Default().
	Logger *slog.Logger
}

// Open opens (creating if needed) the bbolt database at path.
func Open(path string, opts Options) (Store, error) {
	return nil, errors.New("storage: not implemented yet")
}
