package abuse_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pochta/pochta/abuse"
	"github.com/pochta/pochta/imapd"
	"github.com/pochta/pochta/smtpd"
	"github.com/pochta/pochta/storage/boltstore"
)

const (
	alice     = "alice@example.test"
	password  = "correct horse battery staple"
	waitLimit = 10 * time.Second
)

// servers runs smtpd and imapd over one store, sharing logins and conns
// the way cmd/pochta wires them. It returns the submission and IMAP
// addresses.
func servers(t *testing.T, logins *abuse.Logins, conns *abuse.Connections) (submission, imap string) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "pochta.db"), boltstore.Options{Logger: quiet, PasswordCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateUser(context.Background(), alice, password, false); err != nil {
		t.Fatal(err)
	}
	s, err := smtpd.New(smtpd.Options{
		Hostname: "mail.example.test", Domains: []string{"example.test"}, Store: store,
		AllowInsecureAuth: true, Logger: quiet, Logins: logins, Connections: conns,
	})
	if err != nil {
		t.Fatal(err)
	}
	i, err := imapd.New(imapd.Options{Store: store, AllowInsecureAuth: true, Logger: quiet, Logins: logins, Connections: conns})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	li, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeSubmission(ls)
	go i.Serve(li)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		s.Shutdown(ctx)
		i.Close()
	})
	return ls.Addr().String(), li.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit))
	return c
}

// smtpAuth logs in over SMTP and returns the reply code.
func smtpAuth(t *testing.T, addr, pass string) int {
	t.Helper()
	text := textproto.NewConn(dial(t, addr))
	if _, _, err := text.ReadResponse(220); err != nil {
		t.Fatalf("SMTP greeting: %v", err)
	}
	text.PrintfLine("EHLO client.example.test")
	if _, _, err := text.ReadResponse(250); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	text.PrintfLine("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00"+alice+"\x00"+pass)))
	code, _, _ := text.ReadResponse(0)
	return code
}

// imapLogin logs in over IMAP and returns the tagged response.
func imapLogin(t *testing.T, addr, pass string) string {
	t.Helper()
	c := dial(t, addr)
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
		t.Fatalf("IMAP greeting %q: %v", line, err)
	}
	fmt.Fprintf(c, "a LOGIN %s \"%s\"\r\n", alice, pass)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("IMAP LOGIN: %v", err)
		}
		if strings.HasPrefix(line, "a ") {
			return strings.TrimSpace(line)
		}
	}
}

func TestFailuresOnSMTPAndIMAPCountTogether(t *testing.T) {
	logins := abuse.NewLogins(abuse.LoginOptions{
		FailuresPerAddress: 10, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond,
	})
	submission, imap := servers(t, logins, nil)
	for range 5 {
		if code := smtpAuth(t, submission, "guess"); code != 535 {
			t.Fatalf("SMTP guess: %d, want 535", code)
		}
		if line := imapLogin(t, imap, "guess"); !strings.HasPrefix(line, "a NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("IMAP guess: %q", line)
		}
	}
	// Ten failures in all: both protocols now refuse the address.
	if code := smtpAuth(t, submission, password); code != 421 {
		t.Errorf("SMTP after 10 failures across protocols: %d, want 421", code)
	}
	if line := imapLogin(t, imap, password); !strings.HasPrefix(line, "a NO [UNAVAILABLE]") {
		t.Errorf("IMAP after 10 failures across protocols: %q, want NO [UNAVAILABLE]", line)
	}
}

func TestConnectionsOnSMTPAndIMAPCountTogether(t *testing.T) {
	conns := abuse.NewConnections(2, 0)
	submission, imap := servers(t, nil, conns)
	text := textproto.NewConn(dial(t, submission))
	if _, _, err := text.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(dial(t, imap))
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "* OK") {
		t.Fatalf("IMAP greeting %q", line)
	}
	// One SMTP and one IMAP connection fill the address's two slots.
	r = bufio.NewReader(dial(t, imap))
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "* BYE") {
		t.Errorf("third connection (IMAP): %q, want * BYE", line)
	}
	text = textproto.NewConn(dial(t, submission))
	if code, _, _ := text.ReadResponse(0); code != 421 {
		t.Errorf("third connection (SMTP): %d, want 421", code)
	}
}
