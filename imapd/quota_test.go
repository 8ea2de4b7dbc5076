package imapd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestQuotaReportsUsageAndLimitInKiB(t *testing.T) {
	e := newQuotaEnv(t, 10*1024)
	big := testMessage(alice, bob, "sized", strings.Repeat("a", 3000))
	e.appendMsg(bob, "INBOX", big)
	e.appendMsg(bob, "Drafts", big)
	c := e.raw()
	c.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, bob, password))
	caps := strings.Join(c.ok("b CAPABILITY"), "")
	for _, want := range []string{" QUOTA", " QUOTA=RES-STORAGE"} {
		if !strings.Contains(caps, want) {
			t.Errorf("%s not advertised: %q", want, caps)
		}
	}
	used := (2*int64(len(big)) + 1023) / 1024
	lines := c.ok("c GETQUOTAROOT INBOX")
	if len(lines) != 2 || lines[0] != "* QUOTAROOT INBOX \"\"\r\n" ||
		lines[1] != fmt.Sprintf("* QUOTA \"\" (STORAGE %d 10)\r\n", used) {
		t.Fatalf("GETQUOTAROOT INBOX = %q, want the root \"\" with STORAGE %d 10 (both mailboxes count)", lines, used)
	}
	if lines := c.ok(`d GETQUOTA ""`); len(lines) != 1 || !strings.HasPrefix(lines[0], fmt.Sprintf(`* QUOTA "" (STORAGE %d 10)`, used)) {
		t.Errorf("GETQUOTA \"\" = %q", lines)
	}
	c.send("e GETQUOTA other")
	if line := c.expect("e "); !strings.HasPrefix(line, "e NO [NONEXISTENT]") {
		t.Errorf("GETQUOTA of an unknown root: %q", line)
	}
	c.send("f GETQUOTAROOT Nope")
	if line := c.expect("f "); !strings.HasPrefix(line, "f NO") {
		t.Errorf("GETQUOTAROOT of an unknown mailbox: %q", line)
	}
	c.send(`g SETQUOTA "" (STORAGE 100000)`)
	if line := c.expect("g "); !strings.HasPrefix(line, "g NO") {
		t.Errorf("SETQUOTA: %q, want NO", line)
	}
	c.ok("h NOOP")
}

func TestQuotaWithoutLimitHasNoResourceLimit(t *testing.T) {
	e := newTestEnv(t)
	c := e.raw()
	c.ok(fmt.Sprintf(`a LOGIN "%s" "%s"`, bob, password))
	lines := c.ok("b GETQUOTAROOT INBOX")
	if len(lines) != 2 || lines[1] != "* QUOTA \"\" ()\r\n" {
		t.Fatalf("GETQUOTAROOT without a quota = %q, want the root with no limited resource", lines)
	}
}

func TestQuotaRefusesAppendCopyOverTheLimit(t *testing.T) {
	msg := testMessage(alice, bob, "fits", strings.Repeat("b", 1000))
	e := newQuotaEnv(t, int64(2*len(msg)+10))
	e.appendMsg(bob, "INBOX", msg)
	c := e.loginSelect(bob, "INBOX", nil)
	if _, err := c.Copy(imap.SeqSetNum(1), "Drafts").Wait(); err != nil {
		t.Fatalf("COPY within the quota: %v", err)
	}
	_, err := c.Copy(imap.SeqSetNum(1), "Drafts").Wait()
	expectCode(t, err, imap.ResponseCodeOverQuota, "COPY over the quota")
	err = appendRaw(c, "INBOX", msg)
	expectCode(t, err, imap.ResponseCodeOverQuota, "APPEND over the quota")
	if st := e.inbox(bob); st.Messages != 1 {
		t.Errorf("INBOX holds %d messages, want 1", st.Messages)
	}
	// MOVE within the account does not change the usage.
	if _, err := c.Move(imap.SeqSetNum(1), "Trash").Wait(); err != nil {
		t.Errorf("MOVE at the quota: %v", err)
	}
	// Alice's account is not bob's.
	e.appendMsg(alice, "INBOX", msg)
}
