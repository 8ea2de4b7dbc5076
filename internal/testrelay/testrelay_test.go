package testrelay

import (
	"net/smtp"
	"strings"
	"testing"
	"time"
)

// held starts a transaction on r that stops in DATA (r is holding) and
// returns its client once the relay counts it as held.
func held(t *testing.T, r *Relay, subject string, want int) (*smtp.Client, chan error) {
	t.Helper()
	c, err := smtp.Dial(r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("x@remote.test"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: " + subject + "\r\n\r\nHello.\r\n")); err != nil {
		t.Fatal(err)
	}
	reply := make(chan error, 1)
	go func() { reply <- w.Close() }()
	waitFor(t, func() bool { return r.Holding() == want }, "the relay holds the DATA")
	return c, reply
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling the relay's state
	}
}

// A held DATA whose client hangs up is dropped; one whose client waits is
// accepted at Release.
func TestHoldDropsATransactionWhoseClientHangsUp(t *testing.T) {
	r := Start(t)
	r.Hold()
	gone, _ := held(t, r, "gone", 1)
	kept, reply := held(t, r, "kept", 2)
	defer kept.Close()
	gone.Close() // the socket, without QUIT or a reply read
	waitFor(t, func() bool { return r.Holding() == 1 }, "the hung-up transaction ends")
	if got := r.Accepted(); len(got) != 0 {
		t.Fatalf("accepted %d messages before Release, want none", len(got))
	}
	r.Release()
	if err := <-reply; err != nil {
		t.Fatalf("the waiting client's DATA: %v", err)
	}
	got := r.Accepted()
	if len(got) != 1 || !strings.Contains(string(got[0].Data), "Subject: kept") {
		t.Fatalf("accepted %d messages, want only the one whose client waited", len(got))
	}
	// The connection goes on after a held transaction: the watch took
	// nothing from it.
	if err := kept.Quit(); err != nil {
		t.Fatalf("QUIT after a held DATA: %v", err)
	}
}
