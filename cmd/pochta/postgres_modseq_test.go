package main

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pochta/pochta/config"
	"github.com/pochta/pochta/internal/pgtest"
)

var uidModSeqRE = regexp.MustCompile(`^\* \d+ FETCH \(.*UID (\d+).*MODSEQ \((\d+)\)|^\* \d+ FETCH \(.*MODSEQ \((\d+)\).*UID (\d+)`)

// CONDSTORE clients of one daemon on PostgreSQL changing and reading the
// same messages at once: no client is ever shown a message's MODSEQ lower
// than one it was shown before (RFC 7162 3.1.2; imaptest's stress mode
// found it going back).
func TestPostgresModSeqNeverGoesBack(t *testing.T) {
	cfgs, dirs, _ := postgresNodeConfigs(t, pgtest.New(t))
	const user, pw = "alice@example.test", "pw-alice-long"
	if code, _, stderr := pochta(t, pw+"\n", "user", "add", user, "--password-stdin", "--config", cfgs[0]); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	startDaemon(t, cfgs[0], dirs[0]+"/data")
	c, _, err := config.Resolve(cfgs[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		submitMail(t, c.SMTP.Submission, user, pw, user, fmt.Sprint("m", i))
	}
	deadline := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for n := range 6 {
		wg.Go(func() {
			s := newIMAPScript(t, c.IMAP.Listen)
			s.ok("LOGIN " + user + " " + pw)
			s.ok("SELECT INBOX (CONDSTORE)")
			last := map[int]uint64{}
			var log []string
			see := func(lines []string) bool {
				for _, l := range lines {
					log = append(log, l)
					m := uidModSeqRE.FindStringSubmatch(l)
					if m == nil {
						continue
					}
					u, ms := m[1], m[2]
					if u == "" {
						u, ms = m[4], m[3]
					}
					uid, _ := strconv.Atoi(u)
					modseq, _ := strconv.ParseUint(ms, 10, 64)
					if modseq < last[uid] {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("client %d: UID %d MODSEQ %d after %d; last lines:\n%s", n, uid, modseq, last[uid], strings.Join(log[max(0, len(log)-30):], "\n")))
						mu.Unlock()
						return false
					}
					last[uid] = modseq
				}
				return true
			}
			for time.Now().Before(deadline) {
				uid := 1 + rand.IntN(5)
				op := "+FLAGS"
				if rand.IntN(2) == 0 {
					op = "-FLAGS"
				}
				flag := []string{`\Seen`, `\Flagged`, "$K1", "$K2"}[rand.IntN(4)]
				if !see(s.ok(fmt.Sprintf("UID STORE %d %s (%s)", uid, op, flag))) ||
					!see(s.ok("UID FETCH 1:* (FLAGS MODSEQ)")) || !see(s.ok("NOOP")) {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d clients saw a MODSEQ go back; first: %s", len(bad), bad[0])
	}
}
