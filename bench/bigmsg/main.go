// Command bigmsg measures what big messages in flight cost a real pochta
// daemon: it starts the built binary on loopback ports in a temporary
// directory, submits 8 messages of 25 MB at once over SMTP (each to a local
// recipient and an external one, so the daemon keeps a Sent, an INBOX and a
// relay copy), samples the daemon's /proc/PID/status every 10 ms and
// prints the peak growth of its anonymous resident memory (RssAnon: heap
// and stacks; the memory-mapped database is file-backed and not counted).
// Every loop is bounded in count and time and talks only to 127.0.0.1; the
// daemon is stopped at the end.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const password = "bench-Pass-1"

func main() {
	bin := flag.String("bin", "bin/pochta", "the pochta binary to measure")
	clients := flag.Int("clients", 8, "messages submitted at once, one per connection")
	size := flag.Int("size", 25_000_000, "size of each message in bytes")
	limit := flag.Duration("limit", 3*time.Minute, "give up after this long")
	external := flag.Bool("external", true, "add an external recipient, so each message is also queued for the relay")
	flag.Parse()
	if err := run(*bin, *clients, *size, *limit, *external); err != nil {
		fmt.Fprintln(os.Stderr, "bigmsg:", err)
		os.Exit(1)
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// rssAnon returns the RssAnon of pid in KiB.
func rssAnon(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "RssAnon:" {
			n, _ := strconv.Atoi(fields[1])
			return n
		}
	}
	return 0
}

// bigMessage is a text message of about size bytes in 76-column lines.
func bigMessage(i, size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 1024)
	fmt.Fprintf(&b, "From: sender@bench.test\r\nTo: reader@bench.test, away@elsewhere.test\r\nSubject: big %d\r\n"+
		"Message-ID: <big-%d-%d@bench.test>\r\nDate: %s\r\nContent-Type: text/plain\r\n\r\n",
		i, time.Now().UnixNano(), i, time.Now().Format(time.RFC1123Z))
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 3)[:76] + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return b.Bytes()
}

func run(bin string, clients, size int, limit time.Duration, external bool) error {
	dir, err := os.MkdirTemp("", "pochta-bigmsg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addrs := make([]string, 6)
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return err
		}
	}
	cfgPath := filepath.Join(dir, "pochta.toml")
	// Nothing listens on the relay address: the external copy stays queued.
	cfg := fmt.Sprintf(`hostname = "bench.test"
domains = ["bench.test"]
data_dir = %q
[smtp]
submission = %q
submissions = %q
inbound = ""
allow_insecure_auth = true
max_message_size = 26214400
[imap]
listen = %q
tls_listen = %q
allow_insecure_auth = true
[metrics]
listen = %q
[email_queue]
enabled = true
relay = %q
relay_tls = "none"
retry_min = "1h"
retry_max = "4h"
health_check_interval = "1h"
[log]
level = "warn"
`, filepath.Join(dir, "data"), addrs[0], addrs[1], addrs[2], addrs[3], addrs[4], addrs[5])
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	for _, u := range []string{"sender@bench.test", "reader@bench.test"} {
		c := exec.Command(bin, "user", "add", u, "--password-stdin", "--config", cfgPath)
		c.Stdin = strings.NewReader(password + "\n")
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("user add %s: %v: %s", u, err, out)
		}
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stderr = os.Stderr
	if v := os.Getenv("BIGMSG_DAEMON_ENV"); v != "" {
		// For looking inside, the daemon only: GODEBUG=gctrace=1,
		// GOMEMLIMIT=300MiB (space-separated).
		cmd.Env = append(os.Environ(), strings.Fields(v)...)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("tcp", addrs[0]); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon did not listen within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	msgs := make([][]byte, clients)
	for i := range msgs {
		msgs[i] = bigMessage(i, size)
	}
	conns := make([]*smtp.Client, clients)
	for i := range conns {
		c, err := smtp.Dial(addrs[0])
		if err != nil {
			return err
		}
		if err := c.Auth(sasl.NewPlainClient("", "sender@bench.test", password)); err != nil {
			return err
		}
		c.CommandTimeout, c.SubmissionTimeout = limit, limit
		conns[i] = c
	}
	pid := cmd.Process.Pid
	base := rssAnon(pid)
	var peak atomic.Int64
	peak.Store(int64(base))
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if v := int64(rssAnon(pid)); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rcpts := []string{"reader@bench.test"}
			if external {
				rcpts = append(rcpts, "away@elsewhere.test")
			}
			errs[i] = c.SendMail("sender@bench.test", rcpts, bytes.NewReader(msgs[i]))
			_ = c.Quit()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	growth := int(peak.Load()) - base
	fmt.Printf("bigmsg: %d concurrent messages of %d bytes (%d MB in total) in %s\n",
		clients, size, clients*size/1_000_000, elapsed.Round(time.Millisecond))
	fmt.Printf("bigmsg: daemon RssAnon before %d MiB, peak %d MiB, peak growth %d MiB (%.1fx the bytes in flight)\n",
		base/1024, peak.Load()/1024, growth/1024, float64(growth)*1024/float64(clients*size))
	return nil
}
