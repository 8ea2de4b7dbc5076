package smtpd

import (
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/pochta/pochta/storage"
)

func TestHighImportanceCopiesCarryImportantKeyword(t *testing.T) {
	for _, c := range []struct {
		name, header string
		important    bool
	}{
		{"Outlook's Importance: high", "Importance: High\r\n", true},
		{"Thunderbird's X-Priority: 1 (Highest)", "X-Priority: 1 (Highest)\r\n", true},
		{"X-Priority: 2", "X-Priority: 2\r\n", true},
		{"Priority: urgent", "Priority: urgent\r\n", true},
		{"folded Importance", "Importance:\r\n high\r\n", true},
		{"normal mail", "", false},
		{"Importance: normal", "Importance: normal\r\n", false},
		{"X-Priority: 3 (Normal)", "X-Priority: 3 (Normal)\r\n", false},
		{"X-Priority: 10", "X-Priority: 10\r\n", false},
		{"Priority: non-urgent", "Priority: non-urgent\r\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := startServer(t, nil)
			cl := env.login(t, alice)
			if err := send(cl, alice, []string{bob}, simpleMessage(c.header)); err != nil {
				t.Fatalf("send: %v", err)
			}
			got := env.onlyMessage(t, bob, storage.Inbox)
			if has := slices.Contains(got.Flags, imap.Flag("$Important")); has != c.important {
				t.Fatalf("bob's copy flags %v; $Important wanted: %v", got.Flags, c.important)
			}
			// The keyword is the recipients' notice; the sender's copy is
			// plain (and unread until bob reads).
			if sent := env.onlyMessage(t, alice, storage.Sent); len(sent.Flags) != 0 {
				t.Fatalf("Sent copy flags %v, want none", sent.Flags)
			}
		})
	}
}

func TestInboundHighImportanceIsMarkedToo(t *testing.T) {
	env := startServer(t, nil)
	c, err := smtp.Dial(env.inbound)
	if err != nil {
		t.Fatalf("dial inbound: %v", err)
	}
	defer c.Close()
	if err := c.SendMail("monitor@example.test", []string{bob}, strings.NewReader(simpleMessage("X-Priority: 1\r\n"))); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := env.onlyMessage(t, bob, storage.Inbox)
	if !slices.Contains(got.Flags, imap.Flag("$Important")) {
		t.Fatalf("inbound urgent notice flags %v", got.Flags)
	}
}
