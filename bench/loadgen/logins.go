package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// loginsConfig lets the guessers below reach the password check on every
// attempt (a real botnet rotates addresses; here each connection comes
// from its own loopback address, so the per-address throttle never
// answers for bcrypt), so what is measured is the cost of the checks.
const loginsConfig = `auth_failures_per_address = 1000
auth_failures_per_account = 1000000`

// runLogins measures what logins cost the daemon: new connection + AUTH +
// one message + QUIT per client at 8 clients, and the latency of a FETCH
// by a logged-in user, alone and while 20 clients guess passwords.
func runLogins(bin string, limit time.Duration) error {
	dir, err := os.MkdirTemp("", "pochta-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := startDaemon(bin, dir, 1000, loginsConfig)
	if err != nil {
		return err
	}
	defer d.stop()
	phase := min(limit, 15*time.Second)
	fmt.Printf("pochta login load — %s, %d CPUs, %s; bcrypt cost 10; %v per phase\n",
		time.Now().Format(time.DateOnly), numCPU(), cpuModel(), phase)

	n, took, err := connectAuthSend(d.smtpAddr, 8, phase)
	if err != nil {
		return fmt.Errorf("connect+AUTH+message: %w", err)
	}
	fmt.Printf("\nnew connection + AUTH PLAIN + one 4 KiB message + QUIT, 8 clients: %d messages, %.0f msgs/s\n",
		n, float64(n)/took.Seconds())

	reader, err := imapLogin(d.imapAddr, "reader@bench.test")
	if err != nil {
		return err
	}
	defer reader.Close()
	if _, err := reader.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return err
	}
	quiet := fetchLatencies(reader, phase/3)
	stop := make(chan struct{})
	var guesses atomic.Int64
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() { guess(d.imapAddr, g, stop, &guesses) })
	}
	time.Sleep(time.Second) // let the guessers get going before measuring
	g0 := guesses.Load()
	t0 := time.Now()
	loud := fetchLatencies(reader, phase)
	rate := float64(guesses.Load()-g0) / time.Since(t0).Seconds()
	close(stop)
	wg.Wait()
	fmt.Printf("\nFETCH 1:20 (FLAGS ENVELOPE) by a logged-in user (INBOX of %d messages):\n", n)
	fmt.Printf("  %-34s %8s %10s %10s %10s\n", "", "fetches", "p50", "p99", "max")
	for _, row := range []struct {
		name string
		lat  []time.Duration
	}{{"alone", quiet}, {fmt.Sprintf("20 guessers (%.0f guesses/s)", rate), loud}} {
		fmt.Printf("  %-34s %8d %10s %10s %10s\n", row.name, len(row.lat), percentile(row.lat, 0.5).Round(10*time.Microsecond),
			percentile(row.lat, 0.99).Round(10*time.Microsecond), percentile(row.lat, 1).Round(10*time.Microsecond))
	}
	return nil
}

// connectAuthSend runs clients loops of dial + AUTH + one message + QUIT
// for d and returns how many messages were accepted.
func connectAuthSend(addr string, clients int, d time.Duration) (int, time.Duration, error) {
	msg := message(0)
	var sent atomic.Int64
	var firstErr error
	var mu sync.Mutex
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				err := func() error {
					cl, err := smtp.Dial(addr)
					if err != nil {
						return err
					}
					defer cl.Close()
					if err := cl.Auth(sasl.NewPlainClient("", "sender@bench.test", password)); err != nil {
						return err
					}
					if err := cl.SendMail("sender@bench.test", []string{"reader@bench.test"}, bytes.NewReader(msg)); err != nil {
						return err
					}
					return cl.Quit()
				}()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	return int(sent.Load()), time.Since(start), firstErr
}

// fetchLatencies fetches the flags and envelopes of the INBOX's first 20
// messages (a client's page of a message list) again and again for d and
// returns each fetch's time.
func fetchLatencies(c *imapclient.Client, d time.Duration) []time.Duration {
	var lat []time.Duration
	var all imap.SeqSet
	all.AddRange(1, 20)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		t0 := time.Now()
		if _, err := c.Fetch(all, &imap.FetchOptions{Flags: true, Envelope: true}).Collect(); err != nil {
			fmt.Fprintln(os.Stderr, "fetch:", err)
			return lat
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(20 * time.Millisecond) // a user's pace, not a loop
	}
	return lat
}

// guess logs in with wrong passwords over IMAP until stop, two attempts
// per connection, each connection from a new loopback address
// (127.g.x.y), counting the attempts answered.
func guess(addr string, g int, stop <-chan struct{}, n *atomic.Int64) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		local := &net.TCPAddr{IP: net.IPv4(127, byte(10+g), byte(i>>8), byte(i)|1)}
		dialer := &net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
		conn, err := dialer.Dial("tcp", addr)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c := imapclient.New(conn, nil)
		for range 2 {
			err := c.Login(fmt.Sprintf("nobody%d@bench.test", g), "wrong").Wait()
			var imapErr *imap.Error
			if err != nil && !errors.As(err, &imapErr) {
				break
			}
			n.Add(1)
		}
		c.Close()
	}
}
