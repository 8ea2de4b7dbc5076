// Package testrelay is a real SMTP relay (go-smtp) on 127.0.0.1 for tests
// that drive pochta's outbound queue end to end: it accepts or refuses
// recipients as the test says, can hold the reply to DATA, and keeps what it
// accepted. A held transaction whose client hangs up before the reply is
// dropped, as a relay that had not yet committed it would drop it; nothing
// else is ever dropped. It is for tests only and never listens beyond the
// loopback address.
package testrelay

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one transaction the relay accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	At   time.Time // when the relay accepted it
}

// Relay is a running relay; its methods are safe for concurrent use.
type Relay struct {
	// Addr is host:port, the queue's Relay option.
	Addr string

	mu       sync.Mutex
	refusal  *smtp.SMTPError // RCPT answer while set
	held     chan struct{}   // DATA waits while set (Hold, Release)
	holding  int             // transactions waiting in DATA
	accepted []Message
}

// Start runs a relay that accepts everything until Refuse; it stops when
// the test ends.
func Start(t testing.TB) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Addr: ln.Addr().String()}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{r: r, conn: c.Conn()}, nil
	}))
	srv.Domain = "relay.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// Refuse answers every recipient with code (a 5xx is permanent) until
// Accept.
func (r *Relay) Refuse(code int, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refusal = &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 1, 1}, Message: message}
}

// Accept accepts every recipient again.
func (r *Relay) Accept() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refusal = nil
}

// Hold makes DATA wait (with the whole message read) until Release, so a
// test can see a message in flight; a client that hangs up meanwhile has its
// transaction dropped. Holding counts the transactions waiting.
func (r *Relay) Hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		r.held = make(chan struct{})
	}
}

// Release lets held and later transactions finish.
func (r *Relay) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held != nil {
		close(r.held)
		r.held = nil
	}
}

// Holding returns how many transactions are waiting in DATA for Release.
func (r *Relay) Holding() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holding
}

// Accepted returns the messages accepted so far.
func (r *Relay) Accepted() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.accepted...)
}

type session struct {
	r    *Relay
	conn net.Conn
	from string
	to   []string
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.to = from, nil
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.r.mu.Lock()
	refusal := s.r.refusal
	s.r.mu.Unlock()
	if refusal != nil {
		return refusal
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(rd io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(rd, 32<<20))
	if err != nil {
		return err
	}
	if len(s.to) == 0 {
		return errors.New("no recipients")
	}
	s.r.mu.Lock()
	held := s.r.held
	if held != nil {
		s.r.holding++
	}
	s.r.mu.Unlock()
	if held != nil {
		err := s.hold(held)
		s.r.mu.Lock()
		s.r.holding--
		s.r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.accepted = append(s.r.accepted, Message{From: s.from, To: s.to, Data: data, At: time.Now()})
	return nil
}

// hold waits until held is closed (nil error), the client hangs up (the
// transaction is dropped) or 30 seconds pass (451).
func (s *session) hold(held <-chan struct{}) error {
	gone, stop := watchHangUp(s.conn)
	defer stop()
	select {
	case <-held:
		return nil
	case <-gone:
		return errors.New("the client hung up while its DATA was held")
	case <-time.After(30 * time.Second):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "held too long"}
	}
}

// watchHangUp closes gone when the client closes conn (or it breaks); it
// only peeks, so nothing the client sends is taken from the SMTP server.
// stop ends the watch and must be called before the server reads conn
// again.
func watchHangUp(conn net.Conn) (gone <-chan struct{}, stop func()) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, func() {}
	}
	ch, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var hungUp bool
		buf := make([]byte, 1)
		// Read waits (in the runtime's poller, under the read deadline)
		// until the socket is readable while the function returns false.
		err := raw.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			for errors.Is(err, syscall.EINTR) {
				n, _, err = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			}
			if errors.Is(err, syscall.EAGAIN) {
				return false
			}
			hungUp = n == 0 || err != nil // end of stream, or a reset
			return true
		})
		if err == nil && hungUp {
			close(ch)
		}
	}()
	return ch, func() {
		conn.SetReadDeadline(time.Now())
		<-done
		conn.SetReadDeadline(time.Time{})
	}
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }
