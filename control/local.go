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
	// OnUserDeleted, when set, is called after a user is deleted, with the
	// canonical address: the daemon ends that user's IMAP sessions.
	OnUserDeleted func(address string)
	// Relay, when set, reports the relay's state for Status (the daemon's
	// queue); nil means no daemon watches a relay.
	Relay func() RelayState
}

// AddUser implements API.
func (l *Local) AddUser(ctx context.Context, address, password string, admin bool) (*UserInfo, error) {
	if err := l.checkAddress(address); err != nil {
		return nil, err
	}
	if err := CheckPassword(address, password); err != nil {
		return nil, err
	}
	if err := l.Store.CreateUser(ctx, address, password, admin); err != nil {
		return nil, userProblem("create user", address, err)
	}
	u, err := l.Store.User(ctx, address)
	if err != nil {
		return nil, userProblem("read back user", address, err)
	}
	info := userInfo(u)
	return &info, nil
}

// SetPassword implements API.
func (l *Local) SetPassword(ctx context.Context, address, password string) error {
	if err := CheckPassword(address, password); err != nil {
		return err
	}
	if err := l.Store.SetPassword(ctx, address, password); err != nil {
		return userProblem("set the password of", address, err)
	}
	return nil
}

// DeleteUser implements API. The user's IMAP sessions end (OnUserDeleted)
// once the deletion is committed.
func (l *Local) DeleteUser(ctx context.Context, address string) error {
	if err := l.Store.DeleteUser(ctx, address); err != nil {
		return userProblem("delete user", address, err)
	}
	if l.OnUserDeleted != nil {
		l.OnUserDeleted(strings.ToLower(address))
	}
	return nil
}

// Users implements API.
func (l *Local) Users(ctx context.Context) ([]UserInfo, error) {
	users, err := l.Store.Users(ctx)
	if err != nil {
		return nil, &Problem{"cannot list the users: " + rootCause(err), err}
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
		return nil, userProblem("read the settings of", address, err)
	}
	if update != nil && update.PollInterval != nil {
		if *update.PollInterval < 0 {
			return nil, &Problem{fmt.Sprintf("the poll interval %s must be positive", *update.PollInterval), storage.ErrInvalid}
		}
		s := u.Settings
		s.PollInterval = *update.PollInterval
		if err := l.Store.SetSettings(ctx, u.Address, s); err != nil {
			return nil, userProblem("store the settings of", address, err)
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
		return nil, &Problem{"cannot read the database's statistics: " + rootCause(err), err}
	}
	queue, err := l.Store.QueueCounts(ctx)
	if err != nil {
		return nil, &Problem{"cannot count the queue's entries: " + rootCause(err), err}
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
		Relay:           l.relayState(),
	}, nil
}

// Backup implements API.
func (l *Local) Backup(ctx context.Context, w io.Writer) (int64, error) {
	n, err := l.Store.Backup(ctx, w)
	if err != nil {
		return n, &Problem{"the backup failed: " + rootCause(err), err}
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

func (l *Local) relayState() RelayState {
	if l.Relay == nil {
		return RelayState{State: RelayUnknown}
	}
	return l.Relay()
}

// checkAddress refuses, in one sentence, an address without a domain or
// with a domain that is not local.
func (l *Local) checkAddress(address string) error {
	local, domain, ok := strings.Cut(address, "@")
	if !ok || domain == "" {
		example := "example.com"
		if len(l.Domains) > 0 {
			example = l.Domains[0]
		}
		return &Problem{
			Sentence: fmt.Sprintf("the address %q needs a domain: users are full addresses such as %s@%s", address, local, example),
			Err:      storage.ErrInvalid,
		}
	}
	if len(l.Domains) > 0 && !slices.ContainsFunc(l.Domains, func(d string) bool { return strings.EqualFold(d, domain) }) {
		return &Problem{
			Sentence: fmt.Sprintf("%s is not one of this server's domains (%s): add it to domains in the configuration first", domain, strings.Join(l.Domains, ", ")),
			Err:      storage.ErrInvalid,
		}
	}
	if _, err := storage.NormalizeAddress(address); err != nil {
		return &Problem{"cannot use " + rootCause(err), err}
	}
	return nil
}

func userInfo(u *storage.User) UserInfo {
	return UserInfo{Address: u.Address, Admin: u.Admin, Created: u.Created}
}
