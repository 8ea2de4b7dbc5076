package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/config"
)

// sharedLimits are the [limits] the SMTP and IMAP servers share: one login
// throttle and one connection limiter for the whole daemon, so a client is
// counted the same whichever port it uses.
type sharedLimits struct {
	logins      *abuse.Logins
	connections *abuse.Connections
	commandRate abuse.Rate
}

func newSharedLimits(l config.Limits) sharedLimits {
	connections := abuse.NewConnections(l.MaxConnectionsPerAddress, l.MaxConnections)
	connections.SetLoginTimeout(l.LoginTimeout.Duration)
	return sharedLimits{
		logins: abuse.NewLogins(abuse.LoginOptions{
			FailuresPerAddress: l.AuthFailuresPerAddress,
			FailuresPerAccount: l.AuthFailuresPerAccount,
			BlockTime:          l.AuthBlockTime.Duration,
		}),
		connections: connections,
		commandRate: abuse.Rate{PerSecond: float64(l.CommandsPerSecond)},
	}
}

// makePrivate gives path mode 0600 when others than its owner may read or
// write it. bbolt creates the database 0600, but one copied into place or
// restored from a backup may carry wider permissions, and it holds every
// password hash and message.
func makePrivate(logger *slog.Logger, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("checking the mode of %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("making %s private (mode %v): %w", path, fi.Mode().Perm(), err)
	}
	logger.Warn("the database was readable by others; its mode is now 0600", "path", path, "was", fi.Mode().Perm().String())
	return nil
}
