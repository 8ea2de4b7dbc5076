package message

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckFrom(t *testing.T) {
	const user = "alice@example.test"
	ok := []string{
		"From: alice@example.test\r\n",
		"From: Alice Example <alice@example.test>\r\n",
		"From: ALICE@Example.TEST\r\n",
		"From: =?utf-8?q?Al=C3=AFce?= <alice@example.test>\r\n",
		"From: \"Alice (work)\" <alice@example.test> (comment)\r\n",
		"Subject: x\r\nFrom: Alice\r\n <alice@example.test>\r\n",
		"From: friends: alice@example.test;\r\n",
		"From: \"alice@example.test\" <alice@example.test>\r\n",
		"From: Alice <alice@example.test>\r\nSender: alice@example.test\r\n",
		"From: \"Alice @ home\" <alice@example.test>\r\n",
	}
	for _, h := range ok {
		missing, err := CheckFrom([]byte(h), user)
		if err != nil || missing {
			t.Errorf("%q: missing %v, err %v; want accepted", h, missing, err)
		}
	}
	bad := []string{
		"From: Bob <bob@example.test>\r\n",
		"From: alice@example.test, bob@example.test\r\n",
		"From: \"alice@example.test\" <bob@example.test>\r\n",
		"From: alice@example.test\r\nFrom: bob@example.test\r\n",
		"From: group: bob@example.test;\r\n",
		"From: undisclosed:;\r\n",
		"From: not an address\r\n",
		"From: alice@example.test.evil\r\n",
		"From: =?utf-8?q?bob=40example.test?=\r\n",
		"From: \"bob@example.test\" <alice@example.test>\r\n",
		"From: \"Bob (bob@example.test)\" <alice@example.test>\r\n",
		"From: =?utf-8?q?bob=40example.test?= <alice@example.test>\r\n",
		"From: alice@example.test\r\nSender: bob@example.test\r\n",
		"From: alice@example.test\r\nSender: Bob <bob@example.test>\r\n",
		"From: alice@example.test\r\nSender: \"bob@example.test\" <alice@example.test>\r\n",
		"Sender: bob@example.test\r\n",
	}
	for _, h := range bad {
		missing, err := CheckFrom([]byte(h), user)
		var fe *FromError
		if missing || !errors.As(err, &fe) {
			t.Errorf("%q: missing %v, err %v; want a FromError", h, missing, err)
			continue
		}
		if !strings.Contains(fe.Error(), "From header must be your own address "+user) &&
			!strings.Contains(fe.Error(), "must be your own address "+user) {
			t.Errorf("%q: text %q does not say what is expected", h, fe.Error())
		}
	}
	missing, err := CheckFrom([]byte("Subject: no from\r\n"), user)
	if !missing || err != nil {
		t.Errorf("no From: missing %v, err %v; want missing", missing, err)
	}
}
