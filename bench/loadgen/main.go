// Command loadgen measures a real pochta daemon from the outside: it starts
// the built binary on loopback ports in a temporary directory, submits 4 KiB
// messages over SMTP at 1, 8 and 32 concurrent clients (every 250 durable),
// fetches 10,000 messages over IMAP (envelopes+flags, then full bodies),
// holds 1,000 idle IMAP connections, and prints messages/second, latency
// percentiles and the daemon's resident memory. Every loop is bounded in
// count and time and talks only to 127.0.0.1; the daemon is stopped at the
// end.
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
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	flag.Parse()
	if err := run(*bin, *perLevel, *fetchN, *idle, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type daemon struct {
	cmd      *exec.Cmd
	cfg      string
	bin      string
	smtpAddr string
	imapAddr string
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startDaemon(bin, dir string) (*daemon, error) {
	addrs := make([]string, 5)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	d := &daemon{bin: bin, cfg: filepath.Join(dir, "pochta.toml"), smtpAddr: addrs[0], imapAddr: addrs[2]}
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
[log]
level = "warn"
`, filepath.Join(dir, "data"), addrs[0], addrs[1], addrs[2], addrs[3], addrs[4])
	if err := os.WriteFile(d.cfg, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	for _, u := range []string{"sender@bench.test", "reader@bench.test"} {
		c := exec.Command(bin, "user", "add", u, "--password-stdin", "--config", d.cfg)
		c.Stdin = strings.NewReader(password + "\n")
		if out, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("user add %s: %v: %s", u, err, out)
		}
	}
	d.cmd = exec.Command(bin, "serve", "--config", d.cfg)
	d.cmd.Stderr = os.Stderr
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", d.imapAddr); err == nil {
			c.Close()
			return d, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.stop()
	return nil, fmt.Errorf("daemon did not listen within 15s")
}

func (d *daemon) stop() {
	if d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
		}
	}
}

// rss returns the daemon's current and peak resident set size in KiB.
func (d *daemon) rss() (cur, peak int) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, 0
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
		case "VmRSS:":
			cur = n
		case "VmHWM:":
			peak = n
		}
	}
	return cur, peak
}

func message(i int) []byte {
	body := make([]byte, 3000)
	_, _ = rand.Read(body)
	enc := base64.StdEncoding.EncodeToString(body)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender@bench.test\r\nTo: reader@bench.test\r\nSubject: bench %d\r\nMessage-ID: <bench-%d-%d@bench.test>\r\nDate: %s\r\nContent-Type: text/plain\r\n\r\n",
		i, time.Now().UnixNano(), i, time.Now().Format(time.RFC1123Z))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// submit sends n messages over `clients` connections and returns the
// per-message latencies (MAIL FROM to the 250 after DATA).
func submit(addr string, clients, n int, limit time.Duration) ([]time.Duration, time.Duration, error) {
	deadline := time.Now().Add(limit)
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	msg := message(0)
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := smtp.Dial(addr)
			if err == nil {
				err = cl.Auth(sasl.NewPlainClient("", "sender@bench.test", password))
			}
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
			defer cl.Quit()
			for range next {
				if time.Now().After(deadline) {
					return
				}
				t0 := time.Now()
				err := cl.SendMail("sender@bench.test", []string{"reader@bench.test"}, bytes.NewReader(msg))
				d := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
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
	msgs, err := c.Fetch(imap.SeqSetNum(), opts).Collect()
	return len(msgs), time.Since(t0), err
}

func run(bin string, perLevel, fetchN, idle int, limit time.Duration) error {
	dir, err := os.MkdirTemp("", "pochta-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := startDaemon(bin, dir)
	if err != nil {
		return err
	}
	defer d.stop()

	fmt.Printf("pochta load generator — %s, %d CPUs, %s\n", time.Now().Format(time.DateOnly), numCPU(), cpuModel())
	fmt.Println("\nSMTP submission, 4 KiB messages, one recipient, AUTH PLAIN, fsync on every commit:")
	fmt.Printf("%8s %10s %12s %10s %10s %10s\n", "clients", "messages", "msgs/s", "p50", "p99", "max")
	sent := 0
	for _, clients := range []int{1, 8, 32} {
		n := perLevel
		if clients == 1 {
			n = perLevel / 4
		}
		lat, total, err := submit(d.smtpAddr, clients, n, limit)
		if err != nil {
			return fmt.Errorf("submit at %d clients: %w", clients, err)
		}
		sent += len(lat)
		fmt.Printf("%8d %10d %12.0f %10s %10s %10s\n", clients, len(lat), float64(len(lat))/total.Seconds(),
			percentile(lat, 0.5).Round(10*time.Microsecond), percentile(lat, 0.99).Round(10*time.Microsecond), percentile(lat, 1).Round(10*time.Microsecond))
	}
	if fetchN > sent {
		if _, _, err := submit(d.smtpAddr, 32, fetchN-sent, limit); err != nil {
			return fmt.Errorf("filling the mailbox: %w", err)
		}
	}

	fmt.Printf("\nIMAP FETCH 1:* of a %d-message INBOX over loopback:\n", fetchN)
	n, t, err := timeFetch(d.imapAddr, &imap.FetchOptions{Envelope: true, Flags: true, UID: true})
	if err != nil {
		return fmt.Errorf("fetch envelopes: %w", err)
	}
	fmt.Printf("  ENVELOPE FLAGS UID   %6d messages in %s\n", n, t.Round(time.Millisecond))
	n, t, err = timeFetch(d.imapAddr, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	if err != nil {
		return fmt.Errorf("fetch bodies: %w", err)
	}
	fmt.Printf("  BODY.PEEK[]          %6d messages in %s\n", n, t.Round(time.Millisecond))

	cur, peak := d.rss()
	fmt.Printf("\nDaemon RSS after the load: %d MiB (peak %d MiB)\n", cur/1024, peak/1024)

	conns := make([]*imapclient.Client, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	deadline := time.Now().Add(limit)
	for len(conns) < idle && time.Now().Before(deadline) {
		c, err := imapLogin(d.imapAddr, "reader@bench.test")
		if err != nil {
			return fmt.Errorf("idle connection %d: %w", len(conns), err)
		}
		conns = append(conns, c)
	}
	cur, peak = d.rss()
	fmt.Printf("Daemon RSS with %d idle authenticated IMAP connections: %d MiB (peak %d MiB)\n", len(conns), cur/1024, peak/1024)
	return nil
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
