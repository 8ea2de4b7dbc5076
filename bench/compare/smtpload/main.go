// Command smtpload submits the same 4 KiB message over SMTP from a number
// of concurrent clients and prints one JSON line with the throughput and
// latency percentiles. It is the SMTP half of bench/compare/run.sh, which
// points it at Postfix's smtp-sink (the protocol ceiling), at Postfix
// delivering into Dovecot, and at pochta with the same flags. Every client
// connects (and authenticates, with -user) before the clock starts; with
// -reconnect each message is sent on a new connection with its own EHLO
// and AUTH instead, all of it on the clock. The run is bounded by
// -messages and -limit, and only ever dials the address it is given.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

type result struct {
	Target    string  `json:"target"`
	Round     int     `json:"round,omitempty"`
	Reconnect bool    `json:"reconnect,omitempty"`
	Clients   int     `json:"clients"`
	Messages  int     `json:"messages"`
	Errors    int     `json:"errors"`
	Seconds   float64 `json:"seconds"`
	Rate      float64 `json:"msgs_per_sec"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:2587", "SMTP server host:port (loopback)")
	target := flag.String("target", "", "name printed in the result")
	user := flag.String("user", "", "AUTH PLAIN user (none: no AUTH)")
	pass := flag.String("pass", "", "AUTH PLAIN password")
	from := flag.String("from", "sender@bench.test", "envelope sender")
	to := flag.String("to", "reader@bench.test", "envelope recipient")
	clients := flag.Int("clients", 1, "concurrent connections")
	n := flag.Int("messages", 1000, "messages to send in all")
	size := flag.Int("size", 4096, "message size in bytes")
	limit := flag.Duration("limit", 60*time.Second, "stop sending after this long")
	reconnect := flag.Bool("reconnect", false, "a new connection, EHLO and AUTH for every message, on the clock")
	round := flag.Int("round", 0, "round number printed in the result")
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.0.0.1:") && !strings.HasPrefix(*addr, "[::1]:") {
		fmt.Fprintln(os.Stderr, "smtpload: only loopback addresses are allowed")
		os.Exit(2)
	}
	r, err := run(*addr, *user, *pass, *from, *to, *clients, *n, *size, *limit, *reconnect)
	if err != nil {
		fmt.Fprintln(os.Stderr, "smtpload:", err)
		os.Exit(1)
	}
	r.Target, r.Round, r.Reconnect = *target, *round, *reconnect
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

// message is exactly size bytes: a header and 76-column lines of text.
func message(from, to string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: smtpload\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\n"+
		"Message-ID: <smtpload@bench.test>\r\nContent-Type: text/plain\r\n\r\n", from, to)
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 3)[:74] + "\r\n"
	for b.Len()+len(line) <= size-2 {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("z", max(0, size-2-b.Len())) + "\r\n")
	return b.Bytes()[:size]
}

// dial connects, says EHLO and, with a user, logs in.
func dial(addr, user, pass string) (*smtp.Client, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, err
	}
	err = c.Hello("smtpload.bench.test")
	if err == nil && user != "" {
		err = c.Auth(sasl.NewPlainClient("", user, pass))
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// sendOnNewConnection is one message on a connection of its own.
func sendOnNewConnection(addr, user, pass, from, to string, msg []byte) error {
	c, err := dial(addr, user, pass)
	if err != nil {
		return err
	}
	if err := c.SendMail(from, []string{to}, bytes.NewReader(msg)); err != nil {
		c.Close()
		return err
	}
	return c.Quit()
}

func run(addr, user, pass, from, to string, clients, n, size int, limit time.Duration, reconnect bool) (*result, error) {
	conns := make([]*smtp.Client, 0, clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Quit()
			}
		}
	}()
	for i := 0; i < clients; i++ {
		if reconnect {
			conns = append(conns, nil) // each message dials its own
			continue
		}
		c, err := dial(addr, user, pass)
		if err != nil {
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	msg := message(from, to, size)
	next := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		next <- struct{}{}
	}
	close(next)
	var (
		mu     sync.Mutex
		lat    []time.Duration
		errs   int
		first  error
		wg     sync.WaitGroup
		start  = time.Now()
		cutoff = start.Add(limit)
	)
	for _, c := range conns {
		wg.Add(1)
		go func(c *smtp.Client) {
			defer wg.Done()
			for range next {
				if time.Now().After(cutoff) {
					return
				}
				t0 := time.Now()
				var err error
				if c == nil {
					err = sendOnNewConnection(addr, user, pass, from, to, msg)
				} else {
					err = c.SendMail(from, []string{to}, bytes.NewReader(msg))
				}
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}(c)
	}
	wg.Wait()
	total := time.Since(start)
	if first != nil && len(lat) == 0 {
		return nil, first
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
	}
	return &result{Clients: clients, Messages: len(lat), Errors: errs, Seconds: total.Seconds(),
		Rate: float64(len(lat)) / total.Seconds(), P50ms: pct(0.5), P99ms: pct(0.99)}, nil
}
