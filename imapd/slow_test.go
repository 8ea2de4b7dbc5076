package imapd

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pochta/pochta/internal/slowclient"
)

// TestTricklingClientGetsBye: a command trickled a byte at a time must
// complete within CommandTimeout, before login and after, in clear text
// and under TLS (where guardedConn sees only ciphertext).
func TestTricklingClientGetsBye(t *testing.T) {
	const bound = 400 * time.Millisecond
	for _, tlsPort := range []bool{false, true} {
		for _, login := range []bool{false, true} {
			name := fmt.Sprintf("tls=%v/logged-in=%v", tlsPort, login)
			t.Run(name, func(t *testing.T) {
				e := newTestEnv(t, withOptions(func(o *Options) { o.CommandTimeout = bound }))
				var r *rawConn
				if tlsPort {
					tc := tls.Client(dialFrom(t, "", e.tlsAddr), e.clientTLS)
					r, _ = rawOn(t, tc)
				} else {
					r = e.greetedFrom("")
				}
				if login {
					r.ok(fmt.Sprintf(`a LOGIN %s "%s"`, alice, password))
				}
				stop := slowclient.Trickle(r.conn, "b NOOP NOOP NOOP NOOP ", 20*time.Millisecond)
				defer stop()
				res := slowclient.ReadUntilClosed(r.conn, r.r, 10*bound)
				if !res.Closed {
					t.Fatalf("connection still open %v after the %v bound; server said %q", 10*bound, bound, res.Lines)
				}
				if !strings.HasPrefix(res.Last(), "* BYE") {
					t.Errorf("last line %q, want * BYE", res.Last())
				}
				if res.After > bound+2*time.Second {
					t.Errorf("closed after %v, want within the %v bound (+2 s)", res.After, bound)
				}
			})
		}
	}
}
