package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pochta/pochta/control"
)

func statusCommand() *command {
	return &command{
		name: "status", args: "[--json]",
		summary: "the message server at a glance: database, intervals, users, messages",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.BoolVar(&o.json, "json", false, "print JSON")
		},
		run: func(ctx context.Context, e *env, _ []string) error {
			return withAPI(e, func(api control.API) error {
				s, err := api.Status(ctx)
				if err != nil {
					return err
				}
				if e.o.json {
					return printJSON(e.stdout, s)
				}
				fmt.Fprintf(e.stdout, "daemon:            %s\n", map[bool]string{true: "running", false: "not running"}[s.DaemonRunning])
				fmt.Fprintf(e.stdout, "database:          %s (%s)\n", s.Database, humanBytes(s.DatabaseSize))
				fmt.Fprintf(e.stdout, "poll interval:     %s\n", s.PollInterval)
				fmt.Fprintf(e.stdout, "message lifetime:  %s\n", s.MessageLifetime)
				fmt.Fprintf(e.stdout, "users:             %d\n", s.Users)
				fmt.Fprintf(e.stdout, "messages:          %d\n", s.Messages)
				fmt.Fprintf(e.stdout, "queue:             %d outbox, %d held, %d sent, %d failed\n", s.Queue.Outbox, s.Queue.Held, s.Queue.Sent, s.Queue.Failed)
				fmt.Fprintf(e.stdout, "relay:             %s\n", describeRelay(s.Relay))
				return nil
			})
		},
	}
}

// describeRelay is the relay line of `pochta status`.
func describeRelay(r control.RelayState) string {
	var text string
	switch r.State {
	case control.RelayNotConfigured:
		return "not configured (mail for other domains is refused)"
	case control.RelayUnknown:
		text = "unknown (no daemon is running to watch it)"
	case control.RelayUntried:
		return r.Address + " not tried yet (nothing has gone to it since the daemon started)"
	case control.RelayDown:
		text = "down: unreachable, the queue is paused"
	case control.RelaySettings:
		text = "down: it refuses our login or TLS, the queue is paused"
	default:
		text = r.State
	}
	if r.Since != nil {
		text += " since " + r.Since.Local().Format(time.DateTime)
	}
	return r.Address + " " + text
}

func backupCommand() *command {
	return &command{
		name: "backup", args: "DIR",
		summary: "writes a consistent copy of the live database into DIR without stopping the daemon",
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, e *env, args []string) error {
			cfg, err := loadConfig(e)
			if err != nil {
				return err
			}
			if cfg.DatabaseURL() != "" {
				return fmt.Errorf("[message_server] database is a PostgreSQL database (%s), which pochta backup does not copy: back it up with pg_dump or pg_basebackup", cfg.RedactedDatabase())
			}
			return withAPI(e, func(api control.API) error {
				for _, stale := range removeStaleBackups(args[0]) {
					fmt.Fprintf(e.stderr, "removed %s, left by a backup that did not finish\n", stale)
				}
				path, n, err := writeBackup(ctx, api, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "wrote %s (%s)\n", path, humanBytes(n))
				return nil
			})
		},
	}
}

// writeBackup writes the copy to a temporary file first and renames it
// only when complete and synced, so DIR never holds a half-written backup
// under the final name.
func writeBackup(ctx context.Context, api control.API, dir string) (string, int64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, fmt.Errorf("backup directory: %w", err)
	}
	final := filepath.Join(dir, "pochta-"+time.Now().UTC().Format("20060102T150405Z")+".db")
	f, err := os.CreateTemp(dir, backupTempPattern)
	if err != nil {
		return "", 0, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	// Held until the process ends, however it ends: the lock is how the
	// next backup tells a running one from one that was killed.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return "", 0, fmt.Errorf("backup: lock %s: %w", f.Name(), err)
	}
	n, err := api.Backup(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(f.Name(), final)
	}
	if err != nil {
		return "", n, fmt.Errorf("backup: %w", err)
	}
	return final, n, nil
}

// backupTempPattern names a backup being written (os.CreateTemp pattern).
const backupTempPattern = ".pochta-backup-*"

// staleBackupAge is how old an unlocked temporary file must be before it is
// taken for a leftover: a backup locks its file right after creating it,
// and the age closes that moment's gap.
const staleBackupAge = time.Minute

// removeStaleBackups deletes the temporary files that killed backups left
// in dir (a killed process loses its lock; a running backup keeps it) and
// returns their names. Errors only mean a file stays for the next time.
func removeStaleBackups(dir string) []string {
	names, _ := filepath.Glob(filepath.Join(dir, backupTempPattern))
	var removed []string
	for _, name := range names {
		fi, err := os.Lstat(name)
		if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < staleBackupAge {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && os.Remove(name) == nil {
			removed = append(removed, name)
		}
		f.Close()
	}
	return removed
}

func versionCommand() *command {
	return &command{
		name: "version", args: "",
		summary: "prints the version and build information",
		run: func(_ context.Context, e *env, _ []string) error {
			fmt.Fprintf(e.stdout, "pochta %s (%s %s/%s", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						fmt.Fprintf(e.stdout, ", commit %s", s.Value)
					}
				}
			}
			fmt.Fprintln(e.stdout, ")")
			return nil
		},
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
