// Command loadgen measures a real pochta daemon from the outside: it starts
// the built binary on loopback ports in a temporary directory, submits 4 KiB
// messages over SMTP at 1, 8 and 32 concurrent clients (every 250 durable;
// all from one user into one mailbox, and once more at 32 clients each a
// user of its own),
// fetches 10,000 messages over IMAP (envelopes+flags, then full bodies),
// holds 1,000 idle IMAP connections, times how soon a session in IDLE sees
// a delivery, and prints messages/second, latency percentiles and the
// daemon's resident memory. With --postgres it then measures the same on
// PostgreSQL (postgres.go): one node, and two nodes sharing one database,
// IDLE timed across them, each figure printed beside bbolt's with the
// ratio. Every loop is bounded in count and time and talks only to
// 127.0.0.1; the daemons and the PostgreSQL cluster are stopped at the
// end, also after an error or on SIGINT/SIGTERM.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const password = "bench-Pass-1"

func main() {
	bin := flag.String("bin", "bin/pochta", "the pochta binary to measure")
	perLevel := flag.Int("messages", 3000, "messages to submit at each concurrency level")
	fetchN := flag.Int("fetch", 10000, "messages in the mailbox fetched over IMAP")
	idle := flag.Int("idle", 1000, "idle IMAP connections to hold")
	limit := flag.Duration("limit", 4*time.Minute, "stop every phase after this long")
	logins := flag.Bool("logins", false, "measure logins instead (logins.go): connect+AUTH+message per client, and FETCH latency under password guessing")
	postgres := flag.Bool("postgres", false, "then measure the same on PostgreSQL (postgres.go): a throwaway durable cluster on loopback, one node, then two nodes sharing one database; print each figure beside bbolt's with the ratio")
	flag.Parse()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(os.Stderr, "loadgen: interrupted; stopping the daemons and the database")
		atExit.run()
		os.Exit(1)
	}()
	var err error
	if *logins {
		err = runLogins(*bin, *limit)
	} else {
		err = run(*bin, *perLevel, *fetchN, *idle, *limit, *postgres)
	}
	atExit.run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// atExit is what must stop however loadgen ends: the daemons, the
// PostgreSQL cluster, temporary directories. main runs it after the
// measures (also after an error), and on SIGINT or SIGTERM.
var atExit exitList

type exitList struct {
	mu   sync.Mutex
	fns  []func()
	done bool
}

// add registers f; once the list has run, f runs at once.
func (l *exitList) add(f func()) {
	l.mu.Lock()
	done := l.done
	if !done {
		l.fns = append(l.fns, f)
	}
	l.mu.Unlock()
	if done {
		f()
	}
}

// run calls the registered functions, the last added first; calls after
// the first wait for it and do nothing.
func (l *exitList) run() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	for i := len(l.fns) - 1; i >= 0; i-- {
		l.fns[i]()
	}
}

type daemon struct {
	cmd      *exec.Cmd
	cfg      string
	bin      string
	smtpAddr string
	imapAddr string
	// metricsAddr serves /metrics (and, in a profiling build, pprof).
	metricsAddr string
	postgres    bool // on a PostgreSQL database, not a bbolt file
	// exited is closed when the process has ended (and been waited for).
	exited   chan struct{}
	stopOnce sync.Once
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// node is how startNode configures a daemon.
type node struct {
	// idle is how many idle connections it must allow beside its load.
	idle int
	// limits are more lines of its [limits] section.
	limits []string
	// database and name are its [message_server] database and node;
	// database "" is the default bbolt file in its data directory.
	database, name string
	// usersExist says the bench users are in its database already
	// (another node on the same PostgreSQL database added them).
	usersExist bool
}

// startDaemon starts a daemon on a bbolt file that allows idle connections
// beside its load; extraLimits are more lines of its [limits] section.
func startDaemon(bin, dir string, idle int, extraLimits ...string) (*daemon, error) {
	return startNode(bin, dir, node{idle: idle, limits: extraLimits})
}

// startNode starts a daemon configured by n in dir (its data directory,
// control socket and certificates), on free loopback ports, adds the
// bench users unless they exist, and returns once it listens. Its stop is
// registered with atExit too.
func startNode(bin, dir string, n node) (*daemon, error) {
	addrs := make([]string, 5)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	d := &daemon{bin: bin, cfg: filepath.Join(dir, "pochta.toml"), smtpAddr: addrs[0], imapAddr: addrs[2], metricsAddr: addrs[4], postgres: n.database != ""}
	cfg := fmt.Sprintf(`hostname = "bench.test"
domains = ["bench.test"]
data_dir = %q
[smtp]
submission = %q
submissions = %q
inbound = ""
allow_insecure_auth = true
max_recipients = 100
[imap]
listen = %q
tls_listen = %q
allow_insecure_auth = true
[metrics]
listen = %q
[limits]
# One load generator on one address: the defaults (50 connections per
# address, 1,000 commands per second per session) would refuse its idle
# connections and pace its clients, measuring the limits, not the server.
# The total stays above what it opens.
max_connections_per_address = 0
max_connections = %d
commands_per_second = 0
%s
[log]
level = "warn"
`, filepath.Join(dir, "data"), addrs[0], addrs[1], addrs[2], addrs[3], addrs[4], n.idle+100, strings.Join(n.limits, "\n"))
	if n.database != "" {
		cfg += fmt.Sprintf("[message_server]\ndatabase = %q\nnode = %q\n", n.database, n.name)
	}
	if err := os.WriteFile(d.cfg, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if !n.usersExist {
		for _, u := range append([]string{"sender@bench.test", "reader@bench.test"}, spreadUsers...) {
			c := exec.Command(bin, "user", "add", u, "--password-stdin", "--config", d.cfg)
			c.Stdin = strings.NewReader(password + "\n")
			if out, err := c.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("user add %s: %v: %s", u, err, out)
			}
		}
	}
	d.cmd = exec.Command(bin, "serve", "--config", d.cfg)
	d.cmd.Stderr = os.Stderr
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	d.exited = make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	atExit.add(d.stop)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", d.imapAddr); err == nil {
			c.Close()
			return d, nil
		}
		select {
		case <-d.exited:
			return nil, fmt.Errorf("daemon exited at start (%v; its stderr is above)", d.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
	d.stop()
	return nil, fmt.Errorf("daemon did not listen within 15s")
}

// stop stops the daemon (SIGINT, SIGKILL after 20 seconds); calls after
// the first do nothing.
func (d *daemon) stop() {
	d.stopOnce.Do(func() {
		if d.cmd.Process == nil {
			return
		}
		_ = d.cmd.Process.Signal(os.Interrupt)
		select {
		case <-d.exited:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
}

// memory is the daemon's resident memory in KiB: anonymous (heap,
// stacks: what the daemon allocates) and file-backed (the binary, and on
// bbolt mostly the memory-mapped database pages, which the kernel can drop
// at any time). A PostgreSQL server's own memory is not in it.
type memory struct {
	anon, file, peak int
	mmapDB           bool // on bbolt: file-backed is mostly the database
}

func (m memory) String() string {
	what := "file-backed (the binary; no database mapped)"
	if m.mmapDB {
		what = "file-backed (mmap'd database)"
	}
	return fmt.Sprintf("anonymous %d MiB, %s %d MiB, peak total %d MiB", m.anon/1024, what, m.file/1024, m.peak/1024)
}

func (d *daemon) memory() memory {
	m := memory{mmapDB: !d.postgres}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		n, _ := strconv.Atoi(fields[1])
		switch fields[0] {
		case "RssAnon:":
			m.anon = n
		case "RssFile:":
			m.file = n
		case "VmHWM:":
			m.peak = n
		}
	}
	return m
}

// message is a 4 KiB message from sender@ to reader@.
func message(i int) []byte { return messageFrom(i, "sender@bench.test", "reader@bench.test") }

// messageFrom is a 4 KiB message from `from` to `to`.
func messageFrom(i int, from, to string) []byte {
	body := make([]byte, 3000)
	_, _ = rand.Read(body)
	enc := base64.StdEncoding.EncodeToString(body)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: bench %d\r\nMessage-ID: <bench-%d-%d@bench.test>\r\nDate: %s\r\nContent-Type: text/plain\r\n\r\n",
		from, to, i, time.Now().UnixNano(), i, time.Now().Format(time.RFC1123Z))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// spreadUsers are the users of the intake row where each of 32 clients
// is a user of its own mailing itself, so that no two deliveries wait for
// the same mailbox's lock (every submission also writes the sender's Sent
// copy and read-tracking record).
var spreadUsers = func() []string {
	r := make([]string, 32)
	for i := range r {
		r[i] = fmt.Sprintf("box%02d@bench.test", i+1)
	}
	return r
}()

// submit sends n messages over `clients` connections and returns the
// per-message latencies (MAIL FROM to the 250 after DATA) and the wall time.
// The clients take turns among addrs (several nodes): client c connects to
// addrs[c % len(addrs)]. Each is sender@ mailing reader@, or with spread
// spreadUsers[c % 32] mailing itself. Every client connects and
// authenticates before the clock starts: bcrypt logins are a
// per-connection cost, not a per-message one. atStart, if not nil, is
// called as the clock starts.
func submit(addrs []string, spread bool, clients, n int, limit time.Duration, atStart func()) ([]time.Duration, time.Duration, error) {
	conns := make([]*smtp.Client, 0, clients)
	defer func() {
		for _, cl := range conns {
			_ = cl.Quit()
		}
	}()
	from, to, msgs := make([]string, clients), make([]string, clients), make([][]byte, clients)
	for c := 0; c < clients; c++ {
		from[c], to[c] = "sender@bench.test", "reader@bench.test"
		if spread {
			from[c] = spreadUsers[c%len(spreadUsers)]
			to[c] = from[c]
		}
		msgs[c] = messageFrom(0, from[c], to[c])
		cl, err := smtp.Dial(addrs[c%len(addrs)])
		if err == nil {
			err = cl.Auth(sasl.NewPlainClient("", from[c], password))
		}
		if err != nil {
			return nil, 0, fmt.Errorf("client %d: %w", c, err)
		}
		conns = append(conns, cl)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	if atStart != nil {
		atStart()
	}
	deadline := time.Now().Add(limit)
	start := time.Now()
	var wg sync.WaitGroup
	for c, cl := range conns {
		wg.Add(1)
		go func(cl *smtp.Client, from string, to []string, msg []byte) {
			defer wg.Done()
			for range next {
				if time.Now().After(deadline) {
					return
				}
				t0 := time.Now()
				err := cl.SendMail(from, to, bytes.NewReader(msg))
				d := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, d)
				mu.Unlock()
			}
		}(cl, from[c], to[c:c+1], msgs[c])
	}
	wg.Wait()
	return lat, time.Since(start), firstErr
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

func imapLogin(addr, user string) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func timeFetch(addr string, opts *imap.FetchOptions) (int, time.Duration, error) {
	c, err := imapLogin(addr, "reader@bench.test")
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	msgs, err := c.Fetch(all, opts).Collect()
	return len(msgs), time.Since(t0), err
}

// intake is the SMTP figures of one concurrency level.
type intake struct {
	clients, messages int
	spread            bool    // each client a user of its own
	rate              float64 // messages per second
	p50, p99, max     time.Duration
	// cpuDaemons and cpuDB are CPU time per message of the pochta
	// daemons (together) and of the PostgreSQL server (0 on bbolt).
	cpuDaemons, cpuDB time.Duration
}

// label is the level's clients column: "32*" when each client is a user
// of its own.
func (in intake) label() string {
	if in.spread {
		return fmt.Sprintf("%d*", in.clients)
	}
	return strconv.Itoa(in.clients)
}

// figures are what one run measured, for the comparison between backends.
type figures struct {
	intake  []intake
	fetched int
	// envelopes and bodies are the median of three FETCHes each.
	envelopes, bodies time.Duration
	idleP50, idleMax  time.Duration
}

func run(bin string, perLevel, fetchN, idle int, limit time.Duration, postgres bool) error {
	dir, err := os.MkdirTemp("", "pochta-bench-")
	if err != nil {
		return err
	}
	atExit.add(func() { os.RemoveAll(dir) })
	d, err := startDaemon(bin, dir, idle)
	if err != nil {
		return err
	}

	fmt.Printf("pochta load generator — %s, %d CPUs, %s\n", time.Now().Format(time.DateOnly), numCPU(), cpuModel())
	fmt.Printf("daemon pid %d, metrics on http://%s/metrics\n", d.cmd.Process.Pid, d.metricsAddr)
	bolt, err := measure([]*daemon{d}, 0, perLevel, fetchN, idle, limit)
	d.stop()
	if err != nil || !postgres {
		return err
	}
	return runPostgres(bin, perLevel, fetchN, idle, limit, bolt)
}

// measure runs the load against nodes (one daemon, or several sharing a
// database) and prints each figure: SMTP intake at 1, 8 and 32 clients
// (taking turns among the nodes) with the CPU time per message of the
// daemons and of the database server dbPID (0: none, bbolt), FETCH of the
// whole INBOX through the last node (three times each), memory, idle
// connections spread over the nodes, and IDLE on the last node woken by
// deliveries through the first.
func measure(nodes []*daemon, dbPID, perLevel, fetchN, idle int, limit time.Duration) (figures, error) {
	var f figures
	smtpAddrs := make([]string, len(nodes))
	for i, d := range nodes {
		smtpAddrs[i] = d.smtpAddr
	}
	first, last := nodes[0], nodes[len(nodes)-1]
	fmt.Println("\nSMTP submission, 4 KiB messages, one recipient, AUTH PLAIN, fsync on every commit")
	fmt.Println("(sender@ to reader@; 32*: each client a user of its own mailing itself):")
	cpu := func() (daemons, db time.Duration) {
		for _, d := range nodes {
			daemons += processCPU(d.cmd.Process.Pid)
		}
		if dbPID != 0 {
			db = serverCPU(dbPID)
		}
		return daemons, db
	}
	fmt.Printf("%8s %10s %12s %10s %10s %10s %14s %14s\n", "clients", "messages", "msgs/s", "p50", "p99", "max", "CPU/msg pochta", "CPU/msg PG")
	sent := 0
	for _, level := range []struct {
		clients int
		spread  bool
	}{{1, false}, {8, false}, {32, false}, {32, true}} {
		n := perLevel
		if level.clients == 1 {
			n = perLevel / 4
		}
		var daemons0, db0 time.Duration
		lat, total, err := submit(smtpAddrs, level.spread, level.clients, n, limit, func() { daemons0, db0 = cpu() })
		daemons1, db1 := cpu()
		if err != nil {
			return f, fmt.Errorf("submit at %d clients: %w", level.clients, err)
		}
		if !level.spread {
			sent += len(lat)
		}
		in := intake{clients: level.clients, spread: level.spread, messages: len(lat), rate: float64(len(lat)) / total.Seconds(),
			p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), max: percentile(lat, 1)}
		if len(lat) > 0 {
			in.cpuDaemons = (daemons1 - daemons0) / time.Duration(len(lat))
			in.cpuDB = (db1 - db0) / time.Duration(len(lat))
		}
		f.intake = append(f.intake, in)
		dbCPU := "-"
		if dbPID != 0 {
			dbCPU = in.cpuDB.Round(time.Microsecond).String()
		}
		fmt.Printf("%8s %10d %12.0f %10s %10s %10s %14s %14s\n", in.label(), in.messages, in.rate,
			in.p50.Round(10*time.Microsecond), in.p99.Round(10*time.Microsecond), in.max.Round(10*time.Microsecond),
			in.cpuDaemons.Round(time.Microsecond), dbCPU)
	}
	if fetchN > sent {
		if _, _, err := submit(smtpAddrs, false, 32, fetchN-sent, limit, nil); err != nil {
			return f, fmt.Errorf("filling the mailbox: %w", err)
		}
	}

	fmt.Printf("\nIMAP FETCH 1:* of a %d-message INBOX over loopback, three times each (the median is compared):\n", max(fetchN, sent))
	for _, fetch := range []struct {
		name string
		opts *imap.FetchOptions
		into *time.Duration
	}{
		{"ENVELOPE FLAGS UID", &imap.FetchOptions{Envelope: true, Flags: true, UID: true}, &f.envelopes},
		{"BODY.PEEK[]", &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}, &f.bodies},
	} {
		var times, shown []time.Duration
		for range 3 {
			n, t, err := timeFetch(last.imapAddr, fetch.opts)
			if err != nil {
				return f, fmt.Errorf("fetch %s: %w", fetch.name, err)
			}
			f.fetched = n
			times = append(times, t)
			shown = append(shown, t.Round(time.Millisecond))
		}
		fmt.Printf("  %-20s %6d messages in %v\n", fetch.name, f.fetched, shown)
		*fetch.into = percentile(times, 0.5)
	}

	printMemory := func(when string) {
		for i, d := range nodes {
			name := "Daemon"
			if len(nodes) > 1 {
				name = fmt.Sprintf("Node %d", i+1)
			}
			fmt.Printf("%s memory %s: %s\n", name, when, d.memory())
		}
	}
	fmt.Println()
	printMemory("after the load")

	conns := make([]*imapclient.Client, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	deadline := time.Now().Add(limit)
	for len(conns) < idle && time.Now().Before(deadline) {
		c, err := imapLogin(nodes[len(conns)%len(nodes)].imapAddr, "reader@bench.test")
		if err != nil {
			return f, fmt.Errorf("idle connection %d: %w", len(conns), err)
		}
		conns = append(conns, c)
	}
	printMemory(fmt.Sprintf("with %d idle authenticated IMAP connections in all", len(conns)))

	lat, err := idleWake(last.imapAddr, first.smtpAddr, 20, 10*time.Second)
	if err != nil {
		return f, fmt.Errorf("IDLE: %w", err)
	}
	f.idleP50, f.idleMax = percentile(lat, 0.5), percentile(lat, 1)
	where := "another session"
	if len(nodes) > 1 {
		where = "a session on the last node, submitted through the first"
	}
	fmt.Printf("\nIMAP IDLE, a delivery seen by %s (MAIL FROM to EXISTS, %d messages, %d idle connections beside): p50 %s, max %s\n",
		where, len(lat), len(conns), f.idleP50.Round(10*time.Microsecond), f.idleMax.Round(10*time.Microsecond))
	return f, nil
}

func numCPU() int {
	n := 0
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return n
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.Index(l, ":"); i >= 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return "unknown CPU"
}
