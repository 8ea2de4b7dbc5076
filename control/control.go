// Package control owns pochta's administration API: the operations behind
// `pochta user …`, `pochta status` and `pochta backup`.
//
// The API has two implementations with the same behaviour and the same
// results: Local works on an open storage.Store (used inside the daemon, and
// by the CLI when no daemon runs), and Client speaks HTTP+JSON to a running
// daemon over its Unix socket (bbolt allows one process to hold the file, so
// while the daemon runs the CLI must go through it). Serve exposes a Local
// over that socket. Errors keep their kind across the socket: a Client
// returns errors that match storage.ErrNotFound, ErrExists, ErrInvalid… with
// errors.Is, exactly as Local does. Their text is one sentence for a person
// (a *Problem: "user bob@example.com already exists"); the internal chain
// behind it travels along for the debug log (Problem.Detail).
//
// AddUser and SetPassword apply the one password rule (CheckPassword), so
// it holds whichever implementation the CLI reaches.
package control

import (
	"context"
	"io"
	"time"

	"github.com/pochta/pochta/storage"
)

// API is what an administrator can do. The queue and read-tracking parts
// live in queue.go and sent.go.
type API interface {
	QueueAPI
	SentAPI

	// AddUser creates a user with the standard mailboxes.
	AddUser(ctx context.Context, address, password string, admin bool) (*UserInfo, error)
	// SetPassword replaces a user's password.
	SetPassword(ctx context.Context, address, password string) error
	// DeleteUser removes a user and all their mail.
	DeleteUser(ctx context.Context, address string) error
	// Users lists every user, ordered by address.
	Users(ctx context.Context) ([]UserInfo, error)
	// Settings returns a user's settings; with a non-nil update it stores
	// the update first.
	Settings(ctx context.Context, address string, update *SettingsUpdate) (*UserSettings, error)
	// Status describes the message server.
	Status(ctx context.Context) (*Status, error)
	// Backup writes a consistent copy of the database to w.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// Check reads every record and reports those it cannot decode; with
	// repair it quarantines the bad messages (storage.Store.Check).
	Check(ctx context.Context, repair bool) (*storage.CheckReport, error)
}

// UserInfo is one user as the CLI shows it.
type UserInfo struct {
	Address string    `json:"address"`
	Admin   bool      `json:"admin"`
	Created time.Time `json:"created"`
}

// SettingsUpdate changes a user's settings; nil fields stay as they are.
type SettingsUpdate struct {
	// PollInterval is the client check interval; 0 returns to the server
	// default.
	PollInterval *time.Duration `json:"poll_interval,omitempty"`
}

// UserSettings are a user's effective settings.
type UserSettings struct {
	Address string `json:"address"`
	// PollInterval is the effective client check interval ("5m", "1m30s", "1d").
	PollInterval string `json:"poll_interval"`
	// PollIntervalSeconds is PollInterval in seconds, for scripts.
	PollIntervalSeconds float64 `json:"poll_interval_seconds"`
	// PollIntervalDefault is true when the user has no value of their own.
	PollIntervalDefault bool `json:"poll_interval_default"`
}

// Status is the message server at a glance (the seed's list of message
// servers, for this one server).
type Status struct {
	Version         string `json:"version"`
	Database        string `json:"database"`
	DatabaseSize    int64  `json:"database_size"`
	PollInterval    string `json:"poll_interval"`
	MessageLifetime string `json:"message_lifetime"`
	Users           int    `json:"users"`
	Messages        int    `json:"messages"`
	// DaemonRunning is true when the answer came from a running daemon.
	DaemonRunning bool `json:"daemon_running"`
	// Queue counts the outbound queue's entries by status.
	Queue storage.QueueCounts `json:"queue"`
	// Relay is the outbound relay's state.
	Relay RelayState `json:"relay"`
}

// Relay states in RelayState.State.
const (
	RelayUp            = "up"
	RelayUntried       = "untried"  // nothing has gone to it since the daemon started
	RelayDown          = "down"     // unreachable: the queue is paused
	RelaySettings      = "settings" // answers but refuses our login or TLS: the queue is paused
	RelayNotConfigured = "not configured"
	RelayUnknown       = "unknown" // no daemon runs, so nobody watches the relay
)

// RelayState is the outbound relay as the running daemon's queue sees it.
type RelayState struct {
	// Address is [email_queue] relay ("" when not configured).
	Address string `json:"address"`
	// State is one of RelayUp, RelayUntried, RelayDown, RelaySettings,
	// RelayNotConfigured, RelayUnknown.
	State string `json:"state"`
	// Since is when the daemon last saw the state change (or started);
	// absent when not known.
	Since *time.Time `json:"since,omitempty"`
}
