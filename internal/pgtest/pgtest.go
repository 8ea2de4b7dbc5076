// Package pgtest runs a throwaway PostgreSQL cluster for one test binary.
//
// Promises: Main starts one cluster (initdb + pg_ctl from
// /usr/lib/postgresql/*/bin, run as the postgres user when the tests run as
// root) whose data directory and unix socket live in a fresh temporary
// directory, listening on 127.0.0.1 on a free port with fsync off; it stops
// the cluster and removes the directory when the tests end. New creates a
// fresh, empty database per test and returns its DSN. A test binary killed
// before it could stop the cluster (a test timeout, SIGKILL) leaves none
// behind: a detached watchdog stops it within a second or so. If
// PostgreSQL cannot be started the test fails with a message saying why; it
// is never skipped.
//
// Start starts such a cluster outside package testing (bench/loadgen uses
// it), with the same directory, socket, port and watchdog; Options.Durable
// keeps PostgreSQL's own fsync and commit settings. Its caller creates
// databases with CreateDatabase and stops it with Stop, which removes its
// directory; should the caller die first, the watchdog stops it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	mu       sync.Mutex
	running  *Cluster
	startErr error
	dbSeq    atomic.Int64
)

// Cluster is a running throwaway PostgreSQL cluster on 127.0.0.1.
type Cluster struct {
	dir    string
	bin    string
	port   int
	asUser string // "" when not switching user
}

// Options says how Start configures a cluster.
type Options struct {
	// Durable keeps PostgreSQL's defaults for fsync, synchronous_commit
	// and full_page_writes, so every COMMIT is on disk before it
	// returns, as a production server would run. Without it (the tests'
	// setting) they are off: faster, and nothing survives a crash.
	Durable bool
}

// Main wraps testing.M: it runs the tests and stops the cluster (if one was
// started) afterwards. Use it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if running != nil {
		if err := running.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		running = nil
	}
	return code
}

// New returns the DSN of a fresh database on the shared test cluster,
// starting the cluster on first use. It fails t if PostgreSQL cannot be
// started.
func New(t testing.TB) string {
	t.Helper()
	c, err := get()
	if err != nil {
		t.Fatalf("pgtest: PostgreSQL cannot be started (install Debian's postgresql package): %v", err)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := c.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// CreateDatabase creates an empty database called name (a plain SQL
// identifier) on the cluster and returns its DSN.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("connecting to the throwaway cluster: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return c.DSN(name), nil
}

// DSN is the URL of database db on the cluster, as the postgres
// superuser over loopback TCP (the cluster trusts it; no password).
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// ServerPID is the process ID of the cluster's postmaster (its
// postmaster.pid), the parent of every backend: for reading the CPU time
// the server used.
func (c *Cluster) ServerPID() (int, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("reading the server's pid: %w", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid starts with %q, not a pid", first)
	}
	return pid, nil
}

func get() (*Cluster, error) {
	mu.Lock()
	defer mu.Unlock()
	if running != nil || startErr != nil {
		return running, startErr
	}
	running, startErr = Start(Options{})
	return running, startErr
}

func findBin() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) == 0 {
		if p, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", errors.New("no pg_ctl under /usr/lib/postgresql/*/bin or in PATH")
	}
	// Newest major version: sort numerically by the version directory.
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	return filepath.Dir(matches[0]), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a cluster as the tests' is started (the package comment)
// and returns it running; the caller stops it with Stop. The error says
// why PostgreSQL could not be started.
func Start(opts Options) (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root but no postgres user: %w", err)
		}
		c.asUser = "postgres"
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		dir, err := os.MkdirTemp(traversableTempDir(), "pgtest-")
		if err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("chown %s: %w", dir, err)
		}
		c.dir = dir
	} else {
		dir, err := os.MkdirTemp("", "pgtest-")
		if err != nil {
			return nil, err
		}
		c.dir = dir
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		os.RemoveAll(c.dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	for attempt := 0; ; attempt++ {
		c.port, err = freePort()
		if err != nil {
			os.RemoveAll(c.dir)
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		serverOpts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=100", c.port, c.dir)
		if !opts.Durable {
			serverOpts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
		}
		out, err := c.run("pg_ctl", "-D", data, "-l", filepath.Join(c.dir, "log"), "-o", serverOpts, "-w", "-t", "60", "start")
		if err == nil {
			c.watchdog()
			return c, nil
		}
		if attempt >= 2 {
			logText, _ := os.ReadFile(filepath.Join(c.dir, "log"))
			os.RemoveAll(c.dir)
			return nil, fmt.Errorf("pg_ctl start: %v: %s\nserver log:\n%s", err, out, logText)
		}
	}
}

// traversableTempDir is os.TempDir when the postgres user can reach it
// (every directory on the way is searchable by others, as a root-only
// $TMPDIR under /root is not), and /tmp otherwise.
func traversableTempDir() string {
	base, err := filepath.Abs(os.TempDir())
	if err != nil {
		return "/tmp"
	}
	for d := base; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return base
		}
	}
}

// watchdog starts a detached shell that stops the cluster and removes its
// directory once this test binary is gone, so a binary killed by a test
// timeout or a signal (which runs no cleanup) leaves no server behind. After
// a normal stop it finds nothing left to do.
func (c *Cluster) watchdog() {
	stop := c.command("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	script := `parent=$1 dir=$2; shift 2; cd /
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
if [ -f "$dir/data/postmaster.pid" ]; then "$@" >/dev/null 2>&1; fi
rm -rf "$dir"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "pgtest-watchdog", strconv.Itoa(os.Getpid()), c.dir}, stop.Args...)...)
	// Its own session: a Ctrl-C to the tests does not reach it. No
	// stdout or stderr: go test would wait for them to close.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: no watchdog (a killed test run would leave its cluster running): %v\n", err)
		return
	}
	go cmd.Wait() //nolint:errcheck // reaped when it exits; its status says nothing
}

func (c *Cluster) run(tool string, args ...string) ([]byte, error) {
	return c.command(tool, args...).CombinedOutput()
}

// command is tool from the PostgreSQL bin directory with args, run as the
// postgres user when the tests run as root.
func (c *Cluster) command(tool string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, tool)
	var cmd *exec.Cmd
	if c.asUser != "" {
		if rp, err := exec.LookPath("runuser"); err == nil {
			cmd = exec.Command(rp, append([]string{"-u", c.asUser, "--", path}, args...)...)
		} else {
			quoted := make([]string, 0, len(args)+1)
			for _, a := range append([]string{path}, args...) {
				quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
			}
			cmd = exec.Command("su", c.asUser, "-c", strings.Join(quoted, " "))
		}
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir
	return cmd
}

// Stop stops the cluster at once (its data is thrown away) and removes
// its directory.
func (c *Cluster) Stop() error {
	out, err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	rmErr := os.RemoveAll(c.dir)
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return rmErr
}
