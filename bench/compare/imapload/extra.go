package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
)

// fillMaildir writes messages 0..n-1 into the Maildir folder dir (its cur/
// subdirectory, created if missing), unseen, each file's mtime the
// message's Date, which Dovecot takes as the internal date. What it
// creates is given the owner of dir (Dovecot's mail user), so that Dovecot
// can rename the files when flags change.
func fillMaildir(dir string, n int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("maildir (the mailbox is created first): %w", err)
	}
	uid, gid := -1, -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	cur := filepath.Join(dir, "cur")
	if err := os.MkdirAll(cur, 0o755); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	if err := os.Chown(cur, uid, gid); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		msg := message(i)
		name := filepath.Join(cur, fmt.Sprintf("%d.M%dP%d.imapload,S=%d:2,", base.Unix()+int64(i), i, os.Getpid(), len(msg)))
		if err := os.WriteFile(name, msg, 0o644); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
		if err := os.Chown(name, uid, gid); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
		t := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(name, t, t); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
	}
	return nil
}

// rawConn is a line-level IMAP connection: enough for the commands whose
// answers carry no literals (ENABLE, SELECT with QRESYNC, FETCH of flags).
type rawConn struct {
	c   net.Conn
	r   *bufio.Reader
	tag int
}

func dialRaw(addr, user, pass string) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	rc := &rawConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	if _, err := rc.r.ReadString('\n'); err != nil { // greeting
		c.Close()
		return nil, err
	}
	if _, err := rc.cmd(fmt.Sprintf("LOGIN %q %q", user, pass)); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := rc.cmd("ENABLE QRESYNC"); err != nil {
		c.Close()
		return nil, err
	}
	return rc, nil
}

// cmd sends one command and returns its untagged lines; an answer other
// than OK is an error.
func (rc *rawConn) cmd(line string) ([]string, error) {
	rc.tag++
	tag := "q" + strconv.Itoa(rc.tag)
	if _, err := fmt.Fprintf(rc.c, "%s %s\r\n", tag, line); err != nil {
		return nil, err
	}
	var lines []string
	for {
		l, err := rc.r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l[len(tag)+1:], "OK") {
				return lines, fmt.Errorf("%s: %s", strings.Fields(line)[0], l)
			}
			return lines, nil
		}
		lines = append(lines, l)
	}
}

var (
	reUIDValidity = regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`)
	reHighest     = regexp.MustCompile(`\[HIGHESTMODSEQ (\d+)\]`)
	reFetch       = regexp.MustCompile(`^\* \d+ FETCH `)
)

func find(re *regexp.Regexp, lines []string) string {
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return ""
}

// qresync times one resync of mailbox (n messages) after 100 flag changes
// made by another session: \Flagged is added to (set) or removed from 100
// messages spread evenly over the mailbox. It returns the time of the
// SELECT (QRESYNC …) and the FETCH responses it carried.
func qresync(addr, user, pass, mailbox string, n int, set bool) (time.Duration, int, error) {
	if n < 100 {
		return 0, 0, fmt.Errorf("mailbox has %d messages, fewer than the 100 to change", n)
	}
	// The client's last visit: it remembers UIDVALIDITY and HIGHESTMODSEQ.
	before, err := dialRaw(addr, user, pass)
	if err != nil {
		return 0, 0, err
	}
	lines, err := before.cmd(fmt.Sprintf("EXAMINE %q", mailbox))
	before.c.Close()
	if err != nil {
		return 0, 0, err
	}
	validity, modseq := find(reUIDValidity, lines), find(reHighest, lines)
	if validity == "" || modseq == "" {
		return 0, 0, fmt.Errorf("EXAMINE gave no UIDVALIDITY or HIGHESTMODSEQ: %q", lines)
	}

	// Another session changes 100 messages' flags.
	w, err := login(addr, user, pass)
	if err != nil {
		return 0, 0, err
	}
	if _, err := w.Select(mailbox, nil).Wait(); err != nil {
		w.Close()
		return 0, 0, fmt.Errorf("SELECT: %w", err)
	}
	var seqs imap.SeqSet
	for i := 0; i < 100; i++ {
		seqs.AddNum(uint32(1 + i*(n/100)))
	}
	op := imap.StoreFlagsAdd
	if !set {
		op = imap.StoreFlagsDel
	}
	err = w.Store(seqs, &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	w.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("STORE: %w", err)
	}

	// The client comes back.
	after, err := dialRaw(addr, user, pass)
	if err != nil {
		return 0, 0, err
	}
	defer after.c.Close()
	t0 := time.Now()
	lines, err = after.cmd(fmt.Sprintf("EXAMINE %q (QRESYNC (%s %s))", mailbox, validity, modseq))
	d := time.Since(t0)
	if err != nil {
		return 0, 0, err
	}
	fetched := 0
	for _, l := range lines {
		if reFetch.MatchString(l) {
			fetched++
		}
	}
	return d, fetched, nil
}
