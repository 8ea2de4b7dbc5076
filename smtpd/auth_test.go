package smtpd

import (
	"errors"
	"testing"

	"github.com/emersion/go-smtp"
)

// loginRecorder remembers what a loginServer passed to authenticate.
type loginRecorder struct {
	user, password string
	calls          int
}

func (r *loginRecorder) authenticate(user, password string) error {
	r.user, r.password = user, password
	r.calls++
	if password != testPassword {
		return smtp.ErrAuthFailed
	}
	return nil
}

func TestLoginServerAsksForUsernameAndPassword(t *testing.T) {
	var rec loginRecorder
	s := newLoginServer(rec.authenticate)
	if c, done, err := s.Next(nil); string(c) != "Username:" || done || err != nil {
		t.Fatalf("start: %q %v %v", c, done, err)
	}
	if c, done, err := s.Next([]byte(alice)); string(c) != "Password:" || done || err != nil {
		t.Fatalf("user name: %q %v %v", c, done, err)
	}
	if _, done, err := s.Next([]byte(testPassword)); !done || err != nil {
		t.Fatalf("password: %v %v", done, err)
	}
	if rec.user != alice || rec.password != testPassword || rec.calls != 1 {
		t.Fatalf("authenticate got %+v", rec)
	}
	if _, _, err := s.Next([]byte("more")); err == nil {
		t.Fatal("a response after the exchange was accepted")
	}
}

func TestLoginServerTakesUsernameAsInitialResponse(t *testing.T) {
	var rec loginRecorder
	s := newLoginServer(rec.authenticate)
	if c, done, err := s.Next([]byte(alice)); string(c) != "Password:" || done || err != nil {
		t.Fatalf("initial response: %q %v %v", c, done, err)
	}
	if _, done, err := s.Next([]byte("wrong")); !done || !errors.Is(err, smtp.ErrAuthFailed) {
		t.Fatalf("wrong password: done %v err %v, want ErrAuthFailed", done, err)
	}
	if rec.user != alice || rec.calls != 1 {
		t.Fatalf("authenticate got %+v", rec)
	}
}

func TestSASLRepliesTurnsMalformedDataInto501(t *testing.T) {
	s := saslReplies{newLoginServer(func(string, string) error { return nil })}
	s.Next(nil)
	s.Next([]byte("u"))
	s.Next([]byte("p"))
	_, _, err := s.Next([]byte("extra"))
	var smtpErr *smtp.SMTPError
	if !errors.As(err, &smtpErr) || smtpErr.Code != 501 {
		t.Fatalf("got %v, want a 501 reply", err)
	}
}
