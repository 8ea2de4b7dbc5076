// Package slowclient is a test client that trickles bytes, the way a
// hostile client holds a connection open, shared by the smtpd and imapd
// tests.
package slowclient

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"time"
)

// Trickle writes data to c one byte every interval, over and over, until
// stop is called or a write fails (the server has closed).
func Trickle(c net.Conn, data string, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if _, err := c.Write([]byte{data[i%len(data)]}); err != nil {
				return
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// Result is what the server said until it closed the connection.
type Result struct {
	Lines []string
	// Closed says the server closed the connection before the deadline.
	Closed bool
	// After is how long that took.
	After time.Duration
}

// Last returns the last line the server sent, or "".
func (r Result) Last() string {
	if len(r.Lines) == 0 {
		return ""
	}
	return r.Lines[len(r.Lines)-1]
}

// ReadUntilClosed reads lines from r (over c) until the server closes the
// connection or within has passed.
func ReadUntilClosed(c net.Conn, r *bufio.Reader, within time.Duration) Result {
	start := time.Now()
	c.SetReadDeadline(start.Add(within))
	var res Result
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			res.Lines = append(res.Lines, strings.TrimRight(line, "\r\n"))
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return res
			}
			res.Closed = true
			res.After = time.Since(start)
			return res
		}
	}
}
