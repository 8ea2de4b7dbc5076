package storage

import (
	"context"
	"time"
)

// WebStore keeps the web interface's sessions and preferences.
type WebStore interface {
	// CreateWebSession starts a session for a user that has just signed
	// in, valid for ttl. It returns the secret token (for the cookie),
	// which is not stored. ErrNotFound if no such user.
	CreateWebSession(ctx context.Context, address string, ttl time.Duration) (token string, s *WebSession, err error)
	// WebSession returns the live session of a token. ErrNotFound for an
	// unknown or expired token, or one whose user was deleted or has
	// changed their password since.
	WebSession(ctx context.Context, token string) (*WebSession, error)
	// DeleteWebSession ends a session (signing out); an unknown token is
	// not an error.
	DeleteWebSession(ctx context.Context, token string) error
	// WebPrefs returns a user's web preferences (zero value when unset).
	WebPrefs(ctx context.Context, address string) (WebPrefs, error)
	// SetWebPrefs stores a user's web preferences. ErrNotFound if no such
	// user.
	SetWebPrefs(ctx context.Context, address string, p WebPrefs) error
}

// WebSession is a signed-in browser.
type WebSession struct {
	Address string
	Admin   bool // read from the user at each lookup
	// CSRFToken must accompany every state-changing request of the session.
	CSRFToken string
	Created   time.Time
	Expires   time.Time
}

// WebPrefs are what a user chose in the web interface.
type WebPrefs struct {
	// QueueColumns are the optional columns shown on the queue page.
	QueueColumns []string `json:"queue_columns"`
	// QueueColumnsSet tells an empty choice from no choice yet.
	QueueColumnsSet bool `json:"queue_columns_set"`
	// MailPane is where the mail page shows a message: "below" the list
	// (the default, "") or "right" of it.
	MailPane string `json:"mail_pane,omitempty"`
}
