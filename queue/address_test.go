package queue

import (
	"strings"
	"testing"

	"github.com/pochta/pochta/storage"
)

// go-smtp hands over "x@y"@evil.test as x@y@evil.test; relayed as it is,
// the relay would read it as x at the domain y@evil.test. On the wire the
// local part is quoted again (RFC 5321 4.1.2), sender and recipient alike.
func TestRelayQuotesLocalPartsThatNeedIt(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	id := e.sendSystem(`o"k@elsewhere.test`, []string{"x@y@evil.test", "plain@remote.test"}, "quoted")
	e.waitEntry(id, "sent", statusIs(storage.QueueSent))
	wire := e.relay.wireText()
	for _, want := range []string{
		`MAIL FROM:<"o\"k"@elsewhere.test>`,
		"RCPT TO:<\"x@y\"@evil.test>",
		"RCPT TO:<plain@remote.test>",
	} {
		if !strings.Contains(wire, want+"\r\n") && !strings.Contains(wire, want+" ") {
			t.Errorf("the relay was not sent %s; it saw:\n%s", want, wire)
		}
	}
	if strings.Contains(wire, "<x@y@evil.test>") {
		t.Errorf("the relay saw the unquoted address:\n%s", wire)
	}
}
