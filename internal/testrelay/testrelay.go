// Package testrelay is a real SMTP relay (go-smtp) on 127.0.0.1 for tests
// that drive pochta's outbound queue end to end: it accepts or refuses
// recipients as the test says and keeps what it accepted. It is for tests
// only and never listens beyond the loopback address.
package testrelay

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one transaction the relay accepted.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Relay is a running relay; its methods are safe for concurrent use.
type Relay struct {
	// Addr is host:port, the queue's Relay option.
	Addr string

	mu       sync.Mutex
	refusal  *smtp.SMTPError // RCPT answer while set
	held     chan struct{}   // DATA waits while set (Hold, Release)
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
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{r: r}, nil
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

// Hold makes DATA wait until Release, so a test can see a message in
// flight.
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

// Accepted returns the messages accepted so far.
func (r *Relay) Accepted() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.accepted...)
}

type session struct {
	r    *Relay
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
	s.r.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-time.After(30 * time.Second):
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "held too long"}
		}
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.accepted = append(s.r.accepted, Message{From: s.from, To: s.to, Data: data})
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }
