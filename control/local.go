package control

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/storage"
)

// Local implements API directly on a store.
type Local struct {
	Store storage.Store
	// Version is reported by Status.
	Version string
	// PollInterval is the server's default client check interval.
	PollInterval time.Duration
	// MessageLifetime is how long unread mail is kept (0: forever).
	MessageLifetime time.Duration
	// Running is reported as Status.DaemonRunning.
	Running bool
	// Domains are the local domains; users are addresses in one of them.
	// Empty: any domain (tests).
	Domains []string
}

// AddUser implements API.
func (l *Local) AddUser(ctx context.Context, address, password string, admin bool) (*UserInfo, error) {
	if password == "" {
		return nil, fmt.Errorf("add user %s: empty password: %w", address, storage.ErrInvalid)
	}
	if !l.isLocal(address) {
		return nil, fmt.Errorf("add user %s: the domain is not one of this server's domains (%s): %w",
			address, strings.Join(l.Domains, ", "), storage.ErrInvalid)
	}
	if err := l.Store.CreateUser(ctx, address, password, admin); err != nil {
		return nil, fmt.Errorf("add user %s: %w", address, err)
	}
	u, err := l.Store.User(ctx, address)
	if err != nil {
		return nil, fmt.Errorf("add user %s: %w", address, err)
	}
	info := userInfo(u)
	return &info, nil
}

// SetPassword implements API.
func (l *Local) SetPassword(ctx context.Context, address, password string) error {
	if password == "" {
		return fmt.Errorf("set password of %s: empty password: %w", address, storage.ErrInvalid)
	}
	if err := l.Store.SetPassword(ctx, address, password); err != nil {
		return fmt.Errorf("set password of %s: %w", address, err)
	}
	return nil
}

// DeleteUser implements API.
func (l *Local) DeleteUser(ctx context.Context, address string) error {
	if err := l.Store.DeleteUser(ctx, address); err != nil {
		return fmt.Errorf("delete user %s: %w", address, err)
	}
	return nil
}

// Users implements API.
func (l *Local) Users(ctx context.Context) ([]UserInfo, error) {
	users, err := l.Store.Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out := make([]UserInfo, 0, len(users))
	for i := range users {
		out = append(out, userInfo(&users[i]))
	}
	return out, nil
}

// Settings implements API.
func (l *Local) Settings(ctx context.Context, address string, update *SettingsUpdate) (*UserSettings, error) {
	u, err := l.Store.User(ctx, address)
	if err != nil {
		return nil, fmt.Errorf("settings of %s: %w", address, err)
	}
	if update != nil && update.PollInterval != nil {
		if *update.PollInterval < 0 {
			return nil, fmt.Errorf("settings of %s: poll interval %s must be positive: %w", address, *update.PollInterval, storage.ErrInvalid)
		}
		s := u.Settings
		s.PollInterval = *update.PollInterval
		if err := l.Store.SetSettings(ctx, u.Address, s); err != nil {
			return nil, fmt.Errorf("settings of %s: %w", address, err)
		}
		u.Settings = s
	}
	poll, isDefault := u.Settings.PollInterval, false
	if poll == 0 {
		poll, isDefault = l.PollInterval, true
	}
	return &UserSettings{
		Address:             u.Address,
		PollInterval:        config.FormatDuration(poll),
		PollIntervalSeconds: poll.Seconds(),
		PollIntervalDefault: isDefault,
	}, nil
}

// Status implements API.
func (l *Local) Status(ctx context.Context) (*Status, error) {
	st, err := l.Store.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	queue, err := l.Store.QueueCounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	lifetime := "off"
	if l.MessageLifetime > 0 {
		lifetime = config.FormatDuration(l.MessageLifetime)
	}
	return &Status{
		Version:         l.Version,
		Database:        st.Path,
		DatabaseSize:    st.Size,
		PollInterval:    config.FormatDuration(l.PollInterval),
		MessageLifetime: lifetime,
		Users:           st.Users,
		Messages:        st.Messages,
		DaemonRunning:   l.Running,
		Queue:           queue,
	}, nil
}

// Backup implements API.
func (l *Local) Backup(ctx context.Context, w io.Writer) (int64, error) {
	n, err := l.Store.Backup(ctx, w)
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

// Check implements API.
func (l *Local) Check(ctx context.Context, repair bool) (*storage.CheckReport, error) {
	rep, err := l.Store.Check(ctx, repair)
	if err != nil {
		return rep, fmt.Errorf("check: %w", err)
	}
	return rep, nil
}

// isLocal reports whether address is in one of the local domains.
func (l *Local) isLocal(address string) bool {
	if len(l.Domains) == 0 {
		return true
	}
	at := strings.LastIndexByte(address, '@')
	return at >= 0 && slices.ContainsFunc(l.Domains, func(d string) bool {
		return strings.EqualFold(d, address[at+1:])
	})
}

func userInfo(u *storage.User) UserInfo {
	return UserInfo{Address: u.Address, Admin: u.Admin, Created: u.Created}
}
